//! A kubelet stand-in per node: it watches the pods bound to its node, gives each a
//! sandbox network namespace, runs the real `eni-cni` binary inside the node's namespace
//! with the CNI environment as a container runtime does (retrying a failed ADD as the
//! runtime retries a sandbox), writes the pod's IP and readiness into its status, and on
//! deletion runs DEL, removes the sandbox and confirms the deletion (grace period 0).

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::netns;

#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub node: String,
    pub node_ip: Ipv4Addr,
    /// The node's namespace: the CNI binary runs there, as under a real runtime.
    pub node_netns: String,
    pub cni_bin: PathBuf,
    pub socket_path: PathBuf,
    /// Prefix of sandbox namespace names (`<prefix><pod uid>`).
    pub sandbox_prefix: String,
}

/// What happened to the pods of one node, for the tests' accounting.
#[derive(Clone, Debug, Default)]
pub struct KubeletStats {
    pub adds_ok: u64,
    pub adds_failed: u64,
    pub dels_ok: u64,
    pub dels_failed: u64,
    /// Seconds from the pod's creation to its status write, per started pod.
    pub time_to_ready: Vec<f64>,
}

pub struct Kubelet {
    task: JoinHandle<()>,
    pub stats: Arc<Mutex<KubeletStats>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Sandbox {
    deleted: watch::Sender<bool>,
}

impl Kubelet {
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let stats = Arc::new(Mutex::new(KubeletStats::default()));
        let task = tokio::spawn(run(client, Arc::new(config), stats.clone()));
        Kubelet { task, stats }
    }
}

async fn run(client: Client, config: Arc<KubeletConfig>, stats: Arc<Mutex<KubeletStats>>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node));
    let mut sandboxes: HashMap<String, Sandbox> = HashMap::new();
    let mut events = watcher(pods, wc).default_backoff().boxed();
    loop {
        let event = match events.try_next().await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                warn!(node = %config.node, error = %e, "pod watch");
                continue;
            }
        };
        let (pods, gone) = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (vec![p], false),
            watcher::Event::Delete(p) => (vec![p], true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        for pod in pods {
            let Some(uid) = pod.uid() else { continue };
            let terminating = gone || pod.metadata.deletion_timestamp.is_some();
            if let Some(sb) = sandboxes.get(&uid) {
                if terminating {
                    sb.deleted.send_replace(true);
                }
                continue;
            }
            if gone {
                continue;
            }
            let (tx, rx) = watch::channel(terminating);
            sandboxes.insert(uid.clone(), Sandbox { deleted: tx });
            tokio::spawn(pod_lifecycle(
                client.clone(),
                config.clone(),
                stats.clone(),
                pod,
                uid,
                rx,
            ));
        }
        // Forget pods whose lifecycle ended (their sender has no receiver left).
        sandboxes.retain(|_, sb| !sb.deleted.is_closed());
    }
}

