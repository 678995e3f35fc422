//! A real Kubernetes node of the bed: containerd and kubelet (the real binaries) inside
//! the node's network namespace, which vpc-sim materializes (primary ENI on `eth0`) and
//! the management net reaches (`mgmt0`).
//!
//! One machine holds several nodes, so each node also gets a mount namespace of its own
//! (persistent: bound to a file, entered by every process of the node). In it tmpfs
//! mounts cover the host paths that kubelet and containerd use whatever their configured
//! roots (`/var/lib/kubelet`, `/usr/libexec/kubernetes`, `/run/containerd`,
//! `/var/lib/cni`) and the chart's hostPaths (`/opt/cni/bin`, `/etc/cni/net.d`,
//! `/run/netns`, `/run/eni-operator`, `/var/lib/eni-operator`), so each node has its own.
//! `/run/netns` is a shared mount: the pod namespaces containerd mounts there propagate
//! into the agent's container (HostToContainer), as on a real host.
//!
//! What the machine forces (see docs/test-bed.md): the host's sysctls kubelet wants to
//! set are shadowed by files bind-mounted over them in the node's mount namespace; no
//! process may lower its OOM score (kubelet `oomScoreAdj: 0`, containerd
//! `restrict_oom_score_adj`); cgroup v1 with the cgroupfs driver under a cgroup root per
//! node.

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    binaries::{self, BinaryError},
    netns,
    process::ChildGuard,
};

#[derive(Debug, thiserror::Error)]
pub enum RealNodeError {
    #[error(transparent)]
    Binaries(#[from] BinaryError),
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("starting {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} of node {node} not ready after {secs}s; last log lines:\n{log}")]
    NotReady {
        what: &'static str,
        node: String,
        secs: u64,
        log: String,
    },
}

/// Everything a node needs to know about its place in the bed.
#[derive(Clone, Debug)]
pub struct RealNodeConfig {
    pub name: String,
    /// The node's network namespace (vpc-sim's, with `eth0` and `mgmt0`).
    pub netns: String,
    /// The primary ENI's address: kubelet's node IP.
    pub node_ip: Ipv4Addr,
    /// The instance's provider id, registered on the Node by kubelet.
    pub provider_id: String,
    pub labels: Vec<(String, String)>,
    /// Node directory on disk: configs, containerd's root, logs.
    pub dir: PathBuf,
    /// Kubelet's kubeconfig (client certificate `system:node:<name>`).
    pub kubeconfig: PathBuf,
    /// CA that signs client certificates (kubelet authenticates the API server with it).
    pub client_ca: PathBuf,
    /// cgroup (v1) under which kubelet puts every pod, one per node: `/<name>`.
    pub cgroup_root: String,
    /// OCI layout tars imported into containerd before kubelet starts.
    pub images: Vec<PathBuf>,
    /// The pod sandbox image (imported, pinned).
    pub sandbox_image: String,
    /// How kube-proxy programs Services on the node.
    pub proxy_mode: ProxyMode,
    /// kube-proxy's kubeconfig (client certificate `system:kube-proxy`).
    pub proxy_kubeconfig: PathBuf,
}

/// kube-proxy's mode (`KubeProxyConfiguration.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// The default of the bed: kube-proxy's nftables backend.
    #[default]
    Nftables,
    /// The older iptables backend (Debian's iptables, the nft variant).
    Iptables,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

pub struct RealNode {
    // Field order is drop order, but `Drop` stops both in order explicitly first.
    kubelet: Mutex<Option<ChildGuard>>,
    kube_proxy: Mutex<Option<ChildGuard>>,
    containerd: Mutex<Option<ChildGuard>>,
    config: RealNodeConfig,
    bins: Bins,
    /// The file the node's mount namespace is bound to.
    mount_ns: PathBuf,
}

struct Bins {
    kubelet: PathBuf,
    kube_proxy: PathBuf,
    containerd: PathBuf,
    shim_dir: PathBuf,
    ctr: PathBuf,
}

