//! `bench burst`: allocation bursts from cold and from warm pools in every mode under an
//! AWS-like cloud, what the pools hold afterwards, and the operator's memory.
//!
//! The real control plane, vpc-sim with an AWS-like model (per-action token buckets:
//! mutating 18 tokens refilled at 12/s, describes 100 at 20/s; 100-400 ms per mutation,
//! 2 s attach) and a /20 pod subnet, and the operator as a child process of its built
//! binary (its RSS is its own). Nodes are m5.4xlarge (7 pool ENIs of 29 secondary
//! addresses, a trunk of 54 members). SharedIP runs again under a stricter account
//! (mutating 6 tokens at 2/s) to show the operator adapts without failing pods.
//!
//! Per mode:
//! 1. Cold: N pods, spread over fresh nodes whose pool holds nothing (warm target 0).
//! 2. Economy: the pool gets a small warm target and a short release delay, and every
//!    other cold pod is deleted; once the pool is back at its target, idle units per
//!    node and the calls it took are read against what the plan cannot do without.
//! 3. The rest go; the pool is given a warm target of every pod of the next burst and
//!    the bench waits until the status shows that many warm units.
//! 4. Warm: N new pods.
//!
//! Pods are created by 16 clients at once, and the create rate is reported beside each
//! burst: a burst cannot beat it. Each burst's bound is the slower of that rate and the
//! cloud's: the calls the plan cannot do without (per ENI a create and an attach and one
//! describe that sees it in use; per trunk member a create and an association) through
//! the operator's own buckets (mutations, describes) and the cloud's per-action
//! buckets, then what must follow the last call (an attach delay, a call's latency).
//! `bound_ratio` is actual over bound (at most 1).
//!
//! The operator runs with its default budget (10 mutations/s), except for Trunk: a
//! member takes two calls of two different actions, so its budget is set to the two
//! per-action buckets the account gives them (24/s, burst 36), and each action gets the
//! account's per-action bucket on the operator's side too (12/s, burst 18).
//!
//! `--cloud alibaba` runs the same with vpc-sim playing Alibaba Cloud and the operator
//! on its ECS provider (nodes ecs.g7.4xlarge: the same 8 ENIs of 30 addresses, a trunk
//! of 22 members, so Trunk spreads over more nodes). `--mode shared|exclusive|trunk`
//! runs one mode only.

use std::time::{Duration, Instant};

use eni_crds::{ENIPool, Mode, PodNetwork, SubnetPolicy, TrunkENI};
use eni_e2e::{
    cluster::Cluster,
    process::ChildGuard,
    vpc::{Cloud, instance_type_on},
};
use eni_test_support::{PoolBuilder, pool};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::{Value, json};
use vpc_sim::{behaviour::SimConfig, layout::Layout, server::ServerConfig};

use super::{
    BenchError,
    cluster_wait::{
        CREATE_CONCURRENCY, ENIS_PER_NODE, INSTANCE_TYPE, NAMESPACE, PHASE_TIMEOUT, SLOTS_PER_ENI,
        add_pod_subnet, calls, check_fits, create_pods, last_seen, latencies, leadership, rss_kib,
        wait, watch_networks,
    },
    positive,
    report::{memory_kib, round},
};

/// Members a trunk of INSTANCE_TYPE carries (AWS m5.4xlarge: 54 branch interfaces).
const MEMBERS_PER_TRUNK: u32 = 54;
/// Alibaba's ecs.g7.4xlarge: 22 member ENIs.
const MEMBERS_PER_TRUNK_ECS: u32 = 22;

/// The operator's token bucket for mutating calls: (qps, burst).
fn operator_rate(mode: Mode) -> (f64, f64) {
    match mode {
        Mode::Trunk => (24.0, 36.0),
        _ => (10.0, 20.0),
    }
}

/// The operator's bucket per mutating action, if any: for Trunk the account's
/// per-action limit (aws_like: 12/s, 18 at once), so that creates, which come first,
/// never pass the operator faster than the cloud takes them.
fn operator_action_rate(mode: Mode) -> Option<(u32, u32)> {
    (mode == Mode::Trunk).then_some((12, 18))
}

