//! One node's inventory: the ENIs the operator owns on it and what each address (or
//! whole ENI) is doing. The cloud says what exists, PodNetworks say what is used; the
//! inventory is rebuilt from both on start and kept in memory after that.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use eni_crds::{Allocation, Datapath, Mode};
use ipnet::Ipv4Net;

use crate::pool::{EniFill, Usage};

/// A pod, as an owner of a unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    Free {
        since: Instant,
    },
    Used(PodKey),
    /// Released by this pod; back to Free when its PodNetwork's cooldown ends.
    Cooling(PodKey),
}

/// What an ENI is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds secondary addresses for SharedIP pods.
    Shared,
    /// Goes whole to one pod.
    Exclusive,
    /// The node's trunk ENI (no units of its own).
    Trunk,
    /// A member ENI relayed over the trunk, goes whole to one pod.
    Member {
        vlan_id: u16,
        association_id: String,
    },
}

#[derive(Clone, Debug)]
pub struct EniRecord {
    pub id: String,
    pub pool: String,
    pub role: Role,
    pub mac: String,
    pub subnet_id: String,
    pub subnet_cidr: Ipv4Net,
    pub primary_ip: Ipv4Addr,
    /// `(attachment id, device index)` once attached; members have none.
    pub attachment: Option<(String, u32)>,
    pub security_groups: Vec<String>,
    /// Delegated prefixes (SharedIP with prefix delegation); their addresses are units.
    pub prefixes: Vec<Ipv4Net>,
    /// Addresses pods can get: the secondaries (SharedIP) or the primary (whole ENI).
    pub units: BTreeMap<Ipv4Addr, Unit>,
}

impl EniRecord {
    /// Slots the ENI holds: secondary addresses, or prefixes.
    pub fn held_slots(&self) -> u32 {
        if self.prefixes.is_empty() {
            match self.role {
                Role::Shared => self.units.len() as u32,
                _ => 1,
            }
        } else {
            self.prefixes.len() as u32
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.subnet_cidr)
    }

    /// A whole ENI (exclusive or member) whose groups differ from its pool's `groups`.
    /// Pools without groups take whatever the cloud gave (the VPC's default group).
    pub fn is_stale(&self, groups: &[String]) -> bool {
        let whole = matches!(self.role, Role::Exclusive | Role::Member { .. });
        let differ = || {
            let want: BTreeSet<&String> = groups.iter().collect();
            let have: BTreeSet<&String> = self.security_groups.iter().collect();
            want != have
        };
        whole && !groups.is_empty() && differ()
    }
}

pub use eni_crds::contract::{gateway_of, route_table};

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub enis: BTreeMap<String, EniRecord>,
}

/// A unit handed to a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub eni_id: String,
    pub address: Ipv4Addr,
}

impl Inventory {
    pub fn pool_enis<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = &'a EniRecord> + 'a {
        self.enis.values().filter(move |e| e.pool == pool)
    }

    /// The unit `pod` holds (used or cooling), if any.
    pub fn held_by(&self, uid: &str) -> Option<Taken> {
        self.enis.values().find_map(|e| {
            e.units.iter().find_map(|(addr, u)| match u {
                Unit::Used(p) | Unit::Cooling(p) if p.uid == uid => Some(Taken {
                    eni_id: e.id.clone(),
                    address: *addr,
                }),
                _ => None,
            })
        })
    }

