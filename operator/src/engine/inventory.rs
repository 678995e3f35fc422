//! One node's inventory: the ENIs the operator owns on it and what each unit (address, or
//! whole ENI) is doing. The cloud says what exists, PodNetworks say what is used; the
//! inventory is rebuilt from both on start and kept in memory after that. Fields are
//! private: every transition is a method, so its invariants (a unit has one holder, a
//! unit on its way back to the cloud is nobody's) hold wherever it is used.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use eni_crds::{Allocation, Datapath, Mode, contract::route_table};
use ipnet::Ipv4Net;

use super::{
    eni::{EniRecord, PodKey, Role, Unit, prefix_addrs},
    settings::PoolSettings,
    sizing::{EniFill, Usage},
};

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    enis: BTreeMap<String, EniRecord>,
    /// SharedIP ENIs whose addresses in the cloud may differ from their units: a call
    /// that adds or removes addresses failed in a way that may have taken effect (a
    /// timeout). Each maps to its last address change, so the cloud is read only once
    /// its eventually consistent describes show everything up to then.
    unsure: BTreeMap<String, Instant>,
    /// ENIs created and attaching, not yet in use: they hold their device index, and
    /// their slots count as the pool's capacity to come (a pass planning meanwhile does
    /// not create them again for the same pods).
    coming: BTreeMap<String, Coming>,
}

/// An ENI attaching to the node for a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coming {
    pub pool: String,
    pub device_index: u32,
    /// Slots it was created with (1 for a whole ENI).
    pub slots: u32,
}

/// What reading a SharedIP ENI back from the cloud changed in its units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressDrift {
    /// Slots (addresses or prefixes) on the ENI in the cloud the inventory did not know:
    /// now free units, so the pool uses or releases them like any other.
    pub adopted: usize,
    /// Free slots the cloud no longer has: dropped, no pod may get them.
    pub dropped: usize,
    /// Slots pods hold that the cloud no longer has: to assign again by address.
    pub missing: TakenOut,
}

/// A unit handed to a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub eni_id: String,
    pub address: Ipv4Addr,
}

/// Units taken out of an ENI to be given back to the cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakenOut {
    pub ips: Vec<Ipv4Addr>,
    pub prefixes: Vec<Ipv4Net>,
}

impl TakenOut {
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.prefixes.is_empty()
    }
}

/// Counts of one pool on one node (status, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub enis: u32,
    pub total: u32,
    pub used: u32,
    pub warm: u32,
    pub cooling: u32,
}

impl PoolCounts {
    pub fn add(&mut self, o: &PoolCounts) {
        self.enis += o.enis;
        self.total += o.total;
        self.used += o.used;
        self.warm += o.warm;
        self.cooling += o.cooling;
    }
}

impl Inventory {
    pub fn insert(&mut self, rec: EniRecord) {
        self.enis.insert(rec.id.clone(), rec);
    }

    /// The ENI is gone from the cloud.
    /// An ENI is attaching: its index and slots are spoken for until it is in use.
    pub fn expect(&mut self, eni_id: &str, coming: Coming) {
        self.coming.insert(eni_id.to_owned(), coming);
    }

    /// The attaching ENI is in use (and inserted) or given up.
    pub fn arrived(&mut self, eni_id: &str) {
        self.coming.remove(eni_id);
    }

    /// How many ENIs are attaching.
    pub fn coming(&self) -> usize {
        self.coming.len()
    }

    pub fn remove(&mut self, eni_id: &str) -> Option<EniRecord> {
        self.unsure.remove(eni_id);
        self.enis.remove(eni_id)
    }

    pub fn get(&self, eni_id: &str) -> Option<&EniRecord> {
        self.enis.get(eni_id)
    }

    pub fn enis(&self) -> impl Iterator<Item = &EniRecord> {
        self.enis.values()
    }

    pub fn len(&self) -> usize {
        self.enis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.enis.is_empty()
    }

    pub fn eni_ids(&self) -> impl Iterator<Item = &str> {
        self.enis.keys().map(String::as_str)
    }

    pub fn pool_enis<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = &'a EniRecord> + 'a {
        self.enis.values().filter(move |e| e.pool == pool)
    }

