//! One node as the operator sees it: its instance, its inventory behind a short,
//! synchronous lock (never held across a cloud call, so a pod is served from warm
//! capacity while an ENI is still attaching), the pods waiting for a unit, and each
//! pool's health. Maintenance plans a pass with the engine and has the executor carry
//! it out, one pass at a time per node. ENIs a pass leaves attaching are waited for
//! beside the next passes, which count them as capacity to come.

mod executor;
mod load;
mod subnets;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use eni_crds::{Mac, MacParseError};
use tokio::sync::Notify;
use tracing::debug;

pub use subnets::SubnetCache;

use crate::{
    cloud::{CloudError, CloudProvider, Eni, Instance, InstanceLimits},
    engine::{
        eni::{PodKey, Role},
        inventory::{Inventory, PoolCounts, Taken},
        plan::{self, PoolState},
        settings::PoolSettings,
        status::PoolHealth,
    },
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
    #[error("ENI {eni} from the cloud: {source}")]
    BadMac { eni: String, source: MacParseError },
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
            NodeError::BadMac { .. } => "bad_mac",
        }
    }
}

struct State {
    inv: Inventory,
    /// ENIs a pass left attaching, for `settle_attachments`.
    started: Vec<executor::Attaching>,
    /// Pods waiting for a unit, per pool (surge demand).
    pending: BTreeMap<String, BTreeSet<String>>,
    health: BTreeMap<String, PoolHealth>,
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

/// Shared handle.
pub type NodeRef = Arc<Node>;

/// Everything a node needs from the outside for maintenance.
pub struct Cloud<'a> {
    pub provider: &'a dyn CloudProvider,
    pub subnets: &'a SubnetCache,
    /// How long to wait for an ENI to attach.
    pub attach_timeout: Duration,
    /// How long after a change the cloud's describes are trusted to show it (EC2's
    /// are eventually consistent).
    pub describe_settle: Duration,
}

