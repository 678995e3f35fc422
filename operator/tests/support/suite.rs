//! The provider suite: behaviour every backend must share, written once against
//! `dyn CloudProvider` and run against moto and vpc-sim.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use eni_operator::cloud::{
    AddressAssignment, AddressRelease, CloudProvider, CreateEniRequest, Eni, EniKind, EniQuery,
    EniStatus, InitialAddresses, Ownership, SubnetQuery, Tags, tags,
};

use super::{Fixture, Latency, token, wait_for_eni};

pub fn eni_request(
    fx: &Fixture,
    pool: &str,
    initial: Option<InitialAddresses>,
) -> CreateEniRequest {
    CreateEniRequest {
        subnet_id: fx.subnet_id.clone(),
        security_groups: vec![fx.security_groups[0].clone()],
        description: format!("eni-operator test {pool}"),
        kind: EniKind::Standard,
        owner: Ownership {
            pool: pool.to_owned(),
            node: Some("node-a".to_owned()),
            instance_id: Some(fx.instance_id.clone()),
        },
        tags: Tags::from([("team".to_owned(), "net".to_owned())]),
        initial_addresses: initial,
        client_token: token("create"),
    }
}

/// A free device index on the instance (the fixture's instance may already hold some).
pub async fn free_device_index(provider: &dyn CloudProvider, instance_id: &str) -> u32 {
    let attached = provider
        .list_enis(&EniQuery::AttachedTo(instance_id.to_owned()))
        .await
        .expect("list attached interfaces");
    let used: Vec<u32> = attached
        .iter()
        .filter_map(|e| e.attachment.as_ref().map(|a| a.device_index))
        .collect();
    (1..).find(|i| !used.contains(i)).unwrap_or(1)
}

fn ids(enis: &[Eni]) -> Vec<&str> {
    enis.iter().map(|e| e.id.as_str()).collect()
}

/// A free address of the fixture subnet that is not in `taken`.
fn free_address(subnet: ipnet::Ipv4Net, taken: &[Ipv4Addr]) -> Ipv4Addr {
    // Walk down from the top of the subnet (the broadcast address is reserved).
    let top = u32::from(subnet.broadcast());
    (1..200)
        .map(|d| Ipv4Addr::from(top - d))
        .find(|ip| !taken.contains(ip))
        .expect("a free address")
}

