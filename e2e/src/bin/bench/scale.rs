//! `bench scale`: 10,000 PodNetworks over 500 nodes on the real API server, without a
//! dataplane: the operator's memory per pod, the time from a pod bound to its
//! PodNetwork written with that many objects in the operator's caches, and the
//! operator's CPU per pod.
//!
//! The real control plane; vpc-sim with EC2's model made fast (no mutation latency, a
//! 100 ms attach, token buckets too large to matter) so that the cloud is not what is
//! measured; the operator as a child process of its built binary (its RSS and CPU time
//! are its own), with its cloud buckets raised to 200/s so that warming 500 nodes
//! takes seconds rather than minutes. Nodes are m5.4xlarge in a node subnet widened to
//! a /20 (the default /24 holds 251 nodes), pods get addresses from a /18.
//!
//! The pool is warm before any pod arrives (minIPs = pods per node, steady pods
//! included): every PodNetwork is the operator's own work, no cloud call on its way.
//!
//! 1. Fill: pods are created round-robin over the nodes, bound at creation
//!    (spec.nodeName), by 16 clients, in steps (1,000, 2,500, 5,000, 10,000). After each
//!    step every PodNetwork so far is seen, the operator settles 3 s, and its RSS and
//!    CPU time are read: CPU per pod is the step's CPU (the settling included, resyncs
//!    of everything so far too) over the pods it added.
//! 2. Steady: at full size, 200 more pods one at a time, 20 per second: the time from a
//!    pod's create answer to its PodNetwork first seen, without a backlog.

use std::time::{Duration, Instant};

use eni_crds::{ENIPool, Mode, SubnetPolicy};
use eni_e2e::{cluster::Cluster, process::ChildGuard};
use eni_test_support::pool;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Map, Value, json};
use vpc_sim::{
    behaviour::{BucketSpec, SimConfig},
    server::ServerConfig,
};

use super::{
    BenchError,
    cluster_wait::{
        CREATE_CONCURRENCY, INSTANCE_TYPE, NAMESPACE, PHASE_TIMEOUT, SLOTS_PER_ENI, add_pod_subnet,
        calls, check_fits, create_pod, create_pods, last_seen, latencies, leadership,
        operator_log_levels, rss_kib, wait, watch_networks,
    },
    positive,
    report::{Samples, clock_ticks_per_s, cpu_ms, memory_kib, round},
};

/// The operator's identity, and its log's name.
const OPERATOR: &str = "scale-operator";
/// Pods are named `scale-{i}`.
const PREFIX: &str = "scale";
/// The node subnet (the layout's `nodes-a`), widened: 4091 usable addresses.
const NODE_SUBNET: &str = "10.0.16.0/20";
const NODE_SUBNET_USABLE: u32 = 4096 - 5;
/// The pod subnet: 16,379 usable addresses, inside the default VPC (10.0.0.0/16) and
/// clear of its subnets (10.0.0.0/22) and the node subnet.
const POD_SUBNET: &str = "10.0.64.0/18";
const POD_SUBNET_USABLE: u32 = 16384 - 5;
/// The operator's cloud buckets (mutations, describes): 20 times its defaults.
const OPERATOR_FLAGS: [&str; 8] = [
    "--qps",
    "200",
    "--burst",
    "400",
    "--describe-qps",
    "200",
    "--describe-burst",
    "400",
];
/// Time the operator gets after a step before its memory and CPU are read.
const SETTLE: Duration = Duration::from_secs(3);
/// Pods of the steady phase are created one at a time at this interval (20/s).
const STEADY_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, PartialEq)]
pub struct Args {
    pods: u32,
    nodes: u32,
    /// Pods in the cluster after each fill step, ascending, the last `pods`.
    steps: Vec<u32>,
    /// Pods of the steady phase, on top of `pods`.
    steady: u32,
}

