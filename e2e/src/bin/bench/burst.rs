//! `bench burst`: SharedIP burst allocation from cold and from warm pools under an
//! AWS-like cloud, what the pools hold afterwards, and the operator's memory.
//!
//! The real control plane, vpc-sim with an AWS-like model (per-action token buckets:
//! mutating 18 tokens refilled at 12/s, describes 100 at 20/s; 100-400 ms per mutation,
//! 2 s attach) and a /20 pod subnet, and the operator as a child process of its built
//! binary (product defaults, so its RSS is its own). Nodes are m5.4xlarge (7 pool ENIs
//! of 29 secondary addresses). The same run repeats under a stricter account (mutating
//! 6 tokens at 2/s) to show the operator adapts without failing pods.
//!
//! 1. Cold: N pods, spread over fresh nodes whose pool holds nothing (warmIPs 0).
//! 2. The cold pods are deleted; the pool is given minIPs = pods per node and the burst
//!    waits until the status shows that many warm addresses.
//! 3. Warm: N new pods.
//!
//! Pods are created by 16 clients at once, and the create rate is reported beside each
//! burst: a burst cannot beat it. Each burst's bound is the slower of that rate and the
//! cloud's: the calls the plan cannot do without (per ENI a create with its addresses,
//! an attach and one describe that sees it in use) through the operator's own buckets
//! (mutations, describes) and the cloud's per-action buckets, then the last ENI's
//! attach delay. `bound_ratio` is actual over bound (at most 1).
//!
//! `--cloud alibaba` runs the same with vpc-sim playing Alibaba Cloud and the operator
//! on its ECS provider (nodes ecs.g7.4xlarge: the same 8 ENIs of 30 addresses).

use std::time::{Duration, Instant};

use eni_crds::{ENIPool, Mode, PodNetwork, SubnetPolicy};
use eni_e2e::{
    cluster::Cluster,
    process::ChildGuard,
    vpc::{Cloud, instance_type_on},
};
use eni_test_support::pool;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::{Value, json};
use vpc_sim::{behaviour::SimConfig, layout::Layout, server::ServerConfig};

use super::{
    BenchError,
    cluster_wait::{
        CREATE_CONCURRENCY, INSTANCE_TYPE, NAMESPACE, PHASE_TIMEOUT, SLOTS_PER_ENI, add_pod_subnet,
        calls, check_fits, create_pods, last_seen, latencies, leadership, wait, watch_networks,
    },
    positive,
    report::{memory_kib, round},
};

/// The operator's own token bucket (its defaults, which the bench does not change).
const OPERATOR_QPS: f64 = 10.0;
const OPERATOR_BURST: f64 = 20.0;

#[derive(Debug, PartialEq)]
pub struct Args {
    pods: u32,
    nodes: u32,
    cloud: Cloud,
}

/// `args` after the benchmark's name; `smoke` picks the small default size.
pub fn parse_args(args: impl IntoIterator<Item = String>, smoke: bool) -> Result<Args, BenchError> {
    let (mut pods, mut nodes, mut cloud) = (None, None, Cloud::Aws);
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
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let (default_pods, default_nodes) = if smoke { (20, 1) } else { (1000, 10) };
    Ok(Args {
        pods: pods.unwrap_or(default_pods),
        nodes: nodes.unwrap_or(default_nodes),
        cloud,
    })
}

/// The fastest a cold burst can finish on the cloud's side: the calls it cannot do
/// without (per ENI a create with its addresses and an attach, mutating, and one
/// describe that sees it in use), paced by every token bucket they pass (the cloud's
/// per action, the operator's for mutations and for describes), then the last ENI's
/// attach delay.
#[derive(Debug, PartialEq)]
struct LowerBound {
    enis: u32,
    /// Mutating calls.
    calls: u32,
    /// Every call through the operator's bucket.
    operator_calls: u32,
    seconds: f64,
}

