//! The running operator: shared caches, the node registry, and the loops that act on
//! them (allocation, release, nodes, pool status, collection).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use eni_crds::{ENIPool, PodNetwork};
use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, Node as K8sNode, Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    cloud::CloudProvider,
    metrics::Metrics,
    node::{Cloud, NodeRef, SubnetCache},
    settings::PoolSettings,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "eni-operator".into(),
            resync: Duration::from_secs(10),
            gc_interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(120),
            allocation_timeout: Duration::from_secs(60),
            attach_timeout: Duration::from_secs(60),
        }
    }
}

/// A loaded node and its maintenance task.
pub struct NodeEntry {
    pub node: NodeRef,
    task: JoinHandle<()>,
}

impl Drop for NodeEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Operator {
    pub client: Client,
    pub cloud: Arc<dyn CloudProvider>,
    pub config: Config,
    pub subnets: SubnetCache,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub nodes: RwLock<BTreeMap<String, NodeEntry>>,
    pub pools: Store<ENIPool>,
    pub pods: Store<Pod>,
    pub podnetworks: Store<PodNetwork>,
    pub namespaces: Store<Namespace>,
    pub k8s_nodes: Store<K8sNode>,
}

pub type Ctx = Arc<Operator>;

impl Operator {
    pub fn cloud(&self) -> Cloud<'_> {
        Cloud {
            provider: self.cloud.as_ref(),
            subnets: &self.subnets,
            attach_timeout: self.config.attach_timeout,
        }
    }

    pub fn node(&self, name: &str) -> Option<NodeRef> {
        self.nodes.read().ok()?.get(name).map(|e| e.node.clone())
    }

    pub fn loaded_nodes(&self) -> Vec<NodeRef> {
        self.nodes
            .read()
            .map(|m| m.values().map(|e| e.node.clone()).collect())
            .unwrap_or_default()
    }

    pub fn insert_node(&self, node: NodeRef, task: JoinHandle<()>) {
        if let Ok(mut m) = self.nodes.write() {
            m.insert(node.name.clone(), NodeEntry { node, task });
        }
    }

    pub fn remove_node(&self, name: &str) {
        if let Ok(mut m) = self.nodes.write() {
            m.remove(name);
        }
    }

    /// Settings of every valid pool, by name. An invalid pool (the schema should refuse
    /// it first) is logged and skipped.
    pub fn pool_settings(&self) -> BTreeMap<String, PoolSettings> {
        self.pools
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

    /// Pools whose nodeSelector selects `node` (by the Node object's labels).
    pub fn pools_of_node(&self, node: &str) -> Vec<PoolSettings> {
        let Some(k8s) = self.k8s_nodes.get(&reflector::ObjectRef::new(node)) else {
            return Vec::new();
        };
        let labels = k8s.labels().clone();
        let settings = self.pool_settings();
        self.pools
            .state()
            .iter()
            .filter(|p| crate::selector::matches(&p.spec.node_selector, &labels))
            .filter_map(|p| settings.get(&p.name_any()).cloned())
            .collect()
    }
}

/// Keeps only what the operator needs of a pod, so thousands of pods cost little memory.
fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name.take(),
            host_network: spec.host_network,
            ..Default::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        *status = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            ..Default::default()
        };
    }
}

fn trim_meta<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    obj.meta_mut().annotations = None;
}

/// Runs the operator until `shutdown` resolves or a loop fails.
pub async fn run(
    client: Client,
    cloud: Arc<dyn CloudProvider>,
    config: Config,
    metrics: Metrics,
    shutdown: BoxFuture<'static, ()>,
) {
    let (pools, pools_w) = reflector::store();
    let (pods, pods_w) = reflector::store();
    let (podnetworks, pn_w) = reflector::store();
    let (namespaces, ns_w) = reflector::store();
    let (k8s_nodes, nodes_w) = reflector::store();

    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let op: Ctx = Arc::new(Operator {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        cloud,
        config,
        subnets: SubnetCache::default(),
        metrics,
        nodes: RwLock::new(BTreeMap::new()),
        pools,
        pods,
        podnetworks,
        namespaces,
        k8s_nodes,
    });

    let wc = watcher::Config::default;
    let pool_stream = reflector::reflector(
        pools_w,
        watcher(Api::<ENIPool>::all(client.clone()), wc()).modify(trim_meta),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    let ns_stream = reflector::reflector(
        ns_w,
        watcher(Api::<Namespace>::all(client.clone()), wc()).modify(|n| {
            trim_meta(n);
            n.spec = None;
            n.status = None;
        }),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    let pn_stream = reflector::reflector(
        pn_w,
        watcher(Api::<PodNetwork>::all(client.clone()), wc()).modify(trim_meta),
    )
    .default_backoff();
    let node_stream = reflector::reflector(
        nodes_w,
        watcher(Api::<K8sNode>::all(client.clone()), wc()).modify(|n| {
            trim_meta(n);
            n.status = None;
        }),
    )
    .default_backoff();
    let pod_stream = reflector::reflector(
        pods_w,
        watcher(Api::<Pod>::all(client.clone()), wc().any_semantic()).modify(trim_pod),
    )
    .default_backoff();

    info!("operator starting");
    tokio::select! {
        _ = pool_stream => warn!("pool watch ended"),
        _ = ns_stream => warn!("namespace watch ended"),
        _ = crate::nodes::run(op.clone(), node_stream) => warn!("node loop ended"),
        _ = crate::release::run(op.clone(), pn_stream) => warn!("podnetwork loop ended"),
        _ = crate::allocate::run(op.clone(), pod_stream) => warn!("pod loop ended"),
        _ = crate::status::run(op.clone()) => warn!("status loop ended"),
        _ = crate::gc::run(op.clone()) => warn!("collector ended"),
        _ = shutdown => info!("shutting down"),
    }
}