#[derive(Debug, PartialEq)]
pub struct Args {
    /// Pods and nodes per mode, when given.
    pods: Option<u32>,
    nodes: Option<u32>,
    cloud: Cloud,
    modes: Vec<Mode>,
    smoke: bool,
}

const ALL_MODES: [Mode; 3] = [Mode::SharedIp, Mode::Exclusive, Mode::Trunk];

/// `args` after the benchmark's name; `smoke` picks the small default sizes.
pub fn parse_args(args: impl IntoIterator<Item = String>, smoke: bool) -> Result<Args, BenchError> {
    let (mut pods, mut nodes, mut cloud, mut modes) = (None, None, Cloud::Aws, ALL_MODES.to_vec());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pods" => pods = Some(positive("--pods", it.next())?),
            "--nodes" => nodes = Some(positive("--nodes", it.next())?),
            "--cloud" => {
                cloud = match it.next().as_deref() {
                    Some("aws") => Cloud::Aws,
                    Some("alibaba") => Cloud::Alibaba,
                    other => {
                        return Err(BenchError::Usage(format!(
                            "--cloud takes aws or alibaba, not {other:?}"
                        )));
                    }
                }
            }
            "--mode" => {
                modes = vec![match it.next().as_deref() {
                    Some("shared") => Mode::SharedIp,
                    Some("exclusive") => Mode::Exclusive,
                    Some("trunk") => Mode::Trunk,
                    other => {
                        return Err(BenchError::Usage(format!(
                            "--mode takes shared, exclusive or trunk, not {other:?}"
                        )));
                    }
                }]
            }
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(Args {
        pods,
        nodes,
        cloud,
        modes,
        smoke,
    })
}

/// One mode's size: pods and nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Size {
    pods: u32,
    nodes: u32,
}

impl Args {
    /// The size a mode runs at: the flags', or the mode's default (Exclusive fills 7
    /// ENIs a node; Trunk 50 of a trunk's members).
    fn size(&self, mode: Mode) -> Size {
        let (pods, nodes) = match (mode, self.smoke) {
            (Mode::SharedIp, false) => (1000, 10),
            (Mode::Exclusive, false) => (70, 10),
            (Mode::Trunk, false) => (1000, 1000u32.div_ceil(self.members_per_node())),
            (Mode::SharedIp | Mode::Trunk, true) => (20, 1),
            (Mode::Exclusive, true) => (7, 1),
        };
        Size {
            pods: self.pods.unwrap_or(pods),
            nodes: self.nodes.unwrap_or(nodes),
        }
    }

    /// Trunk pods a node takes: a trunk's members, a few kept free.
    fn members_per_node(&self) -> u32 {
        match self.cloud {
            Cloud::Aws => MEMBERS_PER_TRUNK - 4,
            Cloud::Alibaba => MEMBERS_PER_TRUNK_ECS - 2,
        }
    }

    fn fits(&self, mode: Mode, size: Size) -> Result<(), BenchError> {
        let per = match mode {
            Mode::SharedIp => return check_fits(size.pods, size.nodes),
            Mode::Exclusive => ENIS_PER_NODE,
            Mode::Trunk => self.members_per_node(),
        };
        if size.pods > size.nodes * per {
            return Err(BenchError::TooMany {
                pods: size.pods,
                nodes: size.nodes,
                instance_type: INSTANCE_TYPE,
                per,
            });
        }
        Ok(())
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::SharedIp => "shared_ip",
        Mode::Exclusive => "exclusive",
        Mode::Trunk => "trunk",
    }
}

/// The fastest a cold burst can finish on the cloud's side: the calls it cannot do
/// without, paced by every token bucket they pass (the cloud's per action, the
/// operator's for mutations and for describes), then what follows the last call.
#[derive(Debug, PartialEq)]
struct LowerBound {
    /// ENIs created (trunks and members included).
    enis: u32,
    /// Mutating calls.
    calls: u32,
    /// Every call through the operator's buckets.
    operator_calls: u32,
    seconds: f64,
}

