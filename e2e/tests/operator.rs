//! The operator against the real API server with vpc-sim as the cloud (through the aws
//! provider): allocation, release, sticky addresses, status, events, node deletion,
//! collection.

use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroU32,
    time::{Duration, Instant},
};

use eni_crds::contract::STATEFUL_LABEL;
use eni_crds::{ENIPool, Mode, PodNetwork, SubnetPolicy, TrunkENI};
use eni_e2e::{
    api_relay::Relay,
    cluster::{Cluster, ClusterError, fast_cloud},
};
use eni_operator::{cloud::RateLimit, context::Config, controllers::trunk::MEMBER_RESOURCE};
use eni_test_support::{PoolBuilder, pool};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{Event, Node, Pod},
    },
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

fn rate(qps: u32, burst: u32) -> RateLimit {
    RateLimit {
        qps: NonZeroU32::new(qps).expect("qps"),
        burst: NonZeroU32::new(burst).expect("burst"),
    }
}

fn config() -> Config {
    Config {
        resync: Duration::from_secs(2),
        gc_interval: Duration::from_secs(1),
        gc_grace: Duration::from_secs(2),
        allocation_timeout: Duration::from_secs(30),
        attach_timeout: Duration::from_secs(20),
        ..Config::default()
    }
}

/// Pool `name` for the nodes labelled `pool=<node_label>`; addresses cool down for 2 s
/// so that reuse shows within a test.
fn pool_for(name: &str, mode: Mode, node_label: &str) -> PoolBuilder {
    pool(name, mode).nodes("pool", node_label).ip_cooldown("2s")
}

/// Waits until every pod matching `prefix` has a PodNetwork; returns them by pod name.
async fn wait_networks(
    c: &Cluster,
    prefix: &str,
    n: usize,
    timeout: Duration,
) -> Result<BTreeMap<String, PodNetwork>, ClusterError> {
    c.wait_for(
        &format!("{n} PodNetworks for {prefix}-*"),
        timeout,
        || async {
            let pns: BTreeMap<String, PodNetwork> = c
                .podnetworks()
                .await?
                .into_iter()
                .filter(|p| {
                    p.name_any().starts_with(&format!("{prefix}-"))
                        && p.metadata.deletion_timestamp.is_none()
                })
                .map(|p| (p.name_any(), p))
                .collect();
            Ok((pns.len() == n).then_some(pns))
        },
    )
    .await
}

/// Waits until pool `p`'s status counts `total` used units; returns that status.
async fn wait_used(c: &Cluster, total: usize) -> Result<eni_crds::ENIPoolStatus, ClusterError> {
    c.wait_for(
        &format!("pool status used={total}"),
        Duration::from_secs(20),
        || async {
            Ok(pool_status(c, "p")
                .await
                .filter(|s| s.addresses.used as usize == total))
        },
    )
    .await
}

fn assert_unique(pns: &[PodNetwork], mode: Mode) {
    let key = |p: &PodNetwork| match mode {
        Mode::SharedIp => p.spec.allocation.address.to_string(),
        _ => p.spec.allocation.eni_id.clone(),
    };
    let unique: BTreeSet<String> = pns.iter().map(key).collect();
    assert_eq!(unique.len(), pns.len(), "a unit was handed to two pods");
    let addrs: BTreeSet<_> = pns.iter().map(|p| p.spec.allocation.address).collect();
    assert_eq!(addrs.len(), pns.len(), "an address was handed to two pods");
}

async fn pool_status(c: &Cluster, name: &str) -> Option<eni_crds::ENIPoolStatus> {
    Api::<ENIPool>::all(c.client.clone())
        .get(name)
        .await
        .ok()?
        .status
}