/// create → list by tag → attach → assign (count, explicit) → unassign → security
/// groups → detach → delete, checking the cloud's view after each step.
pub async fn round_trip(provider: &dyn CloudProvider, fx: &Fixture) {
    let instance = provider
        .describe_instance(&fx.instance_id)
        .await
        .expect("describe instance");
    assert_eq!(instance.id, fx.instance_id);
    assert!(!instance.primary_eni_id.is_empty());
    assert!(!instance.instance_type.is_empty());
    let limits = provider
        .instance_limits(&instance.instance_type)
        .await
        .expect("limits");
    assert!(
        limits.max_enis >= 2 && limits.ipv4_per_eni >= 2,
        "{limits:?}"
    );

    let pool = format!("pool-{}", token("p"));
    let request = eni_request(fx, &pool, Some(InitialAddresses::Ips(2)));
    let eni = provider
        .create_eni(&request)
        .await
        .expect("create interface");
    assert_eq!(eni.subnet_id, fx.subnet_id);
    assert_eq!(eni.kind, EniKind::Standard);
    assert_eq!(eni.secondary_ips.len(), 2, "{eni:?}");
    assert_eq!(eni.security_groups, vec![fx.security_groups[0].clone()]);
    assert_eq!(eni.tags[tags::POOL], pool);
    assert_eq!(eni.tags[tags::NODE], "node-a");
    assert_eq!(eni.tags[tags::INSTANCE], fx.instance_id);
    assert_eq!(eni.tags["team"], "net");
    assert!(eni.tags.contains_key(tags::CLUSTER));
    assert!(eni.primary_ip.is_some() && !eni.mac.is_empty());

    if fx.caps.client_tokens {
        let again = provider.create_eni(&request).await.expect("repeat create");
        assert_eq!(
            again.id, eni.id,
            "same client token must give the same interface"
        );
    }

    // Listing by ownership tags.
    let owned = provider
        .list_enis(&EniQuery::owned())
        .await
        .expect("list owned");
    assert!(ids(&owned).contains(&eni.id.as_str()));
    let in_pool = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool.clone()),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list pool");
    assert_eq!(ids(&in_pool), vec![eni.id.as_str()]);
    let other_pool = provider
        .list_enis(&EniQuery::Owned {
            pool: Some("no-such-pool".into()),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list other pool");
    assert!(other_pool.is_empty());
    let by_instance_tag = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool.clone()),
            node: Some("node-a".into()),
            instance_id: Some(fx.instance_id.clone()),
        })
        .await
        .expect("list by node and instance tags");
    assert_eq!(ids(&by_instance_tag), vec![eni.id.as_str()]);

    // Attach, and find it among the instance's interfaces.
    let index = free_device_index(provider, &fx.instance_id).await;
    let attachment = provider
        .attach_eni(&eni.id, &fx.instance_id, index)
        .await
        .expect("attach");
    let attached = wait_for_eni(provider, &eni.id, "in-use", |e| {
        e.status == EniStatus::InUse
    })
    .await;
    let a = attached.attachment.as_ref().expect("attachment");
    assert_eq!(
        (a.id.as_str(), a.instance_id.as_str(), a.device_index),
        (attachment.as_str(), fx.instance_id.as_str(), index)
    );
    let on_instance = provider
        .list_enis(&EniQuery::AttachedTo(fx.instance_id.clone()))
        .await
        .expect("list attached");
    assert!(ids(&on_instance).contains(&eni.id.as_str()));
    assert!(ids(&on_instance).contains(&instance.primary_eni_id.as_str()));

    // Assign by count.
    let before = attached.secondary_ips.clone();
    let added = provider
        .assign_addresses(&eni.id, &AddressAssignment::IpCount(3))
        .await
        .expect("assign by count");
    let now = wait_for_eni(provider, &eni.id, "5 secondaries", |e| {
        e.secondary_ips.len() == 5
    })
    .await;
    let new: Vec<Ipv4Addr> = now
        .secondary_ips
        .iter()
        .copied()
        .filter(|ip| !before.contains(ip))
        .collect();
    assert_eq!(new.len(), 3);
    if fx.caps.exact_assign_answer {
        let mut reported = added.ips.clone();
        reported.sort();
        let mut expected = new.clone();
        expected.sort();
        assert_eq!(reported, expected);
    } else {
        assert!(
            new.iter().all(|ip| added.ips.contains(ip)),
            "{added:?} lacks {new:?}"
        );
    }

    // Assign an explicit address.
    let subnet = provider
        .describe_subnets(&SubnetQuery::Ids(vec![fx.subnet_id.clone()]))
        .await
        .expect("describe subnet")
        .pop()
        .expect("the subnet");
    let mut taken = now.secondary_ips.clone();
    taken.extend(now.primary_ip);
    let explicit = free_address(subnet.cidr, &taken);
    let added = provider
        .assign_addresses(&eni.id, &AddressAssignment::Ips(vec![explicit]))
        .await
        .expect("assign explicit");
    assert!(added.ips.contains(&explicit));
    let now = wait_for_eni(provider, &eni.id, "holding the explicit address", |e| {
        e.secondary_ips.contains(&explicit)
    })
    .await;
    assert_eq!(now.secondary_ips.len(), 6);

    // Unassign two.
    let release = vec![explicit, new[0]];
    provider
        .unassign_addresses(&eni.id, &AddressRelease::Ips(release.clone()))
        .await
        .expect("unassign");
    let now = wait_for_eni(provider, &eni.id, "without the released addresses", |e| {
        e.secondary_ips.len() == 4
    })
    .await;
    assert!(release.iter().all(|ip| !now.secondary_ips.contains(ip)));

    // Security groups.
    let groups = fx.security_groups[..2].to_vec();
    provider
        .set_security_groups(&eni.id, &groups)
        .await
        .expect("set groups");
    let now = wait_for_eni(provider, &eni.id, "with both groups", |e| {
        e.security_groups.len() == 2
    })
    .await;
    let mut got = now.security_groups.clone();
    got.sort();
    let mut want = groups.clone();
    want.sort();
    assert_eq!(got, want);

    // Tags.
    provider
        .tag_resources(
            std::slice::from_ref(&eni.id),
            &BTreeMap::from([(tags::NODE.to_owned(), "node-b".to_owned())]),
        )
        .await
        .expect("tag");
    let retagged = provider
        .list_enis(&EniQuery::Owned {
            pool: None,
            node: Some("node-b".into()),
            instance_id: None,
        })
        .await
        .expect("list by new node tag");
    assert_eq!(ids(&retagged), vec![eni.id.as_str()]);

    // Subnets, by id and by tag.
    assert_eq!(subnet.id, fx.subnet_id);
    assert!(subnet.available_ips > 0);
    let tagged = provider
        .describe_subnets(&SubnetQuery::Tagged(fx.subnet_tags.clone()))
        .await
        .expect("subnets by tag");
    assert!(tagged.iter().any(|s| s.id == fx.subnet_id));

    // Detach (twice: the second finds it gone and still succeeds), then delete (twice).
    provider
        .detach_eni(&attachment, false)
        .await
        .expect("detach");
    wait_for_eni(provider, &eni.id, "available", |e| {
        e.status == EniStatus::Available && e.attachment.is_none()
    })
    .await;
    provider
        .detach_eni(&attachment, false)
        .await
        .expect("repeat detach");
    provider.delete_eni(&eni.id).await.expect("delete");
    provider.delete_eni(&eni.id).await.expect("repeat delete");
    let left = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list after delete");
    assert!(left.is_empty(), "{left:?}");
    let gone = provider
        .list_enis(&EniQuery::Ids(vec![
            eni.id.clone(),
            instance.primary_eni_id.clone(),
        ]))
        .await
        .expect("list by ids, one of them gone");
    assert_eq!(ids(&gone), vec![instance.primary_eni_id.as_str()]);
}

