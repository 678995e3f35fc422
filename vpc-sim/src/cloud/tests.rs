//! State machine tests: every refusal answers with EC2's error code, and random call
//! sequences never break the invariants.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::model::{EniStatus, InterfaceType};
use super::requests::{AssignIps, AssociateTrunk, CreateEni, RegisterInstance};
use super::{Cloud, Timing};
use crate::catalog::Catalog;
use crate::error::{CloudResult, ErrorCode};
use crate::layout::Layout;

fn cloud() -> Cloud {
    let mut c = Cloud::new(Catalog::builtin().unwrap(), &Layout::builtin().unwrap(), 1);
    c.set_timing(Timing {
        attach: Duration::ZERO,
        detach: Duration::ZERO,
    });
    c
}

fn subnet(c: &Cloud, name: &str) -> String {
    c.state()
        .subnets
        .values()
        .find(|s| s.tags.get("Name").map(String::as_str) == Some(name))
        .unwrap()
        .id
        .clone()
}

fn node(c: &mut Cloud, name: &str, itype: &str) -> String {
    c.register_instance(&RegisterInstance {
        node_name: name.into(),
        instance_type: itype.into(),
        subnet: "nodes-a".into(),
        security_groups: vec![],
        netns: None,
    })
    .unwrap()
    .instance_id
}

fn eni(c: &mut Cloud, subnet_name: &str) -> String {
    let subnet_id = subnet(c, subnet_name);
    c.create_network_interface(
        &CreateEni {
            subnet_id,
            ..Default::default()
        },
        None,
    )
    .unwrap()
    .id
}

fn trunk(c: &mut Cloud) -> String {
    let subnet_id = subnet(c, "pods-a");
    c.create_network_interface(
        &CreateEni {
            subnet_id,
            interface_type: Some(InterfaceType::Trunk),
            ..Default::default()
        },
        None,
    )
    .unwrap()
    .id
}

fn code<T: std::fmt::Debug>(r: CloudResult<T>) -> ErrorCode {
    r.unwrap_err().code
}

fn now() -> Instant {
    Instant::now()
}

fn assoc(branch: &str, trunk: &str, vlan: u32) -> AssociateTrunk {
    AssociateTrunk {
        branch_eni_id: branch.into(),
        trunk_eni_id: trunk.into(),
        vlan_id: vlan,
        gre_key: None,
    }
}

#[test]
fn attach_beyond_the_eni_limit_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large"); // 3 ENIs
    for idx in 1..3 {
        let e = eni(&mut c, "pods-a");
        c.attach_network_interface(&e, &i, idx, now()).unwrap();
    }
    let e = eni(&mut c, "pods-a");
    assert_eq!(
        code(c.attach_network_interface(&e, &i, 3, now())),
        ErrorCode::AttachmentLimitExceeded
    );
}

#[test]
fn attach_on_a_used_device_index_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let e = eni(&mut c, "pods-a");
    assert_eq!(
        code(c.attach_network_interface(&e, &i, 0, now())),
        ErrorCode::InvalidParameterValue
    );
}

#[test]
fn attach_goes_through_attaching_before_in_use() {
    let mut c = cloud();
    c.set_timing(Timing {
        attach: Duration::from_secs(2),
        detach: Duration::from_secs(1),
    });
    let i = node(&mut c, "n1", "m5.large");
    let e = eni(&mut c, "pods-a");
    let t0 = now();
    let att = c.attach_network_interface(&e, &i, 1, t0).unwrap();
    assert_eq!(c.state().enis[&e].status(), EniStatus::Attaching);
    assert!(
        c.dataplane_view().nodes[0]
            .enis
            .iter()
            .all(|p| p.eni_id != e)
    );
    assert!(!c.settle(t0 + Duration::from_millis(1999)));
    assert!(c.settle(t0 + Duration::from_secs(2)));
    assert_eq!(c.state().enis[&e].status(), EniStatus::InUse);
    assert!(
        c.dataplane_view().nodes[0]
            .enis
            .iter()
            .any(|p| p.eni_id == e)
    );
    c.detach_network_interface(&att, t0 + Duration::from_secs(3))
        .unwrap();
    assert_eq!(c.state().enis[&e].status(), EniStatus::Detaching);
    assert_eq!(
        code(c.delete_network_interface(&e, t0 + Duration::from_secs(3))),
        ErrorCode::InvalidNetworkInterfaceInUse
    );
    c.delete_network_interface(&e, t0 + Duration::from_secs(4))
        .unwrap();
}