impl Node {
    fn new(name: &str, instance: Instance, limits: InstanceLimits, inv: Inventory) -> Node {
        Node {
            name: name.to_owned(),
            instance,
            limits,
            state: Mutex::new(State {
                inv,
                started: Vec::new(),
                pending: BTreeMap::new(),
                health: BTreeMap::new(),
            }),
            maint: tokio::sync::Mutex::new(()),
            capacity_added: Notify::new(),
            kick: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under the lock is one inventory method, which leaves consistent
        // data even if it panicked half-way through a loop: a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the inventory under the lock (keep `f` short: no I/O).
    pub fn read<T>(&self, f: impl FnOnce(&Inventory) -> T) -> T {
        f(&self.state().inv)
    }

    fn update<T>(&self, f: impl FnOnce(&mut Inventory) -> T) -> T {
        f(&mut self.state().inv)
    }

    /// An ENI a pass created is attaching: its index and slots are spoken for, and
    /// `settle_attachments` waits for it.
    fn attaching(&self, a: executor::Attaching) {
        let mut st = self.state();
        let (id, coming) = a.coming();
        st.inv.expect(&id, coming);
        st.started.push(a);
    }

    /// Whether ENIs that passes created are still attaching.
    pub fn has_started(&self) -> bool {
        !self.state().started.is_empty()
    }

    /// Waits until the ENIs passes left attaching are in use and records them. Runs
    /// beside the passes: one that plans meanwhile counts them as capacity to come, so
    /// a node keeps growing for pods that arrive while its first ENIs attach.
    pub async fn settle_attachments(&self, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        let started = std::mem::take(&mut self.state().started);
        if started.is_empty() {
            return Ok(());
        }
        executor::Executor { node: self, cloud }
            .record_in_use(started)
            .await
    }

    /// Marks `pod` as holding `address` of `eni` (from its PodNetwork).
    pub fn claim(&self, eni: &str, address: Ipv4Addr, pod: &PodKey, cooling: bool) -> bool {
        self.update(|inv| inv.claim(eni, address, pod, cooling))
    }

    /// See [`Inventory::claim_missing`].
    pub fn claim_missing(&self, eni: &str, address: Ipv4Addr, pod: &PodKey, cooling: bool) -> bool {
        self.update(|inv| inv.claim_missing(eni, address, pod, cooling, Instant::now()))
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
        self.update(|inv| inv.hand_over(eni, address, from_uid, to, cooling))
    }

    /// Takes a unit of `settings`' pool for `pod`, or registers the pod as waiting and
    /// returns None.
    pub fn take(&self, settings: &PoolSettings, pod: &PodKey) -> Option<Taken> {
        let pool = settings.name.as_str();
        let mut st = self.state();
        let taken = st.inv.take(settings, pod);
        let waiting = st.pending.entry(pool.to_owned()).or_default();
        match &taken {
            Some(_) => waiting.remove(&pod.uid),
            None => waiting.insert(pod.uid.clone()),
        };
        taken
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
        self.read(|inv| inv.allocation(taken, settings.mode, settings.datapath))
    }

    pub fn free(&self, uid: &str) {
        self.update(|inv| inv.free(uid, Instant::now()));
        self.capacity_added.notify_waiters();
    }

    pub fn counts(&self, pool: &str) -> PoolCounts {
        self.read(|inv| inv.counts(pool))
    }

    pub fn eni_count(&self) -> usize {
        self.read(Inventory::len)
    }

    /// Pools with ENIs on this node.
    pub fn pools(&self) -> BTreeSet<String> {
        self.read(Inventory::pools)
    }

    pub fn health(&self, pool: &str) -> PoolHealth {
        self.state().health.get(pool).cloned().unwrap_or_default()
    }

    /// One maintenance pass for a pool: plan from a snapshot of the inventory, then
    /// carry the plan out. An active pool grows to its target or releases idle excess; a
    /// draining one gives back everything no pod uses. `trunk_pool` names an active trunk
    /// pool of the node other than this one.
    pub async fn maintain(
        &self,
        pool: PoolState<'_>,
        trunk_pool: Option<&str>,
        cloud: &Cloud<'_>,
    ) -> Result<(), NodeError> {
        let _one_at_a_time = self.maint.lock().await;
        let exec = executor::Executor { node: self, cloud };
        // The plan must start from units the cloud really holds.
        let verified = exec.verify_unsure(pool.name()).await;
        if verified.is_err() {
            self.record_health(pool.name(), &verified);
            return verified;
        }
        let now = Instant::now();
        let ops = {
            let st = self.state();
            let pending = st.pending.get(pool.name()).map_or(0, |p| p.len() as u32);
            // Other pools whose waiting pods need an ENI slot. A trunk pool whose trunk
            // is attached grows members, which take no slot; a SharedIP pool with room
            // on one of its ENIs grows addresses there.
            let slots_per_eni = self.limits.ipv4_per_eni.saturating_sub(1);
            let has_trunk = |p: &str| trunk_pool == Some(p) && st.inv.trunk().is_some();
            let has_address_room = |p: &str| {
                st.inv
                    .pool_enis(p)
                    .any(|e| *e.role() == Role::Shared && e.held_slots() < slots_per_eni)
            };
            let others_waiting = st
                .pending
                .iter()
                .filter(|(p, waiting)| {
                    p.as_str() != pool.name()
                        && !waiting.is_empty()
                        && !has_trunk(p)
                        && !has_address_room(p)
                })
                .count() as u32;
            plan::plan(&plan::Input {
                pool,
                inventory: &st.inv,
                instance: &self.limits,
                pending,
                others_waiting,
                exhausted: &cloud.subnets.exhausted(now),
                trunk_pool,
                now,
            })
        };
        if !ops.is_empty() {
            debug!(node = %self.name, pool = %pool.name(), ?ops, "maintenance");
        }
        let result = exec.run(pool, ops).await;
        self.record_health(pool.name(), &result);
        result
    }

    fn record_health(&self, pool: &str, result: &Result<(), NodeError>) {
        let mut st = self.state();
        let h = st.health.entry(pool.to_owned()).or_default();
        h.subnet_exhausted = matches!(
            result,
            Err(NodeError::SubnetsExhausted { .. }
                | NodeError::Cloud(CloudError::SubnetExhausted { .. }))
        );
        h.throttled = matches!(result, Err(NodeError::Cloud(CloudError::Throttled { .. })));
        h.last_error = result.as_ref().err().map(|e| e.to_string());
    }

    /// Node deleted: every ENI the operator owns on it goes back to the cloud, members
    /// before the trunk they ride on.
    pub async fn teardown(&self, cloud: &Cloud<'_>) -> Result<(), NodeError> {
        let _one_at_a_time = self.maint.lock().await;
        // ENIs still attaching are recorded (or given up) first, so they go too.
        self.settle_attachments(cloud).await?;
        let deadline = Instant::now() + cloud.attach_timeout;
        while self.read(Inventory::coming) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        executor::Executor { node: self, cloud }.teardown().await
    }
}

/// The MAC of an ENI the cloud reported, parsed once where cloud data enters the
/// inventory (allocations and TrunkENIs then carry it as is).
fn mac_of(eni: &Eni) -> Result<Mac, NodeError> {
    eni.mac.parse().map_err(|source| NodeError::BadMac {
        eni: eni.id.clone(),
        source,
    })
}
