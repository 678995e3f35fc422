//! One maintenance pass of one pool on one node, decided: from the pool's settings (or
//! the fact that it is being deleted), an inventory snapshot, the instance's limits, the
//! pods waiting, the subnets known to be exhausted and the time, the cloud operations
//! to carry out, in order. Pure; the node's executor carries the plan out.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Instant};

use eni_crds::Mode;

use crate::cloud::InstanceLimits;

use super::{
    inventory::Inventory,
    release::{drain, pick_release, release_ops, yield_slots},
    settings::PoolSettings,
    sizing::{self, Step},
};

/// One cloud operation of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The node's trunk ENI passes to another trunk pool (its own is being deleted).
    AdoptTrunk {
        eni_id: String,
        pool: String,
    },
    /// Detach (or disassociate) and delete an ENI, if it still holds nothing in use
    /// when its turn comes.
    DeleteEni {
        eni_id: String,
    },
    /// Give free units of a SharedIP ENI back: addresses, or prefixes by their first
    /// address. Units a pod took meanwhile stay.
    Release {
        eni_id: String,
        units: Vec<Ipv4Addr>,
    },
    CreateTrunk,
    /// Add `slots` addresses (or prefixes) to an ENI.
    Assign {
        eni_id: String,
        slots: u32,
    },
    /// A new SharedIP (with its first `slots` in the same call) or Exclusive ENI.
    CreateEni {
        slots: u32,
    },
    /// A new member ENI on the trunk.
    CreateMember,
}

/// The pool a pass is for.
#[derive(Clone, Copy, Debug)]
pub enum PoolState<'a> {
    Active(&'a PoolSettings),
    /// Deleted (or gone): everything of it on the node drains.
    Draining(&'a str),
}

impl PoolState<'_> {
    pub fn name(&self) -> &str {
        match self {
            PoolState::Active(s) => &s.name,
            PoolState::Draining(n) => n,
        }
    }
}

pub struct Input<'a> {
    pub pool: PoolState<'a>,
    pub inventory: &'a Inventory,
    pub instance: &'a InstanceLimits,
    /// Pods bound to the node waiting for a unit of the pool.
    pub pending: u32,
    /// Other pools of the node whose pods wait for a unit and may need an ENI slot.
    pub others_waiting: u32,
    /// Subnets that recently answered "exhausted".
    pub exhausted: &'a BTreeSet<String>,
    /// An active trunk pool of the node other than this one: a trunk this pool no
    /// longer needs passes to it instead of going.
    pub trunk_pool: Option<&'a str>,
    pub now: Instant,
}

/// The operations of one pass, in the order they are to run: draining first (it frees
/// room; else idle ENIs yield their slots to other pools' waiting pods on a full
/// instance), then the trunk, then growth or release of idle excess.
pub fn plan(input: &Input) -> Vec<Op> {
    let inv = input.inventory;
    let s = match input.pool {
        PoolState::Draining(name) => {
            return drain(inv, inv.pool_enis(name), input.trunk_pool);
        }
        PoolState::Active(s) => s,
    };
    // ENIs with the pool's former mode, subnets or (whole ENIs) security groups.
    let misfits = inv.pool_enis(&s.name).filter(|e| !e.serves(s));
    let mut ops = drain(inv, misfits, input.trunk_pool);
    if ops.is_empty() {
        ops = yield_slots(
            inv,
            s,
            input.instance.max_enis,
            input.pending,
            input.others_waiting,
        );
    }
    // Size on the inventory as it will be once the drained ENIs are gone.
    let mut after = inv.clone();
    for op in &ops {
        if let Op::DeleteEni { eni_id } = op {
            after.remove(eni_id);
        }
    }
    if s.mode == Mode::Trunk && after.trunk().is_none() {
        ops.push(Op::CreateTrunk);
    }
    let limits = sizing::limits(s, input.instance, &after, input.others_waiting);
    let mut usage = after.usage(s, limits.slots_per_eni, input.pending, input.now);
    // An ENI in an exhausted subnet cannot grow: the plan must add an ENI in a subnet
    // with room instead of asking again for addresses that are not there.
    for fill in &mut usage.enis {
        let exhausted = after
            .get(&fill.eni_id)
            .is_some_and(|e| input.exhausted.contains(e.subnet_id()));
        if exhausted {
            fill.capacity = fill.held;
        }
    }
    for step in sizing::plan(sizing::targets(s), &usage, limits) {
        match step {
            Step::Assign { eni_id, slots } => ops.push(Op::Assign { eni_id, slots }),
            Step::CreateEni { .. } if s.mode == Mode::Trunk => ops.push(Op::CreateMember),
            Step::CreateEni { slots } => ops.push(Op::CreateEni { slots }),
            Step::Release { units } => ops.extend(release_ops(
                &after,
                pick_release(&after, s, units, input.now),
            )),
        }
    }
    ops
}

#[cfg(test)]
mod tests;
