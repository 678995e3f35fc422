//! bench-alloc: burst allocation from cold and from warm pools under an AWS-like cloud,
//! and the operator's memory at scale.
//!
//! The real control plane, vpc-sim with EC2's default behaviour (per-action token buckets:
//! mutating 50 tokens refilled at 5/s, describes 100 at 20/s; 100-400 ms per mutation,
//! 2 s attach) and a /20 pod subnet, and the operator as a child process of its built
//! binary (product defaults, so its RSS is its own). Nodes are m5.4xlarge (7 pool ENIs of
//! 29 secondary addresses).
//!
//! 1. Cold: N pods, spread over fresh nodes whose pool holds nothing (warmIPs 0).
//! 2. The cold pods are deleted; the pool is given minIPs = pods per node and the burst
//!    waits until the status shows that many warm addresses.
//! 3. Warm: N new pods.
//!
//! Each burst reports pods/s (first create to last network), how long creating the pods
//! alone took (a warm burst is bound by it: the API server's create rate, not the
//! operator), the per-pod allocation latency (create answered → PodNetwork seen), and the
//! cloud calls made meanwhile. Prints one JSON document, then a one-line summary.
//!
//! `--cloud alibaba` runs the same with vpc-sim playing Alibaba Cloud and the operator
//! on its ECS provider (nodes ecs.g7.4xlarge: the same 8 ENIs of 30 addresses).
//!
//! Usage: `bench-alloc [--pods N] [--nodes N] [--quick] [--cloud aws|alibaba]`

use std::{
    collections::HashMap,
    fs,
    time::{Duration, Instant},
};

use eni_crds::{ENIPool, Mode, PodNetwork, SubnetPolicy};
use eni_e2e::{
    cluster::{Cluster, ClusterError},
    process::ChildGuard,
    vpc::{Cloud, instance_type_on},
};
use eni_test_support::{SimError, pool};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use vpc_sim::{
    behaviour::SimConfig,
    layout::{Layout, SubnetSpec},
    server::ServerConfig,
};

const INSTANCE_TYPE: &str = "m5.4xlarge";
/// Secondary addresses a pool ENI of INSTANCE_TYPE holds (30 per ENI, one primary).
const SLOTS_PER_ENI: u32 = 29;
/// Pool ENIs per node (8 per instance, one the node's own).
const ENIS_PER_NODE: u32 = 7;
/// The operator's own token bucket (its defaults, which the bench does not change).
const OPERATOR_QPS: f64 = 10.0;
const OPERATOR_BURST: f64 = 20.0;
const NAMESPACE: &str = "default";
/// Pods created at once: enough to outrun the operator, few enough for a 2-core machine.
const CREATE_CONCURRENCY: usize = 16;
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("usage: bench-alloc [--pods N] [--nodes N] [--quick] [--cloud aws|alibaba]: {0}")]
    Usage(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("vpc-sim: {0}")]
    Server(#[from] vpc_sim::server::ServerError),
    #[error(transparent)]
    Layout(#[from] vpc_sim::layout::LayoutError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(#[from] watcher::Error),
    #[error("{pods} pods do not fit on {nodes} {INSTANCE_TYPE} nodes ({per} each at most)")]
    TooMany { pods: u32, nodes: u32, per: u32 },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("timed out after {timeout:?} waiting for {what}; the operator's log ends with:\n{log}")]
    Stuck {
        timeout: Duration,
        what: String,
        log: String,
    },
    #[error("the operator exited; its log ends with:\n{0}")]
    OperatorDied(String),
    #[error("reading the operator's memory: {0}")]
    Proc(std::io::Error),
}

