//! Scenarios that need a cloud as strict as EC2 (limits, trunks, subnet exhaustion):
//! run against vpc-sim only, since moto models none of it.

use eni_operator::cloud::{
    AddressAssignment, AddressRelease, AssociateTrunkRequest, CloudError, CloudProvider, EniKind,
    EniQuery, EniStatus, InitialAddresses, Limit, SubnetQuery,
};

use super::suite::{eni_request, free_device_index};
use super::{Fixture, token, wait_for_eni};

/// Trunk ENI on a trunking type, branch ENIs up to the type's limit, idempotent
/// association by client token, listing, disassociation; refusal on a t3.
pub async fn trunk(provider: &dyn CloudProvider, fx: &Fixture, non_trunk: &Fixture) {
    let instance = provider
        .describe_instance(&fx.instance_id)
        .await
        .expect("instance");
    let limits = provider
        .instance_limits(&instance.instance_type)
        .await
        .expect("limits");
    assert!(limits.trunking_supported, "{limits:?}");
    assert!(limits.branch_enis_per_trunk > 0);
    let max = limits.branch_enis_per_trunk;

    let pool = format!("trunk-{}", token("p"));
    let mut request = eni_request(fx, &pool, None);
    request.kind = EniKind::Trunk;
    let trunk = provider.create_eni(&request).await.expect("create trunk");
    assert_eq!(trunk.kind, EniKind::Trunk);

    // A trunk cannot go on a type without trunking.
    let other = provider
        .describe_instance(&non_trunk.instance_id)
        .await
        .expect("t3 instance");
    let other_limits = provider
        .instance_limits(&other.instance_type)
        .await
        .expect("t3 limits");
    assert!(!other_limits.trunking_supported && other_limits.branch_enis_per_trunk == 0);
    let refused = provider
        .attach_eni(&trunk.id, &non_trunk.instance_id, 1)
        .await;
    assert!(
        matches!(refused, Err(CloudError::Unsupported { .. })),
        "{refused:?}"
    );

    let index = free_device_index(provider, &fx.instance_id).await;
    let attachment = provider
        .attach_eni(&trunk.id, &fx.instance_id, index)
        .await
        .expect("attach trunk");
    // Repeating the attach (as after a lost answer) returns the same attachment.
    let again = provider
        .attach_eni(&trunk.id, &fx.instance_id, index)
        .await
        .expect("repeat attach");
    assert_eq!(again, attachment);
    wait_for_eni(provider, &trunk.id, "in-use", |e| {
        e.status == EniStatus::InUse
    })
    .await;

    let mut branches = Vec::new();
    for _ in 0..=max {
        let mut request = eni_request(fx, &pool, None);
        request.kind = EniKind::Branch;
        let branch = provider.create_eni(&request).await.expect("create branch");
        assert_eq!(branch.kind, EniKind::Branch);
        branches.push(branch);
    }
    let mut associations = Vec::new();
    for (vlan, branch) in (1u16..).zip(&branches[..max as usize]) {
        let request = AssociateTrunkRequest {
            trunk_eni_id: trunk.id.clone(),
            branch_eni_id: branch.id.clone(),
            vlan_id: vlan,
            client_token: token("assoc"),
        };
        let a = provider.associate_trunk(&request).await.expect("associate");
        assert_eq!(
            (a.trunk_eni_id.as_str(), a.branch_eni_id.as_str(), a.vlan_id),
            (trunk.id.as_str(), branch.id.as_str(), vlan)
        );
        if vlan == 1 {
            let repeat = provider
                .associate_trunk(&request)
                .await
                .expect("repeat associate");
            assert_eq!(
                repeat.id, a.id,
                "same client token must give the same association"
            );
        }
        associations.push(a);
    }
    let over = provider
        .associate_trunk(&AssociateTrunkRequest {
            trunk_eni_id: trunk.id.clone(),
            branch_eni_id: branches[max as usize].id.clone(),
            vlan_id: 4000,
            client_token: token("assoc"),
        })
        .await;
    assert!(
        matches!(
            &over,
            Err(CloudError::LimitExceeded {
                limit: Limit::BranchInterfaces,
                ..
            })
        ),
        "{over:?}"
    );

    let listed = provider
        .trunk_associations(&trunk.id)
        .await
        .expect("list associations");
    assert_eq!(listed.len(), max as usize);
    let mut vlans: Vec<u16> = listed.iter().map(|a| a.vlan_id).collect();
    vlans.sort();
    assert_eq!(vlans, (1..=max as u16).collect::<Vec<_>>());

    // Disassociate all (the first one twice: a repeat finds it gone and succeeds).
    for a in &associations {
        provider
            .disassociate_trunk(&a.id, &token("disassoc"))
            .await
            .expect("disassociate");
    }
    provider
        .disassociate_trunk(&associations[0].id, &token("disassoc"))
        .await
        .expect("repeat disassociate");
    assert!(
        provider
            .trunk_associations(&trunk.id)
            .await
            .expect("list")
            .is_empty()
    );

    for b in &branches {
        provider.delete_eni(&b.id).await.expect("delete branch");
    }
    provider
        .detach_eni(&attachment, false)
        .await
        .expect("detach trunk");
    wait_for_eni(provider, &trunk.id, "available", |e| {
        e.status == EniStatus::Available
    })
    .await;
    provider.delete_eni(&trunk.id).await.expect("delete trunk");
}

