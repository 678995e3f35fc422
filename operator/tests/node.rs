//! One node's load and maintenance (plan + executor) against vpc-sim in process, through
//! the AWS provider, without an API server: warm targets per mode, release, draining of
//! a deleted pool, subnet exhaustion, faults and throttling.

#[allow(dead_code)]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use eni_crds::{Mode, SubnetPolicy};
use eni_operator::{
    cloud::{Backoff, CloudProvider, Eni, EniKind, EniQuery, EniStatus},
    engine::{
        eni::{PodKey, Role},
        inventory::PoolCounts,
        plan::PoolState,
        settings::PoolSettings,
    },
    node::{Cloud, Node, NodeError, SubnetCache},
};
use eni_test_support::SimCloud;
use support::{Fixture, generous_rate, quick_backoff};
use vpc_sim::behaviour::SimConfig;

struct Bed {
    sim: SimCloud,
    fx: Fixture,
    provider: Arc<dyn CloudProvider>,
    subnets: SubnetCache,
}

impl Bed {
    async fn start(instance_type: &str) -> Bed {
        Bed::with_backoff(instance_type, quick_backoff()).await
    }

    async fn with_backoff(instance_type: &str, backoff: Backoff) -> Bed {
        Bed::with(instance_type, backoff, SimConfig::instant()).await
    }

    async fn with(instance_type: &str, backoff: Backoff, behaviour: SimConfig) -> Bed {
        Bed::with_attempt_timeout(instance_type, backoff, behaviour, Duration::from_secs(10)).await
    }

    async fn with_attempt_timeout(
        instance_type: &str,
        backoff: Backoff,
        behaviour: SimConfig,
        attempt_timeout: Duration,
    ) -> Bed {
        let sim = support::vpc_sim::start(behaviour).await;
        let fx = support::vpc_sim::fixture(&sim, instance_type, "pods-a");
        let (provider, _registry) =
            support::provider_with_timeout(&fx, generous_rate(), backoff, attempt_timeout).await;
        Bed {
            sim,
            fx,
            provider,
            subnets: SubnetCache::default(),
        }
    }

    fn cloud(&self) -> Cloud<'_> {
        Cloud {
            provider: self.provider.as_ref(),
            subnets: &self.subnets,
            attach_timeout: Duration::from_secs(10),
            // vpc-sim here answers describes without lag.
            describe_settle: Duration::ZERO,
        }
    }

    async fn load(&self, s: &PoolSettings) -> Node {
        let modes = BTreeMap::from([(s.name.clone(), s.mode)]);
        Node::load("node-1", &self.fx.instance_id, &self.cloud(), &modes)
            .await
            .expect("load node")
    }

    /// A pass, then the wait for the ENIs it left attaching.
    async fn maintain(&self, node: &Node, s: &PoolSettings) -> Result<(), NodeError> {
        self.pass(node, PoolState::Active(s), None).await
    }

    async fn drain(&self, node: &Node, pool: &str) -> Result<(), NodeError> {
        self.pass(node, PoolState::Draining(pool), None).await
    }

    async fn pass(
        &self,
        node: &Node,
        pool: PoolState<'_>,
        trunk_pool: Option<&str>,
    ) -> Result<(), NodeError> {
        let result = node.maintain(pool, trunk_pool, &self.cloud()).await;
        node.settle_attachments(&self.cloud()).await?;
        result
    }

    /// ENIs the cloud holds of `pool`.
    async fn owned_enis(&self, pool: &str) -> Vec<Eni> {
        self.provider
            .list_enis(&EniQuery::Owned {
                pool: Some(pool.to_owned()),
                node: None,
                instance_id: None,
            })
            .await
            .expect("list")
    }

    /// ENIs the cloud holds of `pool`, with their secondary addresses and prefixes.
    async fn cloud_enis(&self, pool: &str) -> (usize, usize) {
        let enis = self.owned_enis(pool).await;
        let addrs = enis
            .iter()
            .map(|e| e.secondary_ips.len() + e.prefixes.len())
            .sum();
        (enis.len(), addrs)
    }

    fn creates(&self) -> u64 {
        self.sim.counters("CreateNetworkInterface").calls
    }
}

