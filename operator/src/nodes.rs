//! Nodes: load a node's inventory when a pool selects it, keep its pools warm, publish
//! its trunk (TrunkENI, member capacity), and give its ENIs back when it is deleted
//! (finalizer).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use eni_crds::{MemberState, Mode, PodRef, TrunkENI, TrunkENISpec, TrunkENIStatus, TrunkMember};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node as K8sNode;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::watcher,
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    finalizer,
    inventory::{PodKey, Role, Unit},
    node::Node,
    operator::{Ctx, MANAGER},
    settings::PoolSettings,
};

/// Extended resource advertising free member ENIs, for schedulers.
pub const MEMBER_RESOURCE: &str = "eni-operator.io/member-eni";

/// Instance id from a providerID such as `aws:///us-east-1a/i-0123456789abcdef0`.
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let id = provider_id.rsplit('/').next()?;
    id.starts_with("i-").then_some(id)
}

pub async fn run(
    op: Ctx,
    events: impl Stream<Item = Result<watcher::Event<K8sNode>, watcher::Error>>,
) {
    let busy = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(op.config.resync);
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => spawn(&op, &busy, n),
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "node watch"),
                None => return,
            },
            _ = tick.tick() => {
                for n in op.k8s_nodes.state() {
                    spawn(&op, &busy, (*n).clone());
                }
            }
        }
    }
}

/// One handler per node at a time; a change that arrives meanwhile is picked up by the
/// next resync.
fn spawn(op: &Ctx, busy: &Arc<Mutex<HashSet<String>>>, node: K8sNode) {
    let name = node.name_any();
    if let Ok(mut b) = busy.lock()
        && !b.insert(name.clone())
    {
        return;
    }
    let (op, busy) = (op.clone(), busy.clone());
    tokio::spawn(async move {
        // Released however the handler ends (error, panic, timeout): a node must never
        // stay marked busy, or no later event or resync would reach it.
        let _done = Busy(busy, name.clone());
        let started = Instant::now();
        let result = match tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(&op, &node)).await {
            Ok(r) => r,
            Err(_) => Err(NodesError::TimedOut(RECONCILE_TIMEOUT)),
        };
        op.metrics.reconciled(
            "node",
            result.as_ref().err().map(|e| e.label()),
            started.elapsed(),
        );
        if let Err(e) = result {
            warn!(node = %name, error = %e, "node reconcile");
        }
    });
}

/// Longest a node handler may take; every step is idempotent, so the next event or
/// resync simply starts over.
const RECONCILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// Longest a node handler waits for the PodNetwork store's first list.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

struct Busy(Arc<Mutex<HashSet<String>>>, String);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut b) = self.0.lock() {
            b.remove(&self.1);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("the PodNetwork watch stopped before it listed")]
    Stopping,
    #[error("node handler still running after {0:?}")]
    TimedOut(std::time::Duration),
}

impl NodesError {
    fn label(&self) -> &'static str {
        match self {
            NodesError::Node(e) => e.label(),
            NodesError::Kube(_) => "kube",
            NodesError::Stopping => "stopping",
            NodesError::TimedOut(_) => "timeout",
        }
    }
}

async fn reconcile(op: &Ctx, k8s: &K8sNode) -> Result<(), NodesError> {
    let name = k8s.name_any();
    let Some(instance) = k8s
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .and_then(instance_id)
    else {
        return Ok(());
    };
    let api: Api<K8sNode> = Api::all(op.client.clone());
    if k8s.metadata.deletion_timestamp.is_some() {
        if !finalizer::has(k8s) {
            return Ok(());
        }
        let node = match op.node(&name) {
            Some(n) => n,
            None => Arc::new(Node::load(&name, instance, &op.cloud(), &op.pool_settings()).await?),
        };
        node.teardown(&op.cloud()).await?;
        op.remove_node(&name);
        let _ = Api::<TrunkENI>::all(op.client.clone())
            .delete(&name, &Default::default())
            .await;
        finalizer::remove(&api, k8s).await?;
        info!(node = %name, "node finalized");
        return Ok(());
    }
    let pools = op.pools_of_node(&name);
    if pools.is_empty() && op.node(&name).is_none() {
        return Ok(());
    }
    finalizer::add(&api, k8s).await?;
    let node = match op.node(&name) {
        Some(n) => n,
        None => {
            // What the PodNetworks hold must be known before any unit of the node is
            // handed out: a store still listing would make used units look free.
            tokio::time::timeout(STORE_WAIT, op.podnetworks.wait_until_ready())
                .await
                .map_err(|_| NodesError::TimedOut(STORE_WAIT))?
                .map_err(|_| NodesError::Stopping)?;
            let node =
                Arc::new(Node::load(&name, instance, &op.cloud(), &op.pool_settings()).await?);
            claim_podnetworks(op, &node);
            let task = tokio::spawn(maintain_forever(op.clone(), node.clone()));
            op.insert_node(node.clone(), task);
            node
        }
    };
    node.kick.notify_one();
    for s in pools.iter().filter(|s| s.mode == Mode::Trunk) {
        publish_trunk(op, &node, s).await?;
    }
    Ok(())
}

