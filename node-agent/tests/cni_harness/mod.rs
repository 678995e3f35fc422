//! Shared by the CNI and agent tests: an in-process agent on a real unix socket, fed by
//! a fixture PodNetwork store (no API server), a recording status writer, a test
//! dataplane, and a runner for the real `eni-cni` binary.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use eni_crds::{Mac, PodNetwork, PodNetworkStatus};
use eni_node_agent::agent::cache::{self, CacheWriter};
use eni_node_agent::agent::kube::StatusWriter;
use eni_node_agent::agent::metrics::Metrics;
use eni_node_agent::agent::server;
use eni_node_agent::agent::state::StateDir;
use eni_node_agent::agent::wiring::Wiring;
use eni_node_agent::agent::{Agent, AgentConfig};
use eni_node_agent::dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, Egress, KernelFeatures, PodRequest, PodRoute,
    RecoveredPod, UnwireRequest, WiredPod, WiringKind,
};
use eni_test_support::podnetwork as fixtures;
use eni_test_support::{AllocationBuilder, FakeEni, FakeEniKind, FakeVpc, allocation};
use ipnet::Ipv4Net;
use kube::runtime::watcher::Event;
use serde_json::Value;

pub const NODE: &str = "node-a";

/// The node's own ENI in the fake VPC: address 10.0.0.10, default route via 10.0.0.1.
pub const PRIMARY: FakeEni = FakeEni {
    id: "eni-0004",
    mac: Mac::new([2, 0, 0, 0, 0, 4]),
    device_index: 0,
    subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24),
    block: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 10), 32),
    kind: FakeEniKind::Primary,
};

/// The shared ENI of subnet 10.0.1.0/24 that the harness's PodNetworks name; pods take
/// addresses below 10.0.1.128.
pub const SHARED: FakeEni = FakeEni {
    id: "eni-0a1b",
    mac: Mac::new([2, 0, 0, 0, 1, 1]),
    device_index: 1,
    subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 24),
    block: Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 25),
    kind: FakeEniKind::Secondary,
};

/// `address` on the shared ENI, route table 1001, as the operator writes it.
pub fn shared_allocation(address: &str) -> AllocationBuilder {
    allocation(&SHARED, address.parse().expect("an IPv4 address")).route_table(1001)
}

/// A PodNetwork of this node as the operator would write it.
pub fn podnetwork(namespace: &str, name: &str, uid: &str, address: &str) -> PodNetwork {
    fixtures::podnetwork(namespace, name, NODE, shared_allocation(address).build())
        .uid(uid)
        .build()
}

/// Status writes, recorded.
#[derive(Clone, Default)]
pub struct RecordingStatus {
    pub writes: Arc<Mutex<Vec<(String, String, PodNetworkStatus)>>>,
}

impl RecordingStatus {
    pub fn last(&self, namespace: &str, name: &str) -> Option<PodNetworkStatus> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(ns, n, _)| ns == namespace && n == name)
            .map(|(_, _, s)| s.clone())
    }
}

impl StatusWriter for RecordingStatus {
    async fn write_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodNetworkStatus,
    ) -> Result<(), kube::Error> {
        self.writes
            .lock()
            .unwrap()
            .push((namespace.into(), name.into(), status.clone()));
        Ok(())
    }
}

/// A dataplane that keeps its "kernel" in memory and, like this machine's kernel,
/// lacks ipvlan and VLAN. It behaves as the real one is specified to: idempotent wire,
/// unwire of anything gone succeeds, check reports wiring that vanished.
#[derive(Clone, Default)]
pub struct MemoryWiring {
    pub wired: Arc<Mutex<HashMap<String, PodRequest>>>,
    pub wire_calls: Arc<Mutex<usize>>,
}

impl Wiring for MemoryWiring {
    fn features(&self) -> KernelFeatures {
        KernelFeatures::default()
    }