/// Host paths that get a tmpfs of their own in each node's mount namespace.
const PRIVATE_DIRS: [&str; 11] = [
    "/var/lib/kubelet",
    "/usr/libexec/kubernetes",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/opt/cni/bin",
    "/etc/cni/net.d",
    "/run/netns",
    "/run/eni-operator",
    "/var/lib/eni-operator",
];

/// Sysctls kubelet sets when they differ (`protectKernelDefaults: false`); the node sees
/// these values through files bind-mounted over /proc/sys, the host keeps its own.
const KUBELET_SYSCTLS: [(&str, &str); 3] = [
    ("vm/overcommit_memory", "1"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
];

const START_TIMEOUT: Duration = Duration::from_secs(60);

impl RealNode {
    /// Sets up the node's mount namespace and cgroup root, starts containerd, imports
    /// the images and starts kubelet (which registers the Node). Returns once the Node
    /// object exists is left to the caller (it has the API client).
    pub async fn start(config: RealNodeConfig) -> Result<Self, RealNodeError> {
        let k8s = binaries::kubernetes(binaries::Need::RealNodes)?;
        let ctrd = binaries::containerd()?;
        fs::create_dir_all(&config.dir).map_err(|e| io(&config.dir, e))?;
        let mount_ns = make_mount_ns(&config)?;
        let node = RealNode {
            kubelet: Mutex::new(None),
            kube_proxy: Mutex::new(None),
            containerd: Mutex::new(None),
            bins: Bins {
                kubelet: k8s.kubelet,
                kube_proxy: k8s.kube_proxy,
                containerd: ctrd.containerd,
                shim_dir: ctrd.shim_dir,
                ctr: ctrd.ctr,
            },
            mount_ns,
            config,
        };
        make_cgroup_root(&node.config.cgroup_root)?;
        node.write_configs()?;
        node.start_containerd().await?;
        for image in &node.config.images {
            node.import_image(image)?;
        }
        node.start_kubelet()?;
        node.start_kube_proxy()?;
        Ok(node)
    }

    /// Imports the OCI layout tar `image` into containerd (the node's only way to get
    /// an image: there is no registry).
    pub fn import_image(&self, image: &Path) -> Result<(), RealNodeError> {
        self.ctr(&["images", "import", "--local"])
            .arg(image)
            .output()
            .map_err(|e| io(image, e))
            .and_then(|out| check_output(&format!("ctr images import {}", image.display()), out))
    }

    /// The log kubelet keeps of container `container` of pod `ns/pod` (uid `uid`), every
    /// run of it (`/var/log/pods/<ns>_<pod>_<uid>/<container>/`, in the node's mounts).
    pub fn container_log(
        &self,
        ns: &str,
        pod: &str,
        uid: &str,
        container: &str,
    ) -> Result<String, RealNodeError> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mount_ns.display()))
            .args(["sh", "-c", "cat \"$0\"/*.log"])
            .arg(format!("/var/log/pods/{ns}_{pod}_{uid}/{container}"));
        stdout(cmd)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &RealNodeConfig {
        &self.config
    }

    /// containerd's socket (visible from the host: it lives in the node directory).
    pub fn containerd_socket(&self) -> PathBuf {
        self.config.dir.join("containerd.sock")
    }

    /// `ctr` against this node's containerd, in the Kubernetes namespace.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.ctr);
        cmd.arg("-a")
            .arg(self.containerd_socket())
            .args(["-n", "k8s.io"])
            .args(args);
        cmd
    }

    /// Process id of the sandbox (pause) process of pod `ns/pod`: its network
    /// namespace is the pod's.
    pub fn sandbox_pid(&self, ns: &str, pod: &str) -> Result<u32, RealNodeError> {
        let filter = format!(
            "labels.\"io.kubernetes.pod.name\"=={pod},labels.\"io.kubernetes.pod.namespace\"=={ns},labels.\"io.cri-containerd.kind\"==sandbox"
        );
        let ids = stdout(self.ctr(&["containers", "ls", "-q", &filter]))?;
        let ids: Vec<&str> = ids.lines().map(str::trim).collect();
        let tasks = stdout(self.ctr(&["tasks", "ls"]))?;
        tasks
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                match cols[..] {
                    [id, pid, "RUNNING", ..] if ids.contains(&id) => pid.parse().ok(),
                    _ => None,
                }
            })
            .next()
            .ok_or_else(|| RealNodeError::Command {
                cmd: format!("ctr: sandbox of {ns}/{pod}"),
                detail: format!("no running sandbox among {ids:?}"),
            })
    }

    /// IDs of pod `ns/pod`'s sandboxes: those of its sandbox containers, and those in
    /// containerd's sandbox store still labelled with the pod's sandbox name. CRI records
    /// a sandbox in that store before it sets up the sandbox's network and removes it
    /// if that fails, so a sandbox whose CNI ADD fails shows here while the ADD runs.
    pub fn pod_sandbox_ids(&self, ns: &str, pod: &str) -> Result<Vec<String>, RealNodeError> {
        // CRI labels a new sandbox `name=<pod>_<namespace>_<uid>_<attempt>`.
        let filter = format!("labels.name~=\"^{pod}_{ns}_\"");
        let mut ids = first_column(&stdout(self.ctr(&[
            "sandboxes",
            "ls",
            "--filters",
            &filter,
        ]))?);
        let filter = format!(
            "labels.\"io.kubernetes.pod.name\"=={pod},labels.\"io.kubernetes.pod.namespace\"=={ns},labels.\"io.cri-containerd.kind\"==sandbox"
        );
        ids.extend(
            stdout(self.ctr(&["containers", "ls", "-q", &filter]))?
                .split_whitespace()
                .map(str::to_owned),
        );
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// IDs of every pod sandbox containerd has (its containers of kind `sandbox`): the
    /// attachments a runtime calls valid when it asks for a CNI GC.
    pub fn sandbox_ids(&self) -> Result<Vec<String>, RealNodeError> {
        let out = stdout(self.ctr(&[
            "containers",
            "ls",
            "-q",
            "labels.\"io.cri-containerd.kind\"==sandbox",
        ]))?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }

    /// Whether containerd still knows sandbox `id`: as a container or in its sandbox
    /// store.
    pub fn knows_sandbox(&self, id: &str) -> Result<bool, RealNodeError> {
        let filter = format!("id=={id}");
        let containers = stdout(self.ctr(&["containers", "ls", "-q", &filter]))?;
        let sandboxes = stdout(self.ctr(&["sandboxes", "ls", "--filters", &filter]))?;
        Ok(containers.split_whitespace().any(|c| c == id)
            || first_column(&sandboxes).iter().any(|s| s == id))
    }

    /// The network namespace containerd made for sandbox `id` (from its OCI spec), as
    /// the node's processes see it.
    pub fn sandbox_netns(&self, id: &str) -> Result<String, RealNodeError> {
        let spec = stdout(self.ctr(&["containers", "info", "--spec", id]))?;
        let bad = |detail: String| RealNodeError::Command {
            cmd: format!("ctr containers info --spec {id}"),
            detail,
        };
        let spec: serde_json::Value =
            serde_json::from_str(&spec).map_err(|e| bad(e.to_string()))?;
        spec["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| bad("the spec names no network namespace path".into()))
    }

    /// Removes the containers and sandboxes of pods `ns/<pods>` behind CRI's back, as a
    /// runtime that lost its state would: tasks killed and containers deleted through
    /// containerd's own APIs (CRI is not asked, so no CNI DEL is sent), then containerd
    /// restarted so that CRI, which recovers its sandboxes from those APIs, forgets
    /// them. kubelet must be stopped first: it would stop the dead sandboxes through
    /// CRI, which calls DEL. The sandboxes' network namespaces stay mounted (nobody
    /// removes them). Returns the removed sandbox IDs.
    pub async fn remove_pods_behind_runtime(
        &self,
        ns: &str,
        pods: &[&str],
    ) -> Result<Vec<String>, RealNodeError> {
        if lock(&self.kubelet).is_some() {
            return Err(RealNodeError::Command {
                cmd: "remove_pods_behind_runtime".into(),
                detail: "kubelet is running: stop it first".into(),
            });
        }
        let mut removed = Vec::new();
        for pod in pods {
            let of_pod = format!(
                "labels.\"io.kubernetes.pod.name\"=={pod},labels.\"io.kubernetes.pod.namespace\"=={ns}"
            );
            let apps = format!("{of_pod},labels.\"io.cri-containerd.kind\"==container");
            for id in stdout(self.ctr(&["containers", "ls", "-q", &apps]))?.split_whitespace() {
                // `tasks rm -f` kills the task and waits for it; a task already gone is fine.
                let _ = self.ctr(&["tasks", "rm", "-f", id]).output();
                run(&mut self.ctr(&["containers", "rm", id]))?;
            }
            let sandboxes = format!("{of_pod},labels.\"io.cri-containerd.kind\"==sandbox");
            for id in stdout(self.ctr(&["containers", "ls", "-q", &sandboxes]))?.split_whitespace()
            {
                // The sandbox controller's stop and shutdown: task, container and store
                // entry, no network teardown.
                run(&mut self.ctr(&["sandboxes", "rm", "-f", id]))?;
                removed.push(id.to_owned());
            }
        }
        self.restart_containerd().await?;
        for id in &removed {
            if self.knows_sandbox(id)? {
                return Err(RealNodeError::Command {
                    cmd: format!("ctr sandboxes rm -f {id}"),
                    detail: "containerd still knows the sandbox after its restart".into(),
                });
            }
        }
        Ok(removed)
    }

    /// Runs `sh -c <script>` inside the node (its mount and network namespaces) and
    /// returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String, RealNodeError> {
        let mut cmd = self.command_in(Path::new("sh"));
        cmd.args(["-c", script]);
        stdout(cmd)
    }

    /// The records in eni-agent's state dir `state_dir` on this node (one JSON object
    /// per container in `<state_dir>/containers/`).
    pub fn agent_records(&self, state_dir: &Path) -> Result<Vec<serde_json::Value>, RealNodeError> {
        let dir = state_dir.join("containers");
        let out = self.sh(&format!(
            "for f in {}/*.json; do [ -f \"$f\" ] && cat \"$f\" && echo; done; true",
            dir.display()
        ))?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| RealNodeError::Command {
                    cmd: format!("reading {}", dir.display()),
                    detail: format!("{e}: {l}"),
                })
            })
            .collect()
    }

    /// Runs `eni-libcni <args>` (e2e/libcni-driver) inside the node, where libcni finds
    /// the conflist, plugins and result cache containerd uses and eni-cni reaches the
    /// node's agent: `Ok(stdout)` when it succeeded, `Err(its message)` when it failed.
    pub fn libcni(&self, args: &[&str]) -> Result<Result<String, String>, RealNodeError> {
        let mut cmd = self.command_in(&binaries::libcni_driver()?);
        cmd.args(args);
        let text = format!("{cmd:?}");
        let out = cmd.output().map_err(|e| RealNodeError::Command {
            cmd: text,
            detail: e.to_string(),
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Ok(if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stderr}{stdout}"))
        })
    }

    /// A command run inside the node: its mount and network namespaces.
    pub fn command_in(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mount_ns.display()))
            .arg(format!(
                "--net={}",
                netns::path(&self.config.netns).display()
            ))
            .arg("--")
            .arg(program);
        cmd
    }

    fn write_configs(&self) -> Result<(), RealNodeError> {
        let c = &self.config;
        let dir = &c.dir;
        let containerd = format!(
            r#"version = 3
root = "{root}"
state = "/run/containerd"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox}"
[plugins."io.containerd.cri.v1.runtime"]
  # No AppArmor on the host; and lowering a process's OOM score needs
  # CAP_SYS_RESOURCE, which the machine does not grant.
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    # The pod's lo comes up without the reference loopback plugin, which the node
    # does not have: /opt/cni/bin holds what the chart installs.
    use_internal_loopback = true
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
"#,
            root = dir.join("containerd").display(),
            sock = self.containerd_socket().display(),
            sandbox = c.sandbox_image,
        );
        write(&dir.join("containerd.toml"), containerd)?;
        let mut labels = String::new();
        for (k, v) in &c.labels {
            let _ = writeln!(labels, "  {k}: {v:?}");
        }
        let kubelet = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
