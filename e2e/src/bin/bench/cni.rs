//! `bench cni`: what a container runtime waits for, eni-cni against the reference
//! `ptp` + `host-local` pair, interleaved in one run.
//!
//! A stand-in bed node (vpc-sim's namespaces, the agent as the chart's identity) whose
//! only runtime is this benchmark. Every pod is created in the API server and its
//! PodNetwork allocated by the operator from a warm pool before timing starts. Then, per
//! pod, as a runtime does it: a fresh network namespace made outside the timed part,
//! the plugin exec'd from the node's namespace with the CNI environment and its config
//! on stdin (no `ip netns exec` wrapper), ADD, later DEL. The reference pair does the
//! same for a namespace of its own in the same iteration; which plugin goes first
//! alternates. Sequentially, then from 8 workers at once.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use eni_crds::{Mode, PodNetwork};
use eni_e2e::{bed::Bed, cluster::fast_cloud};
use eni_test_support::pool;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::{
    BenchError,
    report::{Samples, memory_kib, p50_ratio},
};

const NODE: &str = "n1";
/// 7 pool ENIs of 29 secondary addresses: room for every pod of a full run.
const INSTANCE_TYPE: &str = "m5.4xlarge";
const WORKERS: usize = 8;
/// Pods whose ADD/DEL warm the agent's connection and caches, not measured.
const WARMUP: usize = 2;
/// Pods wired at once when the agent's memory is read: kubelet's default maximum.
const HELD: usize = 110;

pub struct Size {
    /// Pods per phase (sequential, concurrent).
    pub pods: usize,
}

pub const FULL: Size = Size { pods: 96 };
pub const SMOKE: Size = Size { pods: 8 };

/// One pod's turn: its identity and the two fresh namespaces (ours, the reference's).
#[derive(Clone)]
struct Job {
    name: String,
    uid: String,
    ours: PathBuf,
    reference: PathBuf,
}

#[derive(Default)]
struct Timings {
    eni_add: Samples,
    eni_del: Samples,
    ref_add: Samples,
    ref_del: Samples,
}

impl Timings {
    fn merge(&mut self, other: Timings) {
        self.eni_add.extend(other.eni_add);
        self.eni_del.extend(other.eni_del);
        self.ref_add.extend(other.ref_add);
        self.ref_del.extend(other.ref_del);
    }

    fn json(&self) -> Value {
        json!({
            "eni_cni": { "add": self.eni_add.json(), "del": self.eni_del.json() },
            "ptp_host_local": { "add": self.ref_add.json(), "del": self.ref_del.json() },
            "add_p50_ratio": p50_ratio(&self.eni_add, &self.ref_add),
            "del_p50_ratio": p50_ratio(&self.eni_del, &self.ref_del),
        })
    }

    fn summary(&self) -> String {
        format!(
            "ADD p50 {:.1} vs {:.1} ms ({:.2}x), DEL p50 {:.1} vs {:.1} ms ({:.2}x)",
            self.eni_add.p50(),
            self.ref_add.p50(),
            p50_ratio(&self.eni_add, &self.ref_add),
            self.eni_del.p50(),
            self.ref_del.p50(),
            p50_ratio(&self.eni_del, &self.ref_del),
        )
    }
}

/// The two plugins and their configurations.
#[derive(Clone)]
struct Plugins {
    eni_cni: PathBuf,
    eni_conf: String,
    ptp: PathBuf,
    ref_conf: String,
}