/// 3 nodes, one mode: every pod gets a unique unit (address, ENI or member ENI) quickly;
/// half are deleted, their units cool down and are reused; the pool status agrees with
/// the cloud.
async fn allocate_release_reuse(
    mode: Mode,
    instance_type: &str,
    // Completes the pool; gets the id of the layout's `default` security group.
    tune: fn(PoolBuilder, &str) -> PoolBuilder,
    per_node: usize,
) -> Result<(), ClusterError> {
    // The API's name of the mode, quoted, for the JSON lines below.
    let mode_name = serde_json::to_string(&mode).expect("a mode serialises");
    // What a pod holds exclusively: its address (SharedIP) or its ENI.
    let unit = |p: &PodNetwork| match mode {
        Mode::SharedIp => p.spec.allocation.address.to_string(),
        _ => p.spec.allocation.eni_id.clone(),
    };
    let mut c = Cluster::start(fast_cloud()).await?;
    let sg = c.sim.group_id("default")?;
    c.apply_yaml(&tune(pool_for("p", mode, "a"), &sg).yaml())
        .await?;
    let nodes = ["n1", "n2", "n3"];
    for n in nodes {
        c.add_node(n, instance_type, &[("pool", "a")]).await?;
    }
    c.start_operator(config(), rate(100, 100)).await?;

    let started = Instant::now();
    for n in nodes {
        c.create_pods("default", &format!("p-{n}"), per_node, n, &[])
            .await?;
    }
    let mut all = Vec::new();
    for n in nodes {
        all.extend(
            wait_networks(&c, &format!("p-{n}"), per_node, Duration::from_secs(60))
                .await?
                .into_values(),
        );
    }
    let took = started.elapsed();
    let total = 3 * per_node;
    assert_unique(&all, mode);
    for pn in &all {
        let node = pn
            .name_any()
            .split('-')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        assert_eq!(pn.spec.mode, mode);
        assert_eq!(pn.spec.node_name, node);
        assert_eq!(pn.labels().get("eni-operator.io/node"), Some(&node));
        assert!(pn.finalizers().iter().any(|f| f == eni_crds::FINALIZER));
        let a = &pn.spec.allocation;
        match mode {
            Mode::SharedIp => assert_eq!(a.prefix_length, 32),
            _ => assert_ne!(
                a.prefix_length, 32,
                "a whole ENI carries its subnet's prefix"
            ),
        }
        if mode == Mode::Trunk {
            assert!(a.vlan_id.is_some() && a.trunk_mac.is_some(), "{a:?}");
            assert_eq!(a.security_groups, vec![sg.clone()]);
        }
    }
    println!(
        "{{\"mode\":{mode_name},\"pods\":{total},\"seconds_to_all_networks\":{:.2},\"pods_per_second\":{:.1}}}",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );

    // Status agrees with the cloud: every pod counted, every pod's ENI exists.
    let st = wait_used(&c, total).await?;
    assert_eq!(st.nodes, 3);
    let owned: BTreeSet<String> = c
        .sim
        .owned_enis(&c.name)
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    for pn in &all {
        assert!(
            owned.contains(&pn.spec.allocation.eni_id),
            "{} holds an ENI the cloud lacks",
            pn.name_any()
        );
    }
    assert!(c.sim.violations().is_empty(), "{:?}", c.sim.violations());

    if mode == Mode::Trunk {
        let trunks: Api<eni_crds::TrunkENI> = Api::all(c.client.clone());
        let t = c
            .wait_for(
                "TrunkENI status with members",
                Duration::from_secs(20),
                || async {
                    Ok(trunks
                        .get_opt("n1")
                        .await?
                        .and_then(|t| t.status)
                        .filter(|s| {
                            s.members.iter().filter(|m| m.pod.is_some()).count() == per_node
                        }))
                },
            )
            .await?;
        assert!(t.trunk_eni_id.is_some());
        let node = Api::<Node>::all(c.client.clone()).get("n1").await?;
        let cap = node
            .status
            .and_then(|s| s.capacity)
            .and_then(|c| c.get(MEMBER_RESOURCE).cloned());
        assert!(cap.is_some(), "member-ENI capacity advertised");
    }

    // Delete the first half of each node's pods: their units cool down, then return.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let half = per_node / 2;
    let mut freed = BTreeSet::new();
    for n in nodes {
        for i in 0..half {
            let name = format!("p-{n}-{i}");
            freed.insert(
                all.iter()
                    .find(|p| p.name_any() == name)
                    .map(unit)
                    .unwrap_or_default(),
            );
            pods.delete(&name, &DeleteParams::default()).await?;
        }
    }
    let remaining = total - 3 * half;
    c.wait_for(
        "released PodNetworks gone after cooldown",
        Duration::from_secs(30),
        || async { Ok((c.podnetworks().await?.len() == remaining).then_some(())) },
    )
    .await?;
    // New pods reuse the released units.
    for n in nodes {
        c.create_pods("default", &format!("q-{n}"), half, n, &[])
            .await?;
    }
    let mut again = Vec::new();
    for n in nodes {
        again.extend(
            wait_networks(&c, &format!("q-{n}"), half, Duration::from_secs(30))
                .await?
                .into_values(),
        );
    }
    let live: Vec<PodNetwork> = c
        .podnetworks()
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), total);
    assert_unique(&live, mode);
    let reused = again.iter().filter(|p| freed.contains(&unit(p))).count();
    assert!(reused > 0, "no released unit was reused");
    let st = wait_used(&c, total).await?;
    let calls: u64 = c
        .sim
        .calls()
        .iter()
        .filter(|(a, ..)| !a.starts_with("Describe"))
        .map(|(_, n, _)| n)
        .sum();
    println!(
        "{{\"mode\":{mode_name},\"reused\":{reused},\"of\":{},\"status_enis\":{},\"mutating_cloud_calls\":{calls},\"allocations\":{}}}",
        3 * half,
        st.enis,
        total + 3 * half
    );
    assert!(c.sim.violations().is_empty(), "{:?}", c.sim.violations());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_ip_allocate_release_reuse() {
    allocate_release_reuse(
        Mode::SharedIp,
        "m5.xlarge",
        |p, _| p.warm_ips(4).release_delay("1h"),
        20,
    )
    .await
    .expect("shared ip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exclusive_allocate_release_reuse() {
    // 60 exclusive pods on 3 nodes exceed every instance type's ENI limit; c5.9xlarge
    // (8 ENIs, one the node's own) takes 7 per node.
    allocate_release_reuse(
        Mode::Exclusive,
        "c5.9xlarge",
        |p, sg| p.security_groups(&[sg]).warm_enis(1),
        7,
    )
    .await
    .expect("exclusive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trunk_allocate_release_reuse() {
    allocate_release_reuse(
        Mode::Trunk,
        "m5.4xlarge",
        |p, sg| p.security_groups(&[sg]).warm_enis(2),
        20,
    )
    .await
    .expect("trunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_matching_pool_gets_an_event() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(&pool_for("p", Mode::SharedIp, "a").yaml())
        .await
        .expect("pool");
    c.add_node("lonely", "m5.large", &[("pool", "none")])
        .await
        .expect("node");
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator");
    c.create_pods("default", "orphan", 1, "lonely", &[])
        .await
        .expect("pod");
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let ev = c
        .wait_for("NoENIPool event", Duration::from_secs(20), || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("NoENIPool")))
        })
        .await
        .expect("event");
    assert_eq!(ev.involved_object.name.as_deref(), Some("orphan-0"));
    assert!(
        ev.message
            .unwrap_or_default()
            .contains("no ENIPool selects this pod")
    );
    assert!(c.podnetworks().await.expect("list").is_empty());
}

