//! Chaos on the stand-in bed: pods of all three modes created and deleted across six
//! nodes while the cloud answers late, fails before and *after* taking effect, throttles
//! and describes a lagging state; operator replicas (leader and standby) and agents are
//! SIGKILLed and kube-apiserver and etcd are restarted. Invariants are read from
//! independent sources while it runs (`samplers`) and once it has converged
//! (`end_state`). Needs root.
//!
//! The run is drawn from a seed: `ENI_CHAOS_SEED=<n>` replays one (the seed and the
//! command are printed at the start and in a failure).

mod end_state;
mod plan;
mod samplers;

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use eni_crds::Mode;
use eni_e2e::{
    bed::{Bed, BedError},
    cluster::{self, ClusterError},
    trial::{self, check, result},
};
use eni_test_support::pool;
use libtest_mimic::{Arguments, Failed};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::json;
use vpc_sim::behaviour::SimConfig;

use end_state::{EniBounds, LivePod};
use plan::Disruption;

/// Creates and deletes the churn does.
const OPS: usize = 640;
/// Pods alive at once, at most, per node of each mode (Exclusive nodes hold 7 ENIs
/// besides the primary, one of them warm).
const CAP: [(&str, usize); 3] = [("shared", 10), ("exclusive", 5), ("trunk", 6)];
/// Nodes per mode, labelled `pool=<mode>`.
const NODES: [(&str, &str, &str); 6] = [
    ("s0", "shared", "m5.xlarge"),
    ("s1", "shared", "m5.xlarge"),
    ("x0", "exclusive", "m5.4xlarge"),
    ("x1", "exclusive", "m5.4xlarge"),
    ("t0", "trunk", "m5.xlarge"),
    ("t1", "trunk", "m5.xlarge"),
];
const WARM_IPS: u32 = 3;
const RELEASE_DELAY: &str = "10s";
const WARM_ENIS_EXCLUSIVE: u32 = 1;
const WARM_ENIS_TRUNK: u32 = 2;
/// The operator's time limit of one cloud call, below the time vpc-sim holds back a
/// timed-out answer: a timeout is seen by the operator after the call took effect.
const ATTEMPT_TIMEOUT_SECONDS: &str = "2";
const TIMEOUT_HANG_MS: u64 = 3000;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let trials = vec![trial::as_root(
        "chaos_in_every_mode",
        "network namespaces",
        chaos,
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

/// The seed of this run: `ENI_CHAOS_SEED`, or a new one.
fn seed() -> u64 {
    std::env::var("ENI_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        })
}

fn replay(seed: u64) -> String {
    format!("ENI_CHAOS_SEED={seed} cargo test --locked --workspace --test chaos")
}

/// vpc-sim as EC2 answers (latency 50-150 ms describes, 100-400 ms mutations), with a
/// 2 s describe lag, tight buckets, 1 s attachments, and 4% of calls failing
/// before any effect plus 5% taking effect with the answer held back past the
/// operator's timeout.
fn chaos_cloud() -> SimConfig {
    let mut c = SimConfig {
        attach_delay_ms: 1000,
        detach_delay_ms: 500,
        describe_lag_ms: 2000,
        ..SimConfig::default()
    };
    // Below the operator's own pacing (10/s, burst 20): bursts of pod starts and the
    // resyncs of six nodes run into RequestLimitExceeded.
    c.rate_limits.mutate.capacity = 4;
    c.rate_limits.mutate.refill_per_sec = 1.5;
    c.rate_limits.describe.capacity = 10;
    c.rate_limits.describe.refill_per_sec = 4.0;
    c.faults.error_probability = 0.04;
    c.faults.timeout_probability = 0.05;
    c.faults.timeout_hang_ms = TIMEOUT_HANG_MS;
    c
}

async fn chaos() -> Result<(), Failed> {
    let seed = seed();
    println!("  chaos seed {seed}; replay with: {}", replay(seed));
    let mut bed = Bed::start(chaos_cloud()).await.map_err(|e| e.to_string())?;
    bed.add_operator_args(&["--cloud-attempt-timeout-seconds", ATTEMPT_TIMEOUT_SECONDS]);
    let outcome = run(&bed, seed).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("{}", bed.logs(40));
            let kept = bed.keep_logs();
            Err(format!(
                "{e}\nlogs kept in {}\nreplay with: {}",
                kept.display(),
                replay(seed)
            )
            .into())
        }
    }
}

/// Retries an API call of the test itself across a control-plane restart.
async fn retrying<F, Fut>(what: &str, mut call: F) -> Result<(), BedError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), BedError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(BedError::Kube(kube::Error::Api(e))) if e.code == 409 => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(BedError::Other(format!("{what}: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Counts of what happened, for the summary and the floors.
#[derive(Debug, Default)]
struct Happened {
    creates: usize,
    deletes: usize,
    disruptions: BTreeMap<Disruption, usize>,
    /// Processes that exited on their own and were started again (lost leases).
    self_restarts: Vec<String>,
    log: Vec<String>,
}

async fn run(bed: &Bed, seed: u64) -> Result<(), BedError> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, label, instance_type) in NODES {
        bed.add_node(name, instance_type, &[("pool", label)])
            .await?;
    }
    let vm = bed.add_host("vm", "t3.medium").await?;
    let sg = bed.vpc.group_id("default").await?;
    let pools = [
        pool("shared", Mode::SharedIp)
            .nodes("pool", "shared")
            .ip_cooldown("2s")
            .warm_ips(WARM_IPS),
        pool("exclusive", Mode::Exclusive)
            .nodes("pool", "exclusive")
            .warm_enis(WARM_ENIS_EXCLUSIVE),
        pool("trunk", Mode::Trunk)
            .nodes("pool", "trunk")
            .security_groups(&[sg.as_str()])
            .warm_enis(WARM_ENIS_TRUNK),
    ]
    // Excess warm capacity goes back to the cloud within the run, so that the end state
    // can be held to the warm targets.
    .map(|p| p.release_delay(RELEASE_DELAY));
    for p in pools {
        bed.apply_yaml(&p.yaml()).await?;
    }
    bed.start_operator("op-0")?;
    bed.start_operator("op-1")?;
    bed.wait_agents().await?;

    let stop = AtomicBool::new(false);
    let (outcome, api, cloud) = tokio::join!(
        async {
            let r = churn_and_converge(bed, &mut rng).await;
            stop.store(true, Ordering::Relaxed);
            r
        },
        samplers::api(bed.client.clone(), &stop),
        samplers::cloud(bed, &stop),
    );
    let (happened, live) = outcome?;

    let mut failures = Vec::new();
    println!(
        "  churn: {} creates, {} deletes; disruptions {:?}; started again after exiting on their own: {:?}",
        happened.creates, happened.deletes, happened.disruptions, happened.self_restarts
    );
    check(
        &format!(
            "{} creates + deletes >= 600",
            happened.creates + happened.deletes
        ),
        happened.creates + happened.deletes >= 600,
        &mut failures,
    );
    for (kind, planned) in plan::COUNTS {
        let done = happened.disruptions.get(&kind).copied().unwrap_or(0);
        check(
            &format!("{}: {done} of {planned} planned", kind.as_str()),
            done == planned,
            &mut failures,
        );
    }
    let counters = bed.vpc.counters().await?;
    let total = |field: &str| -> u64 {
        counters
            .as_object()
            .map(|m| m.values().filter_map(|c| c[field].as_u64()).sum())
            .unwrap_or(0)
    };
    let (calls, faulted, timed_out, throttled) = (
        total("calls"),
        total("faulted"),
        total("timed_out"),
        total("throttled"),
    );
    check(
        &format!(
            "cloud faults happened: {calls} calls, {faulted} failed before effect, {timed_out} timed out after effect, {throttled} throttled"
        ),
        faulted > 0 && timed_out > 0 && throttled > 0,
        &mut failures,
    );
    check(
        &format!(
            "API server: {} samples of {} attempts ({} errors, bounded by a third), {} units held by two PodNetworks {:?}",
            api.samples,
            api.attempts,
            api.errors,
            api.doubles.len(),
            api.doubles_report()
        ),
        api.samples >= 400 && api.errors * 3 <= api.attempts && api.doubles.is_empty(),
        &mut failures,
    );
    check(
        &format!(
            "cloud: {} samples, {} PodNetworks looked up on their ENIs, {} violations {:?}",
            cloud.samples,
            cloud.checked,
            cloud.violations.len(),
            cloud.violations
        ),
        cloud.samples >= 100 && cloud.checked > 0 && cloud.violations.is_empty(),
        &mut failures,
    );

    let pns = bed.podnetworks().await?;
    end_state::cloud(
        bed,
        &pns,
        &[
            EniBounds {
                pool: "exclusive",
                warm_enis: WARM_ENIS_EXCLUSIVE as usize,
            },
            EniBounds {
                pool: "trunk",
                warm_enis: WARM_ENIS_TRUNK as usize,
            },
        ],
        // m5.xlarge: 15 addresses per ENI, 14 of them secondary.
        ("shared", WARM_IPS as usize, 14),
        &mut failures,
    )
    .await?;
    let violations = bed.vpc.violations().await?;
    check(
        &format!("vpc-sim invariant violations at the end: {violations:?}"),
        violations.is_empty(),
        &mut failures,
    );
    end_state::kernel(bed, &live, &mut failures)?;
    end_state::sandboxes(bed, &live, &mut failures)?;
    end_state::traffic(&vm.netns, &live, &mut failures);
    let stats = bed.kubelet_stats();
    let (adds, retried, dels) = stats.iter().fold((0, 0, 0), |acc, (_, s)| {
        (acc.0 + s.adds_ok, acc.1 + s.adds_failed, acc.2 + s.dels_ok)
    });
    println!(
        "{}",
        json!({
            "seed": seed,
            "creates": happened.creates, "deletes": happened.deletes,
            "disruptions": happened.disruptions.iter().map(|(k, v)| (k.as_str(), v)).collect::<BTreeMap<_, _>>(),
            "self_restarts": happened.self_restarts.len(),
            "cloud": {"calls": calls, "failed_before_effect": faulted, "timed_out_after_effect": timed_out, "throttled": throttled},
            "api_samples": api.samples, "api_attempts": api.attempts, "api_errors": api.errors,
            "cloud_samples": cloud.samples, "cloud_checks": cloud.checked,
            "violations": api.doubles.len() + cloud.violations.len() + failures.len(),
            "cni": {"add_ok": adds, "add_retried": retried, "del_ok": dels},
            "live_pods": live.len(),
        })
    );
    println!("  timeline: {:?}", happened.log);
    result(failures)
}

/// The churn with its disruptions, then convergence; returns what happened and the pods
/// alive at the end.
async fn churn_and_converge(
    bed: &Bed,
    rng: &mut StdRng,
) -> Result<(Happened, Vec<LivePod>), BedError> {
    // Disruptions by operation index; one that cannot apply yet (its target is still
    // down) moves 10 operations on, so every planned one happens.
    let mut pending: std::collections::VecDeque<(usize, Disruption)> = plan::plan(rng, OPS).into();
    let cap: BTreeMap<&str, usize> = CAP.into_iter().collect();
    let label_of: BTreeMap<&str, &str> = NODES.iter().map(|(n, l, _)| (*n, *l)).collect();
    let live_cap: usize = NODES.iter().map(|(_, l, _)| cap[l]).sum();
    let mut happened = Happened::default();
    let mut live: Vec<(String, String)> = Vec::new();
    let mut dead_agents: Vec<(String, Instant)> = Vec::new();
    let mut dead_ops: Vec<(String, Instant)> = Vec::new();
    let started = Instant::now();
    for i in 0..OPS {
        let on =
            |node: &str, live: &[(String, String)]| live.iter().filter(|(_, n)| n == node).count();
        let room: Vec<&str> = NODES
            .iter()
            .map(|(n, _, _)| *n)
            .filter(|n| on(n, &live) < cap[label_of[n]])
            .collect();
        let create = !room.is_empty() && (live.len() < live_cap / 2 || rng.random_bool(0.5));
        if create {
            let node = room.choose(rng).copied().unwrap_or("s0");
            let name = format!("c{i}");
            retrying("creating a pod", || async {
                bed.create_pod("default", &name, node, &[]).await.map(drop)
            })
            .await?;
            live.push((name, node.to_owned()));
            happened.creates += 1;
        } else if !live.is_empty() {
            let (name, _) = live.swap_remove(rng.random_range(0..live.len()));
            retrying("deleting a pod", || bed.delete_pod("default", &name)).await?;
            happened.deletes += 1;
        }
        let mut later = Vec::new();
        while pending.front().is_some_and(|(at, _)| *at <= i) {
            let Some((_, kind)) = pending.pop_front() else {
                break;
            };
            let at = started.elapsed().as_secs_f64();
            match disrupt(bed, kind, rng, &mut dead_ops, &mut dead_agents).await? {
                Some(what) => {
                    *happened.disruptions.entry(kind).or_default() += 1;
                    happened.log.push(format!("{at:.1}s {what}"));
                }
                None => later.push((i + 10, kind)),
            }
        }
        for event in later {
            let at = pending.partition_point(|(j, _)| *j <= event.0);
            pending.insert(at, event);
        }
        let now = Instant::now();
        for (op, _) in dead_ops.iter().filter(|(_, at)| *at <= now) {
            bed.start_operator(op)?;
        }
        dead_ops.retain(|(_, at)| *at > now);
        for (node, _) in dead_agents.iter().filter(|(_, at)| *at <= now) {
            bed.start_agent(node)?;
        }
        dead_agents.retain(|(_, at)| *at > now);
        happened.self_restarts.extend(bed.restart_exited()?);
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..150))).await;
    }
    for (op, _) in dead_ops.drain(..) {
        bed.start_operator(&op)?;
    }
    for (node, _) in dead_agents.drain(..) {
        bed.start_agent(&node)?;
    }
    let churn_secs = started.elapsed().as_secs_f64();
    // The faults stop; what the churn left must converge.
    bed.vpc
        .configure(json!({"faults": {"error_probability": 0.0, "timeout_probability": 0.0}}))
        .await?;
    let settle = Instant::now();
    let mut ready = Vec::new();
    for (name, node) in &live {
        happened.self_restarts.extend(bed.restart_exited()?);
        let ip = bed
            .wait_ready("default", name, Duration::from_secs(240))
            .await?;
        ready.push((name.clone(), node.clone(), ip));
    }
    cluster::wait_for(
        "only the live pods' PodNetworks left",
        Duration::from_secs(180),
        || async {
            let n = bed
                .podnetworks()
                .await
                .map_err(|e| ClusterError::Build("podnetworks", e.to_string()))?
                .len();
            Ok((n == live.len()).then_some(()))
        },
    )
    .await?;
    println!(
        "  churn {churn_secs:.0}s; converged {:.1}s after it; waiting one collection period",
        settle.elapsed().as_secs_f64()
    );
    // One collection period: gc interval 10 s + grace 20 s (FAST_OPERATOR), a resync,
    // and the describe lag.
    tokio::time::sleep(Duration::from_secs(45)).await;
    happened.self_restarts.extend(bed.restart_exited()?);
    Ok((happened, ready))
}

