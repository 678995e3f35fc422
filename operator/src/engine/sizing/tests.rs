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
    reserved: 0,
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
            name: "surge: a new ENI is created full only up to max",
            targets: t(0, 2, Some(14)),
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
                Step::CreateEni { slots: 5 },
            ],
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
            // The new ENI is created full: more pods are likely on their way.
            want: vec![
                Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 7,
                },
                Step::CreateEni { slots: 9 },
            ],
        },
        Row {
            name: "another pool waits: warm growth leaves its slot free",
            targets: t(0, 12, None),
            usage: Usage {
                enis: vec![eni("eni-a", 2, 9)],
                used: 2,
                ..Default::default()
            },
            limits: Limits {
                reserved: 1,
                ..M5_LARGE
            },
            want_target: 14,
            want: vec![
                Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 7,
                },
                Step::CreateEni { slots: 5 },
            ],
        },
        Row {
            name: "every slot reserved: warm fills the ENI it has, demand may still grow",
            targets: t(4, 12, None),
            usage: Usage {
                enis: vec![eni("eni-a", 2, 9)],
                used: 2,
                pending: 10,
                ..Default::default()
            },
            limits: Limits {
                eni_room: 1,
                reserved: 1,
                ..M5_LARGE
            },
            want_target: 12,
            // The new ENI is created full: more pods are likely on their way.
            want: vec![
                Step::Assign {
                    eni_id: "eni-a".into(),
                    slots: 7,
                },
                Step::CreateEni { slots: 9 },
            ],
        },
        Row {
            name: "every slot reserved and no demand: min and warm stop at the ENI held",
            targets: t(12, 4, None),
            usage: Usage {
                enis: vec![eni("eni-a", 2, 9)],
                ..Default::default()
            },
            limits: Limits {
                eni_room: 2,
                reserved: 2,
                ..M5_LARGE
            },
            want_target: 9,
            want: vec![Step::Assign {
                eni_id: "eni-a".into(),
                slots: 7,
            }],
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
                reserved: 0,
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
                reserved: 0,
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
                reserved: 0,
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
                reserved: 0,
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
            if usage.pending == 0 {
                assert_eq!(held + added, goal.max(held), "used {used} held {held}");
            } else {
                // A surge's new ENIs are created full: at most one ENI's slots over.
                assert!(
                    (goal..goal + M5_LARGE.slots_per_eni).contains(&(held + added)),
                    "used {used} held {held}: {} for {goal}",
                    held + added
                );
            }
        }
    }
}

#[test]
fn limits_from_the_instance_the_pool_and_the_inventory() {
    use std::time::Instant;

    use crate::engine::testkit::{
        at_index, inventory, m5_large, settings, shared_eni, trunk_eni, whole_eni,
    };

    let t0 = Instant::now();
    let one_eni = inventory([shared_eni("eni-a", &["10.0.1.11"], t0)]);
    let trunk = inventory([
        trunk_eni("eni-t", "p", t0),
        whole_eni("eni-m1", "10.0.1.11", Some(1), t0),
        whole_eni("eni-m2", "10.0.1.12", Some(2), t0),
    ]);
    let full = inventory([
        shared_eni("eni-a", &["10.0.1.11"], t0),
        at_index(shared_eni("eni-b", &["10.0.1.12"], t0), 2),
    ]);
    let shared = settings(Mode::SharedIp);
    let prefixed = PoolSettings {
        prefix_delegation: true,
        ..settings(Mode::SharedIp)
    };
    let capped = PoolSettings {
        max_enis: Some(1),
        ..settings(Mode::SharedIp)
    };
    let rows = [
        (
            "empty node: two ENIs besides the primary",
            &shared,
            &Inventory::default(),
            (1, 9, 2),
        ),
        ("one ENI attached", &shared, &one_eni, (1, 9, 1)),
        (
            "prefixes: 16 addresses a slot",
            &prefixed,
            &one_eni,
            (16, 9, 1),
        ),
        ("maxENIs reached", &capped, &one_eni, (1, 9, 0)),
        ("instance full", &shared, &full, (1, 9, 0)),
        (
            "exclusive: one unit an ENI",
            &settings(Mode::Exclusive),
            &one_eni,
            (1, 1, 1),
        ),
        (
            "trunk: free VLANs, the trunk not counted against maxENIs",
            &settings(Mode::Trunk),
            &trunk,
            (1, 1, 8),
        ),
    ];
    for (name, s, inv, (units_per_slot, slots_per_eni, eni_room)) in rows {
        // SharedIP keeps for others only room it has; the empty node has room.
        let reserved = match s.mode {
            Mode::Trunk => 0,
            Mode::SharedIp => eni_room.min(1),
            Mode::Exclusive => 1,
        };
        assert_eq!(
            limits(s, &m5_large(), inv, 1),
            Limits {
                units_per_slot,
                slots_per_eni,
                eni_room,
                reserved,
            },
            "{name}"
        );
    }
    assert_eq!(
        targets(&PoolSettings {
            min_units: 3,
            max_units: Some(9),
            ..shared.clone()
        }),
        Targets {
            min: 3,
            warm: 2,
            max: Some(9)
        }
    );
}
