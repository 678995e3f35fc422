//! Warm-pool sizing: from a pool's targets, the node's limits and its current use, what
//! the node should hold, computed in one step, and the cloud steps to get there.
//!
//! Units are what a pod takes: addresses in SharedIP (a /28 prefix is one slot of 16
//! addresses), ENIs in Exclusive, member ENIs in Trunk. Pure: no clock, no I/O.

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
pub fn target(t: Targets, usage: &Usage, limits: Limits) -> u32 {
    let demand = usage.used + usage.cooling + usage.pending;
    let want = (demand + t.warm).max(t.min);
    let held_slots: u32 = usage.enis.iter().map(|e| e.held).sum();
    let free_slots: u32 = usage
        .enis
        .iter()
        .map(|e| e.capacity.saturating_sub(e.held))
        .sum();
    let room_slots = free_slots + limits.eni_room * limits.slots_per_eni;
    let capacity = (held_slots + room_slots) * limits.units_per_slot;
    let mut target = want.min(capacity);
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
        grow(goal - held, usage, limits)
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

fn grow(units: u32, usage: &Usage, limits: Limits) -> Vec<Step> {
    let mut slots = units.div_ceil(limits.units_per_slot.max(1));
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
        steps.push(Step::CreateEni { slots: n });
        slots -= n;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni(id: &str, held: u32, capacity: u32) -> EniFill {
        EniFill {
            eni_id: id.into(),
            held,
            capacity,
        }
    }

    /// m5.large: 3 ENIs of 10 addresses; the primary ENI is the node's, so 2 ENIs of 9
    /// secondary addresses are the pool's.
    const M5_LARGE: Limits = Limits {
        units_per_slot: 1,
        slots_per_eni: 9,
        eni_room: 2,
    };

    #[test]
    fn table() {
        struct Row {
            name: &'static str,
            targets: Targets,
            usage: Usage,
            limits: Limits,
            want_target: u32,
            want: Vec<Step>,
        }
        let t = |min, warm, max| Targets { min, warm, max };
        let rows = vec![
            Row {
                name: "cold node: one ENI created with its warm addresses in the same call",
                targets: t(0, 4, None),
                usage: Usage::default(),
                limits: M5_LARGE,
                want_target: 4,
                want: vec![Step::CreateEni { slots: 4 }],
            },
            Row {
                name: "minIPs dominates warm",
                targets: t(12, 2, None),
                usage: Usage::default(),
                limits: M5_LARGE,
                want_target: 12,
                want: vec![Step::CreateEni { slots: 9 }, Step::CreateEni { slots: 3 }],
            },
            Row {
                name: "existing ENI filled before a new one",
                targets: t(0, 4, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 6, 9)],
                    used: 5,
                    ..Default::default()
                },
                limits: Limits {
                    eni_room: 1,
                    ..M5_LARGE
                },
                want_target: 9,
                want: vec![Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 3,
                }],
            },
            Row {
                name: "surge: 10 pending pods raise demand at once, not one batch per tick",
                targets: t(0, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 2, 9)],
                    pending: 10,
                    ..Default::default()
                },
                limits: Limits {
                    eni_room: 1,
                    ..M5_LARGE
                },
                want_target: 12,
                want: vec![
                    Step::Assign {
                        eni_id: "eni-a".into(),
                        slots: 7,
                    },
                    Step::CreateEni { slots: 3 },
                ],
            },
            Row {
                name: "maxIPs caps the target",
                targets: t(0, 10, Some(6)),
                usage: Usage {
                    enis: vec![eni("eni-a", 4, 9)],
                    used: 4,
                    ..Default::default()
                },
                limits: M5_LARGE,
                want_target: 6,
                want: vec![Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 2,
                }],
            },
            Row {
                name: "instance limits cap the target: no room, no step",
                targets: t(0, 5, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 9, 9), eni("eni-b", 9, 9)],
                    used: 18,
                    ..Default::default()
                },
                limits: Limits {
                    eni_room: 0,
                    ..M5_LARGE
                },
                want_target: 18,
                want: vec![],
            },
            Row {
                name: "cooling addresses count as taken",
                targets: t(0, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 4, 9)],
                    used: 2,
                    cooling: 2,
                    ..Default::default()
                },
                limits: M5_LARGE,
                want_target: 6,
                want: vec![Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 2,
                }],
            },
            Row {
                name: "excess released only once idle past the delay",
                targets: t(0, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 9, 9)],
                    used: 2,
                    releasable: 3,
                    ..Default::default()
                },
                limits: M5_LARGE,
                want_target: 4,
                want: vec![Step::Release { units: 3 }],
            },
            Row {
                name: "never released below the target",
                targets: t(8, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 9, 9)],
                    used: 0,
                    releasable: 9,
                    ..Default::default()
                },
                limits: M5_LARGE,
                want_target: 8,
                want: vec![Step::Release { units: 1 }],
            },
            Row {
                name: "nothing idle long enough: nothing released",
                targets: t(0, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 9, 9)],
                    used: 2,
                    releasable: 0,
                    ..Default::default()
                },
                limits: M5_LARGE,
                want_target: 4,
                want: vec![],
            },
            Row {
                name: "prefix mode: 20 addresses are two /28 slots on one ENI",
                targets: t(0, 20, None),
                usage: Usage::default(),
                limits: Limits {
                    units_per_slot: 16,
                    slots_per_eni: 9,
                    eni_room: 2,
                },
                want_target: 20,
                want: vec![Step::CreateEni { slots: 2 }],
            },
            Row {
                name: "prefix mode releases whole prefixes only",
                targets: t(0, 2, None),
                usage: Usage {
                    enis: vec![eni("eni-a", 3, 9)],
                    used: 10,
                    releasable: 30,
                    ..Default::default()
                },
                limits: Limits {
                    units_per_slot: 16,
                    slots_per_eni: 9,
                    eni_room: 1,
                },
                want_target: 12,
                want: vec![Step::Release { units: 16 }],
            },
            Row {
                name: "exclusive: warm ENIs above used, capped by the instance",
                targets: t(0, 1, Some(3)),
                usage: Usage {
                    enis: vec![eni("eni-a", 1, 1), eni("eni-b", 1, 1)],
                    used: 2,
                    pending: 3,
                    ..Default::default()
                },
                limits: Limits {
                    units_per_slot: 1,
                    slots_per_eni: 1,
                    eni_room: 2,
                },
                want_target: 3,
                want: vec![Step::CreateEni { slots: 1 }],
            },
            Row {
                name: "trunk: members for pending pods plus warm",
                targets: t(0, 2, None),
                usage: Usage {
                    used: 0,
                    pending: 3,
                    ..Default::default()
                },
                limits: Limits {
                    units_per_slot: 1,
                    slots_per_eni: 1,
                    eni_room: 10,
                },
                want_target: 5,
                want: vec![Step::CreateEni { slots: 1 }; 5],
            },
        ];
        for row in rows {
            assert_eq!(
                target(row.targets, &row.usage, row.limits),
                row.want_target,
                "{}",
                row.name
            );
            assert_eq!(
                plan(row.targets, &row.usage, row.limits),
                row.want,
                "{}",
                row.name
            );
        }
    }

    #[test]
    fn plan_reaches_target_in_one_step() {
        // Whatever the start, applying the plan once lands on the target.
        for used in 0..20 {
            for held in [0, 3, 9] {
                let usage = Usage {
                    enis: vec![eni("eni-a", held, 9)],
                    used: used.min(held),
                    pending: used.saturating_sub(held),
                    ..Default::default()
                };
                let goal = target(
                    Targets {
                        min: 0,
                        warm: 3,
                        max: None,
                    },
                    &usage,
                    M5_LARGE,
                );
                let added: u32 = plan(
                    Targets {
                        min: 0,
                        warm: 3,
                        max: None,
                    },
                    &usage,
                    M5_LARGE,
                )
                .iter()
                .map(|s| match s {
                    Step::Assign { slots, .. } | Step::CreateEni { slots } => *slots,
                    Step::Release { .. } => 0,
                })
                .sum();
                assert_eq!(held + added, goal.max(held), "used {used} held {held}");
            }
        }
    }
}