/// Regression (found by the chaos trial, seed 1795797957904063394): a trunk ENI created
/// for a node but never attached (the leader died between the create and the attach,
/// or the create's answer was lost) was taken as the node's trunk when the next leader
/// loaded the node, and every member association then failed with IncorrectState. Now
/// the node gets a trunk of its own, its Trunk pods their members, and the collector
/// deletes the orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trunk_eni_never_attached_is_replaced_and_collected() {
    use eni_operator::cloud::{CloudProvider, CreateEniRequest, EniKind, Ownership};
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    let instance = c
        .add_node("t0", "m5.xlarge", &[("pool", "trunk")])
        .await
        .expect("node");
    let group = c.sim.group_id("default").expect("group");
    let subnet = c.sim.subnet_id("pods-a").expect("subnet");
    c.apply_yaml(
        &pool_for("trunk", Mode::Trunk, "trunk")
            .security_groups(&[group.as_str()])
            .yaml(),
    )
    .await
    .expect("pool");
    // What a lost leader left: the node's trunk, created with the cluster's tags, never
    // attached.
    let mut registry = prometheus_client::registry::Registry::default();
    let provider = c.sim.provider(&c.name, rate(100, 100), &mut registry).await;
    let orphan = provider
        .create_eni(&CreateEniRequest {
            subnet_id: subnet,
            security_groups: vec![group.clone()],
            description: "eni-operator trunk t0 trunk".into(),
            kind: EniKind::Trunk,
            owner: Ownership {
                pool: "trunk".into(),
                node: Some("t0".into()),
                instance_id: Some(instance.clone()),
            },
            tags: Default::default(),
            initial_addresses: None,
            client_token: "lost-leader-trunk".into(),
        })
        .await
        .expect("orphan trunk")
        .id;
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator");
    c.create_pods("default", "m", 2, "t0", &[])
        .await
        .expect("pods");
    wait_networks(&c, "m", 2, Duration::from_secs(60))
        .await
        .expect("the Trunk pods get members");
    let on_orphan = c.sim.sim().with_state(|d| {
        d.state
            .enis
            .values()
            .filter(|e| e.trunk_association.as_deref() == Some(orphan.as_str()))
            .count()
    });
    assert_eq!(on_orphan, 0, "members ride on the orphan {orphan}");
    c.wait_for(
        "the orphan trunk collected",
        Duration::from_secs(30),
        || async {
            let owned = c.sim.owned_enis(&c.name);
            Ok((!owned.iter().any(|(id, ..)| *id == orphan)).then_some(()))
        },
    )
    .await
    .expect("collected");
    let attached_trunks = c
        .sim
        .owned_enis(&c.name)
        .into_iter()
        .filter(|(_, inst, _)| inst.as_deref() == Some(instance.as_str()))
        .count();
    assert!(attached_trunks >= 1, "t0 has its own trunk attached");
    assert!(c.sim.violations().is_empty());
}

/// The pool's Ready condition once it has `status` and `reason`.
async fn ready_condition(
    c: &Cluster,
    pool: &str,
    status: &str,
    reason: &str,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition, ClusterError> {
    c.wait_for(
        &format!("{pool} Ready={status} ({reason})"),
        Duration::from_secs(40),
        || async {
            Ok(pool_status(c, pool).await.and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|x| x.type_ == "Ready" && x.status == status && x.reason == reason)
            }))
        },
    )
    .await
}