    async fn wire(&self, request: &PodRequest) -> Result<WiredPod, DataplaneError> {
        if !request.netns_path.exists() {
            return Err(DataplaneError::Netns {
                path: request.netns_path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        *self.wire_calls.lock().unwrap() += 1;
        self.wired
            .lock()
            .unwrap()
            .insert(request.container_id.clone(), request.clone());
        let id = &request.container_id;
        Ok(WiredPod {
            kind: WiringKind::SharedVeth,
            host_ifname: format!("eni{}", &id[..id.len().min(8)]),
            host_mac: Mac::new([2, 0, 0, 0, 0xbb, 1]),
            pod_ifname: request.ifname.clone(),
            pod_mac: Mac::new([2, 0, 0, 0, 0xaa, 1]),
            address: ipnet::Ipv4Net::new(
                request.allocation.address,
                request.allocation.prefix_length,
            )
            .unwrap(),
            gateway: "169.254.1.1".parse().unwrap(),
            routes: vec![PodRoute {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
            }],
        })
    }

    async fn unwire(&self, request: &UnwireRequest) -> Result<(), DataplaneError> {
        self.wired.lock().unwrap().remove(&request.container_id);
        Ok(())
    }

    async fn check(&self, request: &PodRequest) -> Result<Vec<String>, DataplaneError> {
        match self.wired.lock().unwrap().get(&request.container_id) {
            Some(wired) if wired == request => Ok(Vec::new()),
            _ => Ok(vec!["the pod's veth is gone".into()]),
        }
    }

    async fn gc(&self, keep: &HashSet<String>) -> Result<Vec<RecoveredPod>, DataplaneError> {
        let mut wired = self.wired.lock().unwrap();
        let doomed: Vec<String> = wired
            .keys()
            .filter(|id| !keep.contains(*id))
            .cloned()
            .collect();
        Ok(doomed
            .into_iter()
            .filter_map(|id| {
                let request = wired.remove(&id)?;
                Some(RecoveredPod {
                    kind: WiringKind::SharedVeth,
                    container_id: Some(id),
                    ifname: Some(request.ifname),
                    netns: Some(request.netns_path),
                    host_ifname: String::new(),
                    addresses: vec![request.allocation.address],
                    tables: Vec::new(),
                })
            })
            .collect())
    }
}

/// An agent serving on a unix socket in a temp dir, on its own runtime thread.
pub struct TestAgent<W: Wiring + Clone> {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub wiring: W,
    pub status: RecordingStatus,
    pub metrics: Arc<Metrics>,
    writer: Arc<Mutex<CacheWriter>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl<W: Wiring + Clone> TestAgent<W> {
    /// Starts with `fixtures` listed (the cache is synced when `synced`).
    pub fn start(wiring: W, fixtures: Vec<PodNetwork>, synced: bool, timeout_ms: u64) -> Self {
        Self::start_with(|| async move { wiring }, fixtures, synced, timeout_ms)
    }

    /// Like `start`, building the dataplane on the agent's runtime (netlink sockets
    /// belong to the runtime that opened them).
    pub fn start_with<F, Fut>(
        make: F,
        fixtures: Vec<PodNetwork>,
        synced: bool,
        timeout_ms: u64,
    ) -> Self
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = W>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let wiring = runtime.block_on(make());
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let state_dir = dir.path().join("state");
        let (cache, mut writer) = cache::cache();
        writer.apply(&Event::Init);
        for pn in fixtures {
            writer.apply(&Event::InitApply(pn));
        }
        if synced {
            writer.apply(&Event::InitDone);
        }
        let status = RecordingStatus::default();
        let metrics = Arc::new(Metrics::new());
        let agent = Agent::new(
            AgentConfig {
                node_name: NODE.into(),
                allocation_timeout: std::time::Duration::from_millis(timeout_ms),
            },
            cache,
            wiring.clone(),
            status.clone(),
            StateDir::open(&state_dir).unwrap(),
            metrics.clone(),
        );
        let listener = runtime.block_on(async { server::bind(&socket).unwrap() });
        runtime.spawn(server::serve(listener, Arc::new(agent)));
        Self {
            dir,
            socket,
            state_dir,
            wiring,
            status,
            metrics,
            writer: Arc::new(Mutex::new(writer)),
            runtime: Some(runtime),
        }
    }

    /// Simulates the operator creating or updating a PodNetwork (a watch event).
    pub fn apply(&self, pn: PodNetwork) {
        self.writer.lock().unwrap().apply(&Event::Apply(pn));
    }

    pub fn writer(&self) -> Arc<Mutex<CacheWriter>> {
        self.writer.clone()
    }

    pub fn state_files(&self) -> usize {
        std::fs::read_dir(self.state_dir.join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The network config pointing at this agent.
    pub fn conf(&self, version: &str) -> String {
        format!(
            r#"{{"cniVersion":"{version}","name":"eni","type":"eni-cni","socketPath":"{}","dns":{{"nameservers":["10.96.0.10"],"search":["default.svc.cluster.local"]}}}}"#,
            self.socket.display()
        )
    }
}

impl<W: Wiring + Clone> Drop for TestAgent<W> {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Output of one run of the real binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts a spec error object with `code` and returns its message.
    pub fn error(&self, code: u64) -> String {
        assert_ne!(self.code, 0, "expected failure, got {:?}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v["msg"].as_str().unwrap().to_string()
    }

    pub fn ok_empty(&self) {
        assert_eq!(
            (self.code, self.stdout.as_str()),
            (0, ""),
            "expected silent success"
        );
    }
}

pub fn eni_cni() -> &'static str {
    env!("CARGO_BIN_EXE_eni-cni")
}

/// Runs a CNI plugin binary with exactly `env` and `stdin`.
pub fn run_plugin(binary: &Path, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(binary);
    cmd.env_clear().envs(env.iter().copied());
    run_with_stdin(cmd, stdin)
}

/// Runs `cmd` with `stdin` as its input; stderr goes to the test's output.
fn run_with_stdin(mut cmd: Command, stdin: &str) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

/// Runs eni-cni for `command` on a container of pod `namespace/name` (uid `uid`).
pub fn cni(
    command: &str,
    container: &str,
    netns: Option<&str>,
    pod: (&str, &str, &str),
    stdin: &str,
) -> Run {
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={}",
        pod.0, pod.1, pod.2
    );
    let mut env = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args.as_str()),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];
    if let Some(netns) = netns {
        env.push(("CNI_NETNS", netns));
    }
    run_plugin(Path::new(eni_cni()), &env, stdin)
}

/// Adds `prevResult` to a network config.
pub fn with_prev_result(conf: &str, prev: &Value) -> String {
    let mut v: Value = serde_json::from_str(conf).unwrap();
    v["prevResult"] = prev.clone();
    v.to_string()
}

/// A file that stands in for a netns path for the memory dataplane.
pub fn fake_netns(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, b"").unwrap();
    path.display().to_string()
}

/// A node for the real dataplane: a fake VPC (vpc-sim's materializer) whose node
/// namespace holds the primary and the shared ENI, and pod namespaces. Everything is
/// deleted on drop, also when the test panics. Needs root.
pub struct NodeBed {
    pub vpc: FakeVpc,
    /// The node's namespace.
    pub host: String,
}

impl NodeBed {
    pub fn new(tag: &str) -> Self {
        let vpc = FakeVpc::node(tag, &[PRIMARY, SHARED]).expect("fake VPC");
        let host = vpc.host();
        NodeBed { vpc, host }
    }