#[derive(Debug, PartialEq)]
struct Args {
    pods: u32,
    nodes: u32,
    cloud: Cloud,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, BenchError> {
    let (mut pods, mut nodes, mut quick, mut cloud) = (None, None, false, Cloud::Aws);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> Result<u32, BenchError> {
            let v = it
                .next()
                .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value")))?;
            match v.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(BenchError::Usage(format!(
                    "{flag} {v:?} is not a positive number"
                ))),
            }
        };
        match a.as_str() {
            "--pods" => pods = Some(number("--pods")?),
            "--nodes" => nodes = Some(number("--nodes")?),
            "--quick" => quick = true,
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
    let (default_pods, default_nodes) = if quick { (100, 2) } else { (1000, 10) };
    Ok(Args {
        pods: pods.unwrap_or(default_pods),
        nodes: nodes.unwrap_or(default_nodes),
        cloud,
    })
}

/// The fastest a cold burst can finish: the mutating calls it cannot do without (each
/// node's ENIs, created with their addresses and attached: two calls per ENI), paced by
/// every token bucket they pass (the cloud's per action, the operator's for all), and at
/// least one create, attach and attach delay before the first pod on a node is served.
#[derive(Debug, PartialEq)]
struct LowerBound {
    enis: u32,
    calls: u32,
    seconds: f64,
}

fn lower_bound(pods: u32, nodes: u32, cloud: &SimConfig) -> LowerBound {
    let per_node = pods.div_ceil(nodes);
    let enis = nodes * per_node.div_ceil(SLOTS_PER_ENI);
    // CreateNetworkInterface and AttachNetworkInterface, one bucket each.
    let calls = 2 * enis;
    let bucket = cloud.rate_limits.mutate;
    let per_action =
        (f64::from(enis) - f64::from(bucket.capacity)).max(0.0) / bucket.refill_per_sec;
    let operator = (f64::from(calls) - OPERATOR_BURST).max(0.0) / OPERATOR_QPS;
    let latency = (2 * cloud.latency.mutate.base_ms + cloud.attach_delay_ms) as f64 / 1000.0;
    LowerBound {
        enis,
        calls,
        seconds: per_action.max(operator).max(latency),
    }
}

/// Resident and peak memory of a process, in KiB, from /proc.
fn memory_kib(pid: u32) -> Result<(u64, u64), BenchError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(BenchError::Proc)?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                BenchError::Proc(std::io::Error::other(format!(
                    "no {name} in /proc/{pid}/status"
                )))
            })
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Calls the cloud answered so far: (mutating, describes, throttled).
fn calls(c: &Cluster) -> (u64, u64, u64) {
    c.sim
        .calls()
        .iter()
        .fold((0, 0, 0), |(m, d, t), (action, n, throttled)| {
            if action.starts_with("Describe") {
                (m, d + n, t + throttled)
            } else {
                (m + n, d, t + throttled)
            }
        })
}