/// What only the cloud can judge: a pool naming a subnet and a security group that do
/// not exist is Ready=False with the reason, both named in the message, and a Warning
/// event for each; fixed, it becomes Ready. A pool whose nodeSelector matches no node
/// says so until a node matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_references_and_node_selection_are_reported() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.add_node("n1", "m5.large", &[("pool", "a")])
        .await
        .expect("node");
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator");
    let ghost = |subnet: &str, group: &str| {
        pool("ghost", Mode::SharedIp)
            .nodes("pool", "a")
            .subnet_ids(&[subnet], SubnetPolicy::MostFree)
            .security_groups(&[group])
            .yaml()
    };
    c.apply_yaml(&ghost("subnet-00000dead", "sg-00000dead"))
        .await
        .expect("pool");
    let ready = ready_condition(&c, "ghost", "False", "SubnetNotFound")
        .await
        .expect("Ready=False");
    assert_eq!(
        ready.message,
        "subnet subnet-00000dead does not exist (or this account cannot see it); security group sg-00000dead does not exist (or this account cannot see it)"
    );
    let events: Api<Event> = Api::all(c.client.clone());
    let reasons = c
        .wait_for(
            "a Warning event per problem",
            Duration::from_secs(20),
            || async {
                let reasons: BTreeSet<String> = events
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.involved_object.kind.as_deref() == Some("ENIPool")
                            && e.involved_object.name.as_deref() == Some("ghost")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .filter_map(|e| e.reason)
                    .collect();
                Ok((reasons.len() >= 2).then_some(reasons))
            },
        )
        .await
        .expect("events");
    assert_eq!(
        reasons,
        BTreeSet::from([
            "SecurityGroupNotFound".to_owned(),
            "SubnetNotFound".to_owned()
        ])
    );
    // Fixed: a new generation is looked up at once.
    let subnet = c.sim.subnet_id("pods-a").expect("subnet");
    let group = c.sim.group_id("default").expect("group");
    c.apply_yaml(&ghost(&subnet, &group))
        .await
        .expect("fixed pool");
    ready_condition(&c, "ghost", "True", "Converged")
        .await
        .expect("Ready once fixed");

    c.apply_yaml(&pool_for("nowhere", Mode::SharedIp, "b").yaml())
        .await
        .expect("pool");
    let none = ready_condition(&c, "nowhere", "False", "NoMatchingNodes")
        .await
        .expect("no node selected");
    assert!(
        none.message.contains("no node matches spec.nodeSelector"),
        "{}",
        none.message
    );
    c.add_node("n2", "m5.large", &[("pool", "b")])
        .await
        .expect("node");
    ready_condition(&c, "nowhere", "True", "Converged")
        .await
        .expect("Ready once a node matches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_deletion_returns_its_enis_and_leaks_are_collected() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(&pool_for("p", Mode::SharedIp, "a").warm_ips(3).yaml())
        .await
        .expect("pool");
    let instance = c
        .add_node("doomed", "m5.large", &[("pool", "a")])
        .await
        .expect("node");
    let provider = c
        .start_operator(config(), rate(100, 100))
        .await
        .expect("operator");
    c.wait_for("warm ENI on the node", Duration::from_secs(20), || async {
        Ok(c.sim
            .owned_enis(&c.name)
            .iter()
            .any(|(_, i, _)| i.as_deref() == Some(instance.as_str()))
            .then_some(()))
    })
    .await
    .expect("warm pool");

    // A leaked ENI: this cluster's tags, no owner in any inventory, never attached.
    let subnet = c.sim.subnet_id("pods-a").expect("subnet");
    let leaked = provider
        .create_eni(&eni_operator::cloud::CreateEniRequest {
            subnet_id: subnet,
            security_groups: vec![],
            description: "leaked".into(),
            kind: eni_operator::cloud::EniKind::Standard,
            owner: eni_operator::cloud::Ownership {
                pool: "p".into(),
                node: None,
                instance_id: None,
            },
            tags: Default::default(),
            initial_addresses: None,
            client_token: "leak-1".into(),
        })
        .await
        .expect("leak");
    c.wait_for("leaked ENI collected", Duration::from_secs(20), || async {
        Ok((!c
            .sim
            .owned_enis(&c.name)
            .iter()
            .any(|(id, ..)| *id == leaked.id))
        .then_some(()))
    })
    .await
    .expect("collection");

    Api::<Node>::all(c.client.clone())
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete node");
    c.wait_for(
        "node's ENIs gone from vpc-sim",
        Duration::from_secs(30),
        || async { Ok(c.sim.owned_enis(&c.name).is_empty().then_some(())) },
    )
    .await
    .expect("node ENIs released");
    c.wait_for(
        "Node object gone (finalizer removed)",
        Duration::from_secs(20),
        || async {
            Ok(Api::<Node>::all(c.client.clone())
                .get_opt("doomed")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await
    .expect("finalizer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_cloud_still_converges() {
    // The cloud admits 2 calls/s per class; the operator's own bucket is far above that,
    // so it meets RequestLimitExceeded and must back off instead of failing pods.
    let mut cloud = fast_cloud();
    for b in [
        &mut cloud.rate_limits.describe,
        &mut cloud.rate_limits.mutate,
    ] {
        b.capacity = 2;
        b.refill_per_sec = 2.0;
    }
    let mut c = Cluster::start(cloud).await.expect("cluster");
    c.apply_yaml(&pool_for("p", Mode::SharedIp, "a").warm_ips(2).yaml())
        .await
        .expect("pool");
    for n in ["n1", "n2"] {
        c.add_node(n, "m5.xlarge", &[("pool", "a")])
            .await
            .expect("node");
    }
    c.start_operator(config(), rate(50, 50))
        .await
        .expect("operator");
    let started = Instant::now();
    for n in ["n1", "n2"] {
        c.create_pods("default", &format!("t-{n}"), 15, n, &[])
            .await
            .expect("pods");
    }
    let mut all = Vec::new();
    for n in ["n1", "n2"] {
        all.extend(
            wait_networks(&c, &format!("t-{n}"), 15, Duration::from_secs(120))
                .await
                .expect("networks")
                .into_values(),
        );
    }
    assert_unique(&all, Mode::SharedIp);
    let throttled: u64 = c.sim.calls().iter().map(|(_, _, t)| t).sum();
    println!(
        "{{\"throttled_answers\":{throttled},\"pods\":30,\"seconds\":{:.1}}}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        throttled > 0,
        "the cloud never throttled: the test proves nothing"
    );
    assert!(c.sim.violations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subnet_exhaustion_sets_condition_and_recovers_with_a_second_subnet() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    let tiny = c.sim.subnet_id("tiny-a").expect("tiny subnet");
    let pods_a = c.sim.subnet_id("pods-a").expect("pods subnet");
    // Every node; the subnets in the order given.
    let ordered_pool = |ids: &[&str]| {
        pool("p", Mode::SharedIp)
            .subnet_ids(ids, SubnetPolicy::Ordered)
            .ip_cooldown("2s")
            .warm_ips(2)
            .yaml()
    };
    c.apply_yaml(&ordered_pool(&[tiny.as_str()]))
        .await
        .expect("pool");
    c.add_node("n1", "m5.4xlarge", &[]).await.expect("node");
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator");
    // 11 usable addresses in tiny-a: 30 pods cannot all fit.
    c.create_pods("default", "x", 30, "n1", &[])
        .await
        .expect("pods");
    let cond = |want: &'static str| {
        let c = &c;
        async move {
            c.wait_for(
                &format!("SubnetExhausted={want}"),
                Duration::from_secs(40),
                || async {
                    let st = pool_status(c, "p").await;
                    Ok(st.and_then(|s| {
                        s.conditions
                            .into_iter()
                            .find(|x| x.type_ == "SubnetExhausted" && x.status == want)
                    }))
                },
            )
            .await
        }
    };
    let on = cond("True").await.expect("condition set");
    assert!(on.message.contains("add a subnet"), "{}", on.message);
    let calls_before: u64 = c
        .sim
        .calls()
        .iter()
        .filter(|(a, ..)| a == "CreateNetworkInterface")
        .map(|(_, n, _)| n)
        .sum();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_after: u64 = c
        .sim
        .calls()
        .iter()
        .filter(|(a, ..)| a == "CreateNetworkInterface")
        .map(|(_, n, _)| n)
        .sum();
    assert!(
        calls_after - calls_before <= 2,
        "growth not paused: {} creates in 3s",
        calls_after - calls_before
    );

    c.apply_yaml(&ordered_pool(&[tiny.as_str(), pods_a.as_str()]))
        .await
        .expect("second subnet");
    wait_networks(&c, "x", 30, Duration::from_secs(60))
        .await
        .expect("all pods after the second subnet");
    cond("False").await.expect("condition cleared");
}

/// A leader cut off from the API server (a partition: its requests hang, nothing is
/// refused) must have stopped before the standby takes the lease over, or both act at
/// once: the chaos trial once found one Exclusive ENI in two pods' PodNetworks after
/// an API server restart, when the old leader kept allocating from its inventory while
/// the new one allocated from a fresh load. The leader gives up after 2/3 of the lease
/// without a renewal; a standby waits for a whole lease unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_api_server_is_gone_before_the_standby_leads() {
    let c = Cluster::start(fast_cloud()).await.expect("cluster");
    let relay = Relay::for_kubeconfig(&c.operator_kubeconfig(), "kubeconfig-op-cut")
        .await
        .expect("relay");
    let flags = ["--lease-duration", "4"];
    let cut_off = c
        .spawn_operator_via("op-cut", &flags, &relay.kubeconfig)
        .expect("operator behind the relay");
    c.wait_for("op-cut leading", Duration::from_secs(60), || async {
        Ok(c.leader().await?.filter(|h| h == "op-cut"))
    })
    .await
    .expect("op-cut leads");
    let standby = c.spawn_operator("op-standby", &flags).expect("standby");
    // The standby has seen the lease held (a renewal or two) before the cut.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!cut_off.has_exited(), "op-cut exited while it could renew");
    relay.cut();
    let cut_at = Instant::now();
    let deadline = cut_at + Duration::from_secs(60);
    loop {
        if c.leader().await.ok().flatten().as_deref() == Some("op-standby") {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{{\"seconds_from_cut_to_takeover\":{:.1}}}",
        cut_at.elapsed().as_secs_f64()
    );
    assert!(
        cut_off.has_exited(),
        "the standby leads while the cut-off leader still runs (and may act): {}",
        cut_off.log_tail(20)
    );
    relay.restore();
    assert!(!standby.has_exited(), "{}", standby.log_tail(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_mid_burst_standby_finishes_without_duplicates_or_leaks() {
    let c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(
        &pool_for("p", Mode::SharedIp, "a")
            .warm_ips(2)
            .release_delay("1h")
            .yaml(),
    )
    .await
    .expect("pool");
    let nodes = ["n1", "n2", "n3"];
    for n in nodes {
        c.add_node(n, "m5.xlarge", &[("pool", "a")])
            .await
            .expect("node");
    }
    let flags = [
        "--lease-duration",
        "3",
        "--resync-seconds",
        "2",
        "--gc-interval-seconds",
        "2",
        "--gc-grace-seconds",
        "4",
    ];
    let a = c.spawn_operator("op-a", &flags).expect("operator a");
    let b = c.spawn_operator("op-b", &flags).expect("operator b");
    let leader = c
        .wait_for("a leader", Duration::from_secs(60), || c.leader())
        .await
        .expect("leader elected");
    for n in nodes {
        c.create_pods("default", &format!("l-{n}"), 20, n, &[])
            .await
            .expect("pods");
    }
    // Mid-burst: some networks exist, not all.
    c.wait_for("first PodNetworks", Duration::from_secs(60), || async {
        Ok((!c.podnetworks().await?.is_empty()).then_some(()))
    })
    .await
    .expect("burst started");
    let (dead, standby) = if leader == "op-a" {
        (&a, "op-b")
    } else {
        (&b, "op-a")
    };
    dead.kill();
    let killed_at = Instant::now();
    let mut all = Vec::new();
    for n in nodes {
        all.extend(
            wait_networks(&c, &format!("l-{n}"), 20, Duration::from_secs(90))
                .await
                .expect("standby finished")
                .into_values(),
        );
    }
    println!(
        "{{\"standby\":\"{standby}\",\"seconds_from_kill_to_all_60\":{:.1}}}",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(c.leader().await.expect("lease").as_deref(), Some(standby));
    assert_unique(&all, Mode::SharedIp);
    // No leaked address: once converged, every address the cluster's ENIs hold is either
    // a pod's or counted warm or cooling in the pool status, and the cloud agrees with the
    // status. Addresses the killed leader's calls assigned after the standby loaded the
    // node are the standby's to find at its next resync, so agreement is awaited (the
    // resync is 2 s here), not expected at the first status with all 60 pods.
    let converging = Instant::now();
    let st = c
        .wait_for(
            "cloud and status agree",
            Duration::from_secs(30),
            || async {
                let held: usize = c
                    .sim
                    .owned_enis(&c.name)
                    .iter()
                    .map(|(_, _, n)| n - 1)
                    .sum();
                Ok(pool_status(&c, "p").await.filter(|s| {
                    s.addresses.used == 60
                        && held as u32 == s.addresses.total
                        && s.addresses.total
                            == s.addresses.used + s.addresses.warm + s.addresses.cooling
                }))
            },
        )
        .await
        .expect("the cloud holds exactly the addresses the pool status counts");
    println!(
        "{{\"seconds_until_cloud_and_status_agree\":{:.1}}}",
        converging.elapsed().as_secs_f64()
    );
    assert!(st.addresses.warm <= 3 * 14, "warm {}", st.addresses.warm);
    assert!(c.sim.violations().is_empty());
}

/// Sticky addresses: a StatefulSet pod deleted and recreated by name on the same node gets
/// its address back, also across an operator restart; meanwhile no other pod gets it; a
/// plain pod's address is not reserved; an address nobody comes back for returns to the
/// pool after releaseAfter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_pod_gets_its_address_back_across_a_restart() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(
        &pool_for("p", Mode::SharedIp, "a")
            .warm_ips(4)
            .release_delay("1h")
            .sticky("20s")
            .yaml(),
    )
    .await
    .expect("pool");
    c.add_node("n1", "m5.xlarge", &[("pool", "a")])
        .await
        .expect("node");
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator");

    // The test bed runs no controller-manager: the test plays the StatefulSet controller.
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/pause"}]},
            },
        },
    }))
    .expect("statefulset");
    let sts = Api::<StatefulSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let sts_pod = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {"app": "db"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                    "uid": sts.uid().unwrap_or_default(), "controller": true,
                }],
            },
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "registry.invalid/pause"}]},
        }))
        .expect("pod")
    };
    for name in ["db-0", "db-1"] {
        pods.create(&PostParams::default(), &sts_pod(name))
            .await
            .expect("create sts pod");
    }
    c.create_pods("default", "web", 1, "n1", &[])
        .await
        .expect("plain pod");
    let mut first = wait_networks(&c, "db", 2, Duration::from_secs(30))
        .await
        .expect("sts networks");
    first.extend(
        wait_networks(&c, "web", 1, Duration::from_secs(30))
            .await
            .expect("plain network"),
    );
    let addr = |n: &str| first[n].spec.allocation.address;
    let label = |n: &str| first[n].labels().get(STATEFUL_LABEL).cloned();
    assert_eq!(label("db-0").as_deref(), Some("true"));
    assert_eq!(label("web-0"), None);

    let deleted = Instant::now();
    for name in ["db-0", "db-1", "web-0"] {
        // Grace 0: what the kubelet's confirmation does; the name is free at once.
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
    }
    // The plain pod's address is not reserved: its PodNetwork goes after the cooldown.
    let pn_api: Api<PodNetwork> = Api::namespaced(c.client.clone(), "default");
    c.wait_for(
        "web-0 released after its cooldown",
        Duration::from_secs(15),
        || async { Ok(pn_api.get_opt("web-0").await?.is_none().then_some(())) },
    )
    .await
    .expect("plain pod released");
    for name in ["db-0", "db-1"] {
        let pn = pn_api
            .get_opt(name)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{name}'s reservation ended with the cooldown"));
        assert!(pn.metadata.deletion_timestamp.is_some());
    }

    // A restart: the reservation lives in the API, not in the operator.
    c.stop_operators();
    c.start_operator(config(), rate(100, 100))
        .await
        .expect("operator restarted");
    // Other pods on the node never get a reserved address.
    c.create_pods("default", "filler", 6, "n1", &[])
        .await
        .expect("filler pods");
    let fillers = wait_networks(&c, "filler", 6, Duration::from_secs(30))
        .await
        .expect("filler networks");
    for f in fillers.values() {
        let a = &f.spec.allocation.address;
        assert!(
            *a != addr("db-0") && *a != addr("db-1"),
            "{} got a reserved address {a}",
            f.name_any()
        );
    }

    // db-0 comes back by name on the same node: same address, new pod.
    let back = pods
        .create(&PostParams::default(), &sts_pod("db-0"))
        .await
        .expect("recreate db-0");
    let again = c
        .wait_for("db-0's new PodNetwork", Duration::from_secs(20), || async {
            Ok(pn_api
                .get_opt("db-0")
                .await?
                .filter(|p| Some(&p.spec.pod_uid) == back.metadata.uid.as_ref()))
        })
        .await
        .expect("db-0 back");
    assert_eq!(again.spec.allocation.address, addr("db-0"));
    assert!(
        deleted.elapsed() < Duration::from_secs(20),
        "came back after the window: the test proves nothing"
    );

    // db-1 never comes back: its address returns to the pool after releaseAfter.
    c.wait_for(
        "db-1's reservation ends",
        Duration::from_secs(40),
        || async { Ok(pn_api.get_opt("db-1").await?.is_none().then_some(())) },
    )
    .await
    .expect("window over");
    assert!(
        deleted.elapsed() >= Duration::from_secs(18),
        "db-1 released after {:?}, before its window",
        deleted.elapsed()
    );
    let live: Vec<PodNetwork> = c
        .podnetworks()
        .await
        .expect("list")
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 7);
    assert_unique(&live, Mode::SharedIp);
    assert!(c.sim.violations().is_empty(), "{:?}", c.sim.violations());
}

