//! Builders for the engine's table tests: pods, ENI records, pools and instances.

use std::{collections::BTreeMap, time::Instant};

use eni_crds::{Datapath, Mac, Mode, SubnetPolicy};

use crate::cloud::InstanceLimits;

use super::{
    eni::{EniRecord, Placement, PodKey, Role, Unit},
    inventory::Inventory,
    settings::PoolSettings,
};

pub fn pod(n: &str) -> PodKey {
    PodKey {
        namespace: "default".into(),
        name: n.into(),
        uid: format!("uid-{n}"),
    }
}

/// A SharedIP ENI of pool `p` in `subnet-1` (10.0.1.0/24) with free `addrs`.
pub fn shared_eni(id: &str, addrs: &[&str], t0: Instant) -> EniRecord {
    EniRecord {
        id: id.into(),
        pool: "p".into(),
        role: Role::Shared,
        mac: Mac::new([0x02, 0, 0, 0, 0, 0x01]),
        primary_ip: "10.0.1.10".parse().expect("ip"),
        placement: Placement {
            subnet_id: "subnet-1".into(),
            subnet_cidr: "10.0.1.0/24".parse().expect("cidr"),
            subnet_tags: BTreeMap::from([("pods".to_owned(), "true".to_owned())]),
            attachment: Some((format!("attach-{id}"), 1)),
        },
        security_groups: vec!["sg-1".into()],
        prefixes: vec![],
        units: addrs
            .iter()
            .map(|a| (a.parse().expect("ip"), Unit::Free { since: t0 }))
            .collect(),
    }
}

/// A SharedIP ENI holding `prefixes` (all free).
pub fn prefix_eni(id: &str, prefixes: &[&str], t0: Instant) -> EniRecord {
    let mut e = shared_eni(id, &[], t0);
    let ps: Vec<ipnet::Ipv4Net> = prefixes
        .iter()
        .map(|p| p.parse().expect("prefix"))
        .collect();
    e.add_addresses(&[], &ps, t0);
    e
}

/// A whole ENI (Exclusive, or Member with VLAN `vlan`) with primary `ip`, free.
pub fn whole_eni(id: &str, ip: &str, vlan: Option<u16>, t0: Instant) -> EniRecord {
    let mut e = shared_eni(id, &[ip], t0);
    e.primary_ip = ip.parse().expect("ip");
    match vlan {
        Some(vlan_id) => {
            e.role = Role::Member {
                vlan_id,
                association_id: format!("assoc-{id}"),
            };
            e.placement.attachment = None;
        }
        None => e.role = Role::Exclusive,
    }
    e
}

pub fn trunk_eni(id: &str, pool: &str, t0: Instant) -> EniRecord {
    let mut e = shared_eni(id, &[], t0);
    e.role = Role::Trunk;
    e.pool = pool.into();
    e.mac = Mac::new([0x02, 0, 0, 0, 0, 0xaa]);
    e.placement.attachment = Some((format!("attach-{id}"), 2));
    e
}

/// Sets the ENI's device index (attached ENIs take one each).
pub fn at_index(mut e: EniRecord, index: u32) -> EniRecord {
    e.placement.attachment = Some((format!("attach-{}", e.id), index));
    e
}

pub fn in_pool(mut e: EniRecord, pool: &str) -> EniRecord {
    e.pool = pool.into();
    e
}

pub fn with_groups(mut e: EniRecord, groups: &[&str]) -> EniRecord {
    e.security_groups = groups.iter().map(|g| (*g).to_owned()).collect();
    e
}

pub fn in_subnet(mut e: EniRecord, subnet: &str) -> EniRecord {
    e.placement.subnet_id = subnet.into();
    e.placement.subnet_tags = BTreeMap::new();
    e
}

pub fn inventory(enis: impl IntoIterator<Item = EniRecord>) -> Inventory {
    let mut inv = Inventory::default();
    for e in enis {
        inv.insert(e);
    }
    inv
}

/// Pool `p` of `mode` selecting subnets tagged `pods=true`, no release delay, warm 2.
pub fn settings(mode: Mode) -> PoolSettings {
    PoolSettings {
        name: "p".into(),
        mode,
        priority: 0,
        min_units: 0,
        warm_units: 2,
        max_units: None,
        max_enis: None,
        release_delay: std::time::Duration::ZERO,
        cooldown: std::time::Duration::from_secs(30),
        prefix_delegation: false,
        datapath: Datapath::default(),
        subnet_ids: Vec::new(),
        subnet_tags: BTreeMap::from([("pods".to_owned(), "true".to_owned())]),
        subnet_policy: SubnetPolicy::default(),
        security_groups: Vec::new(),
        tags: BTreeMap::new(),
        sticky_release_after: None,
    }
}

/// m5.large: 3 ENIs of 10 addresses, 10 trunk members.
pub fn m5_large() -> InstanceLimits {
    InstanceLimits {
        max_enis: 3,
        ipv4_per_eni: 10,
        trunking_supported: true,
        branch_enis_per_trunk: 10,
    }
}