providerID: {provider_id}
containerRuntimeEndpoint: unix://{sock}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
# cgroup v1, no systemd: cgroupfs under a root of this node's own.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
# The machine does not allow lowering OOM scores (no CAP_SYS_RESOURCE).
oomScoreAdj: 0
protectKernelDefaults: false
failSwapOn: false
serializeImagePulls: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
resolvConf: /etc/resolv.conf
shutdownGracePeriod: 0s
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
"#,
            provider_id = c.provider_id,
            sock = self.containerd_socket().display(),
            ca = c.client_ca.display(),
            cgroup_root = c.cgroup_root,
        );
        write(&dir.join("kubelet.yaml"), kubelet)?;
        // As kubeadm's DaemonSet runs it: host network, the node's name, its own
        // identity. Conntrack sysctls are left alone (they are global on this host), and
        // NodePorts answer on the node's primary address only (kube-proxy's default for
        // nftables; set for iptables too so both modes serve the same addresses).
        let proxy = format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
mode: {mode}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
"#,
            kubeconfig = c.proxy_kubeconfig.display(),
            name = c.name,
            mode = c.proxy_mode.as_str(),
        );
        write(&dir.join("kube-proxy.yaml"), proxy)
    }

    /// Starts kube-proxy in the node's namespaces.
    pub fn start_kube_proxy(&self) -> Result<(), RealNodeError> {
        let c = &self.config;
        let mut cmd = self.command_in(&self.bins.kube_proxy);
        cmd.arg(format!(
            "--config={}",
            c.dir.join("kube-proxy.yaml").display()
        ))
        .arg("--v=2");
        let guard = spawn_appending("kube-proxy", cmd, &c.dir.join("kube-proxy.log"))?;
        *lock(&self.kube_proxy) = Some(guard);
        Ok(())
    }

    /// Starts containerd (after a stop: restarts it; running pods keep running, as
    /// their shims outlive it) and waits until it answers.
    pub async fn start_containerd(&self) -> Result<(), RealNodeError> {
        let c = &self.config;
        let mut cmd = self.command_in(&self.bins.containerd);
        cmd.arg("--config")
            .arg(c.dir.join("containerd.toml"))
            .env("PATH", path_with(&self.bins.shim_dir));
        let guard = spawn_appending("containerd", cmd, &c.dir.join("containerd.log"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ok = self
                .ctr(&["version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            if guard.has_exited() || Instant::now() > deadline {
                return Err(RealNodeError::NotReady {
                    what: "containerd",
                    node: c.name.clone(),
                    secs: START_TIMEOUT.as_secs(),
                    log: guard.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *lock(&self.containerd) = Some(guard);
        Ok(())
    }

    /// Starts kubelet (after a stop: restarts it).
    pub fn start_kubelet(&self) -> Result<(), RealNodeError> {
        let c = &self.config;
        let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cmd = self.command_in(&self.bins.kubelet);
        cmd.arg(format!("--config={}", c.dir.join("kubelet.yaml").display()))
            .arg(format!("--kubeconfig={}", c.kubeconfig.display()))
            .arg(format!("--hostname-override={}", c.name))
            .arg(format!("--node-ip={}", c.node_ip))
            .arg(format!("--node-labels={}", labels.join(",")))
            .arg("--v=2");
        let guard = spawn_appending("kubelet", cmd, &c.dir.join("kubelet.log"))?;
        *lock(&self.kubelet) = Some(guard);
        Ok(())
    }

    /// Stops kubelet (SIGTERM); pods keep running.
    pub fn stop_kubelet(&self) {
        if let Some(k) = lock(&self.kubelet).take() {
            k.stop(Duration::from_secs(10));
        }
    }

    /// Stops containerd (SIGTERM); pods keep running under their shims.
    pub fn stop_containerd(&self) {
        if let Some(c) = lock(&self.containerd).take() {
            c.stop(Duration::from_secs(10));
        }
    }

    /// Restarts kubelet, as a node's service manager would after a crash or upgrade.
    pub fn restart_kubelet(&self) -> Result<(), RealNodeError> {
        self.stop_kubelet();
        self.start_kubelet()
    }

    /// Restarts containerd.
    pub async fn restart_containerd(&self) -> Result<(), RealNodeError> {
        self.stop_containerd();
        self.start_containerd().await
    }

    /// Tails of kubelet's and containerd's logs.
    pub fn logs(&self, lines: usize) -> String {
        let tail = |g: &Mutex<Option<ChildGuard>>| {
            lock(g)
                .as_ref()
                .map(|g| g.log_tail(lines))
                .unwrap_or_else(|| "(not running)".into())
        };
        format!(
            "--- kubelet {n}\n{}\n--- kube-proxy {n}\n{}\n--- containerd {n}\n{}\n{}",
            tail(&self.kubelet),
            tail(&self.kube_proxy),
            tail(&self.containerd),
            self.container_logs(lines),
            n = self.config.name
        )
    }

    /// Tails of the containers' logs (kept by containerd under the node's private
    /// /var/log/pods), each headed by its path.
    pub fn container_logs(&self, lines: usize) -> String {
        let script = format!(
            "for f in /var/log/pods/*/*/*.log; do [ -f \"$f\" ] && echo \"--- $f\" && tail -n {lines} \"$f\"; done; true"
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mount_ns.display()))
            .args(["sh", "-c", &script]);
        stdout(cmd).unwrap_or_else(|e| e.to_string())
    }

    /// Kills what the node leaves running when its daemons stop: the containers (every
    /// process in the node's cgroup root) and the shims (processes in its mount
    /// namespace).
    fn kill_leftovers(&self) {
        let root = self.config.cgroup_root.trim_start_matches('/');
        let procs = cgroup_dirs(root)
            .into_iter()
            .flat_map(|d| walk(&d))
            .flat_map(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .collect::<Vec<_>>()
            });
        let mut pids: Vec<i32> = procs.collect();
        if let Ok(ns) = fs::metadata(&self.mount_ns) {
            let ino = ns.ino();
            if let Ok(dir) = fs::read_dir("/proc") {
                pids.extend(dir.filter_map(|e| {
                    let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                    let m = fs::metadata(format!("/proc/{pid}/ns/mnt")).ok()?;
                    (m.ino() == ino).then_some(pid)
                }));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        let me = std::process::id() as i32;
        for pid in pids.into_iter().filter(|p| *p != me && *p > 1) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.kube_proxy).take() {
            p.stop(Duration::from_secs(5));
        }
        self.stop_kubelet();
        self.stop_containerd();
        self.kill_leftovers();
        // The processes take a moment to leave their cgroups.
        std::thread::sleep(Duration::from_millis(300));
        let root = self.config.cgroup_root.trim_start_matches('/');
        for top in cgroup_dirs(root) {
            let mut dirs = walk(&top);
            dirs.reverse();
            for d in dirs {
                let _ = fs::remove_dir(&d);
            }
        }
        // With no process left in it, unbinding the file ends the mount namespace and
        // every mount in it (tmpfs, overlay rootfs, pod namespace files).
        let _ = Command::new("umount").arg(&self.mount_ns).status();
        if let Some(holder) = self.mount_ns.parent() {
            let _ = Command::new("umount").arg(holder).status();
        }
    }
}

/// Creates the node's mount namespace (bound to `<dir>/ns/mnt`) with its private mounts.
fn make_mount_ns(config: &RealNodeConfig) -> Result<PathBuf, RealNodeError> {
    // A namespace file can only be bound on a private mount: the directory holding it is
    // bound onto itself and made private.
    let holder = config.dir.join("ns");
    fs::create_dir_all(&holder).map_err(|e| io(&holder, e))?;
    run(Command::new("mount")
        .arg("--bind")
        .arg(&holder)
        .arg(&holder))?;
    run(Command::new("mount").arg("--make-private").arg(&holder))?;
    let file = holder.join("mnt");
    write(&file, "")?;
    // Slave: mounts the host makes later (vpc-sim's namespaces) still show up here; the
    // node's own mounts stay in the node.
    run(Command::new("unshare")
        .arg(format!("--mount={}", file.display()))
        .args(["--propagation", "slave", "true"]))?;
    let sysctl_dir = config.dir.join("sysctl");
    fs::create_dir_all(&sysctl_dir).map_err(|e| io(&sysctl_dir, e))?;
    let mut script = String::from("set -e\n");
    for dir in PRIVATE_DIRS {
        let _ = writeln!(
            script,
            "mkdir -p {dir} && mount -t tmpfs -o mode=755 tmpfs {dir}"
        );
    }
    // Pod namespaces mounted here by containerd must reach the agent's container.
    script.push_str("mount --make-shared /run/netns\n");
    for (key, value) in KUBELET_SYSCTLS {
        let f = sysctl_dir.join(key.replace('/', "."));
        write(&f, format!("{value}\n"))?;
        let _ = writeln!(script, "mount --bind {} /proc/sys/{key}", f.display());
    }
    run(Command::new("nsenter")
        .arg(format!("--mount={}", file.display()))
        .args(["sh", "-c", &script]))?;
    Ok(file)
}

/// The directories of cgroup `root` in every v1 hierarchy (named ones included).
fn cgroup_dirs(root: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        // `cpu` and `cpuacct` are symlinks to `cpu,cpuacct`: one directory each is enough.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(root))
        .collect();
    out.sort();
    out
}

/// Creates the node's cgroup root in every hierarchy; cpuset needs its CPUs and memory
/// nodes copied from the parent before any process can join.
fn make_cgroup_root(root: &str) -> Result<(), RealNodeError> {
    let root = root.trim_start_matches('/');
    for dir in cgroup_dirs(root) {
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        if dir.starts_with("/sys/fs/cgroup/cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let parent = Path::new("/sys/fs/cgroup/cpuset").join(f);
                let v = fs::read_to_string(&parent).map_err(|e| io(&parent, e))?;
                write(&dir.join(f), v.trim())?;
            }
        }
    }
    Ok(())
}

/// `dir` and every directory below it, parents first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

/// Spawns `cmd` with its output appended to `log` (a restart keeps the earlier run's).
fn spawn_appending(
    what: &'static str,
    cmd: Command,
    log: &Path,
) -> Result<ChildGuard, RealNodeError> {
    let previous = fs::read_to_string(log).unwrap_or_default();
    if !previous.is_empty() {
        let mut prev = log.as_os_str().to_owned();
        prev.push(".previous");
        let _ = fs::write(PathBuf::from(prev), previous);
    }
    ChildGuard::spawn(what, cmd, log).map_err(|source| RealNodeError::Spawn { what, source })
}

/// First column of a table `ctr` prints, header skipped.
fn first_column(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn path_with(dir: &Path) -> String {
    let host = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    format!("{}:{host}", dir.display())
}

/// Stdout of a command that must succeed.
fn stdout(mut cmd: Command) -> Result<String, RealNodeError> {
    let text = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| RealNodeError::Command {
        cmd: text.clone(),
        detail: e.to_string(),
    })?;
    let text_out = String::from_utf8_lossy(&out.stdout).into_owned();
    check_output(&text, out)?;
    Ok(text_out)
}

fn run(cmd: &mut Command) -> Result<(), RealNodeError> {
    let text = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| RealNodeError::Command {
        cmd: text.clone(),
        detail: e.to_string(),
    })?;
    check_output(&text, out)
}

fn check_output(cmd: &str, out: std::process::Output) -> Result<(), RealNodeError> {
    if out.status.success() {
        return Ok(());
    }
    Err(RealNodeError::Command {
        cmd: cmd.to_owned(),
        detail: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), RealNodeError> {
    fs::write(path, contents).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> RealNodeError {
    RealNodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