fn lower_bound(mode: Mode, size: Size, cloud: &SimConfig, operator: (f64, f64)) -> LowerBound {
    let Size { pods, nodes } = size;
    let per_node = pods.div_ceil(nodes);
    let base = cloud.latency.mutate.base_ms as f64 / 1000.0;
    let attach = cloud.attach_delay_ms as f64 / 1000.0;
    // Calls per action, describes, and the floor without any bucket in the way.
    let (per_action, describes, floor, tail) = match mode {
        // Per ENI: CreateNetworkInterface, AttachNetworkInterface, one describe; the last
        // ENI is in use its attach delay after its attach.
        Mode::SharedIp | Mode::Exclusive => {
            let enis = match mode {
                Mode::SharedIp => nodes * per_node.div_ceil(SLOTS_PER_ENI),
                _ => pods,
            };
            (vec![enis, enis], enis, 2.0 * base + attach, base + attach)
        }
        // Per pod a member: create and AssociateTrunkInterface, usable at once (the
        // node's trunk is made before any pod, for the scheduler's member count).
        Mode::Trunk => (vec![pods, pods], 0, 2.0 * base, base),
    };
    let calls: u32 = per_action.iter().sum();
    let bucket = cloud.rate_limits.mutate;
    let cloud_pacing = per_action
        .iter()
        .map(|n| (f64::from(*n) - f64::from(bucket.capacity)).max(0.0) / bucket.refill_per_sec)
        .fold(0.0, f64::max);
    // The operator's buckets: one for mutations, one for describes (the same size).
    let (qps, burst) = operator;
    let operator_pacing = ((f64::from(calls) - burst).max(0.0) / qps)
        .max((f64::from(describes) - burst).max(0.0) / qps);
    LowerBound {
        enis: per_action[0],
        calls,
        operator_calls: calls + describes,
        seconds: (cloud_pacing.max(operator_pacing) + tail).max(floor),
    }
}

struct Burst {
    seconds: f64,
    create_seconds: f64,
    /// Per pod, from its create call's answer to its PodNetwork being seen (ms).
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    mutating: u64,
    describes: u64,
    throttled: u64,
}

/// Creates `pods` pods round-robin over the nodes and times until each has its network.
async fn burst(
    c: &Cluster,
    operator: &ChildGuard,
    prefix: &str,
    pods: u32,
    nodes: &[String],
) -> Result<Burst, BenchError> {
    let networks = watch_networks(c.client.clone(), format!("{prefix}-"), pods as usize).await?;
    let (m0, d0, t0) = calls(c);
    let started = Instant::now();
    let created = create_pods(&c.client, prefix, 0..pods, nodes).await?;
    let create_seconds = started.elapsed().as_secs_f64();
    let seen = networks
        .all(operator, &format!("{pods} networks for {prefix}-*"))
        .await?;
    let done = last_seen(&created, &seen, started);
    let latencies = latencies(&created, &seen);
    let (m1, d1, t1) = calls(c);
    if operator.has_exited() {
        return Err(BenchError::OperatorDied(operator.log_tail(30)));
    }
    Ok(Burst {
        seconds: done.duration_since(started).as_secs_f64(),
        create_seconds,
        latency_p50_ms: latencies.p50(),
        latency_p99_ms: latencies.quantile(0.99),
        mutating: m1 - m0,
        describes: d1 - d0,
        throttled: t1 - t0,
    })
}

/// The cloud models a mode runs under: AWS-like, and for SharedIP (full size) a
/// stricter account too.
fn models(mode: Mode, smoke: bool) -> Vec<(&'static str, SimConfig)> {
    let mut aws = SimConfig::default();
    aws.rate_limits.mutate.capacity = 18;
    aws.rate_limits.mutate.refill_per_sec = 12.0;
    aws.latency.mutate.base_ms = 100;
    aws.latency.mutate.jitter_ms = 300;
    aws.attach_delay_ms = 2000;
    let mut strict = aws.clone();
    strict.rate_limits.mutate.capacity = 6;
    strict.rate_limits.mutate.refill_per_sec = 2.0;
    if mode == Mode::SharedIp && !smoke {
        vec![("aws_like", aws), ("strict", strict)]
    } else {
        vec![("aws_like", aws)]
    }
}

