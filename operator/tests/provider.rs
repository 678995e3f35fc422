//! Provider tests against EC2 emulations: moto (third-party) and vpc-sim (ours). The
//! same suite runs against both; vpc-sim alone also covers trunks, limits, subnet
//! exhaustion, throttling and faults, which moto does not model.

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eni_operator::cloud::{
    AddressAssignment, AssociateTrunkRequest, Backoff, CloudError, CloudProvider, EniKind,
    EniQuery, EniStatus, RateLimit,
};
use support::moto::MotoServer;
use support::{generous_rate, quick_backoff, strict, suite, token, wait_for_eni};
use tokio::task::JoinSet;
use vpc_sim::behaviour::SimConfig;
use vpc_sim::catalog::Cloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_round_trip_and_latency() {
    let server = MotoServer::start();
    let fx = server.fixture().await;
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    let provider: Arc<dyn CloudProvider> = provider;
    suite::round_trip(provider.as_ref(), &fx).await;
    suite::latency(provider.as_ref(), &fx, 20).await;
}

/// The shared suite under vpc-sim's default, EC2-like behaviour (latency, attach and
/// detach taking time, rate limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_round_trip() {
    let sim = support::vpc_sim::start(SimConfig::default()).await;
    let fx = support::vpc_sim::fixture(&sim, "m5.large", "pods-a");
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    let provider: Arc<dyn CloudProvider> = provider;
    suite::round_trip(provider.as_ref(), &fx).await;
}

/// Per-call latency with vpc-sim's latency model off: the cost of SDK, provider and
/// simulator themselves, comparable with moto's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_latency() {
    let sim = support::vpc_sim::start(SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, "m5.large", "pods-a");
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    suite::latency(provider.as_ref(), &fx, 20).await;
}

/// The same suite through the ECS provider against vpc-sim's ECS front end, with the
/// default behaviour (latency, attach time, rate limits) and Alibaba instance types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_ecs_round_trip() {
    let sim = support::vpc_sim::start_in(Cloud::Alibaba, SimConfig::default()).await;
    let fx = support::vpc_sim::fixture(&sim, "ecs.g7.xlarge", "pods-a");
    let (provider, _registry) = support::alibaba_provider(&fx, generous_rate(), quick_backoff());
    let provider: Arc<dyn CloudProvider> = provider;
    suite::round_trip(provider.as_ref(), &fx).await;
    // ECS has no VPC default group: an ENI without groups takes its instance's.
    let mut request = suite::eni_request(&fx, "no-groups", None);
    request.security_groups.clear();
    let eni = provider
        .create_eni(&request)
        .await
        .expect("create without groups");
    let instance = provider
        .list_enis(&EniQuery::Ids(vec![
            provider
                .describe_instance(&fx.instance_id)
                .await
                .expect("instance")
                .primary_eni_id,
        ]))
        .await
        .expect("primary ENI");
    assert_eq!(eni.security_groups, instance[0].security_groups);
    provider.delete_eni(&eni.id).await.expect("delete");
}

