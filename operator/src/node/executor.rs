//! Carries a maintenance plan out: each planned operation becomes provider calls, and
//! its result is recorded in the inventory. Units leave the inventory before the call
//! that gives them back (no pod can get them meanwhile) and come back if the call fails;
//! an ENI that fails to attach or associate is deleted again.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use eni_crds::{Mac, Mode};
use tracing::{info, warn};

use crate::{
    cloud::{
        AddressAssignment, AddressRelease, AssociateTrunkRequest, CloudError, CreateEniRequest,
        Eni, EniKind, EniQuery, EniStatus, InitialAddresses, Ownership, Subnet, SubnetQuery, Tags,
        tags,
    },
    engine::{
        eni::{EniRecord, Role},
        inventory::{AddressDrift, Coming, TakenOut},
        plan::{Op, PoolState},
        settings::PoolSettings,
        subnets::{self, RankError},
    },
};

use super::{Cloud, Node, NodeError, mac_of};

/// An ENI just created, with its MAC parsed, in the subnet it was created in.
struct New {
    eni: Eni,
    mac: Mac,
    subnet: Subnet,
}

/// A new ENI whose attach the cloud accepted, at the device index asked for.
pub(super) struct Attaching {
    new: New,
    attachment_id: String,
    index: u32,
    role: Role,
    pool: String,
}

impl Attaching {
    /// Its entry among the inventory's attaching ENIs: the slots it was created with.
    pub(super) fn coming(&self) -> (String, Coming) {
        let eni = &self.new.eni;
        let slots = match self.role {
            Role::Shared if !eni.prefixes.is_empty() => eni.prefixes.len(),
            Role::Shared => eni.secondary_ips.len(),
            _ => 1,
        };
        let coming = Coming {
            pool: self.pool.clone(),
            device_index: self.index,
            slots: slots as u32,
        };
        (eni.id.clone(), coming)
    }
}

pub(super) struct Executor<'a> {
    pub node: &'a Node,
    pub cloud: &'a Cloud<'a>,
}