/// ENIs of `pool` in the cloud and the addresses they hold (primary, secondaries, and
/// 16 per prefix).
fn pool_in_cloud(c: &Cluster, pool: &str) -> (usize, usize) {
    c.sim.sim().with_state(|d| {
        let enis: Vec<_> = d
            .state
            .enis
            .values()
            .filter(|e| {
                e.tags.get("eni-operator.io/cluster") == Some(&c.name)
                    && e.tags.get("eni-operator.io/pool").map(String::as_str) == Some(pool)
            })
            .collect();
        let addrs = enis
            .iter()
            .map(|e| 1 + e.secondary_ips.len() + 16 * e.prefixes.len())
            .sum();
        (enis.len(), addrs)
    })
}

/// The node's member-ENI resource: `(capacity, allocatable)`.
async fn member_resource(
    c: &Cluster,
    node: &str,
) -> Result<(Option<String>, Option<String>), ClusterError> {
    let status = Api::<Node>::all(c.client.clone())
        .get(node)
        .await?
        .status
        .unwrap_or_default();
    let of = |m: Option<BTreeMap<String, Quantity>>| {
        m.and_then(|m| m.get(MEMBER_RESOURCE).map(|q| q.0.clone()))
    };
    Ok((of(status.capacity), of(status.allocatable)))
}

