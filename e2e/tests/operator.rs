//! The operator against the real API server with vpc-sim as the cloud (through the aws
//! provider): allocation, release, status, events, node deletion, collection.

use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroU32,
    time::{Duration, Instant},
};

use eni_crds::{ENIPool, Mode, PodNetwork};
use eni_e2e::cluster::{Cluster, ClusterError, fast_cloud};
use eni_operator::{cloud::RateLimit, operator::Config};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};

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

fn pool_yaml(name: &str, mode: &str, node_label: &str, extra: &str) -> String {
    format!(
        "apiVersion: eni-operator.io/v1alpha1\nkind: ENIPool\nmetadata: {{name: {name}}}\nspec:\n  mode: {mode}\n  nodeSelector: {{matchLabels: {{pool: {node_label}}}}}\n  subnets: {{tags: {{eni-operator.io/pods: \"true\"}}}}\n  ipCooldown: 2s\n{extra}"
    )
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

fn assert_unique(pns: &[PodNetwork], mode: Mode) {
    let key = |p: &PodNetwork| match mode {
        Mode::SharedIp => p.spec.allocation.address.clone(),
        _ => p.spec.allocation.eni_id.clone(),
    };
    let unique: BTreeSet<String> = pns.iter().map(key).collect();
    assert_eq!(unique.len(), pns.len(), "a unit was handed to two pods");
    let addrs: BTreeSet<&str> = pns
        .iter()
        .map(|p| p.spec.allocation.address.as_str())
        .collect();
    assert_eq!(addrs.len(), pns.len(), "an address was handed to two pods");
}

async fn pool_status(c: &Cluster, name: &str) -> Option<eni_crds::ENIPoolStatus> {
    Api::<ENIPool>::all(c.client.clone())
        .get(name)
        .await
        .ok()?
        .status
}

/// 3 nodes, 60 pods, one mode: every pod gets a unique unit quickly; half are deleted,
/// their units cool down and are reused; the pool status agrees with the cloud.
async fn allocate_release_reuse(
    mode: &str,
    instance_type: &str,
    extra: &str,
) -> Result<(), ClusterError> {
    let mut c = Cluster::start(fast_cloud()).await?;
    c.apply_yaml(&pool_yaml("p", mode, "a", extra)).await?;
    let nodes = ["n1", "n2", "n3"];
    for n in nodes {
        c.add_node(n, instance_type, &[("pool", "a")]).await?;
    }
    c.start_operator(config(), rate(100, 100)).await?;

    let started = Instant::now();
    for n in nodes {
        c.create_pods("default", &format!("p-{n}"), 20, n, &[])
            .await?;
    }
    let mut all = Vec::new();
    for n in nodes {
        all.extend(
            wait_networks(&c, &format!("p-{n}"), 20, Duration::from_secs(60))
                .await?
                .into_values(),
        );
    }
    let took = started.elapsed();
    let mode_enum = all[0].spec.mode;
    assert_unique(&all, mode_enum);
    for pn in &all {
        let node = pn
            .name_any()
            .split('-')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        assert_eq!(pn.spec.node_name, node);
        assert_eq!(pn.labels().get("eni-operator.io/node"), Some(&node));
        assert!(pn.finalizers().iter().any(|f| f == eni_crds::FINALIZER));
    }
    println!(
        "{{\"mode\":\"{mode}\",\"pods\":60,\"seconds_to_all_networks\":{:.2},\"pods_per_second\":{:.1}}}",
        took.as_secs_f64(),
        60.0 / took.as_secs_f64()
    );

    // Status agrees with the cloud: every used unit is an address some owned ENI holds.
    let st = c
        .wait_for("pool status used=60", Duration::from_secs(20), || async {
            Ok(pool_status(&c, "p")
                .await
                .filter(|s| s.addresses.used == 60))
        })
        .await?;
    assert_eq!(st.nodes, 3);
    let owned = c.sim.owned_enis(&c.name);
    assert!(owned.len() as u32 >= st.enis.min(owned.len() as u32));
    assert!(c.sim.violations().is_empty(), "{:?}", c.sim.violations());

    // Delete half (the first 10 pods of each node): addresses cool down, then return.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut freed = BTreeSet::new();
    for n in nodes {
        for i in 0..10 {
            let name = format!("p-{n}-{i}");
            freed.insert(
                all.iter()
                    .find(|p| p.name_any() == name)
                    .map(|p| p.spec.allocation.address.clone())
                    .unwrap_or_default(),
            );
            pods.delete(&name, &DeleteParams::default()).await?;
        }
    }
    c.wait_for(
        "released PodNetworks gone after cooldown",
        Duration::from_secs(30),
        || async {
            let left = c.podnetworks().await?.len();
            Ok((left == 30).then_some(()))
        },
    )
    .await?;
    // New pods reuse the released units.
    for n in nodes {
        c.create_pods("default", &format!("q-{n}"), 10, n, &[])
            .await?;
    }
    let mut again = Vec::new();
    for n in nodes {
        again.extend(
            wait_networks(&c, &format!("q-{n}"), 10, Duration::from_secs(30))
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
    assert_eq!(live.len(), 60);
    assert_unique(&live, mode_enum);
    let reused = again
        .iter()
        .filter(|p| freed.contains(&p.spec.allocation.address))
        .count();
    assert!(reused > 0, "no released address was reused");
    println!("{{\"mode\":\"{mode}\",\"reused_addresses\":{reused},\"of\":30}}");
    let calls: u64 = c
        .sim
        .calls()
        .iter()
        .filter(|(a, ..)| !a.starts_with("Describe"))
        .map(|(_, n, _)| n)
        .sum();
    println!("{{\"mode\":\"{mode}\",\"mutating_cloud_calls_for_90_pods\":{calls}}}");
    assert!(c.sim.violations().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_ip_allocate_release_reuse() {
    allocate_release_reuse(
        "SharedIP",
        "m5.xlarge",
        "  warm: {warmIPs: 4, releaseDelay: 1h}\n",
    )
    .await
    .expect("shared ip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_matching_pool_gets_an_event() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(&pool_yaml("p", "SharedIP", "a", ""))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_deletion_returns_its_enis_and_leaks_are_collected() {
    let mut c = Cluster::start(fast_cloud()).await.expect("cluster");
    c.apply_yaml(&pool_yaml("p", "SharedIP", "a", "  warm: {warmIPs: 3}\n"))
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