pub async fn run(size: &Size) -> Result<(Value, String), BenchError> {
    let ptp = PathBuf::from("/usr/lib/cni/ptp");
    if !ptp.exists() {
        return Err(BenchError::Missing(
            "/usr/lib/cni/ptp (Debian: containernetworking-plugins)",
        ));
    }
    let bed = Bed::start(fast_cloud()).await?;
    let total = WARMUP + 2 * size.pods;
    let node = bed
        .add_node_without_runtime(NODE, INSTANCE_TYPE, &[("pool", "bench")])
        .await?;
    let warm = pool("bench", Mode::SharedIp)
        .nodes("pool", "bench")
        .min_ips(total as u32);
    bed.apply_yaml(&warm.yaml()).await?;
    bed.start_operator("op-0")?;
    bed.wait_agents().await?;

    let mut jobs = Vec::new();
    for i in 0..total {
        let name = format!("cni-{i}");
        let created = bed.create_pod("default", &name, NODE, &[]).await?;
        let (ours, reference) = (
            format!("{}c{i}a", bed.prefix),
            format!("{}c{i}b", bed.prefix),
        );
        eni_netns::create(&ours).await?;
        eni_netns::create(&reference).await?;
        jobs.push(Job {
            name,
            uid: created.uid().unwrap_or_default(),
            ours: eni_netns::path(&ours),
            reference: eni_netns::path(&reference),
        });
    }
    let allocated = Instant::now();
    eni_e2e::cluster::wait_for(
        "the operator's PodNetworks for every pod",
        Duration::from_secs(300),
        || {
            let networks: Api<PodNetwork> = Api::namespaced(bed.client.clone(), "default");
            async move {
                let n = networks.list(&Default::default()).await?.items.len();
                Ok((n >= total).then_some(()))
            }
        },
    )
    .await?;
    let allocated = allocated.elapsed();

    let dir = tempfile::tempdir().map_err(BenchError::Io)?;
    let plugins = Plugins {
        eni_cni: bed.cni_bin().to_path_buf(),
        eni_conf: json!({
            "cniVersion": "1.1.0", "name": "eni", "type": "eni-cni",
            "socketPath": node.socket_path,
        })
        .to_string(),
        ptp,
        ref_conf: json!({
            "cniVersion": "1.0.0", "name": "ref", "type": "ptp",
            "ipam": { "type": "host-local", "subnet": "10.99.0.0/16", "dataDir": dir.path().join("ipam") },
        })
        .to_string(),
    };
    let host = eni_netns::path(&node.netns);
    let (warmup, rest) = jobs.split_at(WARMUP);
    let (sequential_jobs, concurrent_jobs) = rest.split_at(size.pods);
    worker(&host, warmup.to_vec(), plugins.clone()).await?;

    let sequential = worker(&host, sequential_jobs.to_vec(), plugins.clone()).await?;

    let started = Instant::now();
    let mut handles = Vec::new();
    for chunk in concurrent_jobs.chunks(concurrent_jobs.len().div_ceil(WORKERS).max(1)) {
        let (host, chunk, plugins) = (host.clone(), chunk.to_vec(), plugins.clone());
        handles.push(tokio::spawn(
            async move { worker(&host, chunk, plugins).await },
        ));
    }
    let mut concurrent = Timings::default();
    for h in handles {
        concurrent.merge(h.await.map_err(|e| BenchError::Failed(e.to_string()))??);
    }
    let concurrent_secs = started.elapsed().as_secs_f64();
    let agent = bed
        .agent_pid(NODE)
        .ok_or(BenchError::Missing("the node's agent process"))?;
    let (agent_rss, agent_peak) = memory_kib(agent).map_err(BenchError::Io)?;
    // The agent's memory with a full node's pods wired: the first pods' sandboxes come
    // back (new container ids, the namespaces their DEL left), are read, and go again.
    let held = jobs[..HELD.min(jobs.len())].to_vec();
    let held_n = held.len();
    let held_rss = {
        let (host, plugins) = (host.clone(), plugins.clone());
        tokio::task::spawn_blocking(move || {
            eni_netns::run_in_blocking(&host, move || hold(&held, &plugins, agent))
        })
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))???
    };

    for job in &jobs {
        for ns in [&job.ours, &job.reference] {
            if let Some(name) = ns.file_name().and_then(|n| n.to_str()) {
                let _ = eni_netns::delete(name);
            }
        }
    }
    let mut seq = sequential.json();
    seq["pods"] = json!(sequential.eni_add.len());
    let mut conc = concurrent.json();
    conc["pods"] = json!(concurrent.eni_add.len());
    conc["workers"] = json!(WORKERS);
    conc["seconds"] = json!(super::report::round(concurrent_secs, 2));
    let doc = json!({
        "add_p50_ratio": seq["add_p50_ratio"],
        "del_p50_ratio": seq["del_p50_ratio"],
        "sequential": seq,
        "concurrent": conc,
        "agent_rss_bytes": held_rss * 1024,
        "agent": {
            "pods_wired": held_n,
            "rss_kib_with_pods_wired": held_rss,
            "rss_kib_after_the_timed_phases": agent_rss,
            "peak_kib_after_the_timed_phases": agent_peak,
            "podnetworks_cached": total,
        },
        "setup": {
            "node": INSTANCE_TYPE,
            "pods_allocated_by_the_operator": total,
            "allocation_seconds": super::report::round(allocated.as_secs_f64(), 2),
            "warmup_pods": WARMUP,
            "reference": "ptp + host-local (containernetworking-plugins)",
        },
    });
    let summary = format!(
        "cni: sequential {}; {WORKERS}-way {}; agent RSS {:.1} MiB with {held_n} pods wired",
        sequential.summary(),
        concurrent.summary(),
        held_rss as f64 / 1024.0
    );
    Ok((doc, summary))
}