/// `args` after the benchmark's name; `smoke` picks the small default size.
pub fn parse_args(args: impl IntoIterator<Item = String>, smoke: bool) -> Result<Args, BenchError> {
    let (mut pods, mut nodes) = (None, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pods" => pods = Some(positive("--pods", it.next())?),
            "--nodes" => nodes = Some(positive("--nodes", it.next())?),
            other => return Err(BenchError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    // Steps as fractions of the size: the 1,000, 2,500, 5,000, 10,000.
    let (default_pods, default_nodes, steady, fractions): (_, _, _, &[f64]) = if smoke {
        (100, 5, 10, &[0.2, 0.5, 1.0])
    } else {
        (10_000, 500, 200, &[0.1, 0.25, 0.5, 1.0])
    };
    let (pods, nodes) = (pods.unwrap_or(default_pods), nodes.unwrap_or(default_nodes));
    let mut steps: Vec<u32> = fractions
        .iter()
        .map(|f| ((f64::from(pods) * f).round() as u32).clamp(1, pods))
        .collect();
    steps.dedup();
    let total = pods + steady;
    check_fits(total, nodes)?;
    if nodes > NODE_SUBNET_USABLE {
        return Err(BenchError::Usage(format!(
            "{nodes} nodes do not fit the node subnet {NODE_SUBNET} ({NODE_SUBNET_USABLE})"
        )));
    }
    // Every ENI's primary address comes from the pod subnet too.
    let enis = nodes * min_ips(total, nodes).div_ceil(SLOTS_PER_ENI);
    if total + enis > POD_SUBNET_USABLE {
        return Err(BenchError::Usage(format!(
            "{total} pods and {enis} ENIs do not fit the pod subnet {POD_SUBNET} ({POD_SUBNET_USABLE})"
        )));
    }
    Ok(Args {
        pods,
        nodes,
        steps,
        steady,
    })
}

/// Addresses each node holds before pods arrive: enough for every pod of the run.
fn min_ips(pods: u32, nodes: u32) -> u32 {
    pods.div_ceil(nodes)
}

/// EC2's model without the waiting: the operator's work is what is measured.
fn fast_cloud() -> SimConfig {
    let mut cloud = SimConfig::default();
    cloud.latency.mutate.base_ms = 0;
    cloud.latency.mutate.jitter_ms = 0;
    cloud.attach_delay_ms = 100;
    let large = BucketSpec {
        capacity: 10_000,
        refill_per_sec: 10_000.0,
    };
    cloud.rate_limits.mutate = large;
    cloud.rate_limits.describe = large;
    cloud
}

/// One fill step, measured after the operator settled.
struct Step {
    podnetworks: u32,
    added: u32,
    /// From the first create call to the last PodNetwork seen.
    seconds: f64,
    create_seconds: f64,
    latency: Samples,
    rss_kib: u64,
    cpu_ms: f64,
}

impl Step {
    fn bytes_per_pod(&self, rss_before: u64) -> f64 {
        (self.rss_kib as f64 - rss_before as f64) * 1024.0 / f64::from(self.podnetworks)
    }

    fn cpu_ms_per_pod(&self) -> f64 {
        self.cpu_ms / f64::from(self.added)
    }

    fn json(&self, rss_before: u64) -> Value {
        let added = f64::from(self.added);
        json!({
            "podnetworks": self.podnetworks,
            "added": self.added,
            "seconds": round(self.seconds, 2),
            "pods_per_s": round(added / self.seconds, 1),
            "create_rate_per_s": round(added / self.create_seconds, 1),
            "bound_to_podnetwork_ms": latency_json(&self.latency),
            "rss_kib": self.rss_kib,
            "operator_bytes_per_pod": round(self.bytes_per_pod(rss_before), 0),
            "cpu_ms": round(self.cpu_ms, 0),
            "cpu_ms_per_pod": round(self.cpu_ms_per_pod(), 3),
        })
    }
}

fn latency_json(s: &Samples) -> Value {
    json!({
        "samples": s.len(),
        "p50": round(s.p50(), 1),
        "p99": round(s.quantile(0.99), 1),
        "max": round(s.quantile(1.0), 1),
    })
}

/// Adds pods until `podnetworks` exist (from `from`) and waits until each has its
/// PodNetwork; then lets the operator settle and reads its memory and CPU time.
async fn fill(
    c: &Cluster,
    operator: &ChildGuard,
    nodes: &[String],
    from: u32,
    podnetworks: u32,
) -> Result<Step, BenchError> {
    let networks =
        watch_networks(c.client.clone(), format!("{PREFIX}-"), podnetworks as usize).await?;
    let cpu_before = cpu_ms(operator.pid()).map_err(BenchError::Proc)?;
    let started = Instant::now();
    let created = create_pods(&c.client, PREFIX, from..podnetworks, nodes).await?;
    let create_seconds = started.elapsed().as_secs_f64();
    let seen = networks
        .all(operator, &format!("{podnetworks} PodNetworks"))
        .await?;
    let done = last_seen(&created, &seen, started);
    tokio::time::sleep(SETTLE).await;
    let rss_kib = rss_kib(operator)?;
    let cpu_after = cpu_ms(operator.pid()).map_err(BenchError::Proc)?;
    Ok(Step {
        podnetworks,
        added: podnetworks - from,
        seconds: done.duration_since(started).as_secs_f64(),
        create_seconds,
        latency: latencies(&created, &seen),
        rss_kib,
        cpu_ms: cpu_after - cpu_before,
    })
}

/// Creates pods `from..to` one at a time, one every STEADY_INTERVAL: their latencies
/// and the rate they were created at.
async fn steady(
    c: &Cluster,
    operator: &ChildGuard,
    nodes: &[String],
    from: u32,
    to: u32,
) -> Result<(Samples, f64), BenchError> {
    let networks = watch_networks(c.client.clone(), format!("{PREFIX}-"), to as usize).await?;
    let api: Api<Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let mut tick = tokio::time::interval(STEADY_INTERVAL);
    // A slow create delays the next one: never a catch-up burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut created = Vec::new();
    for i in from..to {
        tick.tick().await;
        let name = format!("{PREFIX}-{i}");
        let at = create_pod(&api, &name, &nodes[i as usize % nodes.len()]).await?;
        created.push((name, at));
    }
    let rate = f64::from(to - from) / started.elapsed().as_secs_f64();
    let seen = networks
        .all(operator, &format!("{to} PodNetworks (steady)"))
        .await?;
    Ok((latencies(&created, &seen), rate))
}

pub async fn run(args: &Args) -> Result<(Value, String), BenchError> {
    let started = Instant::now();
    let total = args.pods + args.steady;
    let min_ips = min_ips(total, args.nodes);
    let cloud = fast_cloud();
    let mut config = ServerConfig::new()?;
    config.behaviour = cloud.clone();
    // Instances are registered in `nodes-a`, a /24 in the default layout.
    let node_subnet = config
        .layout
        .subnets
        .iter_mut()
        .find(|s| s.name == "nodes-a")
        .ok_or(BenchError::Missing("the layout's node subnet nodes-a"))?;
    node_subnet.cidr = NODE_SUBNET
        .parse()
        .map_err(|e| BenchError::Usage(format!("subnet {NODE_SUBNET}: {e}")))?;
    add_pod_subnet(&mut config.layout, "pods-scale", POD_SUBNET)?;
    let c = Cluster::start_with(config).await?;
    let subnet = c.sim.subnet_id("pods-scale")?;
    // Addresses stay once warmed: the measurement sees the operator, not allocation.
    let the_pool = pool("scale", Mode::SharedIp)
        .nodes("bench", "true")
        .subnet_ids(&[subnet.as_str()], SubnetPolicy::MostFree)
        .ip_cooldown("1s")
        .min_ips(min_ips)
        .warm_ips(0)
        .release_delay("1h");
    c.apply_yaml(&the_pool.yaml()).await?;

    eprintln!("scale: adding {} nodes", args.nodes);
    let nodes: Vec<String> = (0..args.nodes).map(|i| format!("scale-node-{i}")).collect();
    futures::stream::iter(&nodes)
        .map(|n| c.add_node(n, INSTANCE_TYPE, &[("bench", "true")]))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let nodes_seconds = started.elapsed().as_secs_f64();

    eprintln!("scale: warming {min_ips} addresses on each node");
    // Spawning builds the product's binaries first when they are not current: not
    // part of warming.
    let operator = c.spawn_operator(OPERATOR, &OPERATOR_FLAGS)?;
    let warming = Instant::now();
    leadership(&c.client, &operator).await?;
    let pools: Api<ENIPool> = Api::all(c.client.clone());
    let warm_target = min_ips * args.nodes;
    wait(&operator, "warm pool", PHASE_TIMEOUT, || async {
        let status = pools.get("scale").await?.status.unwrap_or_default();
        Ok((status.addresses.warm >= warm_target).then_some(()))
    })
    .await?;
    let warm_seconds = warming.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_before = rss_kib(&operator)?;
    let cpu_before = cpu_ms(operator.pid()).map_err(BenchError::Proc)?;

    let filling = Instant::now();
    let mut steps = Vec::new();
    let mut from = 0;
    for &to in &args.steps {
        eprintln!("scale: fill to {to} pods");
        let step = fill(&c, &operator, &nodes, from, to).await?;
        eprintln!(
            "scale: {to} PodNetworks, RSS {} KiB, {:.2} ms CPU per pod",
            step.rss_kib,
            step.cpu_ms_per_pod()
        );
        steps.push(step);
        from = to;
    }
    let fill_seconds = filling.elapsed().as_secs_f64();
    let fill_cpu_ms = cpu_ms(operator.pid()).map_err(BenchError::Proc)? - cpu_before;

    eprintln!("scale: steady, {} pods at 20/s", args.steady);
    let steadying = Instant::now();
    let (steady, steady_rate) = steady(&c, &operator, &nodes, args.pods, total).await?;
    tokio::time::sleep(SETTLE).await;
    let steady_seconds = steadying.elapsed().as_secs_f64();
    let (rss_end, rss_peak) = memory_kib(operator.pid()).map_err(BenchError::Proc)?;
    let status = pools.get("scale").await?.status.unwrap_or_default();
    let (mutating, describes, throttled) = calls(&c);
    let log = operator_log_levels(&c, OPERATOR)?;
    for line in &log.first {
        eprintln!("scale: the operator logged: {line}");
    }

    let last = steps.last().ok_or(BenchError::Missing("a fill step"))?;
    let bytes_per_pod = last.bytes_per_pod(rss_before);
    let cpu_per_pod = fill_cpu_ms / f64::from(args.pods);
    let by_step: Map<String, Value> = steps
        .iter()
        .map(|s| {
            (
                s.podnetworks.to_string(),
                json!(round(s.bytes_per_pod(rss_before), 0)),
            )
        })
        .collect();
    let doc = json!({
        "pods": args.pods,
        "nodes": args.nodes,
        "instance_type": INSTANCE_TYPE,
        "min_ips_per_node": min_ips,
        "operator_bytes_per_pod": round(bytes_per_pod, 0),
        "operator_bytes_per_pod_by_step": by_step,
        "bound_to_podnetwork_ms": latency_json(&steady),
        "steady": {
            "podnetworks_before": args.pods,
            "pods": args.steady,
            "create_rate_per_s": round(steady_rate, 1),
        },
        "fill": steps.iter().map(|s| s.json(rss_before)).collect::<Vec<_>>(),
        "reconcile_cpu_ms_per_pod": round(cpu_per_pod, 3),
        "operator_rss_kib": {
            "before_pods": rss_before,
            "at_end": rss_end,
            "peak": rss_peak,
        },
        "pool_at_end": {
            "nodes": status.nodes,
            "enis": status.enis,
            "used": status.addresses.used,
            "warm": status.addresses.warm,
        },
        "cloud_calls": {"mutating": mutating, "describes": describes, "throttled": throttled},
        "operator_log": {"warnings": log.warnings, "errors": log.errors},
        "cloud": {
            "mutate_latency_ms": cloud.latency.mutate.base_ms,
            "describe_latency_ms": [cloud.latency.describe.base_ms, cloud.latency.describe.base_ms + cloud.latency.describe.jitter_ms],
            "attach_delay_ms": cloud.attach_delay_ms,
            "bucket_per_action": {"capacity": cloud.rate_limits.mutate.capacity, "refill_per_second": cloud.rate_limits.mutate.refill_per_sec},
        },
        "operator_flags": OPERATOR_FLAGS,
        "clock_ticks_per_s": clock_ticks_per_s(),
        "phase_seconds": {
            "nodes": round(nodes_seconds, 1),
            "warm": round(warm_seconds, 1),
            "fill": round(fill_seconds, 1),
            "steady": round(steady_seconds, 1),
            "total": round(started.elapsed().as_secs_f64(), 1),
        },
    });
    let by_step_line = steps
        .iter()
        .map(|s| {
            format!(
                "{}: {:.1}",
                s.podnetworks,
                s.bytes_per_pod(rss_before) / 1024.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!(
        "scale: {} PodNetworks on {} nodes: operator +{:.1} KiB per pod ({by_step_line}), bound→PodNetwork p50 {:.1} ms p99 {:.1} ms at {}, reconcile CPU {:.2} ms per pod",
        args.pods,
        args.nodes,
        bytes_per_pod / 1024.0,
        steady.p50(),
        steady.quantile(0.99),
        args.pods,
        cpu_per_pod,
    );
    Ok((doc, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, BenchError> {
        let (args, smoke) = crate::split_test_args(s);
        parse_args(args, smoke)
    }

    #[test]
    fn flags() {
        assert_eq!(
            args("").ok(),
            Some(Args {
                pods: 10_000,
                nodes: 500,
                steps: vec![1000, 2500, 5000, 10_000],
                steady: 200,
            })
        );
        assert_eq!(
            args("--smoke").ok(),
            Some(Args {
                pods: 100,
                nodes: 5,
                steps: vec![20, 50, 100],
                steady: 10,
            })
        );
        assert_eq!(
            args("--nodes 20 --pods 3000").ok(),
            Some(Args {
                pods: 3000,
                nodes: 20,
                steps: vec![300, 750, 1500, 3000],
                steady: 200,
            })
        );
        // Tiny sizes: steps of at least one pod, none twice.
        assert_eq!(
            args("--smoke --pods 2").ok().map(|a| a.steps),
            Some(vec![1, 2])
        );
        for bad in [
            "--pods",
            "--pods 0",
            "--nodes x",
            "--fast",
            "--cloud aws",
            // 203 pods fit a node: 1000 + the 10 steady ones do not fit 4.
            "--smoke --pods 1000 --nodes 4",
            // The pod subnet's 16,379 addresses.
            "--pods 20000 --nodes 1000",
            // The node subnet's 4091.
            "--nodes 5000",
        ] {
            assert!(args(bad).is_err(), "{bad} accepted");
        }
        assert!(args("--smoke --pods 1000 --nodes 5").is_ok());
    }

    #[test]
    fn warm_for_every_pod_of_the_run() {
        assert_eq!(min_ips(10_200, 500), 21);
        assert_eq!(min_ips(110, 5), 22);
        assert_eq!(min_ips(1, 5), 1);
    }
}