impl Executor<'_> {
    /// Runs `ops` in order; the first failure ends the pass (the next pass re-plans).
    /// Consecutive new ENIs (or members) are created and attached side by side: each
    /// spends seconds in calls and attaching, and a node short of several should not
    /// wait for them in turn.
    pub async fn run(&self, pool: PoolState<'_>, ops: Vec<Op>) -> Result<(), NodeError> {
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            let s = match pool {
                PoolState::Active(s) => Some(s),
                PoolState::Draining(_) => None,
            };
            match (op, s) {
                (Op::AdoptTrunk { eni_id, pool }, _) => self.adopt_trunk(&eni_id, &pool).await?,
                (Op::DeleteEni { eni_id }, _) => self.delete_idle(&eni_id).await?,
                (Op::Release { eni_id, units }, _) => {
                    self.release(pool.name(), &eni_id, &units).await?
                }
                (Op::CreateTrunk, Some(s)) => self.create_trunk(s).await?,
                (Op::Assign { eni_id, slots }, Some(s)) => self.assign(s, &eni_id, slots).await?,
                (Op::CreateEni { slots }, Some(s)) => {
                    let mut batch = vec![slots];
                    while let Some(Op::CreateEni { slots }) = ops.peek() {
                        batch.push(*slots);
                        ops.next();
                    }
                    self.create_enis(s, &batch).await?
                }
                (Op::CreateMember, Some(s)) => {
                    let mut n = 1;
                    while let Some(Op::CreateMember) = ops.peek() {
                        n += 1;
                        ops.next();
                    }
                    self.create_members(s, n).await?
                }
                // Growth of a draining pool: never planned.
                (_, None) => {}
            }
        }
        Ok(())
    }

    /// Reads back the pool's SharedIP ENIs whose addresses a failed call may have
    /// changed, once the cloud's describes show that call, and makes their units what
    /// the cloud holds: an address assigned by a call that timed out would otherwise
    /// stay in the cloud, counted nowhere, until the operator restarts.
    pub async fn verify_unsure(&self, pool: &str) -> Result<(), NodeError> {
        let due = self
            .node
            .read(|inv| inv.unsure_settled(pool, self.cloud.describe_settle, Instant::now()));
        if due.is_empty() {
            return Ok(());
        }
        let enis = self.cloud.provider.list_enis(&EniQuery::Ids(due)).await?;
        for eni in enis {
            let drift = self.node.update(|inv| {
                inv.reconcile_addresses(&eni.id, &eni.secondary_ips, &eni.prefixes, Instant::now())
            });
            if drift != AddressDrift::default() {
                warn!(node = %self.node.name, %pool, eni = %eni.id, adopted = drift.adopted, dropped = drift.dropped, ?drift.missing, "units differed from the cloud after a call that may have taken effect");
            }
            if drift.adopted > 0 {
                self.node.capacity_added.notify_waiters();
            }
            if !drift.missing.is_empty() {
                self.reassign(&eni.id, &drift.missing).await?;
            }
        }
        Ok(())
    }

    /// Assigns again, by address, units pods hold that the cloud no longer has.
    async fn reassign(&self, eni_id: &str, missing: &TakenOut) -> Result<(), NodeError> {
        let p = self.cloud.provider;
        if !missing.ips.is_empty() {
            p.assign_addresses(eni_id, &AddressAssignment::Ips(missing.ips.clone()))
                .await?;
        }
        if !missing.prefixes.is_empty() {
            p.assign_addresses(
                eni_id,
                &AddressAssignment::Prefixes(missing.prefixes.clone()),
            )
            .await?;
        }
        self.node.update(|inv| inv.changed(eni_id, Instant::now()));
        Ok(())
    }

    async fn adopt_trunk(&self, eni_id: &str, pool: &str) -> Result<(), NodeError> {
        let tags = Tags::from([(tags::POOL.to_owned(), pool.to_owned())]);
        self.cloud
            .provider
            .tag_resources(&[eni_id.to_owned()], &tags)
            .await?;
        self.node.update(|inv| inv.set_pool(eni_id, pool));
        info!(node = %self.node.name, eni = %eni_id, %pool, "trunk ENI passed to another trunk pool");
        Ok(())
    }

    /// Deletes an ENI unless a pod took a unit of it since the plan was made.
    async fn delete_idle(&self, eni_id: &str) -> Result<(), NodeError> {
        let Some(rec) = self.node.read(|inv| inv.get(eni_id).cloned()) else {
            return Ok(());
        };
        if !self.node.update(|inv| inv.take_out_all(eni_id)) {
            return Ok(());
        }
        info!(node = %self.node.name, pool = %rec.pool(), eni = %eni_id, "deleting an ENI that holds nothing in use");
        self.delete(&rec).await.inspect_err(|_| {
            // Still there: its units are free again (the next pass retries).
            self.node.update(|inv| inv.insert(rec.clone()));
        })
    }

    /// Gives free units of a SharedIP ENI back.
    async fn release(&self, pool: &str, eni_id: &str, units: &[Ipv4Addr]) -> Result<(), NodeError> {
        let out = self.node.update(|inv| inv.take_out(eni_id, units));
        if out.is_empty() {
            return Ok(());
        }
        let req = if out.prefixes.is_empty() {
            AddressRelease::Ips(out.ips.clone())
        } else {
            AddressRelease::Prefixes(out.prefixes.clone())
        };
        if let Err(e) = self.cloud.provider.unassign_addresses(eni_id, &req).await {
            // Any failure may follow an attempt that took effect: a retried unassign
            // that timed out first ends with "not assigned" from its retry. The units
            // stay out, so no pod gets an address the cloud may no longer hold; the
            // read-back of the unsure ENI adopts again those the cloud still has.
            self.node
                .update(|inv| inv.mark_unsure(eni_id, Instant::now()));
            return Err(e.into());
        }
        self.node.update(|inv| inv.changed(eni_id, Instant::now()));
        info!(node = %self.node.name, %pool, eni = %eni_id, released = out.ips.len() + out.prefixes.len(), "released free units");
        Ok(())
    }

    async fn assign(&self, s: &PoolSettings, eni_id: &str, slots: u32) -> Result<(), NodeError> {
        let req = if s.prefix_delegation {
            AddressAssignment::PrefixCount(slots)
        } else {
            AddressAssignment::IpCount(slots)
        };
        let got = match self.cloud.provider.assign_addresses(eni_id, &req).await {
            Ok(got) => got,
            Err(e) => {
                // A failure may follow an attempt that took effect (a timeout, then a
                // retry refused): what the ENI holds is read back later.
                self.node
                    .update(|inv| inv.mark_unsure(eni_id, Instant::now()));
                if let CloudError::SubnetExhausted { .. } = e {
                    let subnet = self
                        .node
                        .read(|inv| inv.get(eni_id).map(|e| e.subnet_id().to_owned()));
                    if let Some(subnet) = subnet {
                        self.cloud.subnets.mark(&subnet, Instant::now());
                    }
                }
                return Err(e.into());
            }
        };
        self.node
            .update(|inv| inv.add_addresses(eni_id, &got.ips, &got.prefixes, Instant::now()));
        self.node.capacity_added.notify_waiters();
        Ok(())
    }

    /// The pool's subnets in the node's zone, best first (one describe, shared by every
    /// ENI a pass creates).
    async fn ranked_subnets(&self, s: &PoolSettings) -> Result<Vec<Subnet>, NodeError> {
        let az = &self.node.instance.availability_zone;
        let query = if s.subnet_ids.is_empty() {
            SubnetQuery::Tagged(s.subnet_tags.clone())
        } else {
            SubnetQuery::Ids(s.subnet_ids.clone())
        };
        let found = self.cloud.provider.describe_subnets(&query).await?;
        subnets::rank(s, az, found, &self.cloud.subnets.exhausted(Instant::now())).map_err(|e| {
            match e {
                RankError::NoSubnet => NodeError::NoSubnet {
                    pool: s.name.clone(),
                    az: az.clone(),
                },
                RankError::Exhausted => NodeError::SubnetsExhausted {
                    pool: s.name.clone(),
                    az: az.clone(),
                },
            }
        })
    }

    /// Creates an ENI in the best of `ranked` that still has room, moving on when one is
    /// exhausted.
    async fn create_in_subnets(
        &self,
        s: &PoolSettings,
        ranked: &[Subnet],
        kind: EniKind,
        initial: Option<InitialAddresses>,
    ) -> Result<New, NodeError> {
        let node = self.node;
        for subnet in ranked {
            let subnet = subnet.clone();
            let req = CreateEniRequest {
                subnet_id: subnet.id.clone(),
                security_groups: s.security_groups.clone(),
                description: format!("eni-operator {} {} {}", s.name, node.name, kind_name(kind)),
                kind,
                owner: Ownership {
                    pool: s.name.clone(),
                    node: Some(node.name.clone()),
                    instance_id: Some(node.instance.id.clone()),
                },
                tags: s.tags.clone(),
                initial_addresses: initial,
                client_token: client_token(&node.name),
            };
            match self.cloud.provider.create_eni(&req).await {
                Ok(eni) => return self.checked(eni, subnet).await,
                Err(CloudError::SubnetExhausted { .. }) => {
                    warn!(subnet = %subnet.id, pool = %s.name, "subnet exhausted; trying the next");
                    self.cloud.subnets.mark(&subnet.id, Instant::now());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(NodeError::SubnetsExhausted {
            pool: s.name.clone(),
            az: node.instance.availability_zone.clone(),
        })
    }

    /// A new ENI with its MAC parsed; one whose MAC is not one goes again at once.
    async fn checked(&self, eni: Eni, subnet: Subnet) -> Result<New, NodeError> {
        match mac_of(&eni) {
            Ok(mac) => Ok(New { eni, mac, subnet }),
            Err(e) => {
                if let Err(del) = self.cloud.provider.delete_eni(&eni.id).await {
                    warn!(eni = %eni.id, error = %del, "deleting an ENI with a malformed MAC; the collector will");
                }
                Err(e)
            }
        }
    }

    /// Creates one ENI per entry of `batch` (its slots), side by side, each at a device
    /// index of its own, and leaves those whose attach the cloud accepted attaching
    /// (`Node::settle_attachments` waits for them, outside the pass, so the next pass
    /// can plan on top of them); the first failure is returned once all have finished.
    async fn create_enis(&self, s: &PoolSettings, batch: &[u32]) -> Result<(), NodeError> {
        let indexes = self
            .node
            .read(|inv| inv.free_device_indexes(self.node.limits.max_enis, batch.len()));
        if indexes.is_empty() {
            return Err(NodeError::NoRoom("device index"));
        }
        let ranked = self.ranked_subnets(s).await?;
        let started = futures::future::join_all(
            batch
                .iter()
                .zip(indexes)
                .map(|(slots, index)| self.create_and_attach(s, &ranked, *slots, index)),
        )
        .await;
        let mut failed = None;
        for r in started {
            match r {
                Ok(a) => self.node.attaching(a),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Creates an ENI (with its first addresses in the same call) and attaches it at
    /// `index`.
    async fn create_and_attach(
        &self,
        s: &PoolSettings,
        ranked: &[Subnet],
        slots: u32,
        index: u32,
    ) -> Result<Attaching, NodeError> {
        let initial = match s.mode {
            Mode::SharedIp if s.prefix_delegation => Some(InitialAddresses::Prefixes(slots)),
            Mode::SharedIp => Some(InitialAddresses::Ips(slots)),
            _ => None,
        };
        let new = self
            .create_in_subnets(s, ranked, EniKind::Standard, initial)
            .await?;
        let role = if s.mode == Mode::Exclusive {
            Role::Exclusive
        } else {
            Role::Shared
        };
        let attachment_id = self.attach(&new.eni, index).await?;
        Ok(Attaching {
            new,
            attachment_id,
            index,
            role,
            pool: s.name.clone(),
        })
    }

    async fn create_trunk(&self, s: &PoolSettings) -> Result<(), NodeError> {
        if !self.node.limits.trunking_supported {
            return Err(NodeError::NoTrunking(
                self.node.instance.instance_type.clone(),
            ));
        }
        let index = self
            .node
            .read(|inv| inv.free_device_index(self.node.limits.max_enis))
            .ok_or(NodeError::NoRoom("device index"))?;
        let ranked = self.ranked_subnets(s).await?;
        let new = self
            .create_in_subnets(s, &ranked, EniKind::Trunk, None)
            .await?;
        let id = new.eni.id.clone();
        let attachment_id = self.attach(&new.eni, index).await?;
        let trunk = Attaching {
            new,
            attachment_id,
            index,
            role: Role::Trunk,
            pool: s.name.clone(),
        };
        // Members need the trunk in use: this pass waits for it.
        self.record_in_use(vec![trunk]).await?;
        info!(node = %self.node.name, trunk = %id, "trunk ENI ready");
        Ok(())
    }

    /// Attaches `eni` at device `index` (chosen before the ENI was created, so a node
    /// without room creates none); an ENI that cannot be attached is deleted.
    async fn attach(&self, eni: &Eni, index: u32) -> Result<String, NodeError> {
        let p = self.cloud.provider;
        match p.attach_eni(&eni.id, &self.node.instance.id, index).await {
            Ok(a) => Ok(a),
            Err(e) => {
                if let Err(del) = p.delete_eni(&eni.id).await {
                    warn!(eni = %eni.id, error = %del, "deleting an ENI that failed to attach; the collector will");
                }
                Err(e.into())
            }
        }
    }

    /// Waits until attaching ENIs are in use, one describe for all of them per look,
    /// and records each as soon as it is (pods waiting may take its units at once).
    /// Those that do not get there in time are no longer counted as coming.
    pub async fn record_in_use(&self, attaching: Vec<Attaching>) -> Result<(), NodeError> {
        let ids: Vec<String> = attaching.iter().map(|a| a.new.eni.id.clone()).collect();
        let result = self.wait_in_use(attaching).await;
        if result.is_err() {
            self.node.update(|inv| {
                for id in &ids {
                    inv.arrived(id);
                }
            });
        }
        result
    }

    async fn wait_in_use(&self, mut attaching: Vec<Attaching>) -> Result<(), NodeError> {
        let mut looks = Looks::new(self.cloud.attach_timeout);
        while !attaching.is_empty() {
            looks.next().await;
            let ids = attaching.iter().map(|a| a.new.eni.id.clone()).collect();
            let enis = match self.cloud.provider.list_enis(&EniQuery::Ids(ids)).await {
                Ok(enis) => enis,
                // Describe may lag behind a create (eventual consistency).
                Err(CloudError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let in_use = |a: &Attaching| {
                enis.iter()
                    .find(|e| e.id == a.new.eni.id && e.status == EniStatus::InUse)
            };
            let (ready, waiting): (Vec<_>, Vec<_>) =
                attaching.into_iter().partition(|a| in_use(a).is_some());
            for a in &ready {
                // The cloud's word on the device index: ECS picks it itself. Index 0 is
                // the primary's, so a secondary read back at 0 means the cloud did not say.
                let index = in_use(a)
                    .and_then(|e| e.attachment.as_ref())
                    .map(|at| at.device_index)
                    .filter(|i| *i != 0)
                    .unwrap_or(a.index);
                let rec = EniRecord::new(
                    &a.new.eni,
                    a.new.mac,
                    a.pool.clone(),
                    a.role.clone(),
                    &a.new.subnet,
                    Some((a.attachment_id.clone(), index)),
                    Instant::now(),
                );
                self.node.update(|inv| {
                    inv.arrived(rec.id());
                    inv.insert(rec);
                });
            }
            if !ready.is_empty() {
                self.node.capacity_added.notify_waiters();
            }
            attaching = waiting;
            if let Some(late) = attaching.first()
                && looks.late()
            {
                return Err(NodeError::NotReady(late.new.eni.id.clone(), "in-use"));
            }
        }
        Ok(())
    }

    /// Creates `n` members side by side, each on a VLAN id of its own; the first
    /// failure is returned once all have finished (those that succeeded are recorded).
    async fn create_members(&self, s: &PoolSettings, n: usize) -> Result<(), NodeError> {
        let (trunk_id, vlans) = self.node.read(|inv| {
            (
                inv.trunk().map(|t| t.id().to_owned()),
                inv.free_vlans(self.node.limits.branch_enis_per_trunk, n),
            )
        });
        let trunk_id = trunk_id.ok_or(NodeError::NoRoom("trunk ENI"))?;
        if vlans.is_empty() {
            return Err(NodeError::NoRoom("VLAN id"));
        }
        let ranked = self.ranked_subnets(s).await?;
        let results = futures::future::join_all(
            vlans
                .into_iter()
                .map(|vlan_id| self.create_member(s, &ranked, &trunk_id, vlan_id)),
        )
        .await;
        results.into_iter().collect()
    }

    async fn create_member(
        &self,
        s: &PoolSettings,
        ranked: &[Subnet],
        trunk_id: &str,
        vlan_id: u16,
    ) -> Result<(), NodeError> {
        let New { eni, mac, subnet } = self
            .create_in_subnets(s, ranked, EniKind::Branch, None)
            .await?;
        let req = AssociateTrunkRequest {
            trunk_eni_id: trunk_id.to_owned(),
            branch_eni_id: eni.id.clone(),
            vlan_id,
            client_token: client_token(&self.node.name),
        };
        let assoc = match self.cloud.provider.associate_trunk(&req).await {
            Ok(a) => a,
            Err(e) => {
                if let Err(del) = self.cloud.provider.delete_eni(&eni.id).await {
                    warn!(eni = %eni.id, error = %del, "deleting a member that failed to associate; the collector will");
                }
                return Err(e.into());
            }
        };
        let role = Role::Member {
            vlan_id: assoc.vlan_id,
            association_id: assoc.id,
        };
        let rec = EniRecord::new(
            &eni,
            mac,
            s.name.clone(),
            role,
            &subnet,
            None,
            Instant::now(),
        );
        self.node.update(|inv| inv.insert(rec));
        self.node.capacity_added.notify_waiters();
        Ok(())
    }

    /// Node deleted: every ENI goes, members before the trunk they ride on.
    pub async fn teardown(&self) -> Result<(), NodeError> {
        let mut enis: Vec<EniRecord> = self.node.read(|inv| inv.enis().cloned().collect());
        enis.sort_by_key(|e| *e.role() == Role::Trunk);
        for eni in enis {
            self.delete(&eni).await?;
        }
        info!(node = %self.node.name, "node's ENIs released");
        Ok(())
    }

    /// Detaches (or disassociates) and deletes an ENI, then forgets it.
    async fn delete(&self, eni: &EniRecord) -> Result<(), NodeError> {
        let p = self.cloud.provider;
        let gone = |r: Result<(), CloudError>| match r {
            Ok(()) | Err(CloudError::NotFound { .. }) => Ok(()),
            Err(e) => Err(NodeError::from(e)),
        };
        match eni.role() {
            Role::Member { association_id, .. } => gone(
                p.disassociate_trunk(association_id, &client_token(&self.node.name))
                    .await,
            )?,
            _ => {
                if let Some((attachment_id, _)) = eni.attachment() {
                    gone(p.detach_eni(attachment_id, false).await)?;
                    self.wait_detached(eni.id()).await?;
                }
            }
        }
        gone(p.delete_eni(eni.id()).await)?;
        self.node.update(|inv| inv.remove(eni.id()));
        Ok(())
    }

    /// Looks until the ENI is available (detached) or gone.
    async fn wait_detached(&self, eni_id: &str) -> Result<(), NodeError> {
        let mut looks = Looks::new(self.cloud.attach_timeout);
        loop {
            looks.next().await;
            let enis = self
                .cloud
                .provider
                .list_enis(&EniQuery::Ids(vec![eni_id.to_owned()]))
                .await;
            match enis {
                Ok(enis)
                    if enis.is_empty() || enis.iter().any(|e| e.status == EniStatus::Available) =>
                {
                    return Ok(());
                }
                // Describe may lag behind (eventual consistency).
                Ok(_) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if looks.late() {
                return Err(NodeError::NotReady(eni_id.to_owned(), "available"));
            }
        }
    }
}

/// When to look at ENIs changing state (attaching, detaching). That takes a second or
/// more on both clouds: the first look comes after a moment, not at once, and the looks
/// thin out to one a second (4 for a 2 s attach), until the attach timeout.
struct Looks {
    delay: Duration,
    deadline: Instant,
}

impl Looks {
    fn new(timeout: Duration) -> Self {
        Looks {
            delay: Duration::from_millis(200),
            deadline: Instant::now() + timeout,
        }
    }

    /// Waits until the next look is due.
    async fn next(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
    }

    fn late(&self) -> bool {
        Instant::now() > self.deadline
    }
}

fn kind_name(kind: EniKind) -> &'static str {
    match kind {
        EniKind::Standard => "eni",
        EniKind::Trunk => "trunk",
        EniKind::Branch => "member",
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
