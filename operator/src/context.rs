//! What every controller shares: the configuration, the API client, the cloud, metrics,
//! the event recorder, the watch caches and the registry of loaded nodes, all behind
//! methods (nothing here is mutable from outside).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, RwLock},
    time::Duration,
};

use eni_crds::{ENIPool, Mode, PodNetwork};
use k8s_openapi::api::core::v1::{Namespace, Node as K8sNode};
use kube::{
    Client, Resource, ResourceExt,
    runtime::{
        events::Recorder,
        reflector::{ObjectRef, Store},
    },
};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{
    cloud::CloudProvider,
    engine::{selector, settings::PoolSettings},
    metrics::Metrics,
    node::{Cloud, NodeRef, SubnetCache},
    pod_record::PodRecord,
};

/// Field manager of everything the operator writes.
pub const MANAGER: &str = "eni-operator";

#[derive(Clone, Debug)]
pub struct Config {
    /// Value of the ownership tag `eni-operator.io/cluster`.
    pub cluster: String,
    /// Period of the full resync (maintenance of every node, status, sweeps).
    pub resync: Duration,
    /// How often the collector looks for leaked ENIs, and how long an ENI must stay
    /// unattached and unreferenced before it is deleted.
    pub gc_interval: Duration,
    pub gc_grace: Duration,
    /// How long a pod waits for a unit before the attempt is given up and retried.
    pub allocation_timeout: Duration,
    pub attach_timeout: Duration,
    /// How long after a change the cloud's describes are trusted to show it.
    pub describe_settle: Duration,
    /// The replica and its term of leadership, recorded on every PodNetwork it writes
    /// ([`WRITER_ANNOTATION`]): two PodNetworks naming one unit then tell whether two
    /// replicas acted at once.
    pub writer: String,
}

/// Annotation on a PodNetwork: which replica allocated it, in which term.
pub const WRITER_ANNOTATION: &str = "eni-operator.io/allocated-by";

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "eni-operator".into(),
            resync: Duration::from_secs(10),
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(120),
            allocation_timeout: Duration::from_secs(60),
            attach_timeout: Duration::from_secs(60),
            // EC2 documents its describes as eventually consistent, typically within
            // seconds of a change.
            describe_settle: Duration::from_secs(5),
            writer: "eni-operator".into(),
        }
    }
}

/// The watch caches the controllers read.
pub struct Stores {
    pub pools: Store<ENIPool>,
    pub pods: Store<PodRecord>,
    pub podnetworks: Store<PodNetwork>,
    pub namespaces: Store<Namespace>,
    pub nodes: Store<K8sNode>,
}

/// A loaded node and its maintenance task (stopped when the entry goes).
struct NodeEntry {
    node: NodeRef,
    task: JoinHandle<()>,
}

impl Drop for NodeEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Context {
    client: Client,
    provider: Arc<dyn CloudProvider>,
    config: Config,
    subnets: SubnetCache,
    metrics: Metrics,
    recorder: Recorder,
    stores: Stores,
    nodes: RwLock<BTreeMap<String, NodeEntry>>,
}

pub type Ctx = Arc<Context>;