    /// Takes a free unit of `pool` for `pod`; idempotent per pod. Packs pods onto the
    /// busiest ENI so whole ENIs can be released later. A whole ENI whose security
    /// groups are no longer the pool's (`groups`) is not handed out: a pool's new groups
    /// take effect for new pods at once.
    pub fn take(&mut self, pool: &str, pod: &PodKey, groups: &[String]) -> Option<Taken> {
        if let Some(t) = self.held_by(&pod.uid) {
            return Some(t);
        }
        let eni = self
            .enis
            .values_mut()
            .filter(|e| e.pool == pool && !matches!(e.role, Role::Trunk))
            .filter(|e| !e.is_stale(groups))
            .filter(|e| e.units.values().any(|u| matches!(u, Unit::Free { .. })))
            .max_by_key(|e| {
                let busy = e
                    .units
                    .values()
                    .filter(|u| !matches!(u, Unit::Free { .. }))
                    .count();
                (busy, std::cmp::Reverse(e.id.clone()))
            })?;
        let (addr, unit) = eni
            .units
            .iter_mut()
            .find(|(_, u)| matches!(u, Unit::Free { .. }))?;
        *unit = Unit::Used(pod.clone());
        Some(Taken {
            eni_id: eni.id.clone(),
            address: *addr,
        })
    }

    /// Records that `pod` holds `address` of `eni_id` (rebuild from PodNetworks). Returns
    /// false if the unit is unknown or held by another pod.
    pub fn claim(&mut self, eni_id: &str, address: Ipv4Addr, pod: &PodKey, cooling: bool) -> bool {
        self.reassign(eni_id, address, pod, cooling, |holder| {
            holder.is_none_or(|p| p.uid == pod.uid)
        })
    }

    /// Moves the unit `from_uid` holds (used or cooling) to `to`: a StatefulSet pod
    /// taking over its predecessor's reserved address, or that move undone. Returns false
    /// (and changes nothing) unless `from_uid` holds exactly this unit.
    pub fn hand_over(
        &mut self,
        eni_id: &str,
        address: Ipv4Addr,
        from_uid: &str,
        to: &PodKey,
        cooling: bool,
    ) -> bool {
        self.reassign(eni_id, address, to, cooling, |holder| {
            holder.is_some_and(|p| p.uid == from_uid)
        })
    }

    /// Gives a unit to `pod` (used or cooling) if `allowed` accepts its current holder
    /// (None when free); false, changing nothing, for an unknown unit or a refusal.
    fn reassign(
        &mut self,
        eni_id: &str,
        address: Ipv4Addr,
        pod: &PodKey,
        cooling: bool,
        allowed: impl FnOnce(Option<&PodKey>) -> bool,
    ) -> bool {
        let Some(unit) = self
            .enis
            .get_mut(eni_id)
            .and_then(|e| e.units.get_mut(&address))
        else {
            return false;
        };
        let holder = match unit {
            Unit::Used(p) | Unit::Cooling(p) => Some(&*p),
            Unit::Free { .. } => None,
        };
        if !allowed(holder) {
            return false;
        }
        *unit = if cooling {
            Unit::Cooling(pod.clone())
        } else {
            Unit::Used(pod.clone())
        };
        true
    }

    /// Pod gone: its unit cools down.
    pub fn cool(&mut self, uid: &str) {
        self.set(uid, |p| Unit::Cooling(p.clone()));
    }

    /// Cooldown over (or allocation abandoned): the pod's unit is free again.
    pub fn free(&mut self, uid: &str, now: Instant) {
        self.set(uid, |_| Unit::Free { since: now });
    }

    fn set(&mut self, uid: &str, f: impl Fn(&PodKey) -> Unit) {
        for e in self.enis.values_mut() {
            for u in e.units.values_mut() {
                if let Unit::Used(p) | Unit::Cooling(p) = u
                    && p.uid == uid
                {
                    *u = f(p);
                }
            }
        }
    }

