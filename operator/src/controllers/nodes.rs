//! Nodes: load a node's inventory when a pool selects it, keep its pools warm and drain
//! what deleted pools left on it, publish its trunk, and give its ENIs back when it is
//! deleted (finalizer).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use eni_crds::Mode;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Node as K8sNode;
use kube::{Api, ResourceExt, runtime::watcher};
use tracing::{info, warn};

use crate::{
    context::{CachesNotListed, Ctx},
    engine::{eni::PodKey, plan::PoolState},
    finalizer,
    keyed::{Failure, Keyed},
    node::{Node, NodeError},
};

use super::trunk;

/// Instance id from a providerID: `aws:///us-east-1a/i-0123456789abcdef0` (AWS), or
/// `cn-hangzhou.i-bp1...` as Alibaba Cloud's controller manager writes it (instance ids
/// hold no `/` or `.`).
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let last = provider_id.rsplit('/').next()?;
    let id = last.rsplit('.').next()?;
    id.starts_with("i-").then_some(id)
}

/// Longest a node handler may take; every step is idempotent, so the next event or
/// resync simply starts over.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest a node handler waits for the caches' first lists.
const STORE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Caches(#[from] CachesNotListed),
}

impl Failure for NodesError {
    fn label(&self) -> &'static str {
        match self {
            NodesError::Node(e) => e.label(),
            NodesError::Kube(_) => "kube",
            NodesError::Caches(CachesNotListed::Stopping) => "stopping",
            NodesError::Caches(CachesNotListed::TimedOut(_)) => "timeout",
        }
    }
}

pub async fn run(
    ctx: Ctx,
    events: impl Stream<Item = Result<watcher::Event<K8sNode>, watcher::Error>>,
) {
    let runner: Keyed<String, NodesError> =
        Keyed::new("node", RECONCILE_TIMEOUT, ctx.metrics().clone());
    let schedule = |n: K8sNode| {
        let ctx = ctx.clone();
        runner.schedule(n.name_any(), move || {
            async move { reconcile(&ctx, &n).await }.boxed()
        });
    };
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(ctx.config().resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => schedule(n),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "node watch"),
                None => return,
            },
            _ = tick.tick() => {
                for n in ctx.k8s_nodes() {
                    schedule((*n).clone());
                }
            }
        }
    }
}

async fn reconcile(ctx: &Ctx, k8s: &K8sNode) -> Result<(), NodesError> {
    let name = k8s.name_any();
    let Some(instance) = k8s
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(instance_id)
    else {
        return Ok(());
    };
    let api: Api<K8sNode> = Api::all(ctx.client().clone());
    if k8s.metadata.deletion_timestamp.is_some() {
        if !finalizer::has(k8s) {
            return Ok(());
        }
        let node = match ctx.node(&name) {
            Some(n) => n,
            None => Arc::new(Node::load(&name, instance, &ctx.cloud(), &ctx.pool_modes()).await?),
        };
        node.teardown(&ctx.cloud()).await?;
        ctx.remove_node(&name);
        trunk::unpublish(ctx, &name).await?;
        finalizer::remove(&api, k8s).await?;
        info!(node = %name, "node finalized");
        return Ok(());
    }
    if !ctx.any_pool_selects(&name) && ctx.node(&name).is_none() {
        return Ok(());
    }
    finalizer::add(&api, k8s).await?;
    let node = match ctx.node(&name) {
        Some(n) => n,
        None => {
            // What the PodNetworks hold must be known before any unit of the node is
            // handed out (a cache still listing would make used units look free), and
            // which pools exist before any ENI drains.
            ctx.caches_listed(STORE_WAIT).await?;
            let node =
                Arc::new(Node::load(&name, instance, &ctx.cloud(), &ctx.pool_modes()).await?);
            claim_podnetworks(ctx, &node);
            let task = tokio::spawn(maintain_forever(ctx.clone(), node.clone()));
            ctx.insert_node(node.clone(), task);
            node
        }
    };
    node.kick.notify_one();
    for s in ctx
        .pools_of_node(&name)
        .iter()
        .filter(|s| s.mode == Mode::Trunk)
    {
        trunk::publish(ctx, &node, s).await?;
    }
    Ok(())
}

/// Marks what the node's PodNetworks hold; a unit claimed twice is logged loudly (it
/// would mean two pods share an address) and left with its first owner. An address the
/// cloud no longer has on the ENI stays the pod's and is assigned again.
fn claim_podnetworks(ctx: &Ctx, node: &Node) {
    for pn in ctx.podnetworks() {
        if pn.spec.node_name != node.name {
            continue;
        }
        let addr = pn.spec.allocation.address;
        let pod = PodKey {
            namespace: pn.namespace().unwrap_or_default(),
            name: pn.name_any(),
            uid: pn.spec.pod_uid.clone(),
        };
        let cooling = pn.metadata.deletion_timestamp.is_some();
        let eni = &pn.spec.allocation.eni_id;
        if node.claim(eni, addr, &pod, cooling) {
            continue;
        }
        if node.claim_missing(eni, addr, &pod, cooling) {
            warn!(node = %node.name, pod = %pod.name, address = %addr, %eni, "PodNetwork holds an address its ENI lacks in the cloud: assigning it again");
        } else {
            warn!(node = %node.name, pod = %pod.name, address = %addr, %eni, "PodNetwork holds a unit the inventory cannot give it");
        }
    }
}