/// Interfaces per instance and addresses per interface, as the instance type allows;
/// delegated prefixes.
pub async fn limits(provider: &dyn CloudProvider, fx: &Fixture) {
    let instance = provider
        .describe_instance(&fx.instance_id)
        .await
        .expect("instance");
    let limits = provider
        .instance_limits(&instance.instance_type)
        .await
        .expect("limits");
    let pool = format!("limits-{}", token("p"));

    // Fill every free slot, then one more.
    let mut attached = Vec::new();
    loop {
        let eni = provider
            .create_eni(&eni_request(fx, &pool, None))
            .await
            .expect("create");
        let index = free_device_index(provider, &fx.instance_id).await;
        match provider.attach_eni(&eni.id, &fx.instance_id, index).await {
            Ok(attachment) => {
                wait_for_eni(provider, &eni.id, "in-use", |e| {
                    e.status == EniStatus::InUse
                })
                .await;
                attached.push((eni, attachment));
                assert!(
                    attached.len() < limits.max_enis as usize,
                    "more than {} interfaces",
                    limits.max_enis
                );
            }
            Err(CloudError::LimitExceeded {
                limit: Limit::Attachments,
                ..
            }) => {
                assert_eq!(
                    attached.len() + 1,
                    limits.max_enis as usize,
                    "primary + attached"
                );
                provider
                    .delete_eni(&eni.id)
                    .await
                    .expect("delete unattached");
                break;
            }
            Err(e) => panic!("attach: {e}"),
        }
    }

    // Addresses: primary + secondaries up to the per-interface limit, then one more.
    let (eni, _) = &attached[0];
    let room = limits.ipv4_per_eni - 1;
    provider
        .assign_addresses(&eni.id, &AddressAssignment::IpCount(room))
        .await
        .expect("fill interface");
    let over = provider
        .assign_addresses(&eni.id, &AddressAssignment::IpCount(1))
        .await;
    assert!(
        matches!(
            &over,
            Err(CloudError::LimitExceeded {
                limit: Limit::AddressesPerEni,
                ..
            })
        ),
        "{over:?}"
    );
    let full = wait_for_eni(provider, &eni.id, "full", |e| {
        e.secondary_ips.len() == room as usize
    })
    .await;
    provider
        .unassign_addresses(&eni.id, &AddressRelease::Ips(full.secondary_ips.clone()))
        .await
        .expect("unassign all");

    // Delegated /28 prefixes on the second interface: by count and explicit.
    let (eni, _) = &attached[1];
    let added = provider
        .assign_addresses(&eni.id, &AddressAssignment::PrefixCount(2))
        .await
        .expect("assign prefixes");
    assert_eq!(added.prefixes.len(), 2);
    assert!(added.prefixes.iter().all(|p| p.prefix_len() == 28));
    let now = wait_for_eni(provider, &eni.id, "with prefixes", |e| {
        e.prefixes.len() == 2
    })
    .await;
    let mut got = now.prefixes.clone();
    got.sort();
    let mut want = added.prefixes.clone();
    want.sort();
    assert_eq!(got, want);
    provider
        .unassign_addresses(&eni.id, &AddressRelease::Prefixes(vec![want[0]]))
        .await
        .expect("unassign prefix");
    let now = wait_for_eni(provider, &eni.id, "one prefix left", |e| {
        e.prefixes.len() == 1
    })
    .await;
    let freed = want[0];
    let again = provider
        .assign_addresses(&eni.id, &AddressAssignment::Prefixes(vec![freed]))
        .await
        .expect("explicit prefix");
    assert_eq!(again.prefixes, vec![freed]);
    let now2 = wait_for_eni(provider, &eni.id, "two prefixes", |e| e.prefixes.len() == 2).await;
    assert!(now2.prefixes.contains(&freed) && now2.prefixes.contains(&now.prefixes[0]));

    for (eni, attachment) in &attached {
        provider
            .detach_eni(attachment, false)
            .await
            .expect("detach");
        wait_for_eni(provider, &eni.id, "available", |e| {
            e.status == EniStatus::Available
        })
        .await;
        provider.delete_eni(&eni.id).await.expect("delete");
    }
}

/// Creating interfaces in a /28 until the cloud says the subnet is exhausted.
pub async fn subnet_exhaustion(provider: &dyn CloudProvider, fx: &Fixture) {
    let pool = format!("tiny-{}", token("p"));
    let before = provider
        .describe_subnets(&SubnetQuery::Ids(vec![fx.subnet_id.clone()]))
        .await
        .expect("subnet")
        .pop()
        .expect("the subnet");
    assert!(
        before.available_ips > 0 && before.available_ips <= 11,
        "{before:?}"
    );
    let mut created = Vec::new();
    let exhausted = loop {
        match provider
            .create_eni(&eni_request(fx, &pool, Some(InitialAddresses::Ips(1))))
            .await
        {
            Ok(eni) => {
                created.push(eni);
                assert!(
                    created.len() <= before.available_ips as usize,
                    "more interfaces than addresses"
                );
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(exhausted, CloudError::SubnetExhausted { .. }),
        "{exhausted:?}"
    );
    let after = provider
        .describe_subnets(&SubnetQuery::Ids(vec![fx.subnet_id.clone()]))
        .await
        .expect("subnet")
        .pop()
        .expect("the subnet");
    // Each interface took two addresses; at most one address can be left over.
    assert_eq!(created.len(), before.available_ips as usize / 2);
    assert!(after.available_ips < 2, "{after:?}");
    let owned = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list");
    assert_eq!(owned.len(), created.len());
    for eni in &created {
        provider.delete_eni(&eni.id).await.expect("delete");
    }
    let freed = provider
        .describe_subnets(&SubnetQuery::Ids(vec![fx.subnet_id.clone()]))
        .await
        .expect("subnet")
        .pop()
        .expect("the subnet");
    assert_eq!(freed.available_ips, before.available_ips);
}