    /// Counts for the pool engine. `release_delay` decides which free units may go.
    pub fn usage(
        &self,
        pool: &str,
        groups: &[String],
        slot_capacity: u32,
        pending: u32,
        release_delay: Duration,
        now: Instant,
    ) -> Usage {
        let mut usage = Usage {
            pending,
            ..Default::default()
        };
        for e in self
            .pool_enis(pool)
            .filter(|e| !matches!(e.role, Role::Trunk))
        {
            // A stale ENI still serves its pod but is no warm stock: it goes when free.
            if e.is_stale(groups) {
                usage.used += e
                    .units
                    .values()
                    .filter(|u| matches!(u, Unit::Used(_)))
                    .count() as u32;
                usage.cooling += e
                    .units
                    .values()
                    .filter(|u| matches!(u, Unit::Cooling(_)))
                    .count() as u32;
                continue;
            }
            usage.enis.push(EniFill {
                eni_id: e.id.clone(),
                held: e.held_slots(),
                capacity: match e.role {
                    Role::Shared => slot_capacity,
                    _ => 1,
                },
            });
            for u in e.units.values() {
                match u {
                    Unit::Used(_) => usage.used += 1,
                    Unit::Cooling(_) => usage.cooling += 1,
                    Unit::Free { since } if now.duration_since(*since) >= release_delay => {
                        usage.releasable += 1
                    }
                    Unit::Free { .. } => {}
                }
            }
        }
        usage
    }

    /// Free whole ENIs of `pool` whose groups are no longer the pool's: to delete.
    pub fn stale_free(&self, pool: &str, groups: &[String]) -> Vec<EniRecord> {
        self.pool_enis(pool)
            .filter(|e| e.is_stale(groups))
            .filter(|e| e.units.values().all(|u| matches!(u, Unit::Free { .. })))
            .cloned()
            .collect()
    }

    /// Free units to release, longest-free first: `(eni, address)` for single addresses,
    /// whole ENIs (Exclusive/Member) as their primary address, whole prefixes when every
    /// address of the prefix is free and idle.
    pub fn pick_release(
        &self,
        pool: &str,
        units: u32,
        release_delay: Duration,
        now: Instant,
    ) -> Vec<Taken> {
        let idle = |u: &Unit| matches!(u, Unit::Free { since } if now.duration_since(*since) >= release_delay);
        let mut candidates: Vec<(Instant, Taken)> = Vec::new();
        for e in self.pool_enis(pool) {
            if !e.prefixes.is_empty() {
                for p in &e.prefixes {
                    let all_idle = p
                        .hosts()
                        .chain([p.network(), p.broadcast()])
                        .all(|a| e.units.get(&a).is_none_or(idle));
                    if all_idle {
                        candidates.push((
                            now,
                            Taken {
                                eni_id: e.id.clone(),
                                address: p.network(),
                            },
                        ));
                    }
                }
                continue;
            }
            for (addr, u) in &e.units {
                if let Unit::Free { since } = u
                    && idle(u)
                {
                    candidates.push((
                        *since,
                        Taken {
                            eni_id: e.id.clone(),
                            address: *addr,
                        },
                    ));
                }
            }
        }
        candidates.sort_by_key(|(since, t)| (*since, t.eni_id.clone(), t.address));
        let per = if self.pool_enis(pool).any(|e| !e.prefixes.is_empty()) {
            16
        } else {
            1
        };
        candidates
            .into_iter()
            .take((units / per) as usize)
            .map(|(_, t)| t)
            .collect()
    }

    /// Device indexes in use on the instance by the operator's ENIs.
    pub fn device_indexes(&self) -> BTreeSet<u32> {
        self.enis
            .values()
            .filter_map(|e| e.attachment.as_ref().map(|a| a.1))
            .collect()
    }

    /// VLAN ids in use on the trunk.
    pub fn vlan_ids(&self) -> BTreeSet<u16> {
        self.enis
            .values()
            .filter_map(|e| match e.role {
                Role::Member { vlan_id, .. } => Some(vlan_id),
                _ => None,
            })
            .collect()
    }

    pub fn trunk(&self) -> Option<&EniRecord> {
        self.enis.values().find(|e| e.role == Role::Trunk)
    }