pub async fn run(args: &Args) -> Result<(Value, String), BenchError> {
    let one_mode = |mode: Mode| async move {
        let size = args.size(mode);
        args.fits(mode, size)?;
        let mut doc = serde_json::Map::new();
        let mut summary = Vec::new();
        for (name, cloud) in models(mode, args.smoke) {
            eprintln!("burst {}, cloud model {name}", mode_name(mode));
            let (model, line) = run_model(args, mode, size, cloud).await?;
            doc.insert(name.into(), model);
            summary.push(format!("{} {name}: {line}", mode_name(mode)));
        }
        Ok::<_, BenchError>((mode, Value::Object(doc), summary))
    };
    // Measured runs go one at a time; a smoke run only checks the document, so its
    // modes (each a cluster of its own) run side by side.
    let results = if args.smoke {
        futures::future::join_all(args.modes.iter().map(|m| one_mode(*m))).await
    } else {
        let mut done = Vec::new();
        for &mode in &args.modes {
            done.push(one_mode(mode).await);
        }
        done
    };
    let mut modes = serde_json::Map::new();
    let mut summary = Vec::new();
    for result in results {
        let (mode, doc, lines) = result?;
        modes.insert(mode_name(mode).into(), doc);
        summary.extend(lines);
    }
    // The figures the table reads: SharedIP's under the AWS-like model, when run.
    let first = args.modes.first().copied().unwrap_or(Mode::SharedIp);
    let main = &modes[mode_name(first)]["aws_like"];
    let top = json!({
        "cold": main["cold"].clone(),
        "warm": main["warm"].clone(),
        "economy": main["economy"].clone(),
        "operator_bytes_per_pod": main["operator_rss_kib"]["per_podnetwork_bytes"].clone(),
        "figures_from": mode_name(first),
        "modes": modes,
    });
    Ok((top, format!("burst: {}", summary.join("; "))))
}

/// The pool of a mode with warm target `warm` (addresses or ENIs) per node; units a
/// pod gives back go after `release`.
fn mode_pool(mode: Mode, subnet: &str, sg: &str, warm: u32, release: &str) -> PoolBuilder {
    let p = pool("bench", mode)
        .nodes("bench", "true")
        .subnet_ids(&[subnet], SubnetPolicy::MostFree)
        .ip_cooldown("1s")
        .release_delay(release);
    match mode {
        Mode::SharedIp => p.warm_ips(warm),
        Mode::Exclusive => p.warm_enis(warm),
        Mode::Trunk => p.security_groups(&[sg]).warm_enis(warm),
    }
}

/// Deletes pods `prefix-{i}` for every `i` in `which`.
async fn delete_pods(
    c: &Cluster,
    prefix: &str,
    which: impl Iterator<Item = u32>,
) -> Result<(), BenchError> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    futures::stream::iter(which)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.delete(
                    &format!("{prefix}-{i}"),
                    &DeleteParams::default().grace_period(0),
                )
                .await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until the pool's status shows `used` units in use (and as many PodNetworks),
/// none cooling, and warm units that `done` accepts; returns the warm units then.
async fn settle(
    c: &Cluster,
    operator: &ChildGuard,
    what: &str,
    used: u32,
    done: impl Fn(u32) -> bool,
) -> Result<u32, BenchError> {
    let pools: Api<ENIPool> = Api::all(c.client.clone());
    let networks: Api<PodNetwork> = Api::namespaced(c.client.clone(), NAMESPACE);
    wait(operator, what, PHASE_TIMEOUT, || async {
        let a = pools
            .get("bench")
            .await?
            .status
            .unwrap_or_default()
            .addresses;
        let pns = networks.list(&Default::default()).await?.items.len();
        Ok(
            (pns == used as usize && a.used == used && a.cooling == 0 && done(a.warm))
                .then_some(a.warm),
        )
    })
    .await
}

/// The cloud's call counters once they have stopped moving for two seconds (at most
/// thirty).
async fn quiet_calls(c: &Cluster) -> (u64, u64, u64) {
    let mut last = calls(c);
    let mut still = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = calls(c);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 4 {
            break;
        }
    }
    last
}