#[test]
fn an_assign_repeated_with_its_client_token_assigns_once() {
    let mut c = cloud();
    let e = eni(&mut c, "pods-a");
    let two = AssignIps {
        count: 2,
        ..Default::default()
    };
    let first = c.assign_private_ips_once(&e, &two, Some("t-1")).unwrap();
    let again = c.assign_private_ips_once(&e, &two, Some("t-1")).unwrap();
    assert_eq!(first, again);
    assert_eq!(c.state().enis[&e].secondary_ips, first.ips);
    let three = AssignIps {
        count: 3,
        ..Default::default()
    };
    assert_eq!(
        code(c.assign_private_ips_once(&e, &three, Some("t-1"))),
        ErrorCode::IdempotentParameterMismatch
    );
    c.assign_private_ips_once(&e, &two, None).unwrap();
    assert_eq!(c.state().enis[&e].secondary_ips.len(), 4);
}

#[test]
fn more_addresses_than_an_eni_may_hold_are_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "t3.medium"); // 6 per ENI
    let primary = c.state().instances[&i].primary_eni.clone();
    let ok = AssignIps {
        count: 5,
        ..Default::default()
    };
    c.assign_private_ips(&primary, &ok).unwrap();
    let one_more = AssignIps {
        count: 1,
        ..Default::default()
    };
    assert_eq!(
        code(c.assign_private_ips(&primary, &one_more)),
        ErrorCode::PrivateIpAddressLimitExceeded
    );
    let prefix = AssignIps {
        prefix_count: 1,
        ..Default::default()
    };
    assert_eq!(
        code(c.assign_private_ips(&primary, &prefix)),
        ErrorCode::PrivateIpAddressLimitExceeded
    );
}

#[test]
fn attaching_an_eni_with_too_many_addresses_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "t3.medium");
    let subnet_id = subnet(&c, "pods-a");
    let big = c
        .create_network_interface(
            &CreateEni {
                subnet_id,
                secondary_count: 9,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        code(c.attach_network_interface(&big.id, &i, 1, now())),
        ErrorCode::PrivateIpAddressLimitExceeded
    );
}

#[test]
fn deleting_an_attached_eni_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let e = eni(&mut c, "pods-a");
    c.attach_network_interface(&e, &i, 1, now()).unwrap();
    assert_eq!(
        code(c.delete_network_interface(&e, now())),
        ErrorCode::InvalidNetworkInterfaceInUse
    );
}

#[test]
fn detaching_the_primary_eni_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let primary = c.state().instances[&i].primary_eni.clone();
    let att = c.state().enis[&primary].attachment.clone().unwrap().id;
    assert_eq!(
        code(c.detach_network_interface(&att, now())),
        ErrorCode::OperationNotPermitted
    );
}

#[test]
fn an_address_in_use_is_refused_without_allow_reassignment() {
    let mut c = cloud();
    let a = eni(&mut c, "pods-a");
    let b = eni(&mut c, "pods-a");
    let got = c
        .assign_private_ips(
            &a,
            &AssignIps {
                count: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let taken = got.ips[0];
    let req = AssignIps {
        ips: vec![taken],
        ..Default::default()
    };
    assert_eq!(
        code(c.assign_private_ips(&b, &req)),
        ErrorCode::InvalidIpAddressInUse
    );
    // With AllowReassignment the secondary moves.
    let moved = AssignIps {
        ips: vec![taken],
        allow_reassignment: true,
        ..Default::default()
    };
    c.assign_private_ips(&b, &moved).unwrap();
    assert!(!c.state().enis[&a].secondary_ips.contains(&taken));
    assert!(c.state().enis[&b].secondary_ips.contains(&taken));
    // A primary address is never taken over.
    let primary = AssignIps {
        ips: vec![c.state().enis[&a].primary_ip],
        allow_reassignment: true,
        ..Default::default()
    };
    assert_eq!(
        code(c.assign_private_ips(&b, &primary)),
        ErrorCode::InvalidIpAddressInUse
    );
    assert!(c.invariant_violations().is_empty());
}

#[test]
fn a_member_without_a_trunk_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let not_trunk = eni(&mut c, "pods-a");
    c.attach_network_interface(&not_trunk, &i, 1, now())
        .unwrap();
    let branch = eni(&mut c, "pods-a");
    assert_eq!(
        code(c.associate_trunk_interface(&assoc(&branch, &not_trunk, 10), None, now())),
        ErrorCode::InvalidParameterValue
    );
}

#[test]
fn a_vlan_id_in_use_on_the_trunk_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let t = trunk(&mut c);
    c.attach_network_interface(&t, &i, 1, now()).unwrap();
    let b1 = eni(&mut c, "pods-a");
    let b2 = eni(&mut c, "pods-a");
    c.associate_trunk_interface(&assoc(&b1, &t, 10), None, now())
        .unwrap();
    assert_eq!(
        code(c.associate_trunk_interface(&assoc(&b2, &t, 10), None, now())),
        ErrorCode::InvalidParameterValue
    );
    let view = c.dataplane_view();
    assert!(view.nodes[0].enis.iter().any(|p| p.eni_id == b1
        && matches!(&p.kind, crate::dataplane_view::EniKind::Member { vlan_id: 10, trunk_eni_id } if *trunk_eni_id == t)));
}

