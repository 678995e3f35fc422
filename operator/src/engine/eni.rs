//! One ENI the operator owns, as the inventory keeps it: what it is for, where it sits,
//! and what each of its units (addresses, or the whole ENI) is doing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use eni_crds::{Mac, Mode, contract::gateway_of};
use ipnet::Ipv4Net;

use crate::cloud::{Eni, Subnet, Tags};

use super::settings::PoolSettings;

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

impl Unit {
    /// `pod`'s unit: cooling once its PodNetwork is going, else used.
    pub fn held_by(pod: &PodKey, cooling: bool) -> Unit {
        if cooling {
            Unit::Cooling(pod.clone())
        } else {
            Unit::Used(pod.clone())
        }
    }

    pub fn is_free(&self) -> bool {
        matches!(self, Unit::Free { .. })
    }
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

impl Role {
    /// The roles a pool of `mode` gives pods.
    fn serves(&self, mode: Mode) -> bool {
        matches!(
            (self, mode),
            (Role::Shared, Mode::SharedIp)
                | (Role::Exclusive, Mode::Exclusive)
                | (Role::Member { .. } | Role::Trunk, Mode::Trunk)
        )
    }

    /// Whole ENIs go to one pod each.
    pub fn is_whole(&self) -> bool {
        matches!(self, Role::Exclusive | Role::Member { .. })
    }
}

/// Where the ENI sits in the cloud, as its record needs it.
#[derive(Clone, Debug)]
pub struct Placement {
    pub subnet_id: String,
    pub subnet_cidr: Ipv4Net,
    /// The subnet's tags when the ENI was recorded (pools may select subnets by tag).
    pub subnet_tags: Tags,
    /// `(attachment id, device index)` once attached; members have none.
    pub attachment: Option<(String, u32)>,
}

/// Read-only outside the inventory: every change goes through an [`Inventory`] method.
///
/// [`Inventory`]: super::inventory::Inventory
#[derive(Clone, Debug)]
pub struct EniRecord {
    pub(super) id: String,
    pub(super) pool: String,
    pub(super) role: Role,
    pub(super) mac: Mac,
    pub(super) primary_ip: Ipv4Addr,
    pub(super) placement: Placement,
    pub(super) security_groups: Vec<String>,
    /// Delegated prefixes (SharedIP with prefix delegation); their addresses are units.
    pub(super) prefixes: Vec<Ipv4Net>,
    /// Addresses pods can get: the secondaries (SharedIP) or the primary (whole ENI).
    pub(super) units: BTreeMap<Ipv4Addr, Unit>,
}

impl EniRecord {
    /// The record of a cloud ENI whose MAC the caller parsed: its addresses (or itself,
    /// for a whole ENI) are free units since `now`.
    pub fn new(
        eni: &Eni,
        mac: Mac,
        pool: String,
        role: Role,
        subnet: &Subnet,
        attachment: Option<(String, u32)>,
        now: Instant,
    ) -> Self {
        let primary = eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut rec = EniRecord {
            id: eni.id.clone(),
            pool,
            mac,
            primary_ip: primary,
            placement: Placement {
                subnet_id: subnet.id.clone(),
                subnet_cidr: subnet.cidr,
                subnet_tags: subnet.tags.clone(),
                attachment,
            },
            security_groups: eni.security_groups.clone(),
            prefixes: Vec::new(),
            units: BTreeMap::new(),
            role,
        };
        match rec.role {
            Role::Shared => {
                rec.add_addresses(&eni.secondary_ips, &eni.prefixes, now);
            }
            Role::Exclusive | Role::Member { .. } => {
                rec.units.insert(primary, Unit::Free { since: now });
            }
            Role::Trunk => {}
        }
        rec
    }