/// One pod from binding to deletion.
async fn pod_lifecycle(
    client: Client,
    config: Arc<KubeletConfig>,
    stats: Arc<Mutex<KubeletStats>>,
    pod: Pod,
    uid: String,
    mut deleted: watch::Receiver<bool>,
) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let sandbox = format!("{}{}", config.sandbox_prefix, &uid[..uid.len().min(8)]);
    let container_id = uid.replace('-', "");
    let cni = Cni {
        config: &config,
        sandbox: &sandbox,
        container_id: &container_id,
        pod_ns: &ns,
        pod_name: &name,
        uid: &uid,
    };
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut started = false;
    if !host_network
        && pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_none()
    {
        started = start_sandbox(&api, &cni, &stats, &pod, &mut deleted).await;
    }
    let _ = deleted.wait_for(|d| *d).await;
    if started || netns::exists(&sandbox) {
        // DEL is retried as the runtime retries it: the sandbox is not removed before
        // the network plugin has released it.
        for attempt in 0..30 {
            match cni.run("DEL").await {
                Ok(_) => {
                    lock(&stats).dels_ok += 1;
                    break;
                }
                Err(e) => {
                    lock(&stats).dels_failed += 1;
                    warn!(pod = %format!("{ns}/{name}"), attempt, error = %e, "CNI DEL failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if let Err(e) = netns::delete(&sandbox) {
            warn!(%sandbox, error = %e, "removing the sandbox");
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(&name, &dp).await {
        debug!(pod = %format!("{ns}/{name}"), error = %e, "confirming deletion");
    }
}

/// ADD until it succeeds or the pod is deleted; true when the pod's network is up.
async fn start_sandbox(
    api: &Api<Pod>,
    cni: &Cni<'_>,
    stats: &Mutex<KubeletStats>,
    pod: &Pod,
    deleted: &mut watch::Receiver<bool>,
) -> bool {
    if let Err(e) = netns::add(cni.sandbox).await {
        warn!(sandbox = cni.sandbox, error = %e, "creating the sandbox");
        return false;
    }
    let mut delay = Duration::from_millis(500);
    loop {
        if *deleted.borrow() {
            return true;
        }
        match cni.run("ADD").await.and_then(|out| ip_of(&out)) {
            Ok(ip) => {
                lock(stats).adds_ok += 1;
                let created = pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second());
                report_ready(api, cni, ip, stats, created).await;
                return true;
            }
            Err(e) => {
                lock(stats).adds_failed += 1;
                info!(pod = %format!("{}/{}", cni.pod_ns, cni.pod_name), error = %e, "CNI ADD failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = deleted.wait_for(|d| *d) => return true,
                }
                delay = (delay * 2).min(Duration::from_secs(4));
            }
        }
    }
}

async fn report_ready(
    api: &Api<Pod>,
    cni: &Cni<'_>,
    ip: Ipv4Addr,
    stats: &Mutex<KubeletStats>,
    created: Option<i64>,
) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": cni.config.node_ip.to_string(),
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now.to_string()},
            {"type": "Ready", "status": "True", "lastTransitionTime": now.to_string()},
        ],
    }});
    let started = Instant::now();
    for _ in 0..10 {
        match api
            .patch_status(
                cni.pod_name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            Ok(_) => {
                if let Some(c) = created {
                    lock(stats)
                        .time_to_ready
                        .push((now.as_millisecond() - c * 1000) as f64 / 1000.0);
                }
                return;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) => {
                debug!(error = %e, elapsed = ?started.elapsed(), "writing pod status");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn ip_of(result: &str) -> Result<Ipv4Addr, String> {
    let v: serde_json::Value = serde_json::from_str(result).map_err(|e| e.to_string())?;
    let addr = v["ips"][0]["address"]
        .as_str()
        .ok_or_else(|| format!("no ips[0].address in {result}"))?;
    let ip = addr.split('/').next().unwrap_or_default();
    ip.parse().map_err(|e| format!("address {addr}: {e}"))
}

fn lock(stats: &Mutex<KubeletStats>) -> std::sync::MutexGuard<'_, KubeletStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pod's CNI invocations.
struct Cni<'a> {
    config: &'a KubeletConfig,
    sandbox: &'a str,
    container_id: &'a str,
    pod_ns: &'a str,
    pod_name: &'a str,
    uid: &'a str,
}

impl Cni<'_> {
    async fn run(&self, command: &str) -> Result<String, String> {
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "eni",
            "type": "eni-cni",
            "socketPath": self.config.socket_path,
            "agentTimeoutSeconds": 15,
        })
        .to_string();
        let mut cmd = tokio::process::Command::from(netns::command_in(
            &self.config.node_netns,
            &self.config.cni_bin,
        ));
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", netns::path(self.sandbox))
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_PATH",
                self.config.cni_bin.parent().unwrap_or(std::path::Path::new("/")),
            )
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    self.pod_ns, self.pod_name, self.container_id, self.uid
                ),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin
                .write_all(conf.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
            .await
            .map_err(|_| format!("CNI {command} hung"))?
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!("CNI {command}: {stdout}"));
        }
        Ok(stdout)
    }
}
