//! One node as the operator sees it: its instance, its inventory, and the maintenance
//! that drives each of its pools toward the warm target with cloud calls.
//!
//! The inventory sits behind a short, synchronous lock that is never held across a cloud
//! call, so a pod is served from warm capacity while an ENI is still attaching.
//! Maintenance runs one pass at a time per node (one ENI create/attach in flight per
//! node, as the clouds prefer).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use eni_crds::Mode;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::{
    cloud::{
        AddressAssignment, AddressRelease, AssociateTrunkRequest, CloudError, CloudProvider,
        CreateEniRequest, Eni, EniKind, EniQuery, EniStatus, InitialAddresses, Instance,
        InstanceLimits, Ownership, Subnet, SubnetQuery,
    },
    inventory::{self, EniRecord, Inventory, PodKey, Role, Taken, Unit},
    pool::{self, Limits, Step, Targets},
    settings::PoolSettings,
};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error("no subnet of pool {pool} in {az} has free addresses")]
    SubnetsExhausted { pool: String, az: String },
    #[error("pool {pool} selects no subnet in {az}")]
    NoSubnet { pool: String, az: String },
    #[error("ENI {0} did not reach state {1} in time")]
    NotReady(String, &'static str),
    #[error("instance type {0} does not support trunking")]
    NoTrunking(String),
    #[error("no free {0} on the instance")]
    NoRoom(&'static str),
}

impl NodeError {
    pub fn label(&self) -> &'static str {
        match self {
            NodeError::Cloud(e) => e.kind(),
            NodeError::SubnetsExhausted { .. } => "subnet_exhausted",
            NodeError::NoSubnet { .. } => "no_subnet",
            NodeError::NotReady(..) => "not_ready",
            NodeError::NoTrunking(_) => "no_trunking",
            NodeError::NoRoom(_) => "no_room",
        }
    }
}

/// Health of one pool on one node, for the pool's status conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolHealth {
    pub subnet_exhausted: bool,
    pub throttled: bool,
    pub last_error: Option<String>,
}

struct State {
    inv: Inventory,
    /// Pods waiting for a unit, per pool (surge demand).
    pending: BTreeMap<String, BTreeSet<String>>,
    health: BTreeMap<String, PoolHealth>,
}

/// Subnets that answered "exhausted", with when; skipped for a while instead of being
/// asked again on every pass.
#[derive(Default)]
pub struct SubnetCache {
    exhausted: Mutex<HashMap<String, Instant>>,
}

const EXHAUSTED_FOR: Duration = Duration::from_secs(30);

impl SubnetCache {
    fn mark(&self, subnet: &str) {
        if let Ok(mut m) = self.exhausted.lock() {
            m.insert(subnet.to_owned(), Instant::now());
        }
    }

    fn is_exhausted(&self, subnet: &str) -> bool {
        self.exhausted
            .lock()
            .map(|m| m.get(subnet).is_some_and(|t| t.elapsed() < EXHAUSTED_FOR))
            .unwrap_or(false)
    }
}

pub struct Node {
    pub name: String,
    pub instance: Instance,
    pub limits: InstanceLimits,
    state: Mutex<State>,
    maint: tokio::sync::Mutex<()>,
    /// Signalled when units were added (pods waiting for one retry).
    pub capacity_added: Notify,
    /// Signalled when maintenance should run soon.
    pub kick: Notify,
}

/// Everything a node needs from the outside for maintenance.
pub struct Cloud<'a> {
    pub provider: &'a dyn CloudProvider,
    pub subnets: &'a SubnetCache,
    /// How long to wait for an ENI to attach.
    pub attach_timeout: Duration,
}