/// Pool `name` on the layout's pod subnets keeping `warm` units, releasing idle excess
/// at once.
fn pool(name: &str, mode: Mode, warm: u32) -> PoolSettings {
    let p = eni_test_support::pool(name, mode)
        .ip_cooldown("1s")
        .release_delay("0s");
    let p = match mode {
        Mode::SharedIp => p.warm_ips(warm),
        Mode::Exclusive | Mode::Trunk => p.warm_enis(warm),
    };
    PoolSettings::from_pool(&p.build()).expect("fixture pool settings")
}

fn pod(n: &str) -> PodKey {
    PodKey {
        namespace: "default".into(),
        name: n.into(),
        uid: format!("uid-{n}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_reaches_warm_targets_per_mode() {
    // (mode, warm, ENIs the pool holds then: trunk + members in Trunk, warm units once a
    // pod took one: m5.large has room for two Exclusive ENIs)
    for (mode, warm, enis, warm_after) in [
        (Mode::SharedIp, 4, 1, 4),
        (Mode::Exclusive, 2, 2, 1),
        (Mode::Trunk, 3, 4, 3),
    ] {
        let bed = Bed::start("m5.large").await;
        let s = pool("warm", mode, warm);
        let node = bed.load(&s).await;
        bed.maintain(&node, &s).await.expect("maintain");
        let c = node.counts("warm");
        assert_eq!((c.enis, c.warm, c.used), (enis, warm, 0), "{mode:?}: {c:?}");
        assert_eq!(bed.cloud_enis("warm").await.0, enis as usize, "{mode:?}");
        // At its target: a second pass asks nothing of the cloud.
        let creates = bed.creates();
        bed.maintain(&node, &s).await.expect("maintain again");
        assert_eq!(bed.creates(), creates, "{mode:?}: nothing to add");
        // A pod takes a unit: the next pass tops the warm units up again.
        let taken = node.take(&s, &pod("a")).expect("a unit");
        assert!(node.allocation(&taken, &s).is_some());
        bed.maintain(&node, &s).await.expect("top up");
        let c = node.counts("warm");
        assert_eq!((c.used, c.warm), (1, warm_after), "{mode:?}: {c:?}");
        // A restarted operator finds the same ENIs, and the pod's unit once claimed.
        let reloaded = bed.load(&s).await;
        assert_eq!(
            reloaded.counts("warm").enis,
            node.counts("warm").enis,
            "{mode:?}"
        );
        assert!(reloaded.claim(&taken.eni_id, taken.address, &pod("a"), false));
        assert_eq!(reloaded.counts("warm"), node.counts("warm"), "{mode:?}");
    }
}

/// A pass leaves its ENIs attaching; the next pass, planning meanwhile, counts them as
/// capacity to come and creates only for the pods they do not cover. A surge's new ENI
/// is created full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_plans_on_top_of_the_enis_still_attaching() {
    let mut slow_attach = SimConfig::instant();
    slow_attach.attach_delay_ms = 1500;
    let bed = Bed::with("m5.large", quick_backoff(), slow_attach).await;
    let s = pool("surge", Mode::SharedIp, 0);
    let node = bed.load(&s).await;
    let cloud = bed.cloud();
    // `n` more pods wait, then a pass without waiting for attaches.
    let pass_with_waiting = |group: &'static str, n: usize| {
        for i in 0..n {
            assert!(node.take(&s, &pod(&format!("{group}{i}"))).is_none());
        }
        node.maintain(PoolState::Active(&s), None, &cloud)
    };
    let started = std::time::Instant::now();
    pass_with_waiting("a", 3).await.expect("first pass");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the pass does not wait for the attach"
    );
    assert!(node.has_started());
    let (enis, addresses) = bed.cloud_enis("surge").await;
    assert_eq!(
        (enis, addresses),
        (1, 9),
        "one ENI, created full (m5.large: 9)"
    );
    pass_with_waiting("b", 6).await.expect("second pass");
    assert_eq!(
        bed.cloud_enis("surge").await,
        (1, 9),
        "six more pods while it attaches: the ENI coming covers them"
    );
    pass_with_waiting("c", 2).await.expect("third pass");
    assert_eq!(
        bed.cloud_enis("surge").await,
        (2, 18),
        "two more than it holds: the next ENI"
    );

    node.settle_attachments(&bed.cloud())
        .await
        .expect("both attach");
    assert!(!node.has_started());
    assert_eq!(node.counts("surge").enis, 2);
    assert_eq!(node.counts("surge").total, 18);
    let indexes: BTreeSet<u32> = node.read(|inv| inv.device_indexes());
    assert_eq!(indexes, BTreeSet::from([1, 2]));
    for n in 0..3 {
        assert!(node.take(&s, &pod(&format!("a{n}"))).is_some());
    }
}