    /// The PodNetwork allocation for a taken unit; `None` if the ENI is unknown or the
    /// cloud gave it (or its trunk) a MAC that is not one.
    pub fn allocation(&self, taken: &Taken, mode: Mode, datapath: Datapath) -> Option<Allocation> {
        let eni = self.enis.get(&taken.eni_id)?;
        let device_index = eni.attachment.as_ref().map(|a| a.1).unwrap_or(0);
        let trunk = self.trunk();
        let (vlan_id, trunk_mac, device_index) = match &eni.role {
            Role::Member { vlan_id, .. } => (
                Some(*vlan_id),
                trunk.map(|t| t.mac.parse()).transpose().ok()?,
                trunk
                    .and_then(|t| t.attachment.as_ref().map(|a| a.1))
                    .unwrap_or(0),
            ),
            _ => (None, None, device_index),
        };
        let shared = mode == Mode::SharedIp;
        Some(Allocation {
            address: taken.address,
            prefix_length: if shared {
                32
            } else {
                eni.subnet_cidr.prefix_len()
            },
            gateway: eni.gateway(),
            subnet_cidr: eni.subnet_cidr,
            subnet_id: eni.subnet_id.clone(),
            eni_id: eni.id.clone(),
            eni_mac: eni.mac.parse().ok()?,
            device_index,
            route_table: shared.then(|| route_table(device_index)),
            vlan_id,
            trunk_mac,
            security_groups: eni.security_groups.clone(),
            datapath: shared.then_some(datapath),
        })
    }
}

/// VLAN id for a new member: the lowest free one in `1..=capacity`.
pub fn free_vlan(used: &BTreeSet<u16>, capacity: u32) -> Option<u16> {
    (1..=capacity.min(4094) as u16).find(|v| !used.contains(v))
}