/// Runs `jobs` one after another from a thread in the node's namespace (where a
/// runtime on the node execs its plugins): per job both plugins' ADD, then both DELs,
/// the first plugin alternating.
async fn worker(host: &Path, jobs: Vec<Job>, plugins: Plugins) -> Result<Timings, BenchError> {
    let host = host.to_path_buf();
    let run = move || -> Result<Timings, BenchError> {
        let mut t = Timings::default();
        for (i, job) in jobs.iter().enumerate() {
            let container = format!("bench-{}", job.name);
            let ours_first = i % 2 == 0;
            for step in ["ADD", "DEL"] {
                for ours in [ours_first, !ours_first] {
                    let ms = if ours {
                        exec(
                            &plugins.eni_cni,
                            &plugins.eni_conf,
                            step,
                            &container,
                            &job.ours,
                            job,
                        )?
                    } else {
                        exec(
                            &plugins.ptp,
                            &plugins.ref_conf,
                            step,
                            &container,
                            &job.reference,
                            job,
                        )?
                    };
                    match (ours, step) {
                        (true, "ADD") => t.eni_add.push(ms),
                        (true, _) => t.eni_del.push(ms),
                        (false, "ADD") => t.ref_add.push(ms),
                        (false, _) => t.ref_del.push(ms),
                    }
                }
            }
        }
        Ok(t)
    };
    tokio::task::spawn_blocking(move || eni_netns::run_in_blocking(&host, run))
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))??
}

/// Wires every job's pod (eni-cni ADD), reads the agent's RSS (KiB) with all of them
/// wired, then unwires them; from a thread in the node's namespace.
fn hold(jobs: &[Job], plugins: &Plugins, agent: u32) -> Result<u64, BenchError> {
    let step = |command: &str| {
        jobs.iter().try_for_each(|job| {
            let container = format!("held-{}", job.name);
            exec(
                &plugins.eni_cni,
                &plugins.eni_conf,
                command,
                &container,
                &job.ours,
                job,
            )
            .map(drop)
        })
    };
    step("ADD")?;
    let rss = memory_kib(agent)
        .map(|(rss, _)| rss)
        .map_err(BenchError::Io);
    step("DEL")?;
    rss
}

/// Execs `plugin` for one CNI command; milliseconds from exec to its exit.
fn exec(
    plugin: &Path,
    conf: &str,
    command: &str,
    container: &str,
    netns: &Path,
    job: &Job,
) -> Result<f64, BenchError> {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_UID={}",
                job.name, job.uid
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(BenchError::Io)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.as_bytes()).map_err(BenchError::Io)?;
    }
    let out = child.wait_with_output().map_err(BenchError::Io)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "plugin {} {command} for {}: {}{}",
            plugin.display(),
            job.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(ms)
}
