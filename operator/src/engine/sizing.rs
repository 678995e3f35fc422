//! Warm-pool sizing: from a pool's targets, the node's limits and its current use, what
//! the node should hold, computed in one step, and the cloud steps to get there.
//!
//! Units are what a pod takes: addresses in SharedIP (a /28 prefix is one slot of 16
//! addresses), ENIs in Exclusive, member ENIs in Trunk. Pure: no clock, no I/O.

use eni_crds::Mode;

use crate::cloud::InstanceLimits;

use super::{inventory::Inventory, settings::PoolSettings};

/// What the node's pool holds right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Per ENI of the pool on this node: slots held and slots it may hold.
    pub enis: Vec<EniFill>,
    /// Units serving pods.
    pub used: u32,
    /// Units released by pods that are still cooling down.
    pub cooling: u32,
    /// Pods bound to the node waiting for a unit (surge).
    pub pending: u32,
    /// Free units that have been free longer than the release delay.
    pub releasable: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniFill {
    pub eni_id: String,
    /// Slots held (secondary addresses, or prefixes).
    pub held: u32,
    /// Slots the ENI may hold.
    pub capacity: u32,
}

/// The room the node and pool leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Units a slot gives (1 address, or 16 for a /28 prefix; 1 ENI).
    pub units_per_slot: u32,
    /// Slots a new ENI may hold (SharedIP: addresses per ENI minus its primary).
    pub slots_per_eni: u32,
    /// ENIs (or member ENIs) the pool may still add on this node: instance limit minus
    /// what is attached, capped by the pool's maxENIs.
    pub eni_room: u32,
    /// ENIs kept for other pools' waiting pods: this pool's own demand may take them,
    /// its warm and minimum targets may not (a warm ENI of one pool must not take the
    /// last slot a pod of another pool waits for). Above `eni_room`, idle ENIs of the
    /// pool go to make room.
    pub reserved: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Targets {
    pub min: u32,
    pub warm: u32,
    pub max: Option<u32>,
}

/// One cloud step. Assigns fill existing ENIs first; a new ENI gets its slots in the
/// create call itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Assign {
        eni_id: String,
        slots: u32,
    },
    CreateEni {
        slots: u32,
    },
    /// Release this many free units (the caller picks which: long-free first, never a
    /// cooling or used one).
    Release {
        units: u32,
    },
}

/// Units the node should hold: enough for the pods using or cooling them and the pending
/// ones plus `warm` free, at least `min`, never above `max` or what the node can hold.
/// Only the pods' demand may use the ENIs reserved for other pools.
pub fn target(t: Targets, usage: &Usage, limits: Limits) -> u32 {
    let demand = usage.used + usage.cooling + usage.pending;
    let want = (demand + t.warm).max(t.min);
    let held_slots: u32 = usage.enis.iter().map(|e| e.held).sum();
    let free_slots: u32 = usage
        .enis
        .iter()
        .map(|e| e.capacity.saturating_sub(e.held))
        .sum();
    // Slots the pool may hold with `enis` more ENIs (fewer when negative).
    let capacity = |enis: i64| {
        let slots = i64::from(held_slots + free_slots) + enis * i64::from(limits.slots_per_eni);
        u32::try_from(slots.max(0)).unwrap_or(u32::MAX) * limits.units_per_slot
    };
    let unreserved = i64::from(limits.eni_room) - i64::from(limits.reserved);
    let mut target = want
        .min(capacity(unreserved))
        .max(demand.min(capacity(limits.eni_room.into())));
    if let Some(max) = t.max {
        target = target.min(max);
    }
    target
}

/// The steps that move the node from what it holds to `target`.
pub fn plan(t: Targets, usage: &Usage, limits: Limits) -> Vec<Step> {
    let goal = target(t, usage, limits);
    let held: u32 = usage.enis.iter().map(|e| e.held).sum::<u32>() * limits.units_per_slot;
    if goal > held {
        // Pods waiting are a surge: more are likely on their way, and a new ENI takes
        // the same calls and attach whether it holds one address or all. It is created
        // full (within `max`), so the pods that come while it attaches need no other.
        let headroom = match t.max {
            _ if usage.pending == 0 => 0,
            Some(max) => max.saturating_sub(goal),
            None => u32::MAX,
        };
        grow(goal - held, headroom, usage, limits)
    } else {
        // Shrink only what has idled past the release delay, and never below the target:
        // held - goal is the excess; releasable bounds it.
        let units = (held - goal).min(usage.releasable);
        // Whole slots only (a prefix goes back as a whole).
        let units = units - units % limits.units_per_slot;
        if units == 0 {
            Vec::new()
        } else {
            vec![Step::Release { units }]
        }
    }
}

/// Steps that add `units`, filling the fullest ENIs first; new ENIs may take up to
/// `headroom` units more than asked.
fn grow(units: u32, headroom: u32, usage: &Usage, limits: Limits) -> Vec<Step> {
    let mut slots = units.div_ceil(limits.units_per_slot.max(1));
    let mut extra = headroom / limits.units_per_slot.max(1);
    let mut steps = Vec::new();
    // Fill the fullest ENIs first: it packs pods so whole ENIs can be released later.
    let mut enis: Vec<&EniFill> = usage.enis.iter().filter(|e| e.capacity > e.held).collect();
    enis.sort_by(|a, b| b.held.cmp(&a.held).then_with(|| a.eni_id.cmp(&b.eni_id)));
    for e in enis {
        if slots == 0 {
            break;
        }
        let n = slots.min(e.capacity - e.held);
        steps.push(Step::Assign {
            eni_id: e.eni_id.clone(),
            slots: n,
        });
        slots -= n;
    }
    for _ in 0..limits.eni_room {
        if slots == 0 {
            break;
        }
        let n = slots.min(limits.slots_per_eni);
        let more = (limits.slots_per_eni - n).min(extra);
        steps.push(Step::CreateEni { slots: n + more });
        slots -= n;
        extra -= more;
    }
    steps
}

/// The pool's targets in units.
pub fn targets(s: &PoolSettings) -> Targets {
    Targets {
        min: s.min_units,
        warm: s.warm_units,
        max: s.max_units,
    }
}

/// The room pool `s` has on a node of `instance` limits holding `inv`, where
/// `others_waiting` other pools have pods waiting for a unit (each may need an ENI).
pub fn limits(
    s: &PoolSettings,
    instance: &InstanceLimits,
    inv: &Inventory,
    others_waiting: u32,
) -> Limits {
    let pool_enis = inv.pool_eni_count(&s.name);
    let pool_cap = s.max_enis.unwrap_or(u32::MAX).saturating_sub(pool_enis);
    let eni_room = inv.free_slots(instance.max_enis).min(pool_cap);
    match s.mode {
        Mode::SharedIp => Limits {
            units_per_slot: if s.prefix_delegation { 16 } else { 1 },
            slots_per_eni: instance.ipv4_per_eni.saturating_sub(1),
            eni_room,
            // Addresses are not given back for another pool: a slot would come free
            // only once every address of an ENI had.
            reserved: others_waiting.min(eni_room),
        },
        Mode::Exclusive => Limits {
            units_per_slot: 1,
            slots_per_eni: 1,
            eni_room,
            reserved: others_waiting,
        },
        Mode::Trunk => Limits {
            units_per_slot: 1,
            slots_per_eni: 1,
            eni_room: instance
                .branch_enis_per_trunk
                .saturating_sub(inv.vlan_ids().len() as u32)
                .min(pool_cap),
            // Members ride on the trunk: they take no ENI slot of the instance.
            reserved: 0,
        },
    }
}

#[cfg(test)]
mod tests;