/// Deleting a pool with running pods: the pods keep their units and PodNetworks, no new
/// pod gets one, warm units go at once; once the pods go, so does everything of the pool
/// in the cloud, and then the ENIPool object.
async fn pool_deletion_drains(
    mode: Mode,
    instance_type: &str,
    // Completes the pool; gets the id of the layout's `default` security group.
    tune: fn(PoolBuilder, &str) -> PoolBuilder,
) -> Result<(), ClusterError> {
    // The API's name of the mode, for the JSON line printed at the end.
    let mode_name = serde_json::to_value(mode).expect("a mode serialises");
    let mut c = Cluster::start(fast_cloud()).await?;
    let sg = c.sim.group_id("default")?;
    c.apply_yaml(&tune(pool_for("p", mode, "a"), &sg).yaml())
        .await?;
    c.add_node("n1", instance_type, &[("pool", "a")]).await?;
    c.start_operator(config(), rate(100, 100)).await?;
    c.create_pods("default", "d", 3, "n1", &[]).await?;
    let before = wait_networks(&c, "d", 3, Duration::from_secs(60)).await?;
    if mode == Mode::Trunk {
        let trunks: Api<TrunkENI> = Api::all(c.client.clone());
        c.wait_for(
            "TrunkENI and member-ENI capacity published",
            Duration::from_secs(20),
            || async {
                let (cap, free) = member_resource(&c, "n1").await?;
                let trunk = trunks.get_opt("n1").await?;
                Ok((cap.is_some() && free.is_some() && trunk.is_some()).then_some(()))
            },
        )
        .await?;
    }
    let pools: Api<ENIPool> = Api::all(c.client.clone());
    c.wait_for("finalizer on the pool", Duration::from_secs(20), || async {
        let p = pools.get("p").await?;
        Ok(p.finalizers()
            .iter()
            .any(|f| f == eni_crds::FINALIZER)
            .then_some(()))
    })
    .await?;
    // Warm stock beyond the pods' units exists before the deletion.
    let (_, warm_addrs) = c
        .wait_for("warm units", Duration::from_secs(20), || async {
            let held = pool_in_cloud(&c, "p");
            Ok(pool_status(&c, "p")
                .await
                .filter(|s| s.addresses.used == 3 && s.addresses.warm > 0)
                .map(|_| held))
        })
        .await?;

    pools.delete("p", &DeleteParams::default()).await?;
    let deleted = Instant::now();
    let status = c
        .wait_for("Deleting condition", Duration::from_secs(20), || async {
            Ok(pool_status(&c, "p").await.filter(|s| {
                s.conditions
                    .iter()
                    .any(|k| k.type_ == "Deleting" && k.status == "True")
            }))
        })
        .await?;
    // What the pods use stays: for each pod its address (and its ENI's primary).
    let in_use = match mode {
        Mode::SharedIp => (1, 1 + 3),
        Mode::Exclusive => (3, 3),
        Mode::Trunk => (4, 4),
    };
    c.wait_for("warm units given back", Duration::from_secs(30), || async {
        Ok((pool_in_cloud(&c, "p") == in_use).then_some(()))
    })
    .await?;
    let warm_drained = deleted.elapsed();
    let after = wait_networks(&c, "d", 3, Duration::from_secs(5)).await?;
    for (name, pn) in &before {
        assert_eq!(
            after.get(name).map(|p| &p.spec.allocation),
            Some(&pn.spec.allocation),
            "{name} keeps its unit"
        );
    }
    // A new pod gets nothing of the deleted pool.
    c.create_pods("default", "late", 1, "n1", &[]).await?;
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    c.wait_for(
        "NoENIPool for the late pod",
        Duration::from_secs(20),
        || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("NoENIPool")
                        && e.involved_object.name.as_deref() == Some("late-0")
                })
                .map(drop))
        },
    )
    .await?;
    assert!(
        !c.podnetworks()
            .await?
            .iter()
            .any(|p| p.name_any() == "late-0"),
        "a deleted pool gave a new pod a unit"
    );

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..3 {
        pods.delete(&format!("d-{i}"), &DeleteParams::default())
            .await?;
    }
    let pods_gone = Instant::now();
    c.wait_for("ENIPool object gone", Duration::from_secs(60), || async {
        Ok(pools.get_opt("p").await?.is_none().then_some(()))
    })
    .await?;
    let (enis_left, addrs_left) = pool_in_cloud(&c, "p");
    assert_eq!(
        (enis_left, addrs_left),
        (0, 0),
        "the cloud still holds some of the pool"
    );
    assert!(c.podnetworks().await?.is_empty());
    assert!(c.sim.violations().is_empty(), "{:?}", c.sim.violations());
    // No trunk pool selects the node any more: neither its TrunkENI nor its member-ENI
    // resource stays for schedulers to count on.
    let trunks: Api<TrunkENI> = Api::all(c.client.clone());
    c.wait_for(
        "no TrunkENI, no member-ENI resource on the node",
        Duration::from_secs(10),
        || async {
            let trunk = trunks.get_opt("n1").await?;
            let resource = member_resource(&c, "n1").await?;
            Ok((trunk.is_none() && resource == (None, None)).then_some(()))
        },
    )
    .await?;
    println!(
        "{{\"pool_deletion\":{mode_name},\"warm_addresses_before\":{warm_addrs},\"seconds_to_drain_warm\":{:.2},\"seconds_from_last_pod_to_pool_gone\":{:.2},\"enis_left\":{enis_left},\"addresses_left\":{addrs_left},\"deleting_message\":{:?}}}",
        warm_drained.as_secs_f64(),
        pods_gone.elapsed().as_secs_f64(),
        status
            .conditions
            .iter()
            .find(|k| k.type_ == "Deleting")
            .map(|k| k.message.clone())
            .unwrap_or_default()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_pool_drains_it_in_every_mode() {
    pool_deletion_drains(Mode::SharedIp, "m5.xlarge", |p, _| {
        p.warm_ips(4).release_delay("1h")
    })
    .await
    .expect("SharedIP");
    pool_deletion_drains(Mode::Exclusive, "c5.9xlarge", |p, sg| {
        p.security_groups(&[sg]).warm_enis(1)
    })
    .await
    .expect("Exclusive");
    pool_deletion_drains(Mode::Trunk, "m5.xlarge", |p, sg| {
        p.security_groups(&[sg]).warm_enis(2)
    })
    .await
    .expect("Trunk");
}

/// A leader asked to stop (SIGTERM: a rollout or a drain) hands its Lease back before it
/// exits, so the standby leads without waiting for the lease to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_leader_releases_its_lease() {
    let c = Cluster::start(fast_cloud()).await.expect("cluster");
    // A lease far longer than the test waits: only a release lets the standby lead.
    let flags = ["--lease-duration", "600"];
    let a = c.spawn_operator("op-a", &flags).expect("operator a");
    let first = c
        .wait_for("op-a leads", Duration::from_secs(60), || c.leader())
        .await
        .expect("leader elected");
    assert_eq!(first, "op-a");
    let b = c.spawn_operator("op-b", &flags).expect("operator b");
    a.stop(Duration::from_secs(20));
    assert!(a.has_exited(), "op-a ignored SIGTERM");
    let next = c
        .wait_for("op-b leads", Duration::from_secs(60), || async {
            Ok(c.leader().await?.filter(|h| h == "op-b"))
        })
        .await
        .expect("standby took over before the 600 s lease expired");
    assert_eq!(next, "op-b");
    assert!(
        a.log_tail(20).contains("released the lease"),
        "{}",
        a.log_tail(20)
    );
    drop(b);
}