/// A node short of several ENIs creates and attaches them side by side, each at a
/// device index of its own: the cloud shows more than one attaching at once, and one
/// pass ends with all of them in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_short_of_several_enis_attaches_them_side_by_side() {
    let mut slow_attach = SimConfig::instant();
    slow_attach.attach_delay_ms = 1500;
    let bed = Bed::with("m5.4xlarge", quick_backoff(), slow_attach).await;
    let s = pool("side", Mode::Exclusive, 5);
    let node = bed.load(&s).await;
    let pass = bed.maintain(&node, &s);
    let watch = async {
        let mut most = 0;
        for _ in 0..100 {
            let enis = bed.owned_enis("side").await;
            let attaching = enis
                .iter()
                .filter(|e| e.status == EniStatus::Attaching)
                .count();
            most = most.max(attaching);
            if enis.len() == 5 && enis.iter().all(|e| e.status == EniStatus::InUse) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most
    };
    let (result, most_attaching) = tokio::join!(pass, watch);
    result.expect("maintain");
    assert!(
        most_attaching > 1,
        "at most {most_attaching} ENI attaching at once"
    );
    assert_eq!(node.counts("side").enis, 5);
    let mut indexes: Vec<u32> = bed
        .owned_enis("side")
        .await
        .iter()
        .filter_map(|e| e.attachment.as_ref().map(|a| a.device_index))
        .collect();
    indexes.sort();
    assert_eq!(indexes, vec![1, 2, 3, 4, 5]);
}

/// A pass that grows a node by several ENIs looks at the subnets once, and each look at
/// the attaching ENIs covers all of them: describes have a budget of their own, and
/// per-ENI polling spent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_describes_subnets_once_and_attaching_enis_together() {
    let mut slow_attach = SimConfig::instant();
    slow_attach.attach_delay_ms = 1500;
    let bed = Bed::with("m5.4xlarge", quick_backoff(), slow_attach).await;
    let s = pool("looks", Mode::Exclusive, 5);
    let node = bed.load(&s).await;
    let looks = |action: &str| bed.sim.counters(action).calls;
    let (subnets, enis) = (looks("DescribeSubnets"), looks("DescribeNetworkInterfaces"));
    bed.maintain(&node, &s).await.expect("maintain");
    assert_eq!(node.counts("looks").enis, 5);
    assert_eq!(looks("DescribeSubnets") - subnets, 1);
    // A 1.5 s attach takes 4 or 5 looks (after 0.2, 0.6, 1.4, 2.4 s); one ENI at a
    // time would take 20 or more.
    let eni_looks = looks("DescribeNetworkInterfaces") - enis;
    assert!(eni_looks <= 6, "{eni_looks} describes of attaching ENIs");
}