    pub(super) fn add_addresses(&mut self, ips: &[Ipv4Addr], prefixes: &[Ipv4Net], now: Instant) {
        for ip in ips {
            self.units.entry(*ip).or_insert(Unit::Free { since: now });
        }
        for p in prefixes {
            if !self.prefixes.contains(p) {
                self.prefixes.push(*p);
            }
            for a in prefix_addrs(*p) {
                self.units.entry(a).or_insert(Unit::Free { since: now });
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn role(&self) -> &Role {
        &self.role
    }
    pub fn mac(&self) -> Mac {
        self.mac
    }
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.primary_ip
    }
    pub fn subnet_id(&self) -> &str {
        &self.placement.subnet_id
    }
    pub fn subnet_cidr(&self) -> Ipv4Net {
        self.placement.subnet_cidr
    }
    pub fn attachment(&self) -> Option<&(String, u32)> {
        self.placement.attachment.as_ref()
    }
    pub fn device_index(&self) -> Option<u32> {
        self.placement.attachment.as_ref().map(|a| a.1)
    }
    pub fn security_groups(&self) -> &[String] {
        &self.security_groups
    }
    pub fn prefixes(&self) -> &[Ipv4Net] {
        &self.prefixes
    }
    pub fn units(&self) -> impl Iterator<Item = (&Ipv4Addr, &Unit)> {
        self.units.iter()
    }
    pub fn unit(&self, address: Ipv4Addr) -> Option<&Unit> {
        self.units.get(&address)
    }
    /// Nothing on it serves or is reserved for a pod.
    pub fn all_free(&self) -> bool {
        self.units.values().all(Unit::is_free)
    }

    /// Free units that may go back to the cloud now, with when each came free. Units
    /// freed close together go back together, in one call per ENI: none goes while
    /// another of the ENI came free less than `delay` ago, unless the oldest has waited
    /// twice `delay` (so a steady trickle of deletions still gives units back).
    pub fn idle_units(&self, delay: Duration, now: Instant) -> Vec<(Ipv4Addr, Instant)> {
        let free: Vec<(Ipv4Addr, Instant)> = self
            .units
            .iter()
            .filter_map(|(a, u)| match u {
                Unit::Free { since } => Some((*a, *since)),
                _ => None,
            })
            .collect();
        let waited = |since: &Instant| now.duration_since(*since);
        let settled = free.iter().all(|(_, since)| waited(since) >= delay);
        let overdue = free.iter().any(|(_, since)| waited(since) >= delay * 2);
        if !settled && !overdue {
            return Vec::new();
        }
        free.into_iter()
            .filter(|(_, since)| waited(since) >= delay)
            .collect()
    }

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
        gateway_of(self.placement.subnet_cidr)
    }

    /// A whole ENI (exclusive or member) whose groups differ from its pool's `groups`.
    /// Pools without groups take whatever the cloud gave (the VPC's default group).
    pub fn is_stale(&self, groups: &[String]) -> bool {
        let differ = || {
            let want: BTreeSet<&String> = groups.iter().collect();
            let have: BTreeSet<&String> = self.security_groups.iter().collect();
            want != have
        };
        self.role.is_whole() && !groups.is_empty() && differ()
    }

    /// Whether the ENI still fits its pool as `s` says now: the role the mode gives, a
    /// subnet the pool selects. One that does not fit drains: it serves the pods it has,
    /// gets no new one, and goes once it holds nothing in use.
    pub fn fits(&self, s: &PoolSettings) -> bool {
        let subnet = if s.subnet_ids.is_empty() {
            s.subnet_tags
                .iter()
                .all(|(k, v)| self.placement.subnet_tags.get(k) == Some(v))
        } else {
            s.subnet_ids.contains(&self.placement.subnet_id)
        };
        self.role.serves(s.mode) && (subnet || self.role == Role::Trunk)
    }

    /// Warm stock of its pool: fits and does not carry the pool's former groups.
    pub fn serves(&self, s: &PoolSettings) -> bool {
        self.fits(s) && !self.is_stale(&s.security_groups)
    }
}

/// The addresses of a prefix.
pub fn prefix_addrs(p: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let base = u32::from(p.network());
    let size = 1u32 << (32 - u32::from(p.prefix_len()));
    (0..size).map(move |i| Ipv4Addr::from(base + i))
}