impl Context {
    pub fn new(
        client: Client,
        provider: Arc<dyn CloudProvider>,
        config: Config,
        metrics: Metrics,
        recorder: Recorder,
        stores: Stores,
    ) -> Ctx {
        Arc::new(Context {
            client,
            provider,
            config,
            subnets: SubnetCache::default(),
            metrics,
            recorder,
            stores,
            nodes: RwLock::new(BTreeMap::new()),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
    pub fn provider(&self) -> &dyn CloudProvider {
        self.provider.as_ref()
    }

    pub fn cloud(&self) -> Cloud<'_> {
        Cloud {
            provider: self.provider.as_ref(),
            subnets: &self.subnets,
            attach_timeout: self.config.attach_timeout,
            describe_settle: self.config.describe_settle,
        }
    }

    pub fn node(&self, name: &str) -> Option<NodeRef> {
        let m = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        m.get(name).map(|e| e.node.clone())
    }

    pub fn loaded_nodes(&self) -> Vec<NodeRef> {
        let m = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        m.values().map(|e| e.node.clone()).collect()
    }

    pub fn insert_node(&self, node: NodeRef, task: JoinHandle<()>) {
        let mut m = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        m.insert(node.name.clone(), NodeEntry { node, task });
    }

    pub fn remove_node(&self, name: &str) {
        let mut m = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        m.remove(name);
    }

    pub fn pools(&self) -> Vec<Arc<ENIPool>> {
        self.stores.pools.state()
    }

    /// Settings of every valid pool that is not being deleted, by name. An invalid pool
    /// (the schema should refuse it first) is logged and skipped.
    pub fn pool_settings(&self) -> BTreeMap<String, PoolSettings> {
        self.stores
            .pools
            .state()
            .iter()
            .filter(|p| p.meta().deletion_timestamp.is_none())
            .filter_map(|p| match PoolSettings::from_pool(p) {
                Ok(s) => Some((s.name.clone(), s)),
                Err(e) => {
                    warn!(pool = %p.name_any(), error = %e, "ignoring invalid pool");
                    None
                }
            })
            .collect()
    }

    /// Settings of pool `name`, deleting or not (a deleted pool's releases keep its
    /// cooldown).
    pub fn settings_of(&self, name: &str) -> Option<PoolSettings> {
        let pool = self.stores.pools.get(&ObjectRef::new(name))?;
        PoolSettings::from_pool(&pool).ok()
    }

    /// The mode of every pool the cache holds, deleting ones included.
    pub fn pool_modes(&self) -> BTreeMap<String, Mode> {
        let pools = self.stores.pools.state();
        pools.iter().map(|p| (p.name_any(), p.spec.mode)).collect()
    }

    /// Pools whose ENIs drain: being deleted, or gone from the API altogether (once the
    /// pool cache has listed, so a starting operator never drains a live pool).
    pub fn draining_pools(&self, held: BTreeSet<String>) -> Vec<String> {
        let pools = self.stores.pools.state();
        let live = |name: &str| {
            pools
                .iter()
                .any(|p| p.name_any() == name && p.meta().deletion_timestamp.is_none())
        };
        held.into_iter().filter(|name| !live(name)).collect()
    }

    pub fn node_labels(&self, node: &str) -> Option<BTreeMap<String, String>> {
        self.stores
            .nodes
            .get(&ObjectRef::new(node))
            .map(|n| n.labels().clone())
    }

    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.stores
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    /// Active pools whose nodeSelector selects `node` (by the Node object's labels).
    pub fn pools_of_node(&self, node: &str) -> Vec<PoolSettings> {
        let Some(labels) = self.node_labels(node) else {
            return Vec::new();
        };
        let settings = self.pool_settings();
        self.pools()
            .iter()
            .filter(|p| selector::matches(&p.spec.node_selector, &labels))
            .filter_map(|p| settings.get(&p.name_any()).cloned())
            .collect()
    }

    /// Whether any pool, deleting ones included, selects `node`: such a node is loaded
    /// so that a deleted pool's ENIs on it drain after an operator restart, too.
    pub fn any_pool_selects(&self, node: &str) -> bool {
        let Some(labels) = self.node_labels(node) else {
            return false;
        };
        self.pools()
            .iter()
            .any(|p| selector::matches(&p.spec.node_selector, &labels))
    }

    /// The cached Node (status trimmed to its member-ENI capacity).
    pub fn k8s_node(&self, name: &str) -> Option<Arc<K8sNode>> {
        self.stores.nodes.get(&ObjectRef::new(name))
    }

    pub fn k8s_nodes(&self) -> Vec<Arc<K8sNode>> {
        self.stores.nodes.state()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodRecord>> {
        self.stores
            .pods
            .get(&ObjectRef::new_with(name, ()).within(namespace))
    }

    pub fn pods(&self) -> Vec<Arc<PodRecord>> {
        self.stores.pods.state()
    }

    pub fn podnetwork(&self, key: &ObjectRef<PodNetwork>) -> Option<Arc<PodNetwork>> {
        self.stores.podnetworks.get(key)
    }

    pub fn podnetworks(&self) -> Vec<Arc<PodNetwork>> {
        self.stores.podnetworks.state()
    }

    /// Waits for the PodNetwork and pool caches' first lists: what PodNetworks hold must
    /// be known before a unit is handed out, and what pools exist before one drains.
    pub async fn caches_listed(&self, within: Duration) -> Result<(), CachesNotListed> {
        let both = async {
            self.stores.podnetworks.wait_until_ready().await?;
            self.stores.pools.wait_until_ready().await
        };
        match tokio::time::timeout(within, both).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CachesNotListed::Stopping),
            Err(_) => Err(CachesNotListed::TimedOut(within)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CachesNotListed {
    #[error("a watch stopped before it listed")]
    Stopping,
    #[error("caches not listed after {0:?}")]
    TimedOut(Duration),
}