/// The same for a trunk pool's members: each is a create and an association, and
/// several are created at once, each on a VLAN id of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_short_of_several_members_creates_them_side_by_side() {
    let mut slow_calls = SimConfig::instant();
    slow_calls.latency.mutate.base_ms = 300;
    let bed = Bed::with("m5.4xlarge", quick_backoff(), slow_calls).await;
    let s = pool("members", Mode::Trunk, 4);
    let node = bed.load(&s).await;
    let pass = bed.maintain(&node, &s);
    let watch = async {
        // Created but not yet associated: a member still between its two calls.
        let mut most = 0;
        for _ in 0..200 {
            let enis = bed.owned_enis("members").await;
            let between = enis
                .iter()
                .filter(|e| e.kind == EniKind::Branch && e.status == EniStatus::Available)
                .count();
            most = most.max(between);
            if node.counts("members").warm == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (result, most_between) = tokio::join!(pass, watch);
    result.expect("maintain");
    assert!(
        most_between > 1,
        "at most {most_between} member created at once"
    );
    assert_eq!(node.counts("members").warm, 4);
    let vlans: BTreeSet<u16> = node.read(|inv| {
        inv.enis()
            .filter_map(|e| match e.role() {
                Role::Member { vlan_id, .. } => Some(*vlan_id),
                _ => None,
            })
            .collect()
    });
    assert_eq!(vlans, BTreeSet::from([1, 2, 3, 4]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_eni_yields_a_full_instances_slot_to_another_pools_waiting_pod() {
    // m5.large: two ENI slots besides the instance's own.
    let bed = Bed::start("m5.large").await;
    let ex = pool("exclusive", Mode::Exclusive, 1);
    let trunk = pool("trunk", Mode::Trunk, 1);
    let node = bed.load(&ex).await;
    // An Exclusive pod and the pool's warm ENI fill the instance before the Trunk
    // pool's pod comes.
    assert!(node.take(&ex, &pod("x")).is_none(), "cold: the pod waits");
    bed.maintain(&node, &ex).await.expect("grow");
    assert!(node.take(&ex, &pod("x")).is_some());
    assert_eq!(node.counts("exclusive").enis, 2);
    assert!(node.take(&trunk, &pod("t")).is_none(), "no trunk yet");
    let err = bed
        .maintain(&node, &trunk)
        .await
        .expect_err("no slot for the trunk");
    assert!(matches!(err, NodeError::NoRoom(_)), "{err}");

    bed.pass(&node, PoolState::Active(&ex), Some("trunk"))
        .await
        .expect("exclusive pass");
    assert_eq!(
        node.counts("exclusive").enis,
        1,
        "the warm ENI gave its slot up; the pod's stays"
    );
    bed.maintain(&node, &trunk).await.expect("trunk pass");
    assert!(
        node.take(&trunk, &pod("t")).is_some(),
        "the trunk pod gets a member"
    );
    bed.pass(&node, PoolState::Active(&ex), Some("trunk"))
        .await
        .expect("exclusive pass");
    assert_eq!(
        node.counts("exclusive").enis,
        1,
        "no slot is left for warm stock"
    );
    assert_eq!(bed.owned_enis("exclusive").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_excess_goes_back_to_the_cloud() {
    let bed = Bed::start("m5.large").await;
    let mut s = pool("shrink", Mode::SharedIp, 6);
    let node = bed.load(&s).await;
    bed.maintain(&node, &s).await.expect("grow");
    assert_eq!(bed.cloud_enis("shrink").await, (1, 6));
    s.warm_units = 2;
    bed.maintain(&node, &s).await.expect("shrink");
    assert_eq!(node.counts("shrink").total, 2);
    assert_eq!(
        bed.cloud_enis("shrink").await,
        (1, 2),
        "released in the cloud too"
    );
    s.warm_units = 0;
    bed.maintain(&node, &s).await.expect("shrink to nothing");
    assert_eq!(
        bed.cloud_enis("shrink").await,
        (0, 0),
        "an emptied ENI goes"
    );
    assert_eq!(node.counts("shrink"), PoolCounts::default());
}

/// Faults on `action` only: every call takes effect, and its answer comes after the
/// provider stopped waiting (`on`), or no fault (`!on`).
fn timeouts_on(bed: &Bed, action: &str, on: bool) {
    faults_on(bed, "timeout_probability", action, on);
}

/// Every call of `action` refused (InternalError) before it takes effect, or none.
fn errors_on(bed: &Bed, action: &str, on: bool) {
    faults_on(bed, "error_probability", action, on);
}

fn faults_on(bed: &Bed, fault: &str, action: &str, on: bool) {
    let p = if on { 1.0 } else { 0.0 };
    bed.sim
        .sim()
        .update_config(&serde_json::json!({"faults": {
            fault: p,
            "timeout_hang_ms": 1000,
            "actions": [action],
        }}))
        .expect("faults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_a_timed_out_call_changed_are_read_back_from_the_cloud() {
    // Unassigns are retried after a timeout (they are idempotent): once is enough here.
    let once = Backoff {
        max_retries: 1,
        ..quick_backoff()
    };
    let bed = Bed::with_attempt_timeout(
        "m5.large",
        once,
        SimConfig::instant(),
        Duration::from_millis(500),
    )
    .await;
    let mut s = pool("unsure", Mode::SharedIp, 2);
    let node = bed.load(&s).await;
    bed.maintain(&node, &s).await.expect("grow");
    assert_eq!(bed.cloud_enis("unsure").await, (1, 2));

    // The assign takes effect but its answer is lost: the pass fails, and the cloud
    // holds addresses the inventory does not.
    s.warm_units = 6;
    timeouts_on(&bed, "AssignPrivateIpAddresses", true);
    let err = bed.maintain(&node, &s).await.expect_err("assign times out");
    assert!(matches!(err, NodeError::Cloud(_)), "{err}");
    assert_eq!(bed.cloud_enis("unsure").await, (1, 6));
    assert_eq!(node.counts("unsure").total, 2);
    timeouts_on(&bed, "AssignPrivateIpAddresses", false);
    let assigns = bed.sim.counters("AssignPrivateIpAddresses").calls;
    bed.maintain(&node, &s).await.expect("next pass");
    assert_eq!(
        node.counts("unsure").total,
        6,
        "the next pass adopts the 4 addresses the lost answer carried"
    );
    assert_eq!(
        bed.sim.counters("AssignPrivateIpAddresses").calls,
        assigns,
        "and assigns nothing more: the target is met"
    );
    assert_eq!(bed.cloud_enis("unsure").await, (1, 6));

    // The release takes effect but its answer is lost: the units stay out of the
    // inventory, so no pod gets an address the cloud may no longer hold, and the next
    // pass, reading the ENI back, finds nothing to adopt.
    s.warm_units = 1;
    timeouts_on(&bed, "UnassignPrivateIpAddresses", true);
    bed.maintain(&node, &s)
        .await
        .expect_err("release times out");
    timeouts_on(&bed, "UnassignPrivateIpAddresses", false);
    assert_eq!(bed.cloud_enis("unsure").await, (1, 1));
    assert_eq!(node.counts("unsure").total, 1, "the released ones stay out");
    node.take(&s, &pod("p0")).expect("the unit kept");
    assert_eq!(
        node.take(&s, &pod("p1")),
        None,
        "none of the released ones is handed out"
    );
    node.free("uid-p0");
    node.forget_pending(&s.name, "uid-p1");
    bed.maintain(&node, &s).await.expect("next pass");
    assert_eq!(node.counts("unsure").total, 1);
    assert_eq!(bed.cloud_enis("unsure").await, (1, 1));

    // A release refused before it took effect: the units stay out too, until the read
    // back finds them still in the cloud and adopts them again (nothing is assigned in
    // their place).
    s.warm_units = 6;
    bed.maintain(&node, &s).await.expect("grow again");
    assert_eq!(bed.cloud_enis("unsure").await, (1, 6));
    s.warm_units = 1;
    errors_on(&bed, "UnassignPrivateIpAddresses", true);
    bed.maintain(&node, &s).await.expect_err("release refused");
    errors_on(&bed, "UnassignPrivateIpAddresses", false);
    assert_eq!(node.counts("unsure").total, 1, "out until read back");
    s.warm_units = 6;
    let assigns = bed.sim.counters("AssignPrivateIpAddresses").calls;
    bed.maintain(&node, &s).await.expect("next pass");
    assert_eq!(node.counts("unsure").total, 6, "adopted again");
    assert_eq!(
        bed.sim.counters("AssignPrivateIpAddresses").calls,
        assigns,
        "none assigned in their place"
    );
    assert_eq!(bed.cloud_enis("unsure").await, (1, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pool_drains_around_the_pods_that_use_it() {
    for (mode, warm) in [(Mode::SharedIp, 4), (Mode::Exclusive, 2), (Mode::Trunk, 2)] {
        let bed = Bed::start("m5.large").await;
        let s = pool("gone", mode, warm);
        let node = bed.load(&s).await;
        bed.maintain(&node, &s).await.expect("warm up");
        node.take(&s, &pod("a")).expect("a unit");
        bed.drain(&node, "gone").await.expect("drain");
        let c = node.counts("gone");
        assert_eq!(
            (c.used, c.warm),
            (1, 0),
            "{mode:?}: the pod keeps its unit, nothing warm: {c:?}"
        );
        assert_eq!(
            node.take(&s, &pod("b")),
            None,
            "{mode:?}: nothing left for a new pod"
        );
        let (enis, _) = bed.cloud_enis("gone").await;
        assert_eq!(
            enis,
            if mode == Mode::Trunk { 2 } else { 1 },
            "{mode:?}: only what the pod uses"
        );
        node.free("uid-a");
        bed.drain(&node, "gone").await.expect("drain the rest");
        assert_eq!(
            bed.cloud_enis("gone").await,
            (0, 0),
            "{mode:?}: nothing of the pool left"
        );
        assert_eq!(node.counts("gone"), PoolCounts::default(), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_subnet_is_skipped_for_the_next() {
    let bed = Bed::start("m5.large").await;
    let tiny = bed.sim.subnet_id("tiny-a").expect("tiny-a");
    let roomy = bed.fx.subnet_id.clone();
    // tiny-a has 11 usable addresses: one ENI of 1 + 9, then nothing.
    let mut s = pool("ordered", Mode::SharedIp, 15);
    s.subnet_ids = vec![tiny, roomy];
    s.subnet_policy = SubnetPolicy::Ordered;
    let node = bed.load(&s).await;
    bed.maintain(&node, &s).await.expect("grow across subnets");
    assert_eq!(node.counts("ordered").warm, 15);
    assert!(!node.health("ordered").subnet_exhausted);

    let mut only_tiny = pool("tiny", Mode::SharedIp, 9);
    let bed2 = Bed::start("m5.large").await;
    let tiny2 = bed2.sim.subnet_id("tiny-a").expect("tiny-a");
    only_tiny.subnet_ids = vec![tiny2];
    let node = bed2.load(&only_tiny).await;
    bed2.maintain(&node, &only_tiny)
        .await
        .expect("one ENI fits");
    only_tiny.warm_units = 15;
    let err = bed2
        .maintain(&node, &only_tiny)
        .await
        .expect_err("no room left");
    assert!(
        matches!(
            err,
            NodeError::SubnetsExhausted { .. } | NodeError::Cloud(_)
        ),
        "{err}"
    );
    assert!(
        node.health("tiny").subnet_exhausted,
        "{:?}",
        node.health("tiny")
    );
    assert_eq!(node.counts("tiny").total, 9, "what was there stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attach_leaves_nothing_behind() {
    let bed = Bed::start("m5.large").await;
    let s = pool("faulty", Mode::Exclusive, 1);
    let node = bed.load(&s).await;
    bed.sim
        .sim()
        .update_config(&serde_json::json!({"faults": {
            "error_probability": 1.0,
            "actions": ["AttachNetworkInterface"],
        }}))
        .expect("faults on");
    let err = bed.maintain(&node, &s).await.expect_err("attach fails");
    assert!(node.health("faulty").last_error.is_some(), "{err}");
    assert_eq!(
        bed.cloud_enis("faulty").await,
        (0, 0),
        "the created ENI went again"
    );
    assert_eq!(node.counts("faulty").enis, 0);
    bed.sim
        .sim()
        .update_config(&serde_json::json!({"faults": {"error_probability": 0.0}}))
        .expect("faults off");
    bed.maintain(&node, &s).await.expect("recovers");
    assert_eq!(node.counts("faulty").warm, 1);
    assert!(node.health("faulty").last_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_shows_in_the_pools_health() {
    let impatient = Backoff {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retries: 2,
        max_total_delay: Duration::from_millis(200),
    };
    let bed = Bed::with_backoff("m5.large", impatient).await;
    let s = pool("busy", Mode::SharedIp, 2);
    let node = bed.load(&s).await;
    bed.sim
        .sim()
        .update_config(
            &serde_json::json!({"rate_limits": {"mutate": {"capacity": 0, "refill_per_sec": 0.0}}}),
        )
        .expect("throttle");
    // Every mutation is refused: the retries run out and the pass fails throttled.
    let err = bed.maintain(&node, &s).await.expect_err("throttled");
    assert!(node.health("busy").throttled, "{err}");
    bed.sim
        .sim()
        .update_config(&serde_json::json!({"rate_limits": {"mutate": {"capacity": 1000, "refill_per_sec": 1000.0}}}))
        .expect("unthrottle");
    bed.maintain(&node, &s).await.expect("recovers");
    assert!(!node.health("busy").throttled);
    assert_eq!(node.counts("busy").warm, 2);
}