/// Carries out one disruption; `None` when it could not apply (no leader elected at
/// that moment, the target already down).
async fn disrupt(
    bed: &Bed,
    kind: Disruption,
    rng: &mut StdRng,
    dead_ops: &mut Vec<(String, Instant)>,
    dead_agents: &mut Vec<(String, Instant)>,
) -> Result<Option<String>, BedError> {
    const REPLICAS: [&str; 2] = ["op-0", "op-1"];
    let back_in = |rng: &mut StdRng, ms: std::ops::Range<u64>| {
        Instant::now() + Duration::from_millis(rng.random_range(ms))
    };
    Ok(match kind {
        Disruption::KillLeader | Disruption::KillStandby => {
            // Wait for a leader: after a kill the standby takes a lease period to lead.
            let deadline = Instant::now() + Duration::from_secs(20);
            let leader = loop {
                match bed.leader().await {
                    Ok(Some(l))
                        if REPLICAS.contains(&l.as_str())
                            && !dead_ops.iter().any(|(d, _)| *d == l) =>
                    {
                        break Some(l);
                    }
                    _ if Instant::now() > deadline => break None,
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            };
            let Some(leader) = leader else {
                return Ok(None);
            };
            let target = if kind == Disruption::KillLeader {
                leader
            } else {
                REPLICAS
                    .iter()
                    .find(|r| **r != leader)
                    .map(|r| (*r).to_owned())
                    .unwrap_or_default()
            };
            if dead_ops.iter().any(|(d, _)| *d == target) {
                return Ok(None);
            }
            bed.kill_operator(&target);
            dead_ops.push((target.clone(), back_in(rng, 1000..4000)));
            Some(format!("{} ({target})", kind.as_str()))
        }
        Disruption::KillAgent => {
            let candidates: Vec<&str> = NODES
                .iter()
                .map(|(n, _, _)| *n)
                .filter(|n| !dead_agents.iter().any(|(d, _)| d == n))
                .collect();
            let Some(node) = candidates.choose(rng).copied() else {
                return Ok(None);
            };
            bed.kill_agent(node);
            dead_agents.push((node.to_owned(), back_in(rng, 500..3000)));
            Some(format!("{} ({node})", kind.as_str()))
        }
        Disruption::RestartApiServer => {
            let down = Duration::from_millis(rng.random_range(1000..4000));
            bed.cp.restart_apiserver(down).await?;
            Some(format!("{} after {down:?} down", kind.as_str()))
        }
        Disruption::RestartEtcd => {
            let down = Duration::from_millis(rng.random_range(1000..4000));
            bed.cp.restart_etcd(down).await?;
            Some(format!("{} after {down:?} down", kind.as_str()))
        }
    })
}