/// Marks what the node's PodNetworks hold; a unit claimed twice is logged loudly (it
/// would mean two pods share an address) and left with its first owner.
fn claim_podnetworks(op: &Ctx, node: &Node) {
    for pn in op.podnetworks.state() {
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
        if !node.claim(&pn.spec.allocation.eni_id, addr, &pod, cooling) {
            warn!(node = %node.name, pod = %pod.name, address = %addr, eni = %pn.spec.allocation.eni_id, "PodNetwork holds a unit the inventory cannot give it");
        }
    }
}

async fn maintain_forever(op: Ctx, node: Arc<Node>) {
    loop {
        let mut failed = false;
        for s in op.pools_of_node(&node.name) {
            let started = Instant::now();
            let result = node.maintain(&s, &op.cloud()).await;
            failed |= result.is_err();
            op.metrics.reconciled(
                "pool",
                result.as_ref().err().map(|e| e.label()),
                started.elapsed(),
            );
            if let Err(e) = result {
                warn!(node = %node.name, pool = %s.name, error = %e, "maintenance");
            }
            if s.mode == Mode::Trunk
                && let Err(e) = publish_trunk(&op, &node, &s).await
            {
                warn!(node = %node.name, error = %e, "publishing trunk");
            }
        }
        op.metrics.observe_node(&node);
        if failed {
            // Exhausted subnets, throttling, an outage: waiting pods kick this loop every
            // second, and answering each kick would hammer the cloud with the same failing
            // calls. A failed pass waits a full resync period instead.
            tokio::time::sleep(op.config.resync).await;
            continue;
        }
        tokio::select! {
            _ = node.kick.notified() => {}
            _ = tokio::time::sleep(op.config.resync) => {}
        }
    }
}

/// TrunkENI object (spec + status) and the node's member-ENI capacity.
async fn publish_trunk(op: &Ctx, node: &Node, s: &PoolSettings) -> Result<(), NodesError> {
    let inv = node.inventory();
    let Some(trunk) = inv.trunk() else {
        return Ok(());
    };
    let capacity = node
        .limits
        .branch_enis_per_trunk
        .min(s.max_units.unwrap_or(u32::MAX));
    let members: Vec<TrunkMember> = inv
        .enis
        .values()
        .filter_map(|e| {
            let Role::Member { vlan_id, .. } = e.role else {
                return None;
            };
            let unit = e.units.values().next();
            let (state, pod) = match unit {
                Some(Unit::Used(p)) => (MemberState::InUse, Some(p)),
                Some(Unit::Cooling(p)) => (MemberState::Releasing, Some(p)),
                _ => (MemberState::Warm, None),
            };
            Some(TrunkMember {
                eni_id: e.id.clone(),
                vlan_id,
                mac: e.mac.clone(),
                address: e.primary_ip.to_string(),
                security_groups: e.security_groups.clone(),
                pod: pod.map(|p: &PodKey| PodRef {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                }),
                state,
            })
        })
        .collect();
    let used = members
        .iter()
        .filter(|m| m.state != MemberState::Warm)
        .count() as u32;
    let api: Api<TrunkENI> = Api::all(op.client.clone());
    let obj = TrunkENI::new(
        &node.name,
        TrunkENISpec {
            node_name: node.name.clone(),
            instance_id: node.instance.id.clone(),
            pool: s.name.clone(),
        },
    );
    let pp = PatchParams::apply(MANAGER).force();
    api.patch(&node.name, &pp, &Patch::Apply(&obj)).await?;
    let status = TrunkENIStatus {
        trunk_eni_id: Some(trunk.id.clone()),
        trunk_mac: Some(trunk.mac.clone()),
        member_capacity: capacity,
        member_count: members.len() as u32,
        members,
        conditions: Vec::new(),
    };
    let body =
        json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "TrunkENI", "status": status});
    api.patch_status(&node.name, &pp, &Patch::Apply(&body))
        .await?;
    // Schedulers see how many more trunk pods fit.
    let free = capacity.saturating_sub(used).to_string();
    let node_status = json!({
        "apiVersion": "v1", "kind": "Node",
        "status": {"capacity": {MEMBER_RESOURCE: capacity.to_string()}, "allocatable": {MEMBER_RESOURCE: free}}
    });
    Api::<K8sNode>::all(op.client.clone())
        .patch_status(&node.name, &pp, &Patch::Apply(&node_status))
        .await?;
    Ok(())
}

/// Per-pool counts for status: `(enis, total, used, free, cooling)` summed over nodes.
pub fn pool_counts(nodes: &[Arc<Node>], pool: &str) -> BTreeMap<&'static str, u32> {
    let mut c = BTreeMap::from([
        ("nodes", 0),
        ("enis", 0),
        ("total", 0),
        ("used", 0),
        ("warm", 0),
        ("cooling", 0),
    ]);
    for n in nodes {
        let inv = n.inventory();
        let mut any = false;
        for e in inv.pool_enis(pool) {
            any = true;
            *c.entry("enis").or_default() += 1;
            for u in e.units.values() {
                *c.entry("total").or_default() += 1;
                let k = match u {
                    Unit::Used(_) => "used",
                    Unit::Cooling(_) => "cooling",
                    Unit::Free { .. } => "warm",
                };
                *c.entry(k).or_default() += 1;
            }
        }
        if any {
            *c.entry("nodes").or_default() += 1;
        }
    }
    c
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
        assert_eq!(instance_id("kind://docker/kind/kind-control-plane"), None);
        assert_eq!(instance_id(""), None);
    }
}
