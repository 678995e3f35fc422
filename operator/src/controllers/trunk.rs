//! A node's trunk as the API shows it: the TrunkENI object (members and their state) and
//! the node's extended resource counting member ENIs, for schedulers.

use std::collections::BTreeMap;

use eni_crds::{MemberState, PodRef, TrunkENI, TrunkENISpec, TrunkENIStatus, TrunkMember};
use k8s_openapi::api::core::v1::{Node as K8sNode, NodeStatus};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    context::{Ctx, MANAGER},
    engine::{
        eni::{Role, Unit},
        inventory::Inventory,
        settings::PoolSettings,
    },
    node::Node,
};

/// Extended resource advertising a node's member ENIs, for schedulers.
pub const MEMBER_RESOURCE: &str = "eni-operator.io/member-eni";

/// The TrunkENI status of an inventory, None without a trunk.
fn trunk_status(inv: &Inventory, capacity: u32) -> Option<TrunkENIStatus> {
    let trunk = inv.trunk()?;
    let members: Vec<TrunkMember> = inv
        .enis()
        .filter_map(|e| {
            let Role::Member { vlan_id, .. } = e.role() else {
                return None;
            };
            let (state, pod) = match e.units().next().map(|(_, u)| u) {
                Some(Unit::Used(p)) => (MemberState::InUse, Some(p)),
                Some(Unit::Cooling(p)) => (MemberState::Releasing, Some(p)),
                _ => (MemberState::Warm, None),
            };
            Some(TrunkMember {
                eni_id: e.id().to_owned(),
                vlan_id: *vlan_id,
                mac: e.mac().to_string(),
                address: e.primary_ip().to_string(),
                security_groups: e.security_groups().to_vec(),
                pod: pod.map(|p| PodRef {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                }),
                state,
            })
        })
        .collect();
    Some(TrunkENIStatus {
        trunk_eni_id: Some(trunk.id().to_owned()),
        trunk_mac: Some(trunk.mac().to_string()),
        member_capacity: capacity,
        member_count: members.len() as u32,
        members,
        conditions: Vec::new(),
    })
}

/// TrunkENI object (spec + status) and the node's member-ENI capacity.
pub async fn publish(ctx: &Ctx, node: &Node, s: &PoolSettings) -> Result<(), kube::Error> {
    let capacity = node
        .limits
        .branch_enis_per_trunk
        .min(s.max_units.unwrap_or(u32::MAX));
    let Some(status) = node.read(|inv| trunk_status(inv, capacity)) else {
        return Ok(());
    };
    let api: Api<TrunkENI> = Api::all(ctx.client().clone());
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
    let body =
        json!({"apiVersion": "eni-operator.io/v1alpha1", "kind": "TrunkENI", "status": status});
    api.patch_status(&node.name, &pp, &Patch::Apply(&body))
        .await?;
    // How many trunk pods fit; the scheduler subtracts what the pods on the node
    // request (the chart's admission policy makes every trunk pod request one), as it
    // does for any resource, so allocatable is the whole capacity, not what is free.
    let capacity = capacity.to_string();
    let node_status = json!({
        "apiVersion": "v1", "kind": "Node",
        "status": {"capacity": {MEMBER_RESOURCE: &capacity}, "allocatable": {MEMBER_RESOURCE: &capacity}}
    });
    Api::<K8sNode>::all(ctx.client().clone())
        .patch_status(&node.name, &pp, &Patch::Apply(&node_status))
        .await?;
    Ok(())
}

/// A node no trunk pool serves can take no new trunk pod: its member-ENI capacity goes
/// (a merge patch with nulls, so it goes whoever wrote it last, and a missing key is no
/// error).
pub async fn retract_capacity(ctx: &Ctx, node: &str) -> Result<(), kube::Error> {
    let gone = json!({"status": {
        "capacity": {MEMBER_RESOURCE: null},
        "allocatable": {MEMBER_RESOURCE: null},
    }});
    Api::<K8sNode>::all(ctx.client().clone())
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&gone))
        .await?;
    Ok(())
}

/// Whether the node advertises member ENIs (in a Node the cache trimmed with
/// [`trim_status`]).
pub fn advertised(node: &K8sNode) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .is_some_and(|c| c.contains_key(MEMBER_RESOURCE))
}

/// What the Node cache keeps of the status: the member-ENI capacity only, so that a
/// capacity nobody should advertise any more is seen, after a restart too.
pub fn trim_status(node: &mut K8sNode) {
    let member = node
        .status
        .take()
        .and_then(|s| s.capacity)
        .and_then(|mut c| c.remove_entry(MEMBER_RESOURCE));
    node.status = member.map(|(k, v)| NodeStatus {
        capacity: Some(BTreeMap::from([(k, v)])),
        ..NodeStatus::default()
    });
}

/// The node's trunk is gone: so is its TrunkENI object.
pub async fn unpublish(ctx: &Ctx, node: &str) -> Result<(), kube::Error> {
    match Api::<TrunkENI>::all(ctx.client().clone())
        .delete(node, &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use eni_crds::Mode;

    use super::*;
    use crate::engine::testkit::{inventory, pod, settings, trunk_eni, whole_eni};

    #[test]
    fn the_cache_keeps_only_the_member_capacity() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let node = |capacity: &[(&str, &str)]| K8sNode {
            status: Some(NodeStatus {
                capacity: Some(
                    capacity
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                        .collect(),
                ),
                allocatable: Some(BTreeMap::from([(
                    MEMBER_RESOURCE.to_owned(),
                    Quantity("3".into()),
                )])),
                ..NodeStatus::default()
            }),
            ..K8sNode::default()
        };
        let mut with = node(&[("cpu", "4"), (MEMBER_RESOURCE, "9")]);
        trim_status(&mut with);
        assert!(advertised(&with));
        let kept = with.status.as_ref().expect("status");
        assert_eq!(
            kept.capacity.as_ref().map(|c| c.keys().collect::<Vec<_>>()),
            Some(vec![&MEMBER_RESOURCE.to_owned()])
        );
        assert_eq!(kept.allocatable, None);
        let mut without = node(&[("cpu", "4")]);
        trim_status(&mut without);
        assert!(!advertised(&without));
        assert!(without.status.is_none());
        assert!(!advertised(&K8sNode::default()));
    }

    #[test]
    fn members_and_their_state() {
        let t0 = Instant::now();
        assert!(
            trunk_status(&inventory([]), 5).is_none(),
            "no trunk, no status"
        );
        let mut inv = inventory([
            trunk_eni("eni-t", "p", t0),
            whole_eni("eni-m1", "10.0.1.11", Some(1), t0),
            whole_eni("eni-m2", "10.0.1.12", Some(2), t0),
        ]);
        inv.take(&settings(Mode::Trunk), &pod("a"))
            .expect("a member");
        let s = trunk_status(&inv, 5).expect("status");
        assert_eq!(s.trunk_eni_id.as_deref(), Some("eni-t"));
        assert_eq!((s.member_capacity, s.member_count), (5, 2));
        let states: Vec<_> = s.members.iter().map(|m| (m.vlan_id, m.state)).collect();
        assert_eq!(states, [(1, MemberState::InUse), (2, MemberState::Warm)]);
        assert_eq!(
            s.members[0].pod.as_ref().map(|p| p.name.as_str()),
            Some("a")
        );
    }
}