/// Warm target per node while half the pods go: a few units, as a user keeps.
fn economy_target(mode: Mode) -> u32 {
    match mode {
        Mode::SharedIp => 5,
        Mode::Exclusive | Mode::Trunk => 1,
    }
}

/// Pods `0..pods` go round-robin over the nodes; half of each node's go (its first,
/// third, ... pod), so every node has units to give back.
fn first_half(size: Size) -> impl Iterator<Item = u32> + Clone {
    (0..size.pods).filter(move |i| (i / size.nodes).is_multiple_of(2))
}

/// The calls giving back what half the pods held cannot go below, node by node: per
/// idle ENI or member beyond the target a detach or disassociation and a delete; for
/// SharedIP, the excess addresses packed onto as few ENIs as possible, one unassign
/// per ENI.
fn min_release_calls(mode: Mode, size: Size) -> u32 {
    (0..size.nodes)
        .map(|node| {
            let freed = first_half(size).filter(|i| i % size.nodes == node).count() as u32;
            let excess = freed.saturating_sub(economy_target(mode));
            match mode {
                Mode::SharedIp => excess.div_ceil(SLOTS_PER_ENI),
                Mode::Exclusive | Mode::Trunk => 2 * excess,
            }
        })
        .sum()
}

async fn run_model(
    args: &Args,
    mode: Mode,
    size: Size,
    cloud: SimConfig,
) -> Result<(Value, String), BenchError> {
    let per_node = size.pods.div_ceil(size.nodes);
    let mut config = ServerConfig::new()?;
    config.layout = Layout::builtin_for(args.cloud)?;
    config.behaviour = cloud.clone();
    let instance_type = instance_type_on(args.cloud, INSTANCE_TYPE);
    // The default pod subnets are /24s: 1000 pods need a /20 (4091 usable).
    add_pod_subnet(&mut config.layout, "pods-bench", "10.0.16.0/20")?;
    let c = Cluster::start_with(config).await?;
    let subnet = c.sim.subnet_id("pods-bench")?;
    let sg = c.sim.group_id("default")?;
    // Units stay once warmed: the bursts see allocation, not release.
    let pool = |warm: u32| mode_pool(mode, &subnet, &sg, warm, "1h");
    c.apply_yaml(&pool(0).yaml()).await?;
    let nodes: Vec<String> = (0..size.nodes).map(|i| format!("bench-{i}")).collect();
    for n in &nodes {
        c.add_node(n, instance_type, &[("bench", "true")]).await?;
    }
    let rate = operator_rate(mode);
    let mut flags = vec![
        "--qps".to_owned(),
        rate.0.to_string(),
        "--burst".to_owned(),
        rate.1.to_string(),
    ];
    if let Some((qps, burst)) = operator_action_rate(mode) {
        flags.extend([
            "--action-qps".to_owned(),
            qps.to_string(),
            "--action-burst".to_owned(),
            burst.to_string(),
        ]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator = c.spawn_operator("bench-operator", &flags)?;
    leadership(&c.client, &operator).await?;
    // Nodes taken over (finalizer) and loaded (their instance described).
    let node_api: Api<Node> = Api::all(c.client.clone());
    wait(
        &operator,
        "nodes loaded",
        Duration::from_secs(120),
        || async {
            let list = node_api.list(&Default::default()).await?;
            let managed = list
                .items
                .iter()
                .filter(|n| n.finalizers().iter().any(|f| f == eni_crds::FINALIZER))
                .count();
            let described = c
                .sim
                .calls()
                .iter()
                .find(|(a, ..)| a == "DescribeInstances")
                .map_or(0, |(_, n, _)| *n);
            Ok((managed == nodes.len() && described >= u64::from(size.nodes)).then_some(()))
        },
    )
    .await?;
    if mode == Mode::Trunk {
        // Every node's trunk in use before the first pod: it is made when the pool
        // selects the node, not on demand.
        let trunks: Api<TrunkENI> = Api::all(c.client.clone());
        wait(&operator, "trunks ready", PHASE_TIMEOUT, || async {
            let ready = trunks
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter(|t| t.status.as_ref().is_some_and(|s| s.trunk_eni_id.is_some()))
                .count();
            Ok((ready == nodes.len()).then_some(()))
        })
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(&operator)?;

    eprintln!("cold burst: {} pods on {} nodes", size.pods, size.nodes);
    let cold = burst(&c, &operator, "cold", size.pods, &nodes).await?;
    let idle_after_cold = settle(
        &c,
        &operator,
        "pool status after the cold burst",
        size.pods,
        |_| true,
    )
    .await?;
    let rss_at = rss_kib(&operator)?;

    // Economy: every other cold pod goes, the pool keeps its warm target.
    let target = economy_target(mode);
    eprintln!("deleting half the pods (warm target {target} per node)");
    let (m0, ..) = calls(&c);
    let started = Instant::now();
    c.apply_yaml(&mode_pool(mode, &subnet, &sg, target, "2s").yaml())
        .await?;
    let freed = first_half(size).count() as u32;
    delete_pods(&c, "cold", first_half(size)).await?;
    let remaining = size.pods - freed;
    let idle_after_half = settle(
        &c,
        &operator,
        "pool back at its warm target",
        remaining,
        |warm| warm <= target * size.nodes,
    )
    .await?;
    let economy_seconds = started.elapsed().as_secs_f64();
    // The status shows a unit gone before its ENI's delete call has answered.
    let (m1, ..) = quiet_calls(&c).await;
    let min_release = min_release_calls(mode, size);

    eprintln!("releasing the other pods and warming the pool");
    let second_half = (0..size.pods).filter(|i| !(i / size.nodes).is_multiple_of(2));
    delete_pods(&c, "cold", second_half).await?;
    let warm_pool = match mode {
        Mode::SharedIp => pool(0).min_ips(per_node),
        _ => pool(per_node),
    };
    c.apply_yaml(&warm_pool.yaml()).await?;
    let warm_units = per_node * size.nodes;
    settle(&c, &operator, "warm pool", 0, |warm| warm >= warm_units).await?;

    eprintln!("warm burst: {} pods", size.pods);
    let warm = burst(&c, &operator, "warm", size.pods, &nodes).await?;
    let (_, rss_peak) = memory_kib(operator.pid()).map_err(BenchError::Proc)?;

    let bound = lower_bound(mode, size, &cloud, rate);
    let pods = f64::from(size.pods);
    let per1000 = |calls: u64, of: f64| round(calls as f64 * 1000.0 / of, 1);
    // Honest bounds: the cloud's for the cold burst, and for both the rate at which the
    // pods were created (nothing is allocated before it exists).
    let cold_bound = bound.seconds.max(cold.create_seconds);
    let warm_bound = warm.create_seconds;
    let phase = |b: &Burst, bound_seconds: f64| {
        json!({
            "seconds": round(b.seconds, 2),
            "pods_per_s": round(pods / b.seconds, 1),
            "bound_pods_per_s": round(pods / bound_seconds, 1),
            "bound_ratio": round(bound_seconds / b.seconds, 3),
            "create_rate_per_s": round(pods / b.create_seconds, 1),
            "allocation_latency_ms": {"p50": round(b.latency_p50_ms, 1), "p99": round(b.latency_p99_ms, 1)},
            "mutating_calls": b.mutating,
            "describe_calls": b.describes,
            "throttled_answers": b.throttled,
        })
    };
    let per_podnetwork = (rss_at as f64 - rss_before as f64) * 1024.0 / pods;
    let report = json!({
        "mode": mode_name(mode),
        "pods": size.pods,
        "nodes": size.nodes,
        "instance_type": instance_type,
        "cloud_api": match args.cloud {
            Cloud::Aws => "ec2",
            Cloud::Alibaba => "ecs",
        },
        "cloud": {
            "mutate_bucket_per_action": {"capacity": cloud.rate_limits.mutate.capacity, "refill_per_second": cloud.rate_limits.mutate.refill_per_sec},
            "describe_bucket_per_action": {"capacity": cloud.rate_limits.describe.capacity, "refill_per_second": cloud.rate_limits.describe.refill_per_sec},
            "mutate_latency_ms": [cloud.latency.mutate.base_ms, cloud.latency.mutate.base_ms + cloud.latency.mutate.jitter_ms],
            "attach_delay_ms": cloud.attach_delay_ms,
        },
        "operator_rate_limit": {"qps": rate.0, "burst": rate.1},
        "operator_rate_limit_per_action": operator_action_rate(mode).map(|(qps, burst)| json!({"qps": qps, "burst": burst})),
        "cold": phase(&cold, cold_bound),
        "cold_cloud_bound": {
            "enis_needed": bound.enis,
            "mutating_calls_needed": bound.calls,
            "operator_calls_needed": bound.operator_calls,
            "seconds": round(bound.seconds, 2),
        },
        "warm": phase(&warm, warm_bound),
        "economy": {
            "after": "the cold burst, every pod running (warm target 0)",
            "warm_target": 0,
            "idle_per_node": round(f64::from(idle_after_cold) / f64::from(size.nodes), 1),
            "calls_per_1000_pods": per1000(cold.mutating, pods),
            "min_calls_per_1000_pods": per1000(u64::from(bound.calls), pods),
            "after_deleting_half": {
                "pods_deleted": freed,
                "warm_target": target,
                "idle_per_node": round(f64::from(idle_after_half) / f64::from(size.nodes), 1),
                "seconds_to_settle": round(economy_seconds, 2),
                "calls_per_1000_pods": per1000(m1 - m0, f64::from(freed)),
                "min_calls_per_1000_pods": per1000(u64::from(min_release), f64::from(freed)),
            },
        },
        "operator_rss_kib": {
            "before_pods": rss_before,
            "at_podnetworks": rss_at,
            "podnetworks": size.pods,
            "peak": rss_peak,
            "per_podnetwork_bytes": round(per_podnetwork, 0),
        },
    });
    let line = format!(
        "cold {:.1} pods/s in {:.1} s ({:.2} of bound {:.1}), warm {:.1} pods/s ({:.2} of the create rate {:.1}); mutating calls per 1000 pods {} (min {}); half deleted: {} calls per 1000 (min {}), idle {:.1}/node (target {target})",
        pods / cold.seconds,
        cold.seconds,
        cold_bound / cold.seconds,
        pods / cold_bound,
        pods / warm.seconds,
        warm_bound / warm.seconds,
        pods / warm.create_seconds,
        per1000(cold.mutating, pods),
        per1000(u64::from(bound.calls), pods),
        per1000(m1 - m0, f64::from(freed)),
        per1000(u64::from(min_release), f64::from(freed)),
        f64::from(idle_after_half) / f64::from(size.nodes),
    );
    Ok((report, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, BenchError> {
        let (args, smoke) = crate::split_test_args(s);
        parse_args(args, smoke)
    }

    fn size(pods: u32, nodes: u32) -> Size {
        Size { pods, nodes }
    }

    #[test]
    fn flags_and_sizes() {
        let a = args("").expect("defaults");
        assert_eq!(a.modes, ALL_MODES.to_vec());
        assert_eq!(a.size(Mode::SharedIp), size(1000, 10));
        assert_eq!(a.size(Mode::Exclusive), size(70, 10));
        assert_eq!(a.size(Mode::Trunk), size(1000, 20));
        let a = args("--smoke").expect("smoke");
        assert_eq!(a.size(Mode::SharedIp), size(20, 1));
        assert_eq!(a.size(Mode::Exclusive), size(7, 1));
        let a = args("--smoke --pods 50").expect("pods");
        assert_eq!(a.size(Mode::Trunk), size(50, 1));
        let a = args("--nodes 4 --pods 300 --mode trunk").expect("trunk");
        assert_eq!(
            (a.modes.clone(), a.size(Mode::Trunk)),
            (vec![Mode::Trunk], size(300, 4))
        );
        assert!(
            a.fits(Mode::Trunk, size(300, 4)).is_err(),
            "50 members a node"
        );
        assert!(a.fits(Mode::Trunk, size(200, 4)).is_ok());
        assert!(
            a.fits(Mode::Exclusive, size(29, 4)).is_err(),
            "7 ENIs a node"
        );
        let a = args("--smoke --cloud alibaba").expect("alibaba");
        assert_eq!(a.cloud, Cloud::Alibaba);
        assert_eq!(a.size(Mode::Trunk), size(20, 1));
        assert_eq!(
            args("--cloud alibaba").expect("ecs").size(Mode::Trunk),
            size(1000, 50)
        );
        for bad in [
            "--pods",
            "--pods 0",
            "--pods x",
            "--fast",
            "--cloud gcp",
            "--mode",
            "--mode ipvlan",
        ] {
            assert!(args(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lower_bound_from_calls_buckets_and_latency() {
        let cloud = SimConfig::default();
        let shared =
            |pods, nodes| lower_bound(Mode::SharedIp, size(pods, nodes), &cloud, (10.0, 20.0));
        // 100 pods on one node: 4 ENIs, 8 calls, all within every burst: the attach
        // path is the floor (100 + 100 ms + 2 s).
        let b = shared(100, 1);
        assert_eq!((b.enis, b.calls), (4, 8));
        assert!((b.seconds - 2.2).abs() < 1e-9, "{b:?}");
        // 1000 pods on 10 nodes: 40 ENIs, 80 mutating calls and 40 describes; the
        // operator's mutation bucket (20 at once, 10/s) passes the last at 6 s, its
        // ENI is in use 0.1 + 2 s later.
        let b = shared(1000, 10);
        assert_eq!((b.enis, b.calls, b.operator_calls), (40, 80, 120));
        assert!((b.seconds - 8.1).abs() < 1e-9, "{b:?}");
        // 100 ENIs: the cloud's per-action bucket (50 at once, 5/s) needs 10 s, the
        // operator's for 200 mutations 18 s: the slower one, then the last attach.
        let b = shared(2900, 100);
        assert_eq!((b.enis, b.calls), (100, 200));
        assert!((b.seconds - 20.1).abs() < 1e-9, "{b:?}");
        // Exclusive: an ENI per pod.
        let b = lower_bound(Mode::Exclusive, size(70, 10), &cloud, (10.0, 20.0));
        assert_eq!((b.enis, b.calls, b.operator_calls), (70, 140, 210));
        assert!((b.seconds - 14.1).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn trunk_bound_counts_trunks_members_and_their_actions() {
        let mut cloud = SimConfig::default();
        cloud.rate_limits.mutate.capacity = 18;
        cloud.rate_limits.mutate.refill_per_sec = 12.0;
        // 1000 members on 20 trunks: 1000 creates and 1000 associations (982 past the
        // burst at 12/s = 81.83 s each); 2000 mutations through the operator's 24/s
        // (burst 36) take as long; then one call's latency.
        let b = lower_bound(Mode::Trunk, size(1000, 20), &cloud, (24.0, 36.0));
        assert_eq!((b.enis, b.calls, b.operator_calls), (1000, 2000, 2000));
        assert!((b.seconds - (982.0 / 12.0 + 0.1)).abs() < 1e-9, "{b:?}");
        // A small trunk pool: nothing waits on a bucket; a member's two calls.
        let b = lower_bound(Mode::Trunk, size(5, 1), &cloud, (24.0, 36.0));
        assert!((b.seconds - 0.2).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn half_of_every_node_goes() {
        // 70 pods on 10 nodes: pods 0-9 are each node's first, 10-19 its second...
        let gone: Vec<u32> = first_half(size(70, 10)).collect();
        assert_eq!(gone.len(), 40);
        for node in 0..10 {
            assert_eq!(gone.iter().filter(|i| *i % 10 == node).count(), 4);
        }
        assert_eq!(first_half(size(20, 1)).count(), 10);
    }

    #[test]
    fn release_minimum() {
        // SharedIP: 50 freed a node, 5 kept: 45 addresses fit on 2 ENIs.
        assert_eq!(min_release_calls(Mode::SharedIp, size(1000, 10)), 20);
        // Whole ENIs: 4 of 7 freed, 1 kept: 3 detach-or-disassociate and delete pairs.
        assert_eq!(min_release_calls(Mode::Exclusive, size(7, 1)), 6);
        assert_eq!(min_release_calls(Mode::Exclusive, size(70, 10)), 60);
        assert_eq!(min_release_calls(Mode::Trunk, size(1000, 20)), 20 * 2 * 24);
    }
}
