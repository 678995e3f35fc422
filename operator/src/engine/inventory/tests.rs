use std::time::Duration;

use super::*;
use crate::engine::testkit::{
    inventory, pod, prefix_eni, settings, shared_eni, trunk_eni, whole_eni, with_groups,
};
use eni_crds::Mac;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

#[test]
fn members_with_former_groups_are_not_handed_out_and_no_warm_stock() {
    let t0 = Instant::now();
    let member = |id: &str, a: &str, sg: &str| with_groups(whole_eni(id, a, Some(1), t0), &[sg]);
    let mut inv = inventory([
        member("eni-old", "10.0.1.11", "sg-old"),
        member("eni-busy", "10.0.1.12", "sg-old"),
        member("eni-new", "10.0.1.13", "sg-new"),
    ]);
    let no_groups = settings(Mode::Trunk);
    let s = PoolSettings {
        security_groups: vec!["sg-new".into()],
        ..settings(Mode::Trunk)
    };
    assert!(inv.take(&no_groups, &pod("busy")).is_some());
    let t = inv.take(&s, &pod("a")).expect("a unit with the new group");
    assert_eq!(t.eni_id, "eni-new");
    assert_eq!(inv.take(&s, &pod("b")), None, "old-group members stay out");
    let u = inv.usage(&s, 1, 0, t0);
    assert_eq!(u.used, 2);
    assert_eq!(u.enis.len(), 1, "stale members are no warm stock");
    assert_eq!(u.releasable, 0, "nor releasable stock (they drain)");
}

#[test]
fn take_is_unique_idempotent_and_packs() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let mut inv = inventory([
        shared_eni("eni-a", &["10.0.1.11", "10.0.1.12"], t0),
        shared_eni("eni-b", &["10.0.1.21", "10.0.1.22"], t0),
    ]);
    let a = inv.take(&s, &pod("a")).expect("a");
    assert_eq!(inv.take(&s, &pod("a")), Some(a.clone()), "idempotent");
    let b = inv.take(&s, &pod("b")).expect("b");
    assert_eq!(a.eni_id, b.eni_id, "packed onto the busier ENI");
    let c = inv.take(&s, &pod("c")).expect("c");
    let d = inv.take(&s, &pod("d")).expect("d");
    let all: BTreeSet<_> = [&a, &b, &c, &d].iter().map(|t| t.address).collect();
    assert_eq!(all.len(), 4, "no address handed out twice");
    assert_eq!(inv.take(&s, &pod("e")), None);
    let other = PoolSettings {
        name: "other-pool".into(),
        ..s.clone()
    };
    assert_eq!(inv.take(&other, &pod("f")), None);
}

#[test]
fn enis_that_no_longer_fit_are_not_handed_out() {
    let t0 = Instant::now();
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11"], t0)]);
    let moved = PoolSettings {
        subnet_ids: vec!["subnet-2".into()],
        ..settings(Mode::SharedIp)
    };
    assert_eq!(
        inv.take(&moved, &pod("a")),
        None,
        "subnet no longer the pool's"
    );
    assert_eq!(
        inv.take(&settings(Mode::Exclusive), &pod("a")),
        None,
        "mode changed"
    );
    let by_id = PoolSettings {
        subnet_ids: vec!["subnet-1".into()],
        ..settings(Mode::SharedIp)
    };
    assert!(inv.take(&by_id, &pod("a")).is_some(), "selected by id");
}

#[test]
fn cooldown_cycle_and_usage() {
    let t0 = Instant::now();
    let s = PoolSettings {
        release_delay: Duration::from_secs(60),
        ..settings(Mode::SharedIp)
    };
    let mut inv = inventory([shared_eni(
        "eni-a",
        &["10.0.1.11", "10.0.1.12", "10.0.1.13"],
        t0,
    )]);
    let a = inv.take(&s, &pod("a")).expect("a");
    inv.cool("uid-a");
    let later = t0 + Duration::from_secs(120);
    let u = inv.usage(&s, 9, 1, later);
    assert_eq!((u.used, u.cooling, u.pending, u.releasable), (0, 1, 1, 2));
    assert_eq!(
        u.enis,
        vec![EniFill {
            eni_id: "eni-a".into(),
            held: 3,
            capacity: 9
        }]
    );
    // A cooling unit is not handed out and not released.
    let b = inv.take(&s, &pod("b")).expect("b");
    assert_ne!(a.address, b.address);
    let rel = crate::engine::release::pick_release(&inv, &s, 5, later);
    assert!(
        rel.iter()
            .all(|t| t.address != a.address && t.address != b.address)
    );
    assert_eq!(rel.len(), 1);
    inv.free("uid-a", later);
    assert!(matches!(
        inv.get("eni-a").and_then(|e| e.unit(a.address)),
        Some(Unit::Free { .. })
    ));
}