fn lower_bound(pods: u32, nodes: u32, cloud: &SimConfig) -> LowerBound {
    let per_node = pods.div_ceil(nodes);
    let enis = nodes * per_node.div_ceil(SLOTS_PER_ENI);
    // CreateNetworkInterface and AttachNetworkInterface, one bucket each.
    let calls = 2 * enis;
    let operator_calls = calls + enis;
    let bucket = cloud.rate_limits.mutate;
    let per_action =
        (f64::from(enis) - f64::from(bucket.capacity)).max(0.0) / bucket.refill_per_sec;
    // The operator's buckets: one for mutations, one for describes.
    let operator = ((f64::from(calls) - OPERATOR_BURST).max(0.0) / OPERATOR_QPS)
        .max((f64::from(enis) - OPERATOR_BURST).max(0.0) / OPERATOR_QPS);
    // The last attach passes the buckets at `pacing`; its ENI is in use one call and the
    // attach delay later. With no bucket in the way: a create, an attach and the delay.
    let base = cloud.latency.mutate.base_ms as f64 / 1000.0;
    let pacing = per_action.max(operator);
    let attach = cloud.attach_delay_ms as f64 / 1000.0;
    LowerBound {
        enis,
        calls,
        operator_calls,
        seconds: (pacing + base).max(2.0 * base) + attach,
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

/// The cloud models a run goes through: AWS-like, then a stricter account.
fn models() -> [(&'static str, SimConfig); 2] {
    let mut aws = SimConfig::default();
    aws.rate_limits.mutate.capacity = 18;
    aws.rate_limits.mutate.refill_per_sec = 12.0;
    aws.latency.mutate.base_ms = 100;
    aws.latency.mutate.jitter_ms = 300;
    aws.attach_delay_ms = 2000;
    let mut strict = aws.clone();
    strict.rate_limits.mutate.capacity = 6;
    strict.rate_limits.mutate.refill_per_sec = 2.0;
    [("aws_like", aws), ("strict", strict)]
}

pub async fn run(args: &Args) -> Result<(Value, String), BenchError> {
    let mut doc = serde_json::Map::new();
    let mut summary = Vec::new();
    for (name, cloud) in models() {
        eprintln!("burst, cloud model {name}");
        let (model, line) = run_model(args, cloud).await?;
        doc.insert(name.into(), model);
        summary.push(format!("{name}: {line}"));
    }
    let aws = &doc["aws_like"];
    let top = json!({
        "pods": args.pods,
        "nodes": args.nodes,
        "cold": aws["cold"].clone(),
        "warm": aws["warm"].clone(),
        "economy": aws["economy"].clone(),
        "operator_bytes_per_pod": aws["operator_rss_kib"]["per_podnetwork_bytes"].clone(),
        "models": doc,
    });
    Ok((top, format!("burst: {}", summary.join("; "))))
}

async fn run_model(args: &Args, cloud: SimConfig) -> Result<(Value, String), BenchError> {
    check_fits(args.pods, args.nodes)?;
    let per_node = args.pods.div_ceil(args.nodes);
    let mut config = ServerConfig::new()?;
    config.layout = Layout::builtin_for(args.cloud)?;
    config.behaviour = cloud.clone();
    let instance_type = instance_type_on(args.cloud, INSTANCE_TYPE);
    // The default pod subnets are /24s: 1000 pods need a /20 (4091 usable).
    add_pod_subnet(&mut config.layout, "pods-bench", "10.0.16.0/20")?;
    let c = Cluster::start_with(config).await?;
    let subnet = c.sim.subnet_id("pods-bench")?;
    // Addresses stay once warmed: the measurement sees allocation, not release.
    let pool = || {
        pool("bench", Mode::SharedIp)
            .nodes("bench", "true")
            .subnet_ids(&[subnet.as_str()], SubnetPolicy::MostFree)
            .ip_cooldown("1s")
            .warm_ips(0)
            .release_delay("1h")
    };
    c.apply_yaml(&pool().yaml()).await?;
    let nodes: Vec<String> = (0..args.nodes).map(|i| format!("bench-{i}")).collect();
    for n in &nodes {
        c.add_node(n, instance_type, &[("bench", "true")]).await?;
    }
    let operator = c.spawn_operator("bench-operator", &[])?;
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
            Ok((managed == nodes.len() && described >= u64::from(args.nodes)).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, _) = memory_kib(operator.pid()).map_err(BenchError::Proc)?;

    eprintln!("cold burst: {} pods on {} nodes", args.pods, args.nodes);
    let cold = burst(&c, &operator, "cold", args.pods, &nodes).await?;
    let pools: Api<ENIPool> = Api::all(c.client.clone());
    wait(
        &operator,
        "pool status used",
        Duration::from_secs(120),
        || async {
            Ok(pools
                .get("bench")
                .await?
                .status
                .filter(|s| s.addresses.used == args.pods))
        },
    )
    .await?;
    let (rss_at, _) = memory_kib(operator.pid()).map_err(BenchError::Proc)?;
    let settled = pools.get("bench").await?.status.unwrap_or_default();

    eprintln!("releasing the cold pods and warming the pool");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    futures::stream::iter(0..args.pods)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.delete(
                    &format!("cold-{i}"),
                    &DeleteParams::default().grace_period(0),
                )
                .await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    c.apply_yaml(&pool().min_ips(per_node).yaml()).await?;
    let warm_target = per_node * args.nodes;
    wait(&operator, "warm pool", PHASE_TIMEOUT, || async {
        let pns = Api::<PodNetwork>::namespaced(c.client.clone(), NAMESPACE)
            .list(&Default::default())
            .await?;
        let status = pools.get("bench").await?.status.unwrap_or_default();
        let a = status.addresses;
        Ok(
            (pns.items.is_empty() && a.used == 0 && a.cooling == 0 && a.warm >= warm_target)
                .then_some(()),
        )
    })
    .await?;

    eprintln!("warm burst: {} pods", args.pods);
    let warm = burst(&c, &operator, "warm", args.pods, &nodes).await?;
    let (_, rss_peak) = memory_kib(operator.pid()).map_err(BenchError::Proc)?;

    let bound = lower_bound(args.pods, args.nodes, &cloud);
    let pods = f64::from(args.pods);
    let per1000 = |calls: u64| round(calls as f64 * 1000.0 / pods, 1);
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
        "pods": args.pods,
        "nodes": args.nodes,
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
        "operator_rate_limit": {"qps": OPERATOR_QPS, "burst": OPERATOR_BURST},
        "cold": phase(&cold, cold_bound),
        "cold_cloud_bound": {
            "enis_needed": bound.enis,
            "mutating_calls_needed": bound.calls,
            "operator_calls_needed": bound.operator_calls,
            "seconds": round(bound.seconds, 2),
        },
        "warm": phase(&warm, warm_bound),
        "economy": {
            "after": "the cold burst, every pod running (warmIPs 0)",
            "warm_target": 0,
            "idle_per_node": round(f64::from(settled.addresses.warm) / f64::from(args.nodes), 1),
            "calls_per_1000_pods": per1000(cold.mutating),
            "min_calls_per_1000_pods": per1000(u64::from(bound.calls)),
        },
        "operator_rss_kib": {
            "before_pods": rss_before,
            "at_podnetworks": rss_at,
            "podnetworks": args.pods,
            "peak": rss_peak,
            "per_podnetwork_bytes": round(per_podnetwork, 0),
        },
    });
    let line = format!(
        "cold {:.1} pods/s ({:.2} of bound {:.1}), warm {:.1} pods/s ({:.2} of the create rate {:.1}); mutating calls per 1000 pods {} (min {}); operator +{:.1} KiB per PodNetwork",
        pods / cold.seconds,
        cold_bound / cold.seconds,
        pods / cold_bound,
        pods / warm.seconds,
        warm_bound / warm.seconds,
        pods / warm.create_seconds,
        per1000(cold.mutating),
        per1000(u64::from(bound.calls)),
        per_podnetwork / 1024.0,
    );
    Ok((report, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, BenchError> {
        let smoke = s.contains("--smoke");
        parse_args(
            s.split_whitespace()
                .filter(|a| *a != "--smoke")
                .map(String::from),
            smoke,
        )
    }

    #[test]
    fn flags() {
        assert_eq!(
            args("").ok(),
            Some(Args {
                pods: 1000,
                nodes: 10,
                cloud: Cloud::Aws
            })
        );
        assert_eq!(
            args("--smoke").ok(),
            Some(Args {
                pods: 20,
                nodes: 1,
                cloud: Cloud::Aws
            })
        );
        assert_eq!(
            args("--smoke --pods 50").ok(),
            Some(Args {
                pods: 50,
                nodes: 1,
                cloud: Cloud::Aws
            })
        );
        assert_eq!(
            args("--nodes 4 --pods 300").ok(),
            Some(Args {
                pods: 300,
                nodes: 4,
                cloud: Cloud::Aws
            })
        );
        assert_eq!(
            args("--smoke --cloud alibaba").ok().map(|a| a.cloud),
            Some(Cloud::Alibaba)
        );
        for bad in ["--pods", "--pods 0", "--pods x", "--fast", "--cloud gcp"] {
            assert!(args(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lower_bound_from_calls_buckets_and_latency() {
        let cloud = SimConfig::default();
        // 100 pods on one node: 4 ENIs, 8 calls, all within every burst: the attach
        // path is the floor (100 + 100 ms + 2 s).
        let b = lower_bound(100, 1, &cloud);
        assert_eq!((b.enis, b.calls), (4, 8));
        assert!((b.seconds - 2.2).abs() < 1e-9, "{b:?}");
        // 1000 pods on 10 nodes: 40 ENIs, 80 mutating calls and 40 describes; the
        // operator's mutation bucket (20 at once, 10/s) passes the last at 6 s, its
        // ENI is in use 0.1 + 2 s later.
        let b = lower_bound(1000, 10, &cloud);
        assert_eq!((b.enis, b.calls, b.operator_calls), (40, 80, 120));
        assert!((b.seconds - 8.1).abs() < 1e-9, "{b:?}");
        // 100 ENIs: the cloud's per-action bucket (50 at once, 5/s) needs 10 s, the
        // operator's for 200 mutations 18 s: the slower one, then the last attach.
        let b = lower_bound(2900, 100, &cloud);
        assert_eq!((b.enis, b.calls), (100, 200));
        assert!((b.seconds - 20.1).abs() < 1e-9, "{b:?}");
    }
}