/// When each of `n` live PodNetworks named `prefix-*` was first seen (a watch, so the
/// bench does not load the API server with lists).
async fn networks_ready(
    client: Client,
    prefix: String,
    n: usize,
) -> Result<HashMap<String, Instant>, BenchError> {
    let api: Api<PodNetwork> = Api::namespaced(client, NAMESPACE);
    let mut seen = HashMap::new();
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(pn) = stream.try_next().await? {
        let name = pn.name_any();
        if name.starts_with(&prefix) && pn.metadata.deletion_timestamp.is_none() {
            seen.entry(name).or_insert_with(Instant::now);
            if seen.len() >= n {
                return Ok(seen);
            }
        }
    }
    Err(BenchError::Timeout(
        PHASE_TIMEOUT,
        "the PodNetwork watch ended".into(),
    ))
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
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
    let ready = tokio::spawn(networks_ready(
        c.client.clone(),
        format!("{prefix}-"),
        pods as usize,
    ));
    let (m0, d0, t0) = calls(c);
    let api: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let started = Instant::now();
    let created = futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            let node = &nodes[i as usize % nodes.len()];
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("{prefix}-{i}")},
                    "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/pause"}]},
                }))
                .map_err(kube::Error::SerdeError)?;
                let created = api.create(&PostParams::default(), &pod).await?;
                Ok::<_, kube::Error>((created.name_any(), Instant::now()))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let create_seconds = started.elapsed().as_secs_f64();
    let seen = tokio::time::timeout(PHASE_TIMEOUT, ready)
        .await
        .map_err(|_| BenchError::Timeout(PHASE_TIMEOUT, format!("{pods} networks for {prefix}-*")))?
        .map_err(|e| BenchError::Timeout(PHASE_TIMEOUT, format!("network watch task: {e}")))??;
    let done = seen.values().max().copied().unwrap_or(started);
    // The watch may show a network before the create call has answered: 0 then.
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(name, at)| {
            let s = seen.get(name)?;
            Some(s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let (m1, d1, t1) = calls(c);
    if operator.has_exited() {
        return Err(BenchError::OperatorDied(operator.log_tail(30)));
    }
    Ok(Burst {
        seconds: done.duration_since(started).as_secs_f64(),
        create_seconds,
        latency_p50_ms: quantile(&mut latencies, 0.5),
        latency_p99_ms: quantile(&mut latencies, 0.99),
        mutating: m1 - m0,
        describes: d1 - d0,
        throttled: t1 - t0,
    })
}

/// Polls `check` until it returns Some, failing early if the operator died.
async fn wait<T, F, Fut>(
    operator: &ChildGuard,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BenchError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if operator.has_exited() {
            return Err(BenchError::OperatorDied(operator.log_tail(30)));
        }
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Stuck {
                timeout,
                what: what.to_owned(),
                log: operator.log_tail(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

async fn run(args: Args) -> Result<(), BenchError> {
    let per_node_max = ENIS_PER_NODE * SLOTS_PER_ENI;
    if args.pods > args.nodes * per_node_max {
        return Err(BenchError::TooMany {
            pods: args.pods,
            nodes: args.nodes,
            per: per_node_max,
        });
    }
    let per_node = args.pods.div_ceil(args.nodes);
    let cloud = SimConfig::default();
    let mut config = ServerConfig::new()?;
    config.layout = Layout::builtin_for(args.cloud)?;
    config.behaviour = cloud.clone();
    let zone = config
        .layout
        .subnets
        .first()
        .map(|s| s.az.clone())
        .unwrap_or_default();
    let instance_type = instance_type_on(args.cloud, INSTANCE_TYPE);
    // The default pod subnets are /24s: 1000 pods need a /20 (4091 usable).
    config.layout.subnets.push(SubnetSpec {
        name: "pods-bench".into(),
        cidr: "10.0.16.0/20"
            .parse()
            .map_err(|e| BenchError::Usage(format!("subnet: {e}")))?,
        az: zone,
        id: None,
        tags: [("eni-operator.io/pods".to_owned(), "true".to_owned())].into(),
    });
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
    let leases: Api<Lease> =
        Api::namespaced(c.client.clone(), eni_e2e::control_plane::SYSTEM_NAMESPACE);
    wait(
        &operator,
        "leadership",
        Duration::from_secs(120),
        || async {
            Ok(leases
                .get_opt("eni-operator")
                .await?
                .and_then(|l| l.spec?.holder_identity))
        },
    )
    .await?;
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
    let (rss_before, _) = memory_kib(operator.pid())?;

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
    let (rss_at, _) = memory_kib(operator.pid())?;

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
    let (_, rss_peak) = memory_kib(operator.pid())?;

    let bound = lower_bound(args.pods, args.nodes, &cloud);
    let pods = f64::from(args.pods);
    let per100 = |calls: u64| round(calls as f64 * 100.0 / pods, 1);
    let phase = |b: &Burst| {
        json!({
            "seconds": round(b.seconds, 2),
            "pod_create_seconds": round(b.create_seconds, 2),
            "allocation_latency_ms": {"p50": round(b.latency_p50_ms, 1), "p99": round(b.latency_p99_ms, 1)},
            "pods_per_second": round(pods / b.seconds, 1),
            "mutating_calls": b.mutating,
            "mutating_calls_per_100_pods": per100(b.mutating),
            "describe_calls": b.describes,
            "throttled_answers": b.throttled,
        })
    };
    let ratio = cold.seconds / warm.seconds;
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
        "cold": phase(&cold),
        "cold_lower_bound": {
            "enis_needed": bound.enis,
            "mutating_calls_needed": bound.calls,
            "seconds": round(bound.seconds, 2),
            "pods_per_second": round(pods / bound.seconds, 1),
        },
        "warm": phase(&warm),
        "warm_over_cold_speedup": round(ratio, 2),
        "warm_over_cold_p50_latency_speedup": round(cold.latency_p50_ms / warm.latency_p50_ms.max(0.1), 1),
        "operator_rss_kib": {
            "before_pods": rss_before,
            "at_podnetworks": rss_at,
            "podnetworks": args.pods,
            "peak": rss_peak,
            "per_podnetwork": round((rss_at as f64 - rss_before as f64) / pods, 2),
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(kube::Error::SerdeError)?
    );
    println!(
        "bench-alloc: {} pods on {} nodes: cold {:.1} pods/s (bound {:.1}, p50 {:.0} ms), warm {:.1} pods/s ({:.1}x, p50 {:.0} ms); mutating calls per 100 pods: cold {}, warm {}; operator RSS {} MiB before pods, {} MiB at {} PodNetworks",
        args.pods,
        args.nodes,
        pods / cold.seconds,
        pods / bound.seconds,
        cold.latency_p50_ms,
        pods / warm.seconds,
        ratio,
        warm.latency_p50_ms,
        per100(cold.mutating),
        per100(warm.mutating),
        rss_before / 1024,
        rss_at / 1024,
        args.pods,
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    eni_e2e::init_crypto();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The client's retries while the control plane starts are expected.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off")
                }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let result = match parse_args(std::env::args().skip(1)) {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-alloc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, BenchError> {
        parse_args(s.split_whitespace().map(String::from))
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
            args("--quick").ok(),
            Some(Args {
                pods: 100,
                nodes: 2,
                cloud: Cloud::Aws
            })
        );
        assert_eq!(
            args("--quick --pods 50").ok(),
            Some(Args {
                pods: 50,
                nodes: 2,
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
            args("--quick --cloud alibaba").ok().map(|a| a.cloud),
            Some(Cloud::Alibaba)
        );
        for bad in ["--pods", "--pods 0", "--pods x", "--fast", "--cloud gcp"] {
            assert!(args(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.99), 5.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn lower_bound_from_calls_buckets_and_latency() {
        let cloud = SimConfig::default();
        // 100 pods on one node: 4 ENIs, 8 calls, all within every burst: the attach
        // path is the floor (100 + 100 ms + 2 s).
        let b = lower_bound(100, 1, &cloud);
        assert_eq!((b.enis, b.calls), (4, 8));
        assert!((b.seconds - 2.2).abs() < 1e-9, "{b:?}");
        // 1000 pods on 10 nodes: 40 ENIs, 80 calls; the operator's bucket (20 at once,
        // 10/s) paces them: 6 s.
        let b = lower_bound(1000, 10, &cloud);
        assert_eq!((b.enis, b.calls), (40, 80));
        assert!((b.seconds - 6.0).abs() < 1e-9, "{b:?}");
        // 100 ENIs: the cloud's per-action bucket (50 at once, 5/s) needs 10 s, the
        // operator's for 200 calls 18 s: the slower one is the bound.
        let b = lower_bound(2900, 100, &cloud);
        assert_eq!((b.enis, b.calls), (100, 200));
        assert!((b.seconds - 18.0).abs() < 1e-9, "{b:?}");
    }
}
