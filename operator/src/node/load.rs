//! Loading a node: its instance and limits, and the ENIs the operator owns on it as an
//! inventory. Units are free until PodNetworks claim them ([`Node::claim`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Instant,
};

use eni_crds::Mode;
use tracing::info;

use crate::{
    cloud::{Eni, EniKind, EniQuery, Subnet, SubnetQuery, TrunkAssociation, tags},
    engine::{
        eni::{EniRecord, Role},
        inventory::Inventory,
    },
};

use super::{Cloud, Node, NodeError, mac_of};

impl Node {
    /// Loads the node: its instance and limits, and the ENIs the operator owns on it.
    /// `modes` gives each known pool's mode (an unattached or half-made ENI is left to
    /// the collector).
    pub async fn load(
        name: &str,
        instance_id: &str,
        cloud: &Cloud<'_>,
        modes: &BTreeMap<String, Mode>,
    ) -> Result<Node, NodeError> {
        let p = cloud.provider;
        let instance = p.describe_instance(instance_id).await?;
        let limits = p.instance_limits(&instance.instance_type).await?;
        let owned = p
            .list_enis(&EniQuery::Owned {
                pool: None,
                node: None,
                instance_id: Some(instance_id.to_owned()),
            })
            .await?;
        let subnet_ids: BTreeSet<String> = owned.iter().map(|e| e.subnet_id.clone()).collect();
        let subnets: HashMap<String, Subnet> = if subnet_ids.is_empty() {
            HashMap::new()
        } else {
            p.describe_subnets(&SubnetQuery::Ids(subnet_ids.into_iter().collect()))
                .await?
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect()
        };
        let associations = match node_trunk(&owned, &instance.id) {
            Some(t) => p.trunk_associations(&t.id).await?,
            None => Vec::new(),
        };
        let now = Instant::now();
        let mut inv = Inventory::default();
        for eni in &owned {
            let pool = eni.tags.get(tags::POOL).cloned().unwrap_or_default();
            let Some(subnet) = subnets.get(&eni.subnet_id) else {
                continue;
            };
            let attachment = eni
                .attachment
                .as_ref()
                .filter(|a| a.instance_id == instance.id)
                .map(|a| (a.id.clone(), a.device_index));
            let Some(role) = role(eni, attachment.is_some(), modes.get(&pool), &associations)
            else {
                continue;
            };
            let mac = mac_of(eni)?;
            inv.insert(EniRecord::new(
                eni, mac, pool, role, subnet, attachment, now,
            ));
        }
        info!(node = name, instance = %instance.id, enis = inv.len(), "node loaded");
        Ok(Node::new(name, instance, limits, inv))
    }
}

/// The trunk the node's members ride on: the one attached to the instance. A trunk left
/// unattached by a crash may be listed too (the collector's); reading its associations
/// instead would leave the members out of the inventory, and the node would try their
/// VLAN ids again ("VlanId 1 is already in use", seen once in the chaos trial).
fn node_trunk<'a>(owned: &'a [Eni], instance_id: &str) -> Option<&'a Eni> {
    owned.iter().find(|e| {
        e.kind == EniKind::Trunk
            && e.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
    })
}