/// ECS deletes and attaches members asynchronously, and describes lag: `delete_eni`
/// returns only once the ENI is gone from what the cloud describes, and
/// `associate_trunk` only once the member shows its trunk and VLAN (here both show
/// after the sim's describe lag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_ecs_waits_out_asynchronous_changes() {
    let mut behaviour = SimConfig::instant();
    behaviour.describe_lag_ms = 800;
    let sim = support::vpc_sim::start_in(Cloud::Alibaba, behaviour).await;
    let fx = support::vpc_sim::fixture(&sim, "ecs.g7.large", "pods-a");
    let (provider, _registry) = support::alibaba_provider(&fx, generous_rate(), quick_backoff());
    let eni = provider
        .create_eni(&suite::eni_request(&fx, "lagging", None))
        .await
        .expect("create");
    wait_for_eni(provider.as_ref(), &eni.id, "visible", |_| true).await;
    let describes_before = sim.counters("DescribeNetworkInterfaces").calls;
    provider.delete_eni(&eni.id).await.expect("delete");
    let left = provider
        .list_enis(&EniQuery::Ids(vec![eni.id.clone()]))
        .await
        .expect("list");
    assert!(
        left.is_empty(),
        "delete_eni returned while {left:?} still shows"
    );
    let polls = sim.counters("DescribeNetworkInterfaces").calls - describes_before;
    assert!(polls >= 2, "the deletion was read back {polls} times");

    let mut request = suite::eni_request(&fx, "lagging", None);
    request.kind = EniKind::Trunk;
    request.client_token = token("trunk");
    let trunk = provider.create_eni(&request).await.expect("create trunk");
    let index = suite::free_device_index(provider.as_ref(), &fx.instance_id).await;
    provider
        .attach_eni(&trunk.id, &fx.instance_id, index)
        .await
        .expect("attach trunk");
    wait_for_eni(provider.as_ref(), &trunk.id, "in-use", |e| {
        e.status == EniStatus::InUse
    })
    .await;
    let mut request = suite::eni_request(&fx, "lagging", None);
    request.kind = EniKind::Branch;
    request.client_token = token("member");
    let member = provider.create_eni(&request).await.expect("create member");
    let association = provider
        .associate_trunk(&AssociateTrunkRequest {
            trunk_eni_id: trunk.id.clone(),
            branch_eni_id: member.id.clone(),
            vlan_id: 7,
            client_token: token("assoc"),
        })
        .await
        .expect("associate under describe lag");
    // ECS chose the VLAN: the member's device index on the trunk, the first free one.
    assert_eq!(
        (association.branch_eni_id.as_str(), association.vlan_id),
        (member.id.as_str(), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_ecs_trunks_limits_and_exhaustion() {
    let sim = support::vpc_sim::start_in(Cloud::Alibaba, SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, "ecs.g7.large", "pods-a");
    let plain = support::vpc_sim::fixture(&sim, "ecs.g6.xlarge", "pods-a");
    let (provider, _registry) = support::alibaba_provider(&fx, generous_rate(), quick_backoff());
    strict::trunk(provider.as_ref(), &fx, &plain).await;
    let fx = support::vpc_sim::fixture(&sim, "ecs.g7.large", "pods-a");
    strict::limits(provider.as_ref(), &fx).await;
    let tiny = support::vpc_sim::fixture(&sim, "ecs.g7.xlarge", "tiny-a");
    strict::subnet_exhaustion(provider.as_ref(), &tiny).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_trunks() {
    let sim = support::vpc_sim::start(SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, "m5.large", "pods-a");
    let t3 = support::vpc_sim::fixture(&sim, "t3.medium", "pods-a");
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    strict::trunk(provider.as_ref(), &fx, &t3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_limits() {
    let sim = support::vpc_sim::start(SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, "m5.large", "pods-a");
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    strict::limits(provider.as_ref(), &fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_subnet_exhaustion() {
    let sim = support::vpc_sim::start(SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, "m5.large", "tiny-a");
    let (provider, _registry) = support::provider(&fx, generous_rate(), quick_backoff()).await;
    strict::subnet_exhaustion(provider.as_ref(), &fx).await;
}

/// 200 concurrent calls (140 describes, 60 creates) against vpc-sim's default buckets
/// (describe 100 + 20/s, mutate 50 + 5/s) from a client whose own bucket is far larger:
/// the cloud throttles, backoff absorbs it, every call succeeds, and client tokens keep
/// the retried creates from making duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_throttling_is_absorbed() {
    throttling_is_absorbed(Cloud::Aws).await;
}

/// The same through the ECS provider: vpc-sim's ECS front end answers `Throttling.User`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_ecs_throttling_is_absorbed() {
    throttling_is_absorbed(Cloud::Alibaba).await;
}

async fn throttling_is_absorbed(cloud: Cloud) {
    let sim = support::vpc_sim::start_in(cloud, SimConfig::default()).await;
    let fx = support::vpc_sim::fixture(&sim, support::vpc_sim::small_type(cloud), "pods-a");
    let rate = RateLimit {
        qps: NonZeroU32::new(1000).expect("non-zero"),
        burst: NonZeroU32::new(1000).expect("non-zero"),
    };
    let backoff = Backoff {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_retries: 60,
        max_total_delay: Duration::from_secs(120),
    };
    let (provider, metrics) =
        support::provider_on(cloud, &fx, rate, backoff, Duration::from_secs(10)).await;
    let pool = format!("burst-{}", token("p"));
    let (describes, creates) = (140, 60);
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for i in 0..describes + creates {
        let provider = provider.clone();
        let request = suite::eni_request(&fx, &pool, None);
        let pool = pool.clone();
        calls.spawn(async move {
            if i < describes {
                let query = EniQuery::Owned {
                    pool: Some(pool),
                    node: None,
                    instance_id: None,
                };
                provider.list_enis(&query).await.map(|_| ())
            } else {
                provider.create_eni(&request).await.map(|_| ())
            }
        });
    }
    let mut ok = 0;
    while let Some(joined) = calls.join_next().await {
        joined.expect("call task").expect("every call succeeds");
        ok += 1;
    }
    let took = started.elapsed();
    assert_eq!(ok, describes + creates);

    let sim_describe = sim.counters("DescribeNetworkInterfaces");
    let sim_create = sim.counters("CreateNetworkInterface");
    assert!(sim_describe.throttled > 0, "{sim_describe:?}");
    assert!(sim_create.throttled > 0, "{sim_create:?}");
    // The client saw exactly the throttled answers the cloud gave.
    assert_eq!(
        metrics.count("DescribeNetworkInterfaces", "throttled"),
        sim_describe.throttled
    );
    assert_eq!(
        metrics.count("CreateNetworkInterface", "throttled"),
        sim_create.throttled
    );
    assert_eq!(
        metrics.count("DescribeNetworkInterfaces", "ok"),
        describes as u64
    );
    assert_eq!(
        metrics.count("CreateNetworkInterface", "ok"),
        creates as u64
    );

    let owned = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list");
    assert_eq!(owned.len(), creates, "retried creates must not duplicate");
    println!(
        "{}",
        serde_json::json!({
            "throttling": format!("vpc-sim ({cloud:?})"),
            "calls": describes + creates,
            "elapsed_s": (took.as_secs_f64() * 100.0).round() / 100.0,
            "describe": {"attempts": sim_describe.calls, "throttled": sim_describe.throttled},
            "create": {"attempts": sim_create.calls, "throttled": sim_create.throttled},
        })
    );
}

/// Injected server errors and timeouts (where the call took effect but the answer was
/// lost): creates are retried with their client token and never duplicate; count-based
/// assigns are not retried after a timeout, so they never assign twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_faults_keep_mutations_idempotent() {
    faults_keep_mutations_idempotent(Cloud::Aws).await;
}

/// The same through the ECS provider and vpc-sim's ECS front end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_sim_ecs_faults_keep_mutations_idempotent() {
    faults_keep_mutations_idempotent(Cloud::Alibaba).await;
}

async fn faults_keep_mutations_idempotent(cloud: Cloud) {
    let sim = support::vpc_sim::start_in(cloud, SimConfig::instant()).await;
    let fx = support::vpc_sim::fixture(&sim, support::vpc_sim::small_type(cloud), "pods-a");
    let (provider, _metrics) = support::provider_on(
        cloud,
        &fx,
        generous_rate(),
        quick_backoff(),
        Duration::from_millis(500),
    )
    .await;
    sim.sim()
        .update_config(&serde_json::json!({"faults": {
            "error_probability": 0.3,
            "timeout_probability": 0.2,
            "timeout_hang_ms": 1500,
            "actions": ["CreateNetworkInterface"],
        }}))
        .expect("set faults");
    let pool = format!("faults-{}", token("p"));
    let wanted = 20;
    for _ in 0..wanted {
        provider
            .create_eni(&suite::eni_request(&fx, &pool, None))
            .await
            .expect("create despite faults");
    }
    let created = sim.counters("CreateNetworkInterface");
    assert!(created.faulted > 0 && created.timed_out > 0, "{created:?}");
    assert!(
        created.calls > wanted as u64,
        "some creates were retried: {created:?}"
    );
    let owned = provider
        .list_enis(&EniQuery::Owned {
            pool: Some(pool.clone()),
            node: None,
            instance_id: None,
        })
        .await
        .expect("list");
    assert_eq!(owned.len(), wanted, "no duplicate interfaces");

    // A count-based assign whose every answer is lost. EC2 has no client token for it:
    // one attempt, a Transient error. ECS takes one: the provider retries with the same
    // token until its budget is spent. Either way the addresses are assigned exactly
    // once (the caller reconciles by reading).
    sim.sim()
        .update_config(&serde_json::json!({"faults": {
            "error_probability": 0.0,
            "timeout_probability": 1.0,
            "actions": ["AssignPrivateIpAddresses"],
        }}))
        .expect("set faults");
    let eni = &owned[0];
    let result = provider
        .assign_addresses(&eni.id, &AddressAssignment::IpCount(2))
        .await;
    assert!(
        matches!(result, Err(CloudError::Transient { .. })),
        "{result:?}"
    );
    let attempts = sim.counters("AssignPrivateIpAddresses").calls;
    match cloud {
        Cloud::Aws => assert_eq!(attempts, 1),
        Cloud::Alibaba => assert!(attempts > 1, "{attempts} attempts"),
    }
    let now = support::wait_for_eni(provider.as_ref(), &eni.id, "2 secondaries", |e| {
        e.status == EniStatus::Available && e.secondary_ips.len() == 2
    })
    .await;
    assert_eq!(now.secondary_ips.len(), 2);
}