    /// Every pool that has an ENI here.
    pub fn pools(&self) -> BTreeSet<String> {
        self.enis.values().map(|e| e.pool.clone()).collect()
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

    /// Takes a free unit of pool `s` for `pod`; idempotent per pod. Packs pods onto the
    /// busiest ENI so whole ENIs can be released later. An ENI that no longer serves the
    /// pool (former security groups, mode or subnets) is not handed out: a pool's change
    /// takes effect for new pods at once.
    pub fn take(&mut self, s: &PoolSettings, pod: &PodKey) -> Option<Taken> {
        if let Some(t) = self.held_by(&pod.uid) {
            return Some(t);
        }
        let eni = self
            .enis
            .values_mut()
            .filter(|e| e.pool == s.name && e.role != Role::Trunk && e.serves(s))
            .filter(|e| e.units.values().any(Unit::is_free))
            .max_by_key(|e| {
                let busy = e.units.values().filter(|u| !u.is_free()).count();
                (busy, std::cmp::Reverse(e.id.clone()))
            })?;
        let (addr, unit) = eni.units.iter_mut().find(|(_, u)| u.is_free())?;
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

    /// A PodNetwork holds `address` of SharedIP ENI `eni_id`, which the ENI as read from
    /// the cloud lacks (a release that took effect while its answer was lost, then a
    /// restart). The unit is the pod's all the same, so nobody else gets the address,
    /// and the ENI is unsure: its read-back assigns the address again by address. False,
    /// changing nothing, for an unknown or whole ENI, an address outside its subnet, or
    /// one the ENI holds.
    pub fn claim_missing(
        &mut self,
        eni_id: &str,
        address: Ipv4Addr,
        pod: &PodKey,
        cooling: bool,
        now: Instant,
    ) -> bool {
        let Some(e) = self.enis.get_mut(eni_id) else {
            return false;
        };
        if e.role != Role::Shared
            || !e.placement.subnet_cidr.contains(&address)
            || e.units.contains_key(&address)
        {
            return false;
        }
        e.units.insert(address, Unit::held_by(pod, cooling));
        self.mark_unsure(eni_id, now);
        true
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
        *unit = Unit::held_by(pod, cooling);
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

    /// Addresses or prefixes the cloud added to an ENI: free units from `now`.
    pub fn add_addresses(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
        now: Instant,
    ) {
        if let Some(e) = self.enis.get_mut(eni_id) {
            e.add_addresses(ips, prefixes, now);
            self.changed(eni_id, now);
        }
    }

    /// A call that adds or removes addresses of `eni_id` failed in a way that may have
    /// taken effect: its units are checked against the cloud later.
    pub fn mark_unsure(&mut self, eni_id: &str, now: Instant) {
        if self.enis.contains_key(eni_id) {
            self.unsure.insert(eni_id.to_owned(), now);
        }
    }

    /// The cloud changed the addresses of `eni_id` at `now`: for an unsure ENI, the
    /// moment its describe must show moves there.
    pub fn changed(&mut self, eni_id: &str, now: Instant) {
        if let Some(since) = self.unsure.get_mut(eni_id) {
            *since = now;
        }
    }

    /// Unsure ENIs of `pool` whose last address change is at least `settle` before
    /// `now`.
    pub fn unsure_settled(&self, pool: &str, settle: Duration, now: Instant) -> Vec<String> {
        self.unsure
            .iter()
            .filter(|(id, since)| {
                self.enis.get(*id).is_some_and(|e| e.pool == pool)
                    && now.saturating_duration_since(**since) >= settle
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Makes a SharedIP ENI's units what the cloud reports it holds (`ips`, `prefixes`):
    /// unknown ones are adopted as free from `now`, free ones the cloud lacks are
    /// dropped, and ones in use that the cloud lacks are returned to be assigned again.
    /// The ENI is no longer unsure.
    pub fn reconcile_addresses(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
        now: Instant,
    ) -> AddressDrift {
        self.unsure.remove(eni_id);
        let mut drift = AddressDrift::default();
        let Some(rec) = self.enis.get_mut(eni_id) else {
            return drift;
        };
        if rec.role != Role::Shared {
            return drift;
        }
        let in_cloud: BTreeSet<Ipv4Addr> = ips
            .iter()
            .copied()
            .chain(prefixes.iter().flat_map(|p| prefix_addrs(*p)))
            .collect();
        for p in rec.prefixes.clone() {
            if prefixes.contains(&p) {
                continue;
            }
            if prefix_addrs(p).all(|a| rec.units.get(&a).is_none_or(Unit::is_free)) {
                rec.prefixes.retain(|q| *q != p);
                for a in prefix_addrs(p) {
                    rec.units.remove(&a);
                }
                drift.dropped += 1;
            } else {
                drift.missing.prefixes.push(p);
            }
        }
        let in_prefix = |rec: &EniRecord, a: &Ipv4Addr| rec.prefixes.iter().any(|p| p.contains(a));
        let lost: Vec<Ipv4Addr> = rec
            .units
            .keys()
            .filter(|a| !in_cloud.contains(a) && !in_prefix(rec, a))
            .copied()
            .collect();
        for a in lost {
            if rec.units.get(&a).is_some_and(Unit::is_free) {
                rec.units.remove(&a);
                drift.dropped += 1;
            } else {
                drift.missing.ips.push(a);
            }
        }
        drift.adopted = ips.iter().filter(|a| !rec.units.contains_key(a)).count()
            + prefixes
                .iter()
                .filter(|p| !rec.prefixes.contains(p))
                .count();
        rec.add_addresses(ips, prefixes, now);
        drift
    }

    /// Takes the free ones of `units` (addresses, or prefixes by their first address) out
    /// of a SharedIP ENI so no pod gets them while they go back to the cloud. A prefix
    /// goes only when every address of it is free; a unit in use stays.
    pub fn take_out(&mut self, eni_id: &str, units: &[Ipv4Addr]) -> TakenOut {
        let mut out = TakenOut::default();
        let Some(rec) = self.enis.get_mut(eni_id) else {
            return out;
        };
        for a in units {
            let prefix = rec.prefixes.iter().find(|p| p.network() == *a).copied();
            let covered: Vec<Ipv4Addr> = match prefix {
                Some(p) => prefix_addrs(p).collect(),
                None => vec![*a],
            };
            if !covered
                .iter()
                .all(|c| rec.units.get(c).is_none_or(Unit::is_free))
            {
                continue;
            }
            for c in &covered {
                rec.units.remove(c);
            }
            match prefix {
                Some(p) => {
                    rec.prefixes.retain(|q| *q != p);
                    out.prefixes.push(p);
                }
                None => out.ips.push(*a),
            }
        }
        out
    }

    /// Takes every unit of an ENI out when none is in use (the ENI is about to be
    /// deleted); false, changing nothing, when a pod holds one.
    pub fn take_out_all(&mut self, eni_id: &str) -> bool {
        let Some(rec) = self.enis.get_mut(eni_id) else {
            return false;
        };
        if !rec.all_free() {
            return false;
        }
        rec.units.clear();
        rec.prefixes.clear();
        true
    }

    /// The trunk ENI now belongs to `pool` (its former pool was deleted).
    pub fn set_pool(&mut self, eni_id: &str, pool: &str) {
        if let Some(e) = self.enis.get_mut(eni_id) {
            e.pool = pool.to_owned();
        }
    }

    /// Counts for the sizing engine: the ENIs that serve pool `s` as warm stock, what
    /// is used or cooling anywhere in the pool, and the free units idle past the
    /// release delay.
    pub fn usage(&self, s: &PoolSettings, slot_capacity: u32, pending: u32, now: Instant) -> Usage {
        let mut usage = Usage {
            pending,
            ..Default::default()
        };
        for e in self.pool_enis(&s.name).filter(|e| e.role != Role::Trunk) {
            for u in e.units.values() {
                match u {
                    Unit::Used(_) => usage.used += 1,
                    Unit::Cooling(_) => usage.cooling += 1,
                    Unit::Free { .. } => {}
                }
            }
            // One that does not serve the pool still serves its pods, but is no warm
            // stock: it drains, and nothing of it is released. (Attaching ones are
            // added below.)
            if e.serves(s) {
                usage.releasable += e.idle_units(s.release_delay, now).len() as u32;
                usage.enis.push(EniFill {
                    eni_id: e.id.clone(),
                    held: e.held_slots(),
                    capacity: match e.role {
                        Role::Shared => slot_capacity,
                        _ => 1,
                    },
                });
            }
        }
        // Attaching ENIs hold what they were created with and take no assign yet.
        for (id, c) in self.coming.iter().filter(|(_, c)| c.pool == s.name) {
            usage.enis.push(EniFill {
                eni_id: id.clone(),
                held: c.slots,
                capacity: c.slots,
            });
        }
        usage
    }

    /// ENIs of `pool` on the node, attaching ones included (for its `maxENIs`).
    pub fn pool_eni_count(&self, pool: &str) -> u32 {
        let attached = self
            .pool_enis(pool)
            .filter(|e| e.role != Role::Trunk)
            .count();
        (attached + self.coming.values().filter(|c| c.pool == pool).count()) as u32
    }

    /// Device indexes in use on the instance by the operator's ENIs.
    pub fn device_indexes(&self) -> BTreeSet<u32> {
        self.enis
            .values()
            .filter_map(EniRecord::device_index)
            .chain(self.coming.values().map(|c| c.device_index))
            .collect()
    }

    /// ENI slots of an instance of `max_enis` that nothing takes: not the instance's
    /// own ENI (index 0), not an operator ENI attached or attaching.
    pub fn free_slots(&self, max_enis: u32) -> u32 {
        max_enis.saturating_sub(self.device_indexes().len() as u32 + 1)
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

    /// Lowest free device index for a new ENI in `1..max_enis`.
    pub fn free_device_index(&self, max_enis: u32) -> Option<u32> {
        free_device_index(&self.device_indexes(), max_enis)
    }

    /// See [`free_device_indexes`].
    pub fn free_device_indexes(&self, max_enis: u32, n: usize) -> Vec<u32> {
        free_device_indexes(&self.device_indexes(), max_enis, n)
    }

    /// Up to `n` free VLAN ids for new members in `1..=capacity`, lowest first.
    pub fn free_vlans(&self, capacity: u32, n: usize) -> Vec<u16> {
        free_vlans(&self.vlan_ids(), capacity, n)
    }

    /// Pool counts without copying the inventory.
    pub fn counts(&self, pool: &str) -> PoolCounts {
        let mut c = PoolCounts::default();
        for e in self.pool_enis(pool) {
            c.enis += 1;
            for u in e.units.values() {
                c.total += 1;
                match u {
                    Unit::Used(_) => c.used += 1,
                    Unit::Cooling(_) => c.cooling += 1,
                    Unit::Free { .. } => c.warm += 1,
                }
            }
        }
        c
    }

    /// The PodNetwork allocation for a taken unit.
    pub fn allocation(&self, taken: &Taken, mode: Mode, datapath: Datapath) -> Option<Allocation> {
        let eni = self.enis.get(&taken.eni_id)?;
        let trunk = self.trunk();
        let (vlan_id, trunk_mac, device_index) = match &eni.role {
            Role::Member { vlan_id, .. } => (
                Some(*vlan_id),
                trunk.map(EniRecord::mac),
                trunk.and_then(EniRecord::device_index).unwrap_or(0),
            ),
            _ => (None, None, eni.device_index().unwrap_or(0)),
        };
        let shared = mode == Mode::SharedIp;
        let cidr = eni.subnet_cidr();
        Some(Allocation {
            address: taken.address,
            prefix_length: if shared { 32 } else { cidr.prefix_len() },
            gateway: eni.gateway(),
            subnet_cidr: cidr,
            subnet_id: eni.subnet_id().to_owned(),
            eni_id: eni.id.clone(),
            eni_mac: eni.mac,
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
pub fn free_vlans(used: &BTreeSet<u16>, capacity: u32, n: usize) -> Vec<u16> {
    (1..=capacity.min(4094) as u16)
        .filter(|v| !used.contains(v))
        .take(n)
        .collect()
}

/// Device index for a new ENI: the lowest free one in `1..max_enis`.
pub fn free_device_index(used: &BTreeSet<u32>, max_enis: u32) -> Option<u32> {
    free_device_indexes(used, max_enis, 1).first().copied()
}

/// Up to `n` free device indexes, lowest first (ENIs attached side by side each need
/// their own).
pub fn free_device_indexes(used: &BTreeSet<u32>, max_enis: u32, n: usize) -> Vec<u32> {
    (1..max_enis)
        .filter(|i| !used.contains(i))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests;