/// What a loaded ENI is for; None for one the collector is to take.
fn role(
    eni: &Eni,
    attached: bool,
    mode: Option<&Mode>,
    associations: &[TrunkAssociation],
) -> Option<Role> {
    match eni.kind {
        // Created but not attached (the leader died, or the create's answer was lost,
        // between the create and the attach): no member can ride on it, so it is the
        // collector's and the node makes a new trunk. Taking it as the trunk left the
        // node failing every association with IncorrectState (found by the chaos trial).
        EniKind::Trunk if !attached => None,
        EniKind::Trunk => Some(Role::Trunk),
        // Created but never associated (a crash in between): the collector deletes it.
        EniKind::Branch => associations
            .iter()
            .find(|a| a.branch_eni_id == eni.id)
            .map(|a| Role::Member {
                vlan_id: a.vlan_id,
                association_id: a.id.clone(),
            }),
        // Unattached standard ENIs are the collector's, too.
        EniKind::Standard if !attached => None,
        // Secondary addresses make it a SharedIP ENI whatever the pool's mode is now (a
        // changed mode drains it).
        EniKind::Standard if !eni.secondary_ips.is_empty() || !eni.prefixes.is_empty() => {
            Some(Role::Shared)
        }
        EniKind::Standard if mode == Some(&Mode::Exclusive) => Some(Role::Exclusive),
        EniKind::Standard => Some(Role::Shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::EniStatus;

    fn eni(kind: EniKind, secondaries: usize) -> Eni {
        Eni {
            id: "eni-1".into(),
            mac: "02:00:00:00:00:01".into(),
            kind,
            status: EniStatus::InUse,
            subnet_id: "s".into(),
            vpc_id: "v".into(),
            availability_zone: "az".into(),
            description: String::new(),
            primary_ip: None,
            secondary_ips: (0..secondaries)
                .map(|i| std::net::Ipv4Addr::new(10, 0, 0, 10 + i as u8))
                .collect(),
            prefixes: Vec::new(),
            security_groups: Vec::new(),
            attachment: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn a_cloud_mac_is_parsed_once_and_a_bad_one_is_an_error() {
        let mut e = eni(EniKind::Standard, 0);
        for (mac, want) in [
            ("02:00:00:00:00:01", Some([2, 0, 0, 0, 0, 1])),
            ("02:AB:00:00:00:0F", Some([2, 0xab, 0, 0, 0, 0x0f])),
            ("", None),
            ("02:00:00:00:00", None),
            ("zz:00:00:00:00:01", None),
        ] {
            e.mac = mac.into();
            match (mac_of(&e), want) {
                (Ok(got), Some(want)) => assert_eq!(got.octets(), want, "{mac}"),
                (Err(err), None) => assert_eq!(err.label(), "bad_mac", "{mac}"),
                (got, want) => panic!("{mac}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn roles_of_loaded_enis() {
        let assoc = TrunkAssociation {
            id: "a-1".into(),
            trunk_eni_id: "eni-t".into(),
            branch_eni_id: "eni-1".into(),
            vlan_id: 3,
        };
        let ex = Some(&Mode::Exclusive);
        let sh = Some(&Mode::SharedIp);
        let member = Role::Member {
            vlan_id: 3,
            association_id: "a-1".into(),
        };
        let rows = [
            (
                "trunk",
                eni(EniKind::Trunk, 0),
                true,
                None,
                vec![],
                Some(Role::Trunk),
            ),
            (
                "trunk created but never attached",
                eni(EniKind::Trunk, 0),
                false,
                None,
                vec![],
                None,
            ),
            (
                "associated member",
                eni(EniKind::Branch, 0),
                false,
                None,
                vec![assoc.clone()],
                Some(member),
            ),
            (
                "member never associated",
                eni(EniKind::Branch, 0),
                false,
                None,
                vec![],
                None,
            ),
            (
                "unattached standard",
                eni(EniKind::Standard, 2),
                false,
                sh,
                vec![],
                None,
            ),
            (
                "exclusive",
                eni(EniKind::Standard, 0),
                true,
                ex,
                vec![],
                Some(Role::Exclusive),
            ),
            (
                "shared",
                eni(EniKind::Standard, 2),
                true,
                sh,
                vec![],
                Some(Role::Shared),
            ),
            (
                "addresses make it shared though the mode changed",
                eni(EniKind::Standard, 2),
                true,
                ex,
                vec![],
                Some(Role::Shared),
            ),
            (
                "unknown pool",
                eni(EniKind::Standard, 0),
                true,
                None,
                vec![],
                Some(Role::Shared),
            ),
        ];
        for (name, e, attached, mode, assocs, want) in rows {
            assert_eq!(role(&e, attached, mode, &assocs), want, "{name}");
        }
    }

    #[test]
    fn the_node_trunk_is_the_attached_one_whatever_the_listing_order() {
        let trunk = |id: &str, on: Option<&str>| Eni {
            id: id.into(),
            attachment: on.map(|instance| crate::cloud::Attachment {
                id: format!("attach-{id}"),
                instance_id: instance.into(),
                device_index: 1,
                status: "attached".into(),
            }),
            ..eni(EniKind::Trunk, 0)
        };
        let leaked = trunk("eni-leaked", None);
        let other_node = trunk("eni-other", Some("i-2"));
        let real = trunk("eni-real", Some("i-1"));
        let shared = eni(EniKind::Standard, 3);
        for listing in [
            vec![leaked.clone(), real.clone()],
            vec![real.clone(), leaked.clone()],
            vec![
                other_node.clone(),
                shared.clone(),
                leaked.clone(),
                real.clone(),
            ],
        ] {
            assert_eq!(
                node_trunk(&listing, "i-1").map(|e| e.id.as_str()),
                Some("eni-real")
            );
        }
        assert_eq!(node_trunk(&[leaked, other_node, shared], "i-1"), None);
    }
}