#[test]
fn claim_refuses_a_unit_held_by_another_pod() {
    let t0 = Instant::now();
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11"], t0)]);
    let a = ip("10.0.1.11");
    assert!(inv.claim("eni-a", a, &pod("a"), false));
    assert!(
        inv.claim("eni-a", a, &pod("a"), true),
        "same pod may move to cooling"
    );
    assert!(!inv.claim("eni-a", a, &pod("b"), false));
    assert!(!inv.claim("eni-x", a, &pod("b"), false));
}

#[test]
fn hand_over_moves_only_the_predecessors_unit() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11", "10.0.1.12"], t0)]);
    let old = pod("db-0");
    let new = PodKey {
        uid: "uid-db-0-new".into(),
        ..old.clone()
    };
    let t = inv.take(&s, &old).expect("take");
    inv.cool(&old.uid);
    let other = inv.take(&s, &pod("x")).expect("x");
    assert!(!inv.hand_over("eni-a", other.address, &old.uid, &new, false));
    assert!(inv.hand_over("eni-a", t.address, &old.uid, &new, false));
    assert_eq!(inv.held_by(&new.uid), Some(t.clone()));
    assert_eq!(inv.held_by(&old.uid), None);
    // The predecessor's late release frees nothing of its successor's.
    inv.free(&old.uid, t0);
    assert_eq!(inv.held_by(&new.uid), Some(t.clone()));
    // Undone: back to cooling for the predecessor.
    assert!(inv.hand_over("eni-a", t.address, &new.uid, &old, true));
    assert!(
        matches!(inv.get("eni-a").and_then(|e| e.unit(t.address)), Some(Unit::Cooling(p)) if *p == old)
    );
    // A unit already back in the pool is not handed over.
    inv.free(&old.uid, t0);
    assert!(!inv.hand_over("eni-a", t.address, &old.uid, &new, false));
}

#[test]
fn take_out_keeps_units_in_use_and_whole_prefixes() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11", "10.0.1.12"], t0)]);
    let used = inv.take(&s, &pod("a")).expect("a");
    let out = inv.take_out("eni-a", &[ip("10.0.1.11"), ip("10.0.1.12")]);
    assert_eq!(out.ips.len(), 1, "the unit in use stays");
    assert!(!out.ips.contains(&used.address));
    assert!(
        !inv.take_out_all("eni-a"),
        "a pod holds a unit: the ENI stays"
    );
    assert_eq!(inv.take(&s, &pod("b")), None, "taken out: nobody gets it");

    let mut inv = inventory([prefix_eni("eni-p", &["10.0.1.16/28", "10.0.1.32/28"], t0)]);
    let t = inv.take(&s, &pod("a")).expect("a");
    let out = inv.take_out("eni-p", &[ip("10.0.1.16"), ip("10.0.1.32")]);
    assert_eq!(out.prefixes.len(), 1, "only the prefix without a pod goes");
    assert!(!out.prefixes[0].contains(&t.address));
    assert_eq!(inv.get("eni-p").map(|e| e.prefixes().len()), Some(1));
    assert_eq!(inv.get("eni-p").map(EniRecord::held_slots), Some(1));
    inv.free(&pod("a").uid, t0);
    assert!(inv.take_out_all("eni-p"));
    assert_eq!(inv.get("eni-p").map(|e| e.units().count()), Some(0));
}

