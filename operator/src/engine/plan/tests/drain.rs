//! Draining: pool changes (mode, subnets, security groups) and deleted pools.

use std::time::{Duration, Instant};

use eni_crds::Mode;

use super::*;
use crate::engine::{
    settings::PoolSettings,
    testkit::{at_index, in_pool, in_subnet, prefix_eni, trunk_eni, whole_eni, with_groups},
};

fn change_rows(t0: Instant) -> Vec<Row> {
    let sg = |s: &mut PoolSettings| s.security_groups = vec!["sg-new".into()];
    vec![
        Row {
            used: vec![("busy", "eni-busy")],
            ..row(
                "stale members: the free one goes, the busy one stays (its pod counts as demand), replacements come with the new groups",
                active(Mode::Trunk, sg),
                vec![
                    trunk_eni("eni-t", "p", t0),
                    with_groups(whole_eni("eni-busy", "10.0.1.12", Some(1), t0), &["sg-old"]),
                    with_groups(whole_eni("eni-old", "10.0.1.11", Some(2), t0), &["sg-old"]),
                ],
                vec![
                    del("eni-old"),
                    Op::CreateMember,
                    Op::CreateMember,
                    Op::CreateMember,
                ],
            )
        },
        row(
            "a pool without groups keeps whatever groups its ENIs have",
            active(Mode::Exclusive, |s| s.warm_units = 1),
            vec![with_groups(
                whole_eni("eni-a", "10.0.1.11", None, t0),
                &["sg-x"],
            )],
            vec![],
        ),
        Row {
            used: vec![("a", "eni-a")],
            ..row(
                "mode SharedIP to Exclusive: free addresses drain at once, an Exclusive ENI comes",
                active(Mode::Exclusive, |s| {
                    s.warm_units = 1;
                    s.release_delay = Duration::from_secs(3600)
                }),
                vec![shared("eni-a", 11, 3, t0)],
                vec![
                    release("eni-a", &["10.0.1.12", "10.0.1.13"]),
                    Op::CreateEni { slots: 1 },
                ],
            )
        },
        row(
            "subnets changed: the free ENI in the former subnet goes and its room is reused at once",
            active(Mode::SharedIp, |s| s.subnet_ids = vec!["subnet-2".into()]),
            vec![
                shared("eni-a", 11, 3, t0),
                at_index(in_subnet(shared("eni-b", 21, 3, t0), "subnet-9"), 2),
            ],
            vec![del("eni-a"), del("eni-b"), Op::CreateEni { slots: 2 }],
        ),
        row(
            "mode Trunk to SharedIP: the trunk goes once no member is left",
            active(Mode::SharedIp, |_| {}),
            vec![
                trunk_eni("eni-t", "p", t0),
                whole_eni("eni-m", "10.0.1.11", Some(1), t0),
            ],
            vec![del("eni-m"), del("eni-t"), Op::CreateEni { slots: 2 }],
        ),
    ]
}

fn drain_rows(t0: Instant) -> Vec<Row> {
    vec![
        Row {
            used: vec![("a", "eni-a")],
            ..row(
                "deleted SharedIP pool: used address stays, free ones go at once, an idle ENI goes",
                Pool::Draining("p"),
                vec![
                    shared("eni-a", 11, 3, t0),
                    at_index(shared("eni-b", 21, 2, t0), 2),
                ],
                vec![release("eni-a", &["10.0.1.12", "10.0.1.13"]), del("eni-b")],
            )
        },
        Row {
            used: vec![("a", "eni-p")],
            ..row(
                "deleted prefix pool: only prefixes without pods go",
                Pool::Draining("p"),
                vec![prefix_eni("eni-p", &["10.0.1.16/28", "10.0.1.32/28"], t0)],
                vec![release("eni-p", &["10.0.1.32"])],
            )
        },
        Row {
            used: vec![("a", "eni-a"), ("c-b", "eni-b")],
            ..row(
                "deleted Exclusive pool: used and cooling ENIs stay, the warm one goes",
                Pool::Draining("p"),
                vec![
                    whole_eni("eni-a", "10.0.1.11", None, t0),
                    at_index(whole_eni("eni-b", "10.0.1.12", None, t0), 2),
                    at_index(whole_eni("eni-c", "10.0.1.13", None, t0), 3),
                ],
                vec![del("eni-c")],
            )
        },
        Row {
            used: vec![("a", "eni-m1")],
            ..row(
                "deleted Trunk pool with a member in use: free members go, the trunk waits",
                Pool::Draining("p"),
                vec![
                    trunk_eni("eni-t", "p", t0),
                    whole_eni("eni-m1", "10.0.1.11", Some(1), t0),
                    whole_eni("eni-m2", "10.0.1.12", Some(2), t0),
                ],
                vec![del("eni-m2")],
            )
        },
        row(
            "deleted Trunk pool, members all free: members first, then the trunk",
            Pool::Draining("p"),
            vec![
                trunk_eni("eni-t", "p", t0),
                whole_eni("eni-m1", "10.0.1.11", Some(1), t0),
            ],
            vec![del("eni-m1"), del("eni-t")],
        ),
        Row {
            used: vec![("a", "eni-m1")],
            ..row(
                "deleted Trunk pool, a member of another pool on the trunk: the trunk stays",
                Pool::Draining("p"),
                vec![
                    trunk_eni("eni-t", "p", t0),
                    in_pool(whole_eni("eni-m1", "10.0.1.11", Some(1), t0), "q"),
                ],
                vec![],
            )
        },
        Row {
            trunk_pool: Some("q"),
            ..row(
                "deleted Trunk pool beside another trunk pool: the trunk passes to it",
                Pool::Draining("p"),
                vec![trunk_eni("eni-t", "p", t0)],
                vec![Op::AdoptTrunk {
                    eni_id: "eni-t".into(),
                    pool: "q".into(),
                }],
            )
        },
        row(
            "deleted pool ignores releaseDelay and targets",
            Pool::Draining("p"),
            vec![in_pool(shared("eni-a", 11, 2, t0), "p")],
            vec![del("eni-a")],
        ),
        row(
            "other pools' ENIs are not touched",
            Pool::Draining("p"),
            vec![in_pool(shared("eni-a", 11, 2, t0), "q")],
            vec![],
        ),
    ]
}

#[test]
fn pool_changes_drain_what_no_longer_fits() {
    let t0 = Instant::now();
    for r in change_rows(t0) {
        run(r, t0);
    }
}

#[test]
fn deleted_pools_drain() {
    let t0 = Instant::now();
    for r in drain_rows(t0) {
        run(r, t0);
    }
}