    pub fn host_path(&self) -> PathBuf {
        self.vpc.host_path()
    }

    /// A new pod namespace; returns its path.
    pub fn pod(&mut self) -> String {
        let (_, path) = self.vpc.pod().expect("pod namespace");
        path.display().to_string()
    }

    pub async fn dataplane(&self) -> Dataplane {
        Dataplane::new(DataplaneConfig {
            host_netns: Some(self.host_path()),
            node_ip: "10.0.0.10".parse().unwrap(),
            service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
            // Pods keep their address everywhere (no SNAT: the tests' VPC has no
            // outside).
            egress: Egress {
                external_snat: true,
                ..Egress::default()
            },
        })
        .await
        .expect("dataplane")
    }

    /// Runs a CNI plugin inside the node namespace, as a runtime on the node would.
    pub fn run_plugin(&self, plugin: &Path, env: &[(&str, &str)], stdin: &str) -> Run {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host])
            .arg(plugin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied());
        run_with_stdin(cmd, stdin)
    }
}

/// Agent over the real dataplane in `bed`'s node namespace.
pub fn real_agent(bed: &NodeBed, fixtures: Vec<PodNetwork>) -> TestAgent<Arc<Dataplane>> {
    TestAgent::start_with(
        || async { Arc::new(bed.dataplane().await) },
        fixtures,
        true,
        5000,
    )
}