#[test]
fn reconcile_makes_units_what_the_cloud_holds() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let ips = |v: &[&str]| v.iter().map(|a| ip(a)).collect::<Vec<_>>();
    // (units known, units held by pods, cloud's addresses) -> (adopted, dropped, missing)
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        usize,
        usize,
        &'a [&'a str],
    );
    let cases: [Case; 5] = [
        (&["10.0.1.11"], &[], &["10.0.1.11"], 0, 0, &[]),
        (&["10.0.1.11"], &[], &["10.0.1.11", "10.0.1.12"], 1, 0, &[]),
        (&["10.0.1.11", "10.0.1.12"], &[], &["10.0.1.11"], 0, 1, &[]),
        (
            &["10.0.1.11", "10.0.1.12"],
            &["10.0.1.12"],
            &["10.0.1.13"],
            1,
            1,
            &["10.0.1.12"],
        ),
        (&["10.0.1.11"], &["10.0.1.11"], &[], 0, 0, &["10.0.1.11"]),
    ];
    for (known, held, cloud, adopted, dropped, missing) in cases {
        let mut inv = inventory([shared_eni("eni-a", known, t0)]);
        for a in held {
            assert!(inv.claim("eni-a", ip(a), &pod(a), false));
        }
        let drift = inv.reconcile_addresses("eni-a", &ips(cloud), &[], t0);
        let want = AddressDrift {
            adopted,
            dropped,
            missing: TakenOut {
                ips: ips(missing),
                prefixes: vec![],
            },
        };
        assert_eq!(drift, want, "{known:?} held {held:?}, cloud {cloud:?}");
        let units: BTreeSet<Ipv4Addr> = inv
            .get("eni-a")
            .map(|e| e.units().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        let expect: BTreeSet<Ipv4Addr> = ips(cloud).into_iter().chain(ips(held)).collect();
        assert_eq!(
            units, expect,
            "units: the cloud's, and those pods still hold"
        );
        for a in held {
            assert!(
                inv.get("eni-a")
                    .and_then(|e| e.unit(ip(a)))
                    .is_some_and(|u| !u.is_free()),
                "{a} stays its pod's"
            );
        }
        let some_free = cloud.iter().any(|a| !held.contains(a));
        assert_eq!(
            inv.take(&s, &pod("new")).is_some(),
            some_free,
            "a free unit is handed out"
        );
    }

    // Prefixes: one gone from the cloud while a pod holds an address of it, one gone
    // and free, one new.
    let net = |p: &str| p.parse::<Ipv4Net>().expect("prefix");
    let mut inv = inventory([prefix_eni("eni-p", &["10.0.1.16/28", "10.0.1.32/28"], t0)]);
    assert!(inv.claim("eni-p", ip("10.0.1.17"), &pod("a"), false));
    let drift = inv.reconcile_addresses("eni-p", &[], &[net("10.0.1.48/28")], t0);
    assert_eq!(
        drift,
        AddressDrift {
            adopted: 1,
            dropped: 1,
            missing: TakenOut {
                ips: vec![],
                prefixes: vec![net("10.0.1.16/28")],
            },
        }
    );
    assert_eq!(
        inv.get("eni-p").map(|e| e.prefixes().to_vec()),
        Some(vec![net("10.0.1.16/28"), net("10.0.1.48/28")])
    );
}

#[test]
fn an_unsure_eni_is_read_back_once_its_last_change_settled() {
    let t0 = Instant::now();
    let settle = Duration::from_secs(5);
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut inv = inventory([
        shared_eni("eni-a", &["10.0.1.11"], t0),
        shared_eni("eni-b", &["10.0.1.21"], t0),
    ]);
    assert!(inv.unsure_settled("p", settle, at(60)).is_empty());
    inv.mark_unsure("eni-a", at(1));
    inv.mark_unsure("eni-gone", at(1));
    assert!(inv.unsure_settled("p", settle, at(5)).is_empty(), "not yet");
    assert_eq!(inv.unsure_settled("p", settle, at(6)), ["eni-a"]);
    assert!(
        inv.unsure_settled("other", settle, at(6)).is_empty(),
        "another pool's"
    );
    inv.add_addresses("eni-a", &[ip("10.0.1.12")], &[], at(4));
    inv.changed("eni-b", at(4));
    assert!(
        inv.unsure_settled("p", settle, at(6)).is_empty(),
        "a later change of its addresses must show too"
    );
    assert_eq!(inv.unsure_settled("p", settle, at(9)), ["eni-a"]);
    inv.reconcile_addresses("eni-a", &[ip("10.0.1.11")], &[], at(9));
    assert!(
        inv.unsure_settled("p", settle, at(60)).is_empty(),
        "read back"
    );
    inv.mark_unsure("eni-b", at(10));
    inv.remove("eni-b");
    assert!(
        inv.unsure_settled("p", settle, at(60)).is_empty(),
        "removed"
    );
}

#[test]
fn counts_and_pools() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let mut inv = inventory([
        shared_eni("eni-a", &["10.0.1.11", "10.0.1.12", "10.0.1.13"], t0),
        trunk_eni("eni-t", "q", t0),
    ]);
    inv.take(&s, &pod("a"));
    inv.take(&s, &pod("b"));
    inv.cool("uid-b");
    assert_eq!(
        inv.counts("p"),
        PoolCounts {
            enis: 1,
            total: 3,
            used: 1,
            warm: 1,
            cooling: 1
        }
    );
    assert_eq!(inv.counts("q").enis, 1);
    assert_eq!(
        inv.pools(),
        BTreeSet::from(["p".to_owned(), "q".to_owned()])
    );
    inv.set_pool("eni-t", "p");
    assert_eq!(inv.counts("p").enis, 2);
}