/// Times each call of a create/attach/assign/unassign/detach/delete cycle and prints one
/// JSON line with the figures per action.
pub async fn latency(provider: &dyn CloudProvider, fx: &Fixture, rounds: usize) {
    let actions = [
        "DescribeInstances",
        "DescribeNetworkInterfaces",
        "CreateNetworkInterface",
        "AttachNetworkInterface",
        "AssignPrivateIpAddresses",
        "UnassignPrivateIpAddresses",
        "DetachNetworkInterface",
        "DeleteNetworkInterface",
        "DescribeSubnets",
    ];
    let mut figures: BTreeMap<&str, Latency> =
        actions.iter().map(|a| (*a, Latency::new())).collect();
    let pool = format!("latency-{}", token("p"));
    for _ in 0..rounds {
        let lat = figures.get_mut("DescribeInstances").expect("slot");
        lat.time(provider.describe_instance(&fx.instance_id))
            .await
            .expect("describe instance");
        let lat = figures.get_mut("DescribeSubnets").expect("slot");
        lat.time(provider.describe_subnets(&SubnetQuery::Ids(vec![fx.subnet_id.clone()])))
            .await
            .expect("subnets");
        let request = eni_request(fx, &pool, None);
        let lat = figures.get_mut("CreateNetworkInterface").expect("slot");
        let eni = lat
            .time(provider.create_eni(&request))
            .await
            .expect("create");
        let lat = figures.get_mut("DescribeNetworkInterfaces").expect("slot");
        lat.time(provider.list_enis(&EniQuery::Owned {
            pool: Some(pool.clone()),
            node: None,
            instance_id: None,
        }))
        .await
        .expect("list");
        let index = free_device_index(provider, &fx.instance_id).await;
        let lat = figures.get_mut("AttachNetworkInterface").expect("slot");
        let attachment = lat
            .time(provider.attach_eni(&eni.id, &fx.instance_id, index))
            .await
            .expect("attach");
        wait_for_eni(provider, &eni.id, "in-use", |e| {
            e.status == EniStatus::InUse
        })
        .await;
        let lat = figures.get_mut("AssignPrivateIpAddresses").expect("slot");
        lat.time(provider.assign_addresses(&eni.id, &AddressAssignment::IpCount(2)))
            .await
            .expect("assign");
        let now = wait_for_eni(provider, &eni.id, "2 secondaries", |e| {
            e.secondary_ips.len() == 2
        })
        .await;
        let lat = figures.get_mut("UnassignPrivateIpAddresses").expect("slot");
        lat.time(
            provider.unassign_addresses(&eni.id, &AddressRelease::Ips(now.secondary_ips.clone())),
        )
        .await
        .expect("unassign");
        let lat = figures.get_mut("DetachNetworkInterface").expect("slot");
        lat.time(provider.detach_eni(&attachment, false))
            .await
            .expect("detach");
        wait_for_eni(provider, &eni.id, "available", |e| {
            e.status == EniStatus::Available
        })
        .await;
        let lat = figures.get_mut("DeleteNetworkInterface").expect("slot");
        lat.time(provider.delete_eni(&eni.id))
            .await
            .expect("delete");
    }
    let per_action: serde_json::Map<String, serde_json::Value> = figures
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.summary()))
        .collect();
    println!(
        "{}",
        serde_json::json!({ "latency": fx.backend, "rounds": rounds, "actions": per_action })
    );
}