impl Node {
    /// Loads the node: its instance and limits, and the ENIs the operator owns on it.
    /// Units are free until [`Node::claim`] marks what PodNetworks say is used.
    pub async fn load(
        name: &str,
        instance_id: &str,
        cloud: &Cloud<'_>,
        pools: &BTreeMap<String, PoolSettings>,
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
        let trunk_id = owned
            .iter()
            .find(|e| e.kind == EniKind::Trunk)
            .map(|e| e.id.clone());
        let associations = match &trunk_id {
            Some(t) => p.trunk_associations(t).await?,
            None => Vec::new(),
        };
        let now = Instant::now();
        let mut inv = Inventory::default();
        for eni in owned {
            let pool = eni
                .tags
                .get(crate::cloud::tags::POOL)
                .cloned()
                .unwrap_or_default();
            let mode = pools.get(&pool).map(|s| s.mode);
            let Some(subnet) = subnets.get(&eni.subnet_id) else {
                continue;
            };
            let attachment = eni
                .attachment
                .as_ref()
                .filter(|a| a.instance_id == instance.id)
                .map(|a| (a.id.clone(), a.device_index));
            let role = match eni.kind {
                EniKind::Trunk => Role::Trunk,
                EniKind::Branch => match associations.iter().find(|a| a.branch_eni_id == eni.id) {
                    Some(a) => Role::Member {
                        vlan_id: a.vlan_id,
                        association_id: a.id.clone(),
                    },
                    // Created but never associated (a crash in between): the collector
                    // deletes it.
                    None => continue,
                },
                // Unattached standard ENIs are the collector's, too.
                EniKind::Standard if attachment.is_none() => continue,
                EniKind::Standard if mode == Some(Mode::Exclusive) => Role::Exclusive,
                EniKind::Standard => Role::Shared,
            };
            inv.enis.insert(
                eni.id.clone(),
                record(&eni, pool, role, subnet, attachment, now),
            );
        }
        info!(node = name, instance = %instance.id, enis = inv.enis.len(), "node loaded");
        Ok(Node {
            name: name.to_owned(),
            instance,
            limits,
            state: Mutex::new(State {
                inv,
                pending: BTreeMap::new(),
                health: BTreeMap::new(),
            }),
            maint: tokio::sync::Mutex::new(()),
            capacity_added: Notify::new(),
            kick: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no multi-step updates
        // span an unwind), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `pod` as holding `address` of `eni` (from its PodNetwork).
    pub fn claim(&self, eni: &str, address: Ipv4Addr, pod: &PodKey, cooling: bool) -> bool {
        self.state().inv.claim(eni, address, pod, cooling)
    }

    /// See [`Inventory::hand_over`].
    pub fn hand_over(
        &self,
        eni: &str,
        address: Ipv4Addr,
        from_uid: &str,
        to: &PodKey,
        cooling: bool,
    ) -> bool {
        self.state()
            .inv
            .hand_over(eni, address, from_uid, to, cooling)
    }

    /// Takes a unit of `pool` for `pod`, or registers the pod as waiting and returns None.
    pub fn take(&self, settings: &PoolSettings, pod: &PodKey) -> Option<Taken> {
        let pool = settings.name.as_str();
        let mut st = self.state();
        match st.inv.take(pool, pod, &settings.security_groups) {
            Some(t) => {
                if let Some(p) = st.pending.get_mut(pool) {
                    p.remove(&pod.uid);
                }
                Some(t)
            }
            None => {
                st.pending
                    .entry(pool.to_owned())
                    .or_default()
                    .insert(pod.uid.clone());
                None
            }
        }
    }

    pub fn forget_pending(&self, pool: &str, uid: &str) {
        if let Some(p) = self.state().pending.get_mut(pool) {
            p.remove(uid);
        }
    }

    pub fn allocation(
        &self,
        taken: &Taken,
        settings: &PoolSettings,
    ) -> Option<eni_crds::Allocation> {
        self.state()
            .inv
            .allocation(taken, settings.mode, settings.datapath)
    }

    pub fn free(&self, uid: &str) {
        self.state().inv.free(uid, Instant::now());
        self.capacity_added.notify_waiters();
    }

    /// A copy of the inventory (status, collector, tests).
    pub fn inventory(&self) -> Inventory {
        self.state().inv.clone()
    }

    pub fn health(&self, pool: &str) -> PoolHealth {
        self.state().health.get(pool).cloned().unwrap_or_default()
    }

    fn set_health(&self, pool: &str, f: impl FnOnce(&mut PoolHealth)) {
        f(self.state().health.entry(pool.to_owned()).or_default());
    }

    /// One maintenance pass for `settings`' pool: grow to the target or release idle excess.
    pub async fn maintain(
        &self,
        settings: &PoolSettings,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let _one_at_a_time = self.maint.lock().await;
        let result = self.maintain_locked(settings, cloud).await;
        self.set_health(&settings.name, |h| {
            h.subnet_exhausted = matches!(
                result,
                Err(NodeError::SubnetsExhausted { .. }
                    | NodeError::Cloud(CloudError::SubnetExhausted { .. }))
            );
            h.throttled = matches!(result, Err(NodeError::Cloud(CloudError::Throttled { .. })));
            h.last_error = result.as_ref().err().map(|e| e.to_string());
        });
        result
    }

    async fn maintain_locked(&self, s: &PoolSettings, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        if s.mode == Mode::Trunk && self.state().inv.trunk().is_none() {
            self.create_trunk(s, cloud).await?;
        }
        // Warm ENIs made for the pool's old security groups go; the plan replaces them.
        let stale = self.state().inv.stale_free(&s.name, &s.security_groups);
        for eni in stale {
            if let Some(rec) = self.state().inv.enis.get_mut(&eni.id) {
                rec.units.clear();
            }
            info!(node = %self.name, pool = %s.name, eni = %eni.id, "deleting a free ENI with the pool's former security groups");
            self.delete_eni(&eni, cloud).await?;
        }
        let (limits, targets) = self.sizing(s);
        let usage = {
            let st = self.state();
            let pending = st.pending.get(&s.name).map_or(0, |p| p.len() as u32);
            let mut usage = st.inv.usage(
                &s.name,
                &s.security_groups,
                limits.slots_per_eni,
                pending,
                s.release_delay,
                Instant::now(),
            );
            // An ENI in an exhausted subnet cannot grow: the plan must add an ENI in a
            // subnet with room instead of asking again for addresses that are not there.
            for fill in &mut usage.enis {
                let exhausted = st
                    .inv
                    .enis
                    .get(&fill.eni_id)
                    .is_some_and(|e| cloud.subnets.is_exhausted(&e.subnet_id));
                if exhausted {
                    fill.capacity = fill.held;
                }
            }
            usage
        };
        let steps = pool::plan(targets, &usage, limits);
        if !steps.is_empty() {
            debug!(node = %self.name, pool = %s.name, ?usage, ?steps, "maintenance");
        }
        for step in steps {
            match step {
                Step::Assign { eni_id, slots } => self.assign(s, &eni_id, slots, cloud).await?,
                Step::CreateEni { slots } => match s.mode {
                    Mode::Trunk => self.create_member(s, cloud).await?,
                    _ => self.create_eni(s, slots, cloud).await?,
                },
                Step::Release { units } => self.release(s, units, cloud).await?,
            }
        }
        Ok(())
    }

    fn sizing(&self, s: &PoolSettings) -> (Limits, Targets) {
        let st = self.state();
        let pool_enis = st
            .inv
            .pool_enis(&s.name)
            .filter(|e| !matches!(e.role, Role::Trunk))
            .count() as u32;
        let pool_cap = s.max_enis.unwrap_or(u32::MAX).saturating_sub(pool_enis);
        let limits = match s.mode {
            Mode::SharedIp => {
                // The instance's own ENI (index 0) is not the pool's.
                let attached = st.inv.device_indexes().len() as u32 + 1;
                let room = self.limits.max_enis.saturating_sub(attached).min(pool_cap);
                Limits {
                    units_per_slot: if s.prefix_delegation { 16 } else { 1 },
                    slots_per_eni: self.limits.ipv4_per_eni.saturating_sub(1),
                    eni_room: room,
                }
            }
            Mode::Exclusive => {
                let attached = st.inv.device_indexes().len() as u32 + 1;
                Limits {
                    units_per_slot: 1,
                    slots_per_eni: 1,
                    eni_room: self.limits.max_enis.saturating_sub(attached).min(pool_cap),
                }
            }
            Mode::Trunk => {
                let members = st.inv.vlan_ids().len() as u32;
                Limits {
                    units_per_slot: 1,
                    slots_per_eni: 1,
                    eni_room: self
                        .limits
                        .branch_enis_per_trunk
                        .saturating_sub(members)
                        .min(pool_cap),
                }
            }
        };
        let targets = Targets {
            min: s.min_units,
            warm: s.warm_units,
            max: s.max_units,
        };
        (limits, targets)
    }

    async fn assign(
        &self,
        s: &PoolSettings,
        eni_id: &str,
        slots: u32,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let req = if s.prefix_delegation {
            AddressAssignment::PrefixCount(slots)
        } else {
            AddressAssignment::IpCount(slots)
        };
        let got = match cloud.provider.assign_addresses(eni_id, &req).await {
            Err(e @ CloudError::SubnetExhausted { .. }) => {
                let subnet = self
                    .state()
                    .inv
                    .enis
                    .get(eni_id)
                    .map(|e| e.subnet_id.clone());
                if let Some(subnet) = subnet {
                    cloud.subnets.mark(&subnet);
                }
                return Err(e.into());
            }
            other => other?,
        };
        let now = Instant::now();
        {
            let mut st = self.state();
            if let Some(eni) = st.inv.enis.get_mut(eni_id) {
                for ip in got.ips {
                    eni.units.entry(ip).or_insert(Unit::Free { since: now });
                }
                for p in got.prefixes {
                    add_prefix(eni, p, now);
                }
            }
        }
        self.capacity_added.notify_waiters();
        Ok(())
    }

    /// Subnets of the pool in the instance's zone, best first, skipping exhausted ones.
    async fn subnet_for(
        &self,
        s: &PoolSettings,
        cloud: &Cloud<'_>,
    ) -> Result<Vec<Subnet>, NodeError> {
        let query = if s.subnet_ids.is_empty() {
            SubnetQuery::Tagged(s.subnet_tags.clone())
        } else {
            SubnetQuery::Ids(s.subnet_ids.clone())
        };
        let mut subnets: Vec<Subnet> = cloud
            .provider
            .describe_subnets(&query)
            .await?
            .into_iter()
            .filter(|sn| sn.availability_zone == self.instance.availability_zone)
            .collect();
        if subnets.is_empty() {
            return Err(NodeError::NoSubnet {
                pool: s.name.clone(),
                az: self.instance.availability_zone.clone(),
            });
        }
        match s.subnet_policy {
            eni_crds::SubnetPolicy::MostFree => {
                subnets.sort_by_key(|sn| std::cmp::Reverse(sn.available_ips))
            }
            eni_crds::SubnetPolicy::Ordered => subnets.sort_by_key(|sn| {
                s.subnet_ids
                    .iter()
                    .position(|id| *id == sn.id)
                    .unwrap_or(usize::MAX)
            }),
        }
        subnets.retain(|sn| sn.available_ips > 0 && !cloud.subnets.is_exhausted(&sn.id));
        if subnets.is_empty() {
            return Err(NodeError::SubnetsExhausted {
                pool: s.name.clone(),
                az: self.instance.availability_zone.clone(),
            });
        }
        Ok(subnets)
    }

    /// Creates an ENI in the best subnet that still has room, moving on when one is
    /// exhausted.
    async fn create_in_subnets(
        &self,
        s: &PoolSettings,
        kind: EniKind,
        initial: Option<InitialAddresses>,
        cloud: &Cloud<'_>,
    ) -> Result<(Eni, Subnet), NodeError> {
        for subnet in self.subnet_for(s, cloud).await? {
            let req = CreateEniRequest {
                subnet_id: subnet.id.clone(),
                security_groups: s.security_groups.clone(),
                description: format!("eni-operator {} {} {}", s.name, self.name, kind_name(kind)),
                kind,
                owner: Ownership {
                    pool: s.name.clone(),
                    node: Some(self.name.clone()),
                    instance_id: Some(self.instance.id.clone()),
                },
                tags: s.tags.clone(),
                initial_addresses: initial,
                client_token: client_token(&self.name),
            };
            match cloud.provider.create_eni(&req).await {
                Ok(eni) => return Ok((eni, subnet)),
                Err(CloudError::SubnetExhausted { .. }) => {
                    warn!(subnet = %subnet.id, pool = %s.name, "subnet exhausted; trying the next");
                    cloud.subnets.mark(&subnet.id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(NodeError::SubnetsExhausted {
            pool: s.name.clone(),
            az: self.instance.availability_zone.clone(),
        })
    }

    /// Creates an ENI (with its first addresses in the same call), attaches it and waits
    /// until it is in use before pods may get it.
    async fn create_eni(
        &self,
        s: &PoolSettings,
        slots: u32,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let initial = match s.mode {
            Mode::SharedIp if s.prefix_delegation => Some(InitialAddresses::Prefixes(slots)),
            Mode::SharedIp => Some(InitialAddresses::Ips(slots)),
            _ => None,
        };
        let (eni, subnet) = self
            .create_in_subnets(s, EniKind::Standard, initial, cloud)
            .await?;
        let role = if s.mode == Mode::Exclusive {
            Role::Exclusive
        } else {
            Role::Shared
        };
        let attachment = self.attach(&eni, cloud).await?;
        let rec = record(
            &eni,
            s.name.clone(),
            role,
            &subnet,
            Some(attachment),
            Instant::now(),
        );
        self.state().inv.enis.insert(eni.id.clone(), rec);
        self.capacity_added.notify_waiters();
        Ok(())
    }

    async fn attach(&self, eni: &Eni, cloud: &Cloud<'_>) -> Result<(String, u32), NodeError> {
        let index = {
            let used = self.state().inv.device_indexes();
            inventory::free_device_index(&used, self.limits.max_enis)
        };
        let Some(index) = index else {
            // Nothing may be left behind: the new ENI goes again.
            cloud.provider.delete_eni(&eni.id).await?;
            return Err(NodeError::NoRoom("device index"));
        };
        let attachment_id = match cloud
            .provider
            .attach_eni(&eni.id, &self.instance.id, index)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                if let Err(del) = cloud.provider.delete_eni(&eni.id).await {
                    warn!(eni = %eni.id, error = %del, "deleting an ENI that failed to attach; the collector will");
                }
                return Err(e.into());
            }
        };
        self.wait_status(&eni.id, EniStatus::InUse, cloud).await?;
        Ok((attachment_id, index))
    }

    async fn wait_status(
        &self,
        eni_id: &str,
        want: EniStatus,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let deadline = Instant::now() + cloud.attach_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            let enis = cloud
                .provider
                .list_enis(&EniQuery::Ids(vec![eni_id.to_owned()]))
                .await;
            match enis {
                Ok(enis) if enis.iter().any(|e| e.status == want) => return Ok(()),
                Ok(enis) if enis.is_empty() && want == EniStatus::Available => return Ok(()),
                // Describe may lag behind a create (eventual consistency).
                Ok(_) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                return Err(NodeError::NotReady(eni_id.to_owned(), status_name(&want)));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    async fn create_trunk(&self, s: &PoolSettings, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        if !self.limits.trunking_supported {
            return Err(NodeError::NoTrunking(self.instance.instance_type.clone()));
        }
        let (eni, subnet) = self
            .create_in_subnets(s, EniKind::Trunk, None, cloud)
            .await?;
        let attachment = self.attach(&eni, cloud).await?;
        let rec = record(
            &eni,
            s.name.clone(),
            Role::Trunk,
            &subnet,
            Some(attachment),
            Instant::now(),
        );
        info!(node = %self.name, trunk = %eni.id, "trunk ENI ready");
        self.state().inv.enis.insert(eni.id.clone(), rec);
        Ok(())
    }

    async fn create_member(&self, s: &PoolSettings, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        let (trunk_id, vlan) = {
            let st = self.state();
            let trunk = st.inv.trunk().map(|t| t.id.clone());
            let vlan = inventory::free_vlan(&st.inv.vlan_ids(), self.limits.branch_enis_per_trunk);
            (trunk, vlan)
        };
        let trunk_id = trunk_id.ok_or(NodeError::NoRoom("trunk ENI"))?;
        let vlan_id = vlan.ok_or(NodeError::NoRoom("VLAN id"))?;
        let (eni, subnet) = self
            .create_in_subnets(s, EniKind::Branch, None, cloud)
            .await?;
        let assoc = cloud
            .provider
            .associate_trunk(&AssociateTrunkRequest {
                trunk_eni_id: trunk_id,
                branch_eni_id: eni.id.clone(),
                vlan_id,
                client_token: client_token(&self.name),
            })
            .await;
        let assoc = match assoc {
            Ok(a) => a,
            Err(e) => {
                if let Err(del) = cloud.provider.delete_eni(&eni.id).await {
                    warn!(eni = %eni.id, error = %del, "deleting a member that failed to associate; the collector will");
                }
                return Err(e.into());
            }
        };
        let role = Role::Member {
            vlan_id: assoc.vlan_id,
            association_id: assoc.id,
        };
        let rec = record(&eni, s.name.clone(), role, &subnet, None, Instant::now());
        self.state().inv.enis.insert(eni.id.clone(), rec);
        self.capacity_added.notify_waiters();
        Ok(())
    }

    async fn release(
        &self,
        s: &PoolSettings,
        units: u32,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let picked = self
            .state()
            .inv
            .pick_release(&s.name, units, s.release_delay, Instant::now());
        let mut by_eni: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for t in picked {
            by_eni.entry(t.eni_id).or_default().push(t.address);
        }
        for (eni_id, addrs) in by_eni {
            let Some(eni) = self.state().inv.enis.get(&eni_id).cloned() else {
                continue;
            };
            // Take the units out first so no pod gets them while the cloud call runs.
            let still_free = {
                let mut st = self.state();
                let Some(rec) = st.inv.enis.get_mut(&eni_id) else {
                    continue;
                };
                let mut ok = Vec::new();
                for a in &addrs {
                    let covered: Vec<Ipv4Addr> =
                        match rec.prefixes.iter().find(|p| p.network() == *a) {
                            Some(p) => prefix_addrs(*p),
                            None => vec![*a],
                        };
                    if covered.iter().all(|c| {
                        rec.units
                            .get(c)
                            .is_none_or(|u| matches!(u, Unit::Free { .. }))
                    }) {
                        for c in covered {
                            rec.units.remove(&c);
                        }
                        ok.push(*a);
                    }
                }
                ok
            };
            if still_free.is_empty() {
                continue;
            }
            match eni.role {
                Role::Shared => {
                    let req = if eni.prefixes.is_empty() {
                        AddressRelease::Ips(still_free.clone())
                    } else {
                        let ps = eni
                            .prefixes
                            .iter()
                            .filter(|p| still_free.contains(&p.network()))
                            .copied()
                            .collect();
                        AddressRelease::Prefixes(ps)
                    };
                    cloud.provider.unassign_addresses(&eni_id, &req).await?;
                    let empty = {
                        let mut st = self.state();
                        if let Some(rec) = st.inv.enis.get_mut(&eni_id) {
                            rec.prefixes.retain(|p| !still_free.contains(&p.network()));
                        }
                        st.inv.enis.get(&eni_id).is_some_and(|r| r.units.is_empty())
                    };
                    if empty {
                        self.delete_eni(&eni, cloud).await?;
                    }
                }
                Role::Exclusive | Role::Member { .. } => self.delete_eni(&eni, cloud).await?,
                Role::Trunk => {}
            }
            info!(node = %self.name, pool = %s.name, eni = %eni_id, released = still_free.len(), "released idle capacity");
        }
        Ok(())
    }

    /// Detaches (or disassociates) and deletes an ENI, then forgets it.
    async fn delete_eni(&self, eni: &EniRecord, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        match &eni.role {
            Role::Member { association_id, .. } => {
                match cloud
                    .provider
                    .disassociate_trunk(association_id, &client_token(&self.name))
                    .await
                {
                    Ok(()) | Err(CloudError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {
                if let Some((attachment_id, _)) = &eni.attachment {
                    match cloud.provider.detach_eni(attachment_id, false).await {
                        Ok(()) | Err(CloudError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.wait_status(&eni.id, EniStatus::Available, cloud)
                        .await?;
                }
            }
        }
        match cloud.provider.delete_eni(&eni.id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.state().inv.enis.remove(&eni.id);
        Ok(())
    }

    /// Node deleted: every ENI the operator owns on it goes back to the cloud, members
    /// before the trunk they ride on.
    pub async fn teardown(&self, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        let _one_at_a_time = self.maint.lock().await;
        let mut enis: Vec<EniRecord> = self.state().inv.enis.values().cloned().collect();
        enis.sort_by_key(|e| matches!(e.role, Role::Trunk));
        for eni in enis {
            self.delete_eni(&eni, cloud).await?;
        }
        info!(node = %self.name, "node's ENIs released");
        Ok(())
    }
}

fn record(
    eni: &Eni,
    pool: String,
    role: Role,
    subnet: &Subnet,
    attachment: Option<(String, u32)>,
    now: Instant,
) -> EniRecord {
    let primary = eni.primary_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut rec = EniRecord {
        id: eni.id.clone(),
        pool,
        mac: eni.mac.to_ascii_lowercase(),
        subnet_id: subnet.id.clone(),
        subnet_cidr: subnet.cidr,
        primary_ip: primary,
        attachment,
        security_groups: eni.security_groups.clone(),
        prefixes: Vec::new(),
        units: BTreeMap::new(),
        role,
    };
    match rec.role {
        Role::Shared => {
            for ip in &eni.secondary_ips {
                rec.units.insert(*ip, Unit::Free { since: now });
            }
            for p in &eni.prefixes {
                add_prefix(&mut rec, *p, now);
            }
        }
        Role::Exclusive | Role::Member { .. } => {
            rec.units.insert(primary, Unit::Free { since: now });
        }
        Role::Trunk => {}
    }
    rec
}

fn prefix_addrs(p: ipnet::Ipv4Net) -> Vec<Ipv4Addr> {
    let base = u32::from(p.network());
    let size = 1u32 << (32 - u32::from(p.prefix_len()));
    (0..size).map(|i| Ipv4Addr::from(base + i)).collect()
}

fn add_prefix(rec: &mut EniRecord, p: ipnet::Ipv4Net, now: Instant) {
    if !rec.prefixes.contains(&p) {
        rec.prefixes.push(p);
    }
    for a in prefix_addrs(p) {
        rec.units.entry(a).or_insert(Unit::Free { since: now });
    }
}

fn kind_name(kind: EniKind) -> &'static str {
    match kind {
        EniKind::Standard => "eni",
        EniKind::Trunk => "trunk",
        EniKind::Branch => "member",
    }
}

fn status_name(s: &EniStatus) -> &'static str {
    match s {
        EniStatus::InUse => "in-use",
        EniStatus::Available => "available",
        _ => "other",
    }
}

/// A fresh idempotency token for one logical cloud mutation (retries reuse it inside the
/// provider).
fn client_token(node: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    let mut t = format!("eni-{node}-{n:016x}");
    t.truncate(64);
    t
}

/// Shared handle.
pub type NodeRef = Arc<Node>;