#[test]
fn index_allocation() {
    assert_eq!(free_device_index(&BTreeSet::from([0, 1, 3]), 4), Some(2));
    assert_eq!(free_device_index(&BTreeSet::from([0, 1, 2]), 3), None);
    assert_eq!(
        free_device_indexes(&BTreeSet::from([0, 2]), 8, 3),
        vec![1, 3, 4]
    );
    assert_eq!(
        free_device_indexes(&BTreeSet::from([0, 2]), 4, 3),
        vec![1, 3]
    );
    assert!(free_device_indexes(&BTreeSet::from([0]), 1, 2).is_empty());
    assert_eq!(free_vlans(&BTreeSet::from([1, 2]), 10, 1), vec![3]);
    assert_eq!(free_vlans(&BTreeSet::from([1, 3]), 10, 3), vec![2, 4, 5]);
    assert_eq!(free_vlans(&BTreeSet::from([1, 3]), 4, 3), vec![2, 4]);
    assert!(free_vlans(&BTreeSet::from([1, 2]), 2, 1).is_empty());
    assert!(free_vlans(&BTreeSet::new(), 0, 1).is_empty());
    assert_eq!(free_vlans(&BTreeSet::new(), 9000, 1), vec![1]);
    assert_eq!(
        free_vlans(&BTreeSet::from_iter(1..4094), 9000, 2),
        vec![4094]
    );
}

#[test]
fn allocation_for_shared_and_member() {
    let t0 = Instant::now();
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11"], t0)]);
    let t = inv
        .take(&settings(Mode::SharedIp), &pod("a"))
        .expect("take");
    let a = inv
        .allocation(&t, Mode::SharedIp, Datapath::VethPolicyRouting)
        .expect("alloc");
    assert_eq!(a.prefix_length, 32);
    assert_eq!(
        (a.address, a.gateway, a.subnet_cidr),
        (
            ip("10.0.1.11"),
            ip("10.0.1.1"),
            "10.0.1.0/24".parse().expect("cidr")
        )
    );
    assert_eq!(a.eni_mac, Mac::new([0x02, 0, 0, 0, 0, 0x01]));
    assert_eq!(a.route_table, Some(1001));
    assert_eq!(a.device_index, 1);

    inv.insert(trunk_eni("eni-t", "p", t0));
    inv.insert(whole_eni("eni-m", "10.0.1.50", Some(7), t0));
    let t = Taken {
        eni_id: "eni-m".into(),
        address: ip("10.0.1.50"),
    };
    let a = inv
        .allocation(&t, Mode::Trunk, Datapath::VethPolicyRouting)
        .expect("alloc");
    assert_eq!(
        (a.vlan_id, a.trunk_mac, a.device_index),
        (Some(7), Some(Mac::new([0x02, 0, 0, 0, 0, 0xaa])), 2)
    );
    assert_eq!(a.prefix_length, 24);
    assert_eq!(a.route_table, None);
    assert_eq!(a.datapath, None);
}

#[test]
fn an_address_a_pod_holds_but_the_cloud_lacks_stays_the_pods_and_is_checked() {
    let t0 = Instant::now();
    let s = settings(Mode::SharedIp);
    let mut inv = inventory([shared_eni("eni-a", &["10.0.1.11"], t0)]);
    let gone = ip("10.0.1.12");
    assert!(inv.claim_missing("eni-a", gone, &pod("a"), false, t0));
    assert_eq!(
        inv.get("eni-a").and_then(|e| e.unit(gone)),
        Some(&Unit::Used(pod("a"))),
        "the pod's, so nobody else gets it"
    );
    assert_eq!(
        inv.unsure_settled("p", Duration::ZERO, t0),
        vec!["eni-a".to_owned()],
        "read back, where it is assigned again"
    );
    let b = inv.take(&s, &pod("b")).expect("the other unit");
    assert_ne!(b.address, gone);
    assert!(
        !inv.claim_missing("eni-a", ip("10.0.1.11"), &pod("c"), false, t0),
        "an address the ENI holds is claimed the usual way"
    );
    assert!(
        !inv.claim_missing("eni-a", ip("10.0.2.5"), &pod("c"), false, t0),
        "outside the ENI's subnet"
    );
    assert!(!inv.claim_missing("eni-x", gone, &pod("c"), false, t0));
}
