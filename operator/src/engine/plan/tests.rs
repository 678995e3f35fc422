use std::time::Duration;

use super::*;
use crate::engine::{
    eni::EniRecord,
    inventory::{Coming, Inventory},
    settings::PoolSettings,
    testkit::{
        at_index, inventory, m5_large, pod, prefix_eni, settings, shared_eni, trunk_eni, whole_eni,
    },
};

struct Row {
    name: &'static str,
    pool: Pool,
    enis: Vec<EniRecord>,
    /// Pods holding units: `(pod, eni)`; cooling when the pod name starts with `c-`.
    used: Vec<(&'static str, &'static str)>,
    pending: u32,
    /// Other pools of the node with pods waiting.
    others_waiting: u32,
    exhausted: Vec<&'static str>,
    trunk_pool: Option<&'static str>,
    /// Seconds after the units became free.
    at: u64,
    want: Vec<Op>,
}

enum Pool {
    Active(PoolSettings),
    Draining(&'static str),
}

fn row(name: &'static str, pool: Pool, enis: Vec<EniRecord>, want: Vec<Op>) -> Row {
    Row {
        name,
        pool,
        enis,
        used: Vec::new(),
        pending: 0,
        others_waiting: 0,
        exhausted: Vec::new(),
        trunk_pool: None,
        at: 0,
        want,
    }
}

fn active(mode: Mode, f: impl FnOnce(&mut PoolSettings)) -> Pool {
    let mut s = settings(mode);
    f(&mut s);
    Pool::Active(s)
}

fn del(id: &str) -> Op {
    Op::DeleteEni { eni_id: id.into() }
}

fn assign(id: &str, slots: u32) -> Op {
    Op::Assign {
        eni_id: id.into(),
        slots,
    }
}

fn release(id: &str, units: &[&str]) -> Op {
    Op::Release {
        eni_id: id.into(),
        units: units.iter().map(|u| u.parse().expect("ip")).collect(),
    }
}

fn addrs(from: u8, n: u8) -> Vec<String> {
    (from..from + n).map(|i| format!("10.0.1.{i}")).collect()
}

fn shared(id: &str, from: u8, n: u8, t0: Instant) -> EniRecord {
    let a = addrs(from, n);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    shared_eni(id, &refs, t0)
}

/// `e` with one more free address, `10.0.1.<last>`, that came free at `since`.
fn freed_later(mut e: EniRecord, last: u8, since: Instant) -> EniRecord {
    e.add_addresses(&[Ipv4Addr::new(10, 0, 1, last)], &[], since);
    e
}

fn run(r: Row, t0: Instant) {
    let mut inv = inventory(r.enis);
    for (p, eni) in &r.used {
        let unit = inv
            .get(eni)
            .and_then(|e| e.units().find(|(_, u)| u.is_free()).map(|(a, _)| *a))
            .unwrap_or_else(|| panic!("{}: no free unit on {eni}", r.name));
        assert!(
            inv.claim(eni, unit, &pod(p), p.starts_with("c-")),
            "{}",
            r.name
        );
    }
    let exhausted: BTreeSet<String> = r.exhausted.iter().map(|s| (*s).to_owned()).collect();
    let state = match &r.pool {
        Pool::Active(s) => PoolState::Active(s),
        Pool::Draining(n) => PoolState::Draining(n),
    };
    let got = plan(&Input {
        pool: state,
        inventory: &inv,
        instance: &m5_large(),
        pending: r.pending,
        others_waiting: r.others_waiting,
        exhausted: &exhausted,
        trunk_pool: r.trunk_pool,
        now: t0 + Duration::from_secs(r.at),
    });
    assert_eq!(got, r.want, "{}", r.name);
}

fn growth_rows(t0: Instant) -> Vec<Row> {
    vec![
        row(
            "cold SharedIP node: one ENI created with its warm addresses",
            active(Mode::SharedIp, |_| {}),
            vec![],
            vec![Op::CreateEni { slots: 2 }],
        ),
        row(
            "cold Exclusive node: one ENI per warm unit",
            active(Mode::Exclusive, |_| {}),
            vec![],
            vec![Op::CreateEni { slots: 1 }, Op::CreateEni { slots: 1 }],
        ),
        Row {
            others_waiting: 1,
            ..row(
                "another pool's pods wait: warm ENIs leave it a slot",
                active(Mode::Exclusive, |_| {}),
                vec![],
                vec![Op::CreateEni { slots: 1 }],
            )
        },
        Row {
            others_waiting: 1,
            pending: 2,
            ..row(
                "another pool's pods wait: this pool's own waiting pods still take every slot",
                active(Mode::Exclusive, |_| {}),
                vec![],
                vec![Op::CreateEni { slots: 1 }, Op::CreateEni { slots: 1 }],
            )
        },
        Row {
            others_waiting: 2,
            ..row(
                "SharedIP warm addresses fill its ENI but take no reserved slot",
                active(Mode::SharedIp, |s| s.warm_units = 12),
                vec![shared("eni-a", 11, 2, t0)],
                vec![assign("eni-a", 7)],
            )
        },
        Row {
            others_waiting: 3,
            ..row(
                "a trunk's members take no instance slot",
                active(Mode::Trunk, |_| {}),
                vec![trunk_eni("eni-t", "p", t0)],
                vec![Op::CreateMember, Op::CreateMember],
            )
        },
        row(
            "cold Trunk node: the trunk first, then members",
            active(Mode::Trunk, |_| {}),
            vec![],
            vec![Op::CreateTrunk, Op::CreateMember, Op::CreateMember],
        ),
        row(
            "trunk present: members only",
            active(Mode::Trunk, |_| {}),
            vec![trunk_eni("eni-t", "p", t0)],
            vec![Op::CreateMember, Op::CreateMember],
        ),
        Row {
            used: vec![("a", "eni-a"), ("b", "eni-a")],
            ..row(
                "used addresses: the ENI grows to used + warm",
                active(Mode::SharedIp, |_| {}),
                vec![shared("eni-a", 11, 2, t0)],
                vec![assign("eni-a", 2)],
            )
        },
        Row {
            used: vec![("a", "eni-a"), ("b", "eni-a")],
            exhausted: vec!["subnet-1"],
            ..row(
                "exhausted subnet: a new ENI instead of addresses that are not there",
                active(Mode::SharedIp, |_| {}),
                vec![shared("eni-a", 11, 2, t0)],
                vec![Op::CreateEni { slots: 2 }],
            )
        },
        Row {
            pending: 10,
            ..row(
                "surge: pending pods raise demand at once; the new ENI comes full",
                active(Mode::SharedIp, |_| {}),
                vec![shared("eni-a", 11, 2, t0)],
                vec![assign("eni-a", 7), Op::CreateEni { slots: 9 }],
            )
        },
        row(
            "prefix delegation: 20 addresses are two /28 slots",
            active(Mode::SharedIp, |s| {
                s.prefix_delegation = true;
                s.warm_units = 20
            }),
            vec![],
            vec![Op::CreateEni { slots: 2 }],
        ),
        row(
            "minIPs dominates warm",
            active(Mode::SharedIp, |s| s.min_units = 12),
            vec![],
            vec![Op::CreateEni { slots: 9 }, Op::CreateEni { slots: 3 }],
        ),
        Row {
            used: vec![
                ("a", "eni-a"),
                ("b", "eni-a"),
                ("c", "eni-a"),
                ("d", "eni-a"),
            ],
            ..row(
                "maxIPs caps the target",
                active(Mode::SharedIp, |s| {
                    s.warm_units = 10;
                    s.max_units = Some(6)
                }),
                vec![shared("eni-a", 11, 4, t0)],
                vec![assign("eni-a", 2)],
            )
        },
        row(
            "maxENIs caps new ENIs: the full ENI stays alone",
            active(Mode::SharedIp, |s| {
                s.warm_units = 12;
                s.max_enis = Some(1)
            }),
            vec![shared("eni-a", 11, 9, t0)],
            vec![],
        ),
        row(
            "instance limit: both pool ENIs full, nothing to add",
            active(Mode::SharedIp, |s| s.warm_units = 20),
            vec![
                shared("eni-a", 11, 9, t0),
                at_index(shared("eni-b", 21, 9, t0), 2),
            ],
            vec![],
        ),
        row(
            "exclusive at the instance limit: two ENIs, warm 5",
            active(Mode::Exclusive, |s| s.warm_units = 5),
            vec![whole_eni("eni-a", "10.0.1.11", None, t0)],
            vec![Op::CreateEni { slots: 1 }],
        ),
        Row {
            used: vec![("c-a", "eni-a"), ("c-b", "eni-a")],
            ..row(
                "cooling (and sticky-held) units count as taken and are not released",
                active(Mode::SharedIp, |s| s.warm_units = 0),
                vec![shared("eni-a", 11, 2, t0)],
                vec![],
            )
        },
    ]
}

fn shrink_rows(t0: Instant) -> Vec<Row> {
    // Three addresses free since t0 and a fourth since t0 + 100 s, releaseDelay 60 s,
    // looked at `at` seconds after t0.
    let trickle = |name, at, want| Row {
        at,
        ..row(
            name,
            active(Mode::SharedIp, |s| {
                s.warm_units = 0;
                s.release_delay = Duration::from_secs(60)
            }),
            vec![freed_later(
                shared("eni-a", 11, 3, t0),
                14,
                t0 + Duration::from_secs(100),
            )],
            want,
        )
    };
    vec![
        Row {
            at: 30,
            ..row(
                "idle excess kept until releaseDelay passed",
                active(Mode::SharedIp, |s| {
                    s.release_delay = Duration::from_secs(60)
                }),
                vec![shared("eni-a", 11, 6, t0)],
                vec![],
            )
        },
        Row {
            at: 120,
            ..row(
                "idle excess released past releaseDelay, down to warm",
                active(Mode::SharedIp, |s| {
                    s.release_delay = Duration::from_secs(60)
                }),
                vec![shared("eni-a", 11, 6, t0)],
                vec![release(
                    "eni-a",
                    &["10.0.1.11", "10.0.1.12", "10.0.1.13", "10.0.1.14"],
                )],
            )
        },
        row(
            "releasing every address empties the ENI: it goes too",
            active(Mode::SharedIp, |s| s.warm_units = 0),
            vec![shared("eni-a", 11, 3, t0)],
            vec![
                release("eni-a", &["10.0.1.11", "10.0.1.12", "10.0.1.13"]),
                del("eni-a"),
            ],
        ),
        trickle(
            "addresses freed close together go back together: none while one freed less than releaseDelay ago",
            110,
            vec![],
        ),
        trickle(
            "unless the oldest waited twice releaseDelay: those past it go",
            125,
            vec![release("eni-a", &["10.0.1.11", "10.0.1.12", "10.0.1.13"])],
        ),
        row(
            "the excess comes from the ENIs with the most idle addresses first: one ENI emptied",
            active(Mode::SharedIp, |s| s.warm_units = 2),
            vec![
                shared("eni-a", 11, 2, t0),
                at_index(shared("eni-b", 21, 4, t0), 2),
            ],
            vec![
                release(
                    "eni-b",
                    &["10.0.1.21", "10.0.1.22", "10.0.1.23", "10.0.1.24"],
                ),
                del("eni-b"),
            ],
        ),
        row(
            "never released below minIPs",
            active(Mode::SharedIp, |s| {
                s.min_units = 8;
                s.warm_units = 0
            }),
            vec![shared("eni-a", 11, 9, t0)],
            vec![release("eni-a", &["10.0.1.11"])],
        ),
        Row {
            used: vec![("a", "eni-a")],
            others_waiting: 1,
            ..row(
                "an idle warm ENI goes when another pool's pods wait for its slot",
                active(Mode::Exclusive, |_| {}),
                vec![
                    whole_eni("eni-a", "10.0.1.11", None, t0),
                    at_index(whole_eni("eni-b", "10.0.1.12", None, t0), 2),
                ],
                vec![del("eni-b")],
            )
        },
        row(
            "whole ENIs released by deleting them",
            active(Mode::Exclusive, |s| s.warm_units = 0),
            vec![
                whole_eni("eni-a", "10.0.1.11", None, t0),
                at_index(whole_eni("eni-b", "10.0.1.12", None, t0), 2),
            ],
            vec![del("eni-a"), del("eni-b")],
        ),
        row(
            "prefixes go back whole",
            active(Mode::SharedIp, |s| {
                s.prefix_delegation = true;
                s.warm_units = 16
            }),
            vec![prefix_eni("eni-p", &["10.0.1.16/28", "10.0.1.32/28"], t0)],
            vec![release("eni-p", &["10.0.1.16"])],
        ),
        Row {
            used: vec![("a", "eni-p")],
            ..row(
                "a prefix with a pod stays",
                active(Mode::SharedIp, |s| {
                    s.prefix_delegation = true;
                    s.warm_units = 0
                }),
                vec![prefix_eni("eni-p", &["10.0.1.16/28", "10.0.1.32/28"], t0)],
                vec![release("eni-p", &["10.0.1.32"])],
            )
        },
    ]
}

/// m5.large leaves two ENI slots to pools: both taken here, one ENI with a pod on it.
fn yield_rows(t0: Instant) -> Vec<Row> {
    let full_exclusive = || {
        vec![
            at_index(whole_eni("eni-a", "10.0.1.11", None, t0), 1),
            at_index(whole_eni("eni-b", "10.0.1.12", None, t0), 2),
        ]
    };
    let full_shared = || {
        vec![
            at_index(shared("eni-a", 11, 9, t0), 1),
            at_index(shared("eni-b", 21, 3, t0), 2),
        ]
    };
    let busy = |r: Row| Row {
        used: vec![("a", "eni-a")],
        ..r
    };
    vec![
        busy(Row {
            others_waiting: 1,
            ..row(
                "full instance: an idle Exclusive ENI yields its slot to another pool's waiting pods",
                active(Mode::Exclusive, |_| {}),
                full_exclusive(),
                vec![del("eni-b")],
            )
        }),
        busy(Row {
            others_waiting: 1,
            ..row(
                "full instance: a SharedIP ENI with every address free yields too",
                active(Mode::SharedIp, |s| s.warm_units = 8),
                full_shared(),
                vec![del("eni-b")],
            )
        }),
        busy(Row {
            others_waiting: 1,
            pending: 1,
            ..row(
                "full instance: no yield while the pool's own pods wait",
                active(Mode::Exclusive, |_| {}),
                full_exclusive(),
                vec![],
            )
        }),
        busy(row(
            "full instance, nobody else waiting: warm stock stays",
            active(Mode::Exclusive, |_| {}),
            full_exclusive(),
            vec![],
        )),
        Row {
            others_waiting: 1,
            ..row(
                "a slot is free: nothing yields, the slot is left to the other pool",
                active(Mode::Exclusive, |_| {}),
                vec![at_index(whole_eni("eni-a", "10.0.1.11", None, t0), 1)],
                vec![],
            )
        },
        Row {
            others_waiting: 2,
            used: vec![("a", "eni-a"), ("b", "eni-b")],
            ..row(
                "full instance, every ENI in use: nothing to yield",
                active(Mode::Exclusive, |_| {}),
                full_exclusive(),
                vec![],
            )
        },
    ]
}

#[test]
fn a_pass_plans_on_top_of_attaching_enis() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let plan_for = |inv: &Inventory, pending: u32| {
        plan(&Input {
            pool: PoolState::Active(&s),
            inventory: inv,
            instance: &m5_large(),
            pending,
            others_waiting: 0,
            exhausted: &BTreeSet::new(),
            trunk_pool: None,
            now: t0,
        })
    };
    let mut inv = inventory([at_index(shared("eni-a", 11, 9, t0), 1)]);
    for n in 0..9 {
        assert!(inv.take(&s, &pod(&format!("p{n}"))).is_some());
    }
    // 9 pods on eni-a, 5 more waiting: one new ENI, created full.
    assert_eq!(plan_for(&inv, 5), vec![Op::CreateEni { slots: 9 }]);
    inv.expect(
        "eni-b",
        Coming {
            pool: "p".into(),
            device_index: 2,
            slots: 9,
        },
    );
    assert_eq!(
        plan_for(&inv, 5),
        vec![],
        "the attaching ENI's 9 cover the 5 waiting and the warm 2"
    );
    assert_eq!(
        plan_for(&inv, 12),
        vec![],
        "12 waiting need a third ENI, but its slot is the attaching one's"
    );
    inv.arrived("eni-b");
    assert_eq!(plan_for(&inv, 5), vec![Op::CreateEni { slots: 9 }]);
}

#[test]
fn idle_enis_yield_slots_to_pods_that_wait() {
    let t0 = Instant::now();
    for r in yield_rows(t0) {
        run(r, t0);
    }
}

#[test]
fn growth() {
    let t0 = Instant::now();
    for r in growth_rows(t0) {
        run(r, t0);
    }
}

#[test]
fn shrink() {
    let t0 = Instant::now();
    for r in shrink_rows(t0) {
        run(r, t0);
    }
}

#[test]
fn pool_state_names_its_pool() {
    let s = settings(Mode::SharedIp);
    assert_eq!(PoolState::Active(&s).name(), "p");
    assert_eq!(PoolState::Draining("gone").name(), "gone");
}

mod drain;