/// One pass over the node: every active pool toward its target, then every pool that
/// drains. True when a step failed.
async fn pass(ctx: &Ctx, node: &Node) -> bool {
    let active = ctx.pools_of_node(&node.name);
    let trunk_pool = |except: &str| {
        active
            .iter()
            .find(|s| s.mode == Mode::Trunk && s.name != except)
            .map(|s| s.name.clone())
    };
    let mut failed = false;
    let mut record = |pool: &str, started: Instant, result: Result<(), NodeError>| {
        failed |= result.is_err();
        ctx.metrics().reconciled(
            "pool",
            result.as_ref().err().map(NodeError::label),
            started.elapsed(),
        );
        if let Err(e) = result {
            warn!(node = %node.name, %pool, error = %e, "maintenance");
        }
    };
    for s in &active {
        let started = Instant::now();
        let other = trunk_pool(&s.name);
        let result = node
            .maintain(PoolState::Active(s), other.as_deref(), &ctx.cloud())
            .await;
        record(&s.name, started, result);
        if s.mode == Mode::Trunk
            && let Err(e) = trunk::publish(ctx, node, s).await
        {
            warn!(node = %node.name, error = %e, "publishing trunk");
        }
    }
    for pool in ctx.draining_pools(node.pools()) {
        let started = Instant::now();
        let other = trunk_pool(&pool);
        let had_trunk = node.read(|inv| inv.trunk().is_some_and(|t| t.pool() == pool));
        let result = node
            .maintain(PoolState::Draining(&pool), other.as_deref(), &ctx.cloud())
            .await;
        record(&pool, started, result);
        if had_trunk
            && node.read(|inv| inv.trunk().is_none())
            && let Err(e) = trunk::unpublish(ctx, &node.name).await
        {
            warn!(node = %node.name, error = %e, "removing the TrunkENI of a deleted trunk");
        }
    }
    if !active.iter().any(|s| s.mode == Mode::Trunk)
        && ctx
            .k8s_node(&node.name)
            .is_some_and(|n| trunk::advertised(&n))
        && let Err(e) = trunk::retract_capacity(ctx, &node.name).await
    {
        warn!(node = %node.name, error = %e, "removing the member-ENI capacity of a node no trunk pool serves");
    }
    failed
}

async fn maintain_forever(ctx: Ctx, node: Arc<Node>) {
    loop {
        // A pass of its own task: a panic in it ends that pass, not the node's upkeep.
        let (c, n) = (ctx.clone(), node.clone());
        let failed = match tokio::spawn(async move { pass(&c, &n).await }).await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::error!(node = %node.name, error = %e, "maintenance pass panicked");
                ctx.metrics()
                    .reconciled("pool", Some("panic"), Duration::ZERO);
                true
            }
        };
        if node.has_started() {
            let (c, n) = (ctx.clone(), node.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = n.settle_attachments(&c.cloud()).await;
                c.metrics().reconciled(
                    "attach",
                    result.as_ref().err().map(NodeError::label),
                    started.elapsed(),
                );
                if let Err(e) = result {
                    warn!(node = %n.name, error = %e, "waiting for ENIs to attach");
                }
                // What they brought may meet the pools' targets, or not (a failure).
                n.kick.notify_one();
            });
        }
        ctx.metrics().observe_node(&node.name, node.eni_count());
        if failed {
            // Exhausted subnets, throttling, an outage: waiting pods kick this loop every
            // second, and answering each kick would hammer the cloud with the same failing
            // calls. A failed pass waits a full resync period instead.
            tokio::time::sleep(ctx.config().resync).await;
            continue;
        }
        tokio::select! {
            _ = node.kick.notified() => {}
            _ = tokio::time::sleep(ctx.config().resync) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids() {
        assert_eq!(
            instance_id("aws:///us-east-1a/i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(instance_id("aws:///i-01"), Some("i-01"));
        assert_eq!(
            instance_id("cn-hangzhou.i-bp1b8nmm5kq3zhsdgt4z"),
            Some("i-bp1b8nmm5kq3zhsdgt4z")
        );
        assert_eq!(instance_id("alicloud://cn-hangzhou.i-bp1x"), Some("i-bp1x"));
        assert_eq!(instance_id("kind://docker/kind/kind-control-plane"), None);
        assert_eq!(instance_id(""), None);
    }
}