/// Device index for a new ENI: the lowest free one in `1..max_enis`.
pub fn free_device_index(used: &BTreeSet<u32>, max_enis: u32) -> Option<u32> {
    (1..max_enis).find(|i| !used.contains(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(n: &str) -> PodKey {
        PodKey {
            namespace: "default".into(),
            name: n.into(),
            uid: format!("uid-{n}"),
        }
    }

    fn shared_eni(id: &str, addrs: &[&str], t0: Instant) -> EniRecord {
        EniRecord {
            id: id.into(),
            pool: "p".into(),
            role: Role::Shared,
            mac: "02:00:00:00:00:01".into(),
            subnet_id: "subnet-1".into(),
            subnet_cidr: "10.0.1.0/24".parse().expect("cidr"),
            primary_ip: "10.0.1.10".parse().expect("ip"),
            attachment: Some(("eni-attach-1".into(), 1)),
            security_groups: vec!["sg-1".into()],
            prefixes: vec![],
            units: addrs
                .iter()
                .map(|a| (a.parse().expect("ip"), Unit::Free { since: t0 }))
                .collect(),
        }
    }

    #[test]
    fn members_with_former_groups_are_not_handed_out_and_go_when_free() {
        let t0 = Instant::now();
        let member = |id: &str, ip: &str, sg: &str| EniRecord {
            role: Role::Member {
                vlan_id: 1,
                association_id: format!("assoc-{id}"),
            },
            security_groups: vec![sg.into()],
            ..shared_eni(id, &[ip], t0)
        };
        let mut inv = Inventory::default();
        inv.enis
            .insert("eni-old".into(), member("eni-old", "10.0.1.11", "sg-old"));
        inv.enis
            .insert("eni-busy".into(), member("eni-busy", "10.0.1.12", "sg-old"));
        inv.enis
            .insert("eni-new".into(), member("eni-new", "10.0.1.13", "sg-new"));
        let groups = vec!["sg-new".to_string()];
        assert!(inv.take("p", &pod("busy"), &[]).is_some());
        let t = inv
            .take("p", &pod("a"), &groups)
            .expect("a unit with the new group");
        assert_eq!(t.eni_id, "eni-new");
        assert_eq!(
            inv.take("p", &pod("b"), &groups),
            None,
            "old-group members stay out"
        );
        let stale: Vec<String> = inv
            .stale_free("p", &groups)
            .into_iter()
            .map(|e| e.id)
            .collect();
        let busy = inv.held_by(&pod("busy").uid).expect("busy").eni_id;
        assert_eq!(
            stale.len(),
            1,
            "only the free old-group member goes: {stale:?}"
        );
        assert_ne!(stale[0], busy, "the member a pod uses stays until released");
        let u = inv.usage("p", &groups, 1, 0, Duration::ZERO, t0);
        assert_eq!(u.used, 2);
        assert_eq!(u.enis.len(), 1, "stale members are no warm stock");
        assert!(
            inv.stale_free("p", &[]).is_empty(),
            "a pool without groups keeps all"
        );
    }

    #[test]
    fn take_is_unique_idempotent_and_packs() {
        let t0 = Instant::now();
        let mut inv = Inventory::default();
        inv.enis.insert(
            "eni-a".into(),
            shared_eni("eni-a", &["10.0.1.11", "10.0.1.12"], t0),
        );
        inv.enis.insert(
            "eni-b".into(),
            shared_eni("eni-b", &["10.0.1.21", "10.0.1.22"], t0),
        );
        let a = inv.take("p", &pod("a"), &[]).expect("a");
        assert_eq!(inv.take("p", &pod("a"), &[]), Some(a.clone()), "idempotent");
        let b = inv.take("p", &pod("b"), &[]).expect("b");
        assert_eq!(a.eni_id, b.eni_id, "packed onto the busier ENI");
        let c = inv.take("p", &pod("c"), &[]).expect("c");
        let d = inv.take("p", &pod("d"), &[]).expect("d");
        let all: BTreeSet<_> = [&a, &b, &c, &d].iter().map(|t| t.address).collect();
        assert_eq!(all.len(), 4, "no address handed out twice");
        assert_eq!(inv.take("p", &pod("e"), &[]), None);
        assert_eq!(inv.take("other-pool", &pod("f"), &[]), None);
    }

    #[test]
    fn cooldown_cycle_and_usage() {
        let t0 = Instant::now();
        let mut inv = Inventory::default();
        inv.enis.insert(
            "eni-a".into(),
            shared_eni("eni-a", &["10.0.1.11", "10.0.1.12", "10.0.1.13"], t0),
        );
        let a = inv.take("p", &pod("a"), &[]).expect("a");
        inv.cool("uid-a");
        let later = t0 + Duration::from_secs(120);
        let u = inv.usage("p", &[], 9, 1, Duration::from_secs(60), later);
        assert_eq!((u.used, u.cooling, u.pending, u.releasable), (0, 1, 1, 2));
        assert_eq!(
            u.enis,
            vec![EniFill {
                eni_id: "eni-a".into(),
                held: 3,
                capacity: 9
            }]
        );
        // A cooling unit is not handed out and not released.
        let b = inv.take("p", &pod("b"), &[]).expect("b");
        assert_ne!(a.address, b.address);
        let rel = inv.pick_release("p", 5, Duration::from_secs(60), later);
        assert!(
            rel.iter()
                .all(|t| t.address != a.address && t.address != b.address)
        );
        assert_eq!(rel.len(), 1);
        inv.free("uid-a", later);
        assert!(matches!(
            inv.enis["eni-a"].units[&a.address],
            Unit::Free { .. }
        ));
    }

    #[test]
    fn claim_refuses_a_unit_held_by_another_pod() {
        let t0 = Instant::now();
        let mut inv = Inventory::default();
        inv.enis
            .insert("eni-a".into(), shared_eni("eni-a", &["10.0.1.11"], t0));
        let ip: Ipv4Addr = "10.0.1.11".parse().expect("ip");
        assert!(inv.claim("eni-a", ip, &pod("a"), false));
        assert!(
            inv.claim("eni-a", ip, &pod("a"), true),
            "same pod may move to cooling"
        );
        assert!(!inv.claim("eni-a", ip, &pod("b"), false));
        assert!(!inv.claim("eni-x", ip, &pod("b"), false));
    }

    #[test]
    fn hand_over_moves_only_the_predecessors_unit() {
        let t0 = Instant::now();
        let mut inv = Inventory::default();
        inv.enis.insert(
            "eni-a".into(),
            shared_eni("eni-a", &["10.0.1.11", "10.0.1.12"], t0),
        );
        let old = pod("db-0");
        let new = PodKey {
            uid: "uid-db-0-new".into(),
            ..old.clone()
        };
        let t = inv.take("p", &old, &[]).expect("take");
        inv.cool(&old.uid);
        let other = inv.take("p", &pod("x"), &[]).expect("x");
        assert!(!inv.hand_over("eni-a", other.address, &old.uid, &new, false));
        assert!(inv.hand_over("eni-a", t.address, &old.uid, &new, false));
        assert_eq!(inv.held_by(&new.uid), Some(t.clone()));
        assert_eq!(inv.held_by(&old.uid), None);
        // The predecessor's late release frees nothing of its successor's.
        inv.free(&old.uid, t0);
        assert_eq!(inv.held_by(&new.uid), Some(t.clone()));
        // Undone: back to cooling for the predecessor.
        assert!(inv.hand_over("eni-a", t.address, &new.uid, &old, true));
        assert!(matches!(&inv.enis["eni-a"].units[&t.address], Unit::Cooling(p) if *p == old));
        // A unit already back in the pool is not handed over.
        inv.free(&old.uid, t0);
        assert!(!inv.hand_over("eni-a", t.address, &old.uid, &new, false));
    }

    #[test]
    fn index_allocation() {
        assert_eq!(free_device_index(&BTreeSet::from([0, 1, 3]), 4), Some(2));
        assert_eq!(free_device_index(&BTreeSet::from([0, 1, 2]), 3), None);
        assert_eq!(free_vlan(&BTreeSet::from([1, 2]), 10), Some(3));
        assert_eq!(free_vlan(&BTreeSet::from([1, 2]), 2), None);
        assert_eq!(free_vlan(&BTreeSet::new(), 0), None);
    }

    #[test]
    fn allocation_for_shared_and_member() {
        let t0 = Instant::now();
        let mut inv = Inventory::default();
        inv.enis
            .insert("eni-a".into(), shared_eni("eni-a", &["10.0.1.11"], t0));
        let t = inv.take("p", &pod("a"), &[]).expect("take");
        let a = inv
            .allocation(&t, Mode::SharedIp, Datapath::VethPolicyRouting)
            .expect("alloc");
        assert_eq!(a.prefix_length, 32);
        assert_eq!(a.gateway.to_string(), "10.0.1.1");
        assert_eq!(a.route_table, Some(1001));
        assert_eq!(a.device_index, 1);

        let mut trunk = shared_eni("eni-t", &[], t0);
        trunk.role = Role::Trunk;
        trunk.mac = "02:00:00:00:00:aa".into();
        trunk.attachment = Some(("att".into(), 2));
        inv.enis.insert("eni-t".into(), trunk);
        let mut member = shared_eni("eni-m", &["10.0.1.50"], t0);
        member.role = Role::Member {
            vlan_id: 7,
            association_id: "trunk-assoc-1".into(),
        };
        member.attachment = None;
        inv.enis.insert("eni-m".into(), member);
        let t = Taken {
            eni_id: "eni-m".into(),
            address: "10.0.1.50".parse().expect("ip"),
        };
        let a = inv
            .allocation(&t, Mode::Trunk, Datapath::VethPolicyRouting)
            .expect("alloc");
        assert_eq!(
            (
                a.vlan_id,
                a.trunk_mac.map(|m| m.to_string()),
                a.device_index
            ),
            (Some(7), Some("02:00:00:00:00:aa".to_string()), 2)
        );
        assert_eq!(a.prefix_length, 24);
        assert_eq!(a.route_table, None);
        assert_eq!(a.datapath, None);
    }
}