#[test]
fn members_beyond_the_trunk_limit_are_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large"); // 9 branches
    let t = trunk(&mut c);
    c.attach_network_interface(&t, &i, 1, now()).unwrap();
    for vlan in 1..=9 {
        let b = eni(&mut c, "pods-a");
        c.associate_trunk_interface(&assoc(&b, &t, vlan), None, now())
            .unwrap();
    }
    let b = eni(&mut c, "pods-a");
    assert_eq!(
        code(c.associate_trunk_interface(&assoc(&b, &t, 10), None, now())),
        ErrorCode::AttachmentLimitExceeded
    );
    // A trunk with members neither detaches nor deletes; its members do not delete.
    let att = c.state().enis[&t].attachment.clone().unwrap().id;
    assert_eq!(
        code(c.detach_network_interface(&att, now())),
        ErrorCode::OperationNotPermitted
    );
    let member = c
        .state()
        .trunk_associations
        .values()
        .next()
        .unwrap()
        .branch_eni_id
        .clone();
    assert_eq!(
        code(c.delete_network_interface(&member, now())),
        ErrorCode::InvalidNetworkInterfaceInUse
    );
}

#[test]
fn a_trunk_on_a_type_without_trunking_is_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "t3.medium");
    let t = trunk(&mut c);
    assert_eq!(
        code(c.attach_network_interface(&t, &i, 1, now())),
        ErrorCode::UnsupportedOperation
    );
}

#[test]
fn associating_with_an_unattached_trunk_is_refused() {
    let mut c = cloud();
    let t = trunk(&mut c);
    let b = eni(&mut c, "pods-a");
    assert_eq!(
        code(c.associate_trunk_interface(&assoc(&b, &t, 5), None, now())),
        ErrorCode::IncorrectState
    );
}

#[test]
fn unknown_ids_are_refused() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let e = eni(&mut c, "pods-a");
    let missing = "eni-0123456789abcdef0";
    assert_eq!(
        code(c.delete_network_interface(missing, now())),
        ErrorCode::InvalidNetworkInterfaceIdNotFound
    );
    assert_eq!(
        code(c.attach_network_interface(&e, "i-0123456789abcdef0", 1, now())),
        ErrorCode::InvalidInstanceIdNotFound
    );
    assert_eq!(
        code(c.attach_network_interface(missing, &i, 1, now())),
        ErrorCode::InvalidNetworkInterfaceIdNotFound
    );
    assert_eq!(
        code(c.detach_network_interface("eni-attach-0123456789abcdef0", now())),
        ErrorCode::InvalidAttachmentIdNotFound
    );
    assert_eq!(
        code(c.disassociate_trunk_interface("trunk-assoc-0123456789abcdef0", None)),
        ErrorCode::InvalidAssociationIdNotFound
    );
    let bad_subnet = CreateEni {
        subnet_id: "subnet-0123456789abcdef0".into(),
        ..Default::default()
    };
    assert_eq!(
        code(c.create_network_interface(&bad_subnet, None)),
        ErrorCode::InvalidSubnetIdNotFound
    );
    assert_eq!(
        code(c.set_security_groups(&e, &["sg-0123456789abcdef0".into()])),
        ErrorCode::InvalidGroupNotFound
    );
    let bad_group = CreateEni {
        subnet_id: subnet(&c, "pods-a"),
        groups: vec!["sg-0123456789abcdef0".into()],
        ..Default::default()
    };
    assert_eq!(
        code(c.create_network_interface(&bad_group, None)),
        ErrorCode::InvalidGroupNotFound
    );
    assert_eq!(
        code(c.create_tags(&["eni-0123456789abcdef0".into()], &Default::default())),
        ErrorCode::InvalidNetworkInterfaceIdNotFound
    );
}

#[test]
fn subnet_exhaustion_is_refused() {
    let mut c = cloud();
    let tiny = subnet(&c, "tiny-a");
    let req = CreateEni {
        subnet_id: tiny.clone(),
        secondary_count: 10,
        ..Default::default()
    };
    c.create_network_interface(&req, None).unwrap(); // all 11 usable addresses
    assert_eq!(c.state().subnets[&tiny].available_count(), 0);
    let one = CreateEni {
        subnet_id: tiny,
        ..Default::default()
    };
    assert_eq!(
        code(c.create_network_interface(&one, None)),
        ErrorCode::InsufficientFreeAddressesInSubnet
    );
}

#[test]
fn prefix_exhaustion_is_refused() {
    let mut c = cloud();
    let tiny = subnet(&c, "tiny-a");
    let req = CreateEni {
        subnet_id: tiny,
        prefix_count: 1,
        ..Default::default()
    };
    assert_eq!(
        code(c.create_network_interface(&req, None)),
        ErrorCode::InsufficientCidrBlocks
    );
}

#[test]
fn explicit_reserved_or_foreign_addresses_are_refused() {
    let mut c = cloud();
    let pods = subnet(&c, "pods-a");
    for ip in ["10.0.1.1", "10.0.1.255", "10.0.2.10"] {
        let req = CreateEni {
            subnet_id: pods.clone(),
            primary_ip: Some(ip.parse::<Ipv4Addr>().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            code(c.create_network_interface(&req, None)),
            ErrorCode::InvalidParameterValue,
            "{ip}"
        );
    }
}

#[test]
fn client_token_returns_the_first_answer_or_refuses_other_parameters() {
    let mut c = cloud();
    let req = CreateEni {
        subnet_id: subnet(&c, "pods-a"),
        secondary_count: 2,
        ..Default::default()
    };
    let first = c.create_network_interface(&req, Some("tok-1")).unwrap();
    let again = c.create_network_interface(&req, Some("tok-1")).unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(c.state().enis.len(), 1);
    let other = CreateEni {
        secondary_count: 3,
        ..req
    };
    assert_eq!(
        code(c.create_network_interface(&other, Some("tok-1"))),
        ErrorCode::IdempotentParameterMismatch
    );
}

#[test]
fn terminating_an_instance_frees_its_primary_and_detaches_the_rest() {
    let mut c = cloud();
    let i = node(&mut c, "n1", "m5.large");
    let e = eni(&mut c, "pods-a");
    c.attach_network_interface(&e, &i, 1, now()).unwrap();
    c.terminate_instance(&i).unwrap();
    assert_eq!(c.state().enis.len(), 1);
    assert_eq!(c.state().enis[&e].status(), EniStatus::Available);
    assert!(c.invariant_violations().is_empty());
}

#[test]
fn unassign_refuses_addresses_the_eni_does_not_hold() {
    let mut c = cloud();
    let a = eni(&mut c, "pods-a");
    let primary = c.state().enis[&a].primary_ip;
    assert_eq!(
        code(c.unassign_private_ips(&a, &[primary], &[])),
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        code(c.unassign_private_ips(&a, &["10.0.1.200".parse().unwrap()], &[])),
        ErrorCode::InvalidParameterValue
    );
}

/// One random step of the proptest.
#[derive(Clone, Debug)]
enum Op {
    Create {
        subnet: usize,
        secondaries: u32,
        prefixes: u32,
        trunk: bool,
    },
    Attach {
        eni: usize,
        node: usize,
        index: u32,
    },
    Detach {
        eni: usize,
    },
    Delete {
        eni: usize,
    },
    Assign {
        eni: usize,
        count: u32,
        prefix: bool,
    },
    AssignExplicit {
        eni: usize,
        host: u8,
        reassign: bool,
    },
    Unassign {
        eni: usize,
    },
    Associate {
        branch: usize,
        trunk: usize,
        vlan: u32,
    },
    Disassociate {
        assoc: usize,
    },
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..12u32, 0..3u32, any::<bool>()).prop_map(
            |(subnet, secondaries, prefixes, trunk)| Op::Create {
                subnet,
                secondaries,
                prefixes,
                trunk
            }
        ),
        (0..64usize, 0..3usize, 0..5u32).prop_map(|(eni, node, index)| Op::Attach {
            eni,
            node,
            index
        }),
        (0..64usize).prop_map(|eni| Op::Detach { eni }),
        (0..64usize).prop_map(|eni| Op::Delete { eni }),
        (0..64usize, 1..6u32, any::<bool>()).prop_map(|(eni, count, prefix)| Op::Assign {
            eni,
            count,
            prefix
        }),
        (0..64usize, 4..40u8, any::<bool>()).prop_map(|(eni, host, reassign)| Op::AssignExplicit {
            eni,
            host,
            reassign
        }),
        (0..64usize).prop_map(|eni| Op::Unassign { eni }),
        (0..64usize, 0..64usize, 0..12u32).prop_map(|(branch, trunk, vlan)| Op::Associate {
            branch,
            trunk,
            vlan
        }),
        (0..16usize).prop_map(|assoc| Op::Disassociate { assoc }),
        Just(Op::Settle),
    ]
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_calls_never_break_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        let mut c = cloud();
        c.set_timing(Timing { attach: Duration::from_millis(5), detach: Duration::from_millis(5) });
        let mut t = Instant::now();
        let nodes = [node(&mut c, "n1", "m5.large"), node(&mut c, "n2", "t3.medium"), node(&mut c, "n3", "c5.large")];
        let subnets: Vec<String> = ["pods-a", "tiny-a", "nodes-a", "pods-b"].iter().map(|n| subnet(&c, n)).collect();
        for op in ops {
            t += Duration::from_millis(3);
            let enis: Vec<String> = c.state().enis.keys().cloned().collect();
            // Errors are expected; only the invariants matter.
            match op {
                Op::Create { subnet, secondaries, prefixes, trunk } => {
                    let req = CreateEni {
                        subnet_id: subnets[subnet].clone(),
                        secondary_count: secondaries,
                        prefix_count: if trunk { 0 } else { prefixes },
                        interface_type: trunk.then_some(InterfaceType::Trunk),
                        ..Default::default()
                    };
                    let _ = c.create_network_interface(&req, None);
                }
                Op::Attach { eni, node, index } => if let Some(e) = pick(&enis, eni) {
                    let _ = c.attach_network_interface(&e, &nodes[node], index, t);
                },
                Op::Detach { eni } => {
                    if let Some(att) = pick(&enis, eni).and_then(|e| c.state().enis[&e].attachment.clone()) {
                        let _ = c.detach_network_interface(&att.id, t);
                    }
                }
                Op::Delete { eni } => if let Some(e) = pick(&enis, eni) {
                    let _ = c.delete_network_interface(&e, t);
                },
                Op::Assign { eni, count, prefix } => if let Some(e) = pick(&enis, eni) {
                    let req = if prefix { AssignIps { prefix_count: 1, ..Default::default() } } else { AssignIps { count, ..Default::default() } };
                    let _ = c.assign_private_ips(&e, &req);
                },
                Op::AssignExplicit { eni, host, reassign } => if let Some(e) = pick(&enis, eni) {
                    let net = c.state().subnets[&c.state().enis[&e].subnet_id].cidr.network();
                    let ip = Ipv4Addr::from(u32::from(net) + u32::from(host));
                    let req = AssignIps { ips: vec![ip], allow_reassignment: reassign, ..Default::default() };
                    let _ = c.assign_private_ips(&e, &req);
                },
                Op::Unassign { eni } => if let Some(e) = pick(&enis, eni) {
                    let held = &c.state().enis[&e];
                    let ips: Vec<Ipv4Addr> = held.secondary_ips.iter().take(1).copied().collect();
                    let prefixes = held.prefixes.iter().take(1).copied().collect::<Vec<_>>();
                    let _ = c.unassign_private_ips(&e, &ips, &prefixes);
                },
                Op::Associate { branch, trunk, vlan } => if let (Some(b), Some(tr)) = (pick(&enis, branch), pick(&enis, trunk)) {
                    let _ = c.associate_trunk_interface(&assoc(&b, &tr, vlan), None, t);
                },
                Op::Disassociate { assoc } => {
                    let ids: Vec<String> = c.state().trunk_associations.keys().cloned().collect();
                    if let Some(a) = pick(&ids, assoc) {
                        let _ = c.disassociate_trunk_interface(&a, None);
                    }
                }
                Op::Settle => { c.settle(t); }
            }
            let violations = c.invariant_violations();
            prop_assert!(violations.is_empty(), "{:?}", violations);
        }
    }
}
