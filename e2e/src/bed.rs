//! The end-to-end bed: one machine laid out as a real cluster runs (brief §8). The real
//! API server on a management network; vpc-sim as its own process materializing ENIs as
//! links in node namespaces; the operator replicas, and one `eni-agent` per node running
//! inside that node's namespace, as child processes of the built binaries (so killing
//! them is real); a kubelet stand-in per node running the real `eni-cni`.
//!
//! Logs of every process go to the bed's directory (the control plane's temp dir);
//! `Bed::logs` prints their tails for a failing test.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use eni_crds::PodNetwork;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;
use vpc_sim::behaviour::SimConfig;

use crate::{
    ControlPlane, Options,
    cluster::{self, ClusterError},
    identities::{self, Who},
    images::{self, BedImages},
    kubelet::{Kubelet, KubeletConfig, KubeletStats},
    mgmt::MgmtNet,
    netns,
    process::ChildGuard,
    real_node::RealNode,
    vpc::{Cloud, Instance, VpcSim},
};

#[derive(Debug, thiserror::Error)]
pub enum BedError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    ControlPlane(#[from] crate::ControlPlaneError),
    #[error(transparent)]
    Vpc(#[from] crate::vpc::VpcError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Probe(#[from] eni_test_support::probe::ProbeError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Images(#[from] crate::images::ImagesError),
    #[error(transparent)]
    RealNode(#[from] crate::real_node::RealNodeError),
    #[error(transparent)]
    Traffic(#[from] crate::traffic::TrafficError),
    #[error(transparent)]
    Transfer(#[from] eni_test_support::transfer::TransferError),
    #[error("{0}")]
    Other(String),
}

/// A node of the bed.
#[derive(Clone, Debug)]
pub struct BedNode {
    pub name: String,
    /// Position among the bed's nodes: names its management address and sandboxes.
    pub index: u8,
    pub instance: Instance,
    pub netns: String,
    pub mgmt_ip: Ipv4Addr,
    pub socket_path: PathBuf,
    pub state_dir: PathBuf,
}

struct Binaries {
    operator: PathBuf,
    agent: PathBuf,
    cni: PathBuf,
}

pub struct Bed {
    // Field order is drop order: kubelets and agents stop before the cloud, the cloud
    // (which removes its namespaces) before the management net and the control plane.
    /// Real nodes (kubelet + containerd), when the bed was started with them.
    pub(crate) real_nodes: Mutex<BTreeMap<String, std::sync::Arc<RealNode>>>,
    /// kube-proxy's mode on real nodes added from now on.
    pub(crate) proxy_mode: Mutex<crate::real_node::ProxyMode>,
    kubelets: Mutex<HashMap<String, Kubelet>>,
    agents: Mutex<HashMap<String, ChildGuard>>,
    operators: Mutex<BTreeMap<String, ChildGuard>>,
    pub vpc: VpcSim,
    pub(crate) mgmt: Mutex<MgmtNet>,
    pub cp: ControlPlane,
    pub client: Client,
    /// Value of the ownership tag; unique per bed.
    pub name: String,
    /// Prefix of every namespace and link the bed makes.
    pub prefix: String,
    pub(crate) nodes: Mutex<Vec<BedNode>>,
    pub(crate) next_node: AtomicU32,
    bins: Binaries,
    operator_args: Vec<String>,
    /// Images real nodes import (None: a stand-in bed).
    pub(crate) images: Option<BedImages>,
}

static BEDS: AtomicU32 = AtomicU32::new(0);

/// Operator flags for short test periods: resync, garbage collection and leases.
pub const FAST_OPERATOR: &[&str] = &[
    "--resync-seconds",
    "5",
    "--gc-interval-seconds",
    "10",
    "--gc-grace-seconds",
    "20",
    "--lease-duration",
    "4",
    "--attach-timeout-seconds",
    "30",
];

impl Bed {
    /// Brings up the control plane (on the management network), vpc-sim behaving as
    /// `behaviour`, with no nodes and no operator yet.
    pub async fn start(behaviour: SimConfig) -> Result<Self, BedError> {
        Self::start_with(behaviour, false, Cloud::Aws).await
    }

    /// [`Bed::start`] on `cloud`: vpc-sim plays that cloud (its ids, zones and instance
    /// types, its API for the operator) and the operator runs with that cloud's provider.
    pub async fn start_in(cloud: Cloud, behaviour: SimConfig) -> Result<Self, BedError> {
        Self::start_with(behaviour, false, cloud).await
    }

    /// Like [`Bed::start`], for real nodes ([`Bed::add_real_node`]): the whole control
    /// plane, vpc-sim reachable from node namespaces, the images built, and no RBAC of
    /// the bed's own (the chart brings it: [`Bed::install_chart`]).
    pub async fn start_real(behaviour: SimConfig) -> Result<Self, BedError> {
        Self::start_with(behaviour, true, Cloud::Aws).await
    }

    /// [`Bed::start_real`] on `cloud`: the chart is installed with that cloud's provider.
    pub async fn start_real_in(cloud: Cloud, behaviour: SimConfig) -> Result<Self, BedError> {
        Self::start_with(behaviour, true, cloud).await
    }

    async fn start_with(
        behaviour: SimConfig,
        real_nodes: bool,
        cloud: Cloud,
    ) -> Result<Self, BedError> {
        crate::init_crypto();
        let seq = BEDS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("eb{}{seq}", pid % 100_000);
        let bins = cluster::workspace_bins(&["vpc-sim", "eni-operator", "eni-agent", "eni-cni"])?;
        // Namespaces a crashed earlier run of the same prefix may have left.
        for ns in netns::list(&format!("{prefix}-")) {
            let _ = netns::delete(&ns);
        }
        let mgmt = MgmtNet::create(&prefix, pid.wrapping_mul(7).wrapping_add(seq))?;
        let cp = ControlPlane::start_with(Options {
            bind_address: IpAddr::V4(mgmt.host()),
            extra_sans: Vec::new(),
            real_nodes,
        })
        .await?;
        cp.install_crds().await?;
        let client = cp.client().await?;
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": crate::control_plane::SYSTEM_NAMESPACE}}),
        )
        .map_err(kube::Error::SerdeError)?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let (listen, images) = if real_nodes {
            // Operator pods on node namespaces reach vpc-sim over the management net.
            let bins_dir = bins[1].parent().map(PathBuf::from).unwrap_or_default();
            let out = bins_dir.join("e2e-images");
            let images = tokio::task::spawn_blocking(move || images::build(&bins_dir, &out))
                .await
                .map_err(|e| BedError::Other(e.to_string()))??;
            (IpAddr::V4(mgmt.host()), Some(images))
        } else {
            // The product runs as the chart's ServiceAccounts (helm brings them on real
            // nodes).
            identities::install(&client, cp.dir())
                .await
                .map_err(ClusterError::from)?;
            identities::kubeconfig(&cp, &client, Who::Operator)
                .await
                .map_err(ClusterError::from)?;
            (IpAddr::V4(Ipv4Addr::LOCALHOST), None)
        };
        let vpc = VpcSim::start(&bins[0], cp.dir(), &prefix, &behaviour, listen, cloud).await?;
        Ok(Bed {
            real_nodes: Mutex::new(BTreeMap::new()),
            proxy_mode: Mutex::new(Default::default()),
            kubelets: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            operators: Mutex::new(BTreeMap::new()),
            vpc,
            mgmt: Mutex::new(mgmt),
            cp,
            client,
            name: format!("bed-{pid}-{seq}"),
            prefix,
            nodes: Mutex::new(Vec::new()),
            next_node: AtomicU32::new(0),
            bins: Binaries {
                operator: bins[1].clone(),
                agent: bins[2].clone(),
                cni: bins[3].clone(),
            },
            operator_args: FAST_OPERATOR.iter().map(|s| s.to_string()).collect(),
            images,
        })
    }

    pub fn nodes(&self) -> Vec<BedNode> {
        lock(&self.nodes).clone()
    }

    pub fn node(&self, name: &str) -> Result<BedNode, BedError> {
        self.nodes()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| BedError::Other(format!("no node {name}")))
    }

    /// Boots an instance that is not a Kubernetes node (a VM elsewhere in the VPC):
    /// its namespace with the primary ENI configured, as vpc-sim materializes it.
    pub async fn add_host(&self, name: &str, instance_type: &str) -> Result<Instance, BedError> {
        let netns_name = self.vpc.node_netns(name);
        let instance = self
            .vpc
            .register(name, instance_type, "nodes-a", &netns_name)
            .await?;
        let primary = instance.primary_ip.to_string();
        cluster::wait_for(
            &format!("namespace {netns_name} with its primary ENI"),
            Duration::from_secs(20),
            || {
                let ready = netns::exists(&netns_name)
                    && netns::ip(&["-n", &netns_name, "-4", "addr", "show", "dev", "eth0"])
                        .map(|out| out.contains(&primary))
                        .unwrap_or(false);
                async move { Ok(ready.then_some(())) }
            },
        )
        .await?;
        Ok(instance)
    }

    /// Adds a node as a cloud would boot one and kubelet would register it: the instance
    /// in vpc-sim (its namespace and primary ENI materialized), the management link,
    /// the Node object with its providerID, its agent and its kubelet stand-in.
    pub async fn add_node(
        &self,
        name: &str,
        instance_type: &str,
        labels: &[(&str, &str)],
    ) -> Result<BedNode, BedError> {
        let node = self
            .add_node_without_runtime(name, instance_type, labels)
            .await?;
        let kubelet = Kubelet::start(
            self.client.clone(),
            KubeletConfig {
                node: name.to_owned(),
                node_ip: node.instance.primary_ip,
                node_netns: node.netns.clone(),
                cni_bin: self.bins.cni.clone(),
                socket_path: node.socket_path.clone(),
                sandbox_prefix: format!("{}k{}-", self.prefix, node.index),
            },
        );
        lock(&self.kubelets).insert(name.to_owned(), kubelet);
        Ok(node)
    }

    /// [`Bed::add_node`] without the kubelet stand-in: nothing runs CNI for the node's
    /// pods but the caller (a benchmark playing the container runtime).
    pub async fn add_node_without_runtime(
        &self,
        name: &str,
        instance_type: &str,
        labels: &[(&str, &str)],
    ) -> Result<BedNode, BedError> {
        let instance = self.add_host(name, instance_type).await?;
        let netns_name = instance.netns.clone();
        let primary = instance.primary_ip.to_string();
        let index = self.next_node.fetch_add(1, Ordering::Relaxed) as u8;
        let mgmt_ip = lock(&self.mgmt).attach(&netns_name, index)?;
        let dir = self.cp.dir().join("nodes").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| BedError::Other(e.to_string()))?;
        let node = BedNode {
            name: name.to_owned(),
            index,
            instance: instance.clone(),
            netns: netns_name,
            mgmt_ip,
            socket_path: dir.join("agent.sock"),
            state_dir: dir.join("state"),
        };
        let labels: BTreeMap<_, _> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let obj: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": instance.provider_id},
            "status": {"addresses": [{"type": "InternalIP", "address": primary}]},
        }))
        .map_err(kube::Error::SerdeError)?;
        Api::<Node>::all(self.client.clone())
            .create(&PostParams::default(), &obj)
            .await?;
        lock(&self.nodes).push(node.clone());
        identities::kubeconfig(&self.cp, &self.client, Who::Agent(name))
            .await
            .map_err(ClusterError::from)?;
        self.start_agent(name)?;
        Ok(node)
    }

    /// The `eni-cni` binary the bed's nodes run.
    pub fn cni_bin(&self) -> &std::path::Path {
        &self.bins.cni
    }

    /// Starts (or restarts) the agent of `node` inside its namespace.
    pub fn start_agent(&self, node: &str) -> Result<(), BedError> {
        let n = self.node(node)?;
        // Written when the node was added: a token bound to the node's agent pod.
        let kubeconfig = Who::Agent(node).kubeconfig_path(&self.cp);
        let mut cmd = netns::command_in(&n.netns, &self.bins.agent);
        cmd.args(["--node-name", node, "--node-ip"])
            .arg(n.instance.primary_ip.to_string())
            .arg("--socket-path")
            .arg(&n.socket_path)
            .arg("--state-dir")
            .arg(&n.state_dir)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info");
        let log = self.cp.dir().join(format!("agent-{node}.log"));
        // Appending keeps the log of the killed run.
        let previous = std::fs::read_to_string(&log).unwrap_or_default();
        let guard = ChildGuard::spawn("eni-agent", cmd, &log)
            .map_err(|e| BedError::Other(format!("starting eni-agent: {e}")))?;
        if !previous.is_empty() {
            let _ = std::fs::write(
                self.cp.dir().join(format!("agent-{node}.previous.log")),
                previous,
            );
        }
        lock(&self.agents).insert(node.to_owned(), guard);
        Ok(())
    }

    /// The process id of `node`'s agent (`ip netns exec` execs it in place).
    pub fn agent_pid(&self, node: &str) -> Option<u32> {
        lock(&self.agents).get(node).map(ChildGuard::pid)
    }

    /// Kills the agent of `node` (SIGKILL, as a crash).
    pub fn kill_agent(&self, node: &str) {
        if let Some(agent) = lock(&self.agents).remove(node) {
            agent.kill();
        }
    }

    /// Waits until every node's agent answers on its socket.
    pub async fn wait_agents(&self) -> Result<(), BedError> {
        let nodes = self.nodes();
        cluster::wait_for("agent sockets", Duration::from_secs(30), || {
            let ready = nodes.iter().all(|n| n.socket_path.exists());
            async move { Ok(ready.then_some(())) }
        })
        .await?;
        Ok(())
    }

    /// Adds flags every operator replica started from now on gets (after the bed's own).
    pub fn add_operator_args(&mut self, args: &[&str]) {
        self.operator_args
            .extend(args.iter().map(|a| (*a).to_owned()));
    }

    /// Starts an operator replica (leader-elected) named `identity`.
    pub fn start_operator(&self, identity: &str) -> Result<(), BedError> {
        let extra: Vec<&str> = self.operator_args.iter().map(String::as_str).collect();
        let guard = cluster::spawn_operator_bin(
            &self.bins.operator,
            &self.cp,
            &self.name,
            identity,
            &extra,
            &self.vpc.env(),
        )?;
        lock(&self.operators).insert(identity.to_owned(), guard);
        Ok(())
    }

    /// Kills operator replica `identity` (SIGKILL, as a crash).
    pub fn kill_operator(&self, identity: &str) {
        if let Some(op) = lock(&self.operators).remove(identity) {
            op.kill();
        }
    }

    /// Starts again every operator replica and agent that exited on its own (a replica
    /// that lost its lease exits; its Deployment or DaemonSet would start it again, as
    /// this does); returns their names. Processes killed on purpose are not touched.
    pub fn restart_exited(&self) -> Result<Vec<String>, BedError> {
        let mut restarted = Vec::new();
        for (name, guard) in lock(&self.operators).iter() {
            if guard.has_exited() {
                guard
                    .start_again()
                    .map_err(|e| BedError::Other(format!("starting operator {name} again: {e}")))?;
                restarted.push(format!("operator {name}"));
            }
        }
        for (node, guard) in lock(&self.agents).iter() {
            if guard.has_exited() {
                guard.start_again().map_err(|e| {
                    BedError::Other(format!("starting the agent of {node} again: {e}"))
                })?;
                restarted.push(format!("agent {node}"));
            }
        }
        Ok(restarted)
    }

    /// The replica holding the lease, if any.
    pub async fn leader(&self) -> Result<Option<String>, BedError> {
        Ok(cluster::lease_holder(&self.client).await?)
    }

    pub async fn apply_yaml(&self, yaml: &str) -> Result<(), BedError> {
        Ok(cluster::apply_yaml(&self.client, yaml).await?)
    }

    /// Creates a pod bound to `node` in namespace `ns`; returns it as stored.
    pub async fn create_pod(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        labels: &[(&str, &str)],
    ) -> Result<Pod, BedError> {
        let labels: BTreeMap<_, _> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/pause"}]},
        }))
        .map_err(kube::Error::SerdeError)?;
        Ok(Api::<Pod>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await?)
    }

    /// Deletes a pod as a user does (graceful; the kubelet stand-in finishes it).
    pub async fn delete_pod(&self, ns: &str, name: &str) -> Result<(), BedError> {
        match Api::<Pod>::namespaced(self.client.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until pod `ns/name` has an IP and is Ready; returns its IP.
    pub async fn wait_ready(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Ipv4Addr, BedError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        Ok(
            cluster::wait_for(&format!("pod {ns}/{name} Ready"), timeout, || {
                let api = api.clone();
                async move {
                    let pod = api.get_opt(name).await?;
                    Ok(pod.as_ref().and_then(ready_ip))
                }
            })
            .await?,
        )
    }

    /// Waits until pod `ns/name` is gone from the API.
    pub async fn wait_gone(&self, ns: &str, name: &str, timeout: Duration) -> Result<(), BedError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        Ok(
            cluster::wait_for(&format!("pod {ns}/{name} gone"), timeout, || {
                let api = api.clone();
                async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
            })
            .await?,
        )
    }

    /// The sandbox namespace of a running pod (found by its address).
    pub async fn sandbox_of(&self, ns: &str, name: &str) -> Result<String, BedError> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get(name)
            .await?;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let index = self
            .nodes()
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.index)
            .ok_or_else(|| BedError::Other(format!("pod {ns}/{name} is on no bed node")))?;
        let uid = pod.uid().unwrap_or_default();
        Ok(format!(
            "{}k{}-{}",
            self.prefix,
            index,
            &uid[..uid.len().min(8)]
        ))
    }

    pub async fn podnetworks(&self) -> Result<Vec<PodNetwork>, BedError> {
        Ok(Api::<PodNetwork>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items)
    }

    /// What each node's kubelet stand-in counted.
    pub fn kubelet_stats(&self) -> Vec<(String, KubeletStats)> {
        lock(&self.kubelets)
            .iter()
            .map(|(n, k)| (n.clone(), lock(&k.stats).clone()))
            .collect()
    }

    /// Removes a node as a cluster autoscaler does: the Node object is deleted (the
    /// operator's finalizer releases its ENIs first), then the instance is terminated.
    pub async fn remove_node(&self, name: &str) -> Result<(), BedError> {
        let node = self.node(name)?;
        lock(&self.kubelets).remove(name);
        self.kill_agent(name);
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.delete(name, &DeleteParams::default()).await?;
        cluster::wait_for(
            &format!("Node {name} gone"),
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                async move { Ok(nodes.get_opt(name).await?.is_none().then_some(())) }
            },
        )
        .await?;
        self.vpc.terminate(&node.instance.instance_id).await?;
        lock(&self.nodes).retain(|n| n.name != name);
        Ok(())
    }

    /// Tails of every process's log, for a failing test's output.
    pub fn logs(&self, lines: usize) -> String {
        let short = |text: String| {
            text.lines()
                .map(|l| l.chars().take(400).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut out = format!("--- vpc-sim\n{}\n", short(self.vpc.log_tail(lines)));
        out += &short(self.cp.component_logs(lines));
        for node in lock(&self.real_nodes).values() {
            out += &short(node.logs(lines));
        }
        for (id, op) in lock(&self.operators).iter() {
            out += &format!("--- operator {id}\n{}\n", short(op.log_tail(lines)));
        }
        for (node, agent) in lock(&self.agents).iter() {
            out += &format!("--- agent {node}\n{}\n", short(agent.log_tail(lines)));
        }
        out += &format!("--- all logs kept in {}\n", self.keep_logs().display());
        out
    }

    /// Copies every log of the bed to `$TMPDIR/eni-e2e-logs/<prefix>/` (the bed's own
    /// directory goes with it) and returns that directory.
    pub fn keep_logs(&self) -> PathBuf {
        let to = std::env::temp_dir().join("eni-e2e-logs").join(&self.prefix);
        let _ = std::fs::create_dir_all(&to);
        if let Ok(dir) = std::fs::read_dir(self.cp.dir()) {
            for e in dir.filter_map(|e| e.ok()) {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".log") {
                    let _ = std::fs::copy(e.path(), to.join(name));
                }
            }
        }
        for (name, node) in lock(&self.real_nodes).iter() {
            for log in ["kubelet.log", "containerd.log"] {
                let _ = std::fs::copy(
                    node.config().dir.join(log),
                    to.join(format!("{name}-{log}")),
                );
            }
            let _ = std::fs::write(
                to.join(format!("{name}-containers.log")),
                node.container_logs(2000),
            );
        }
        to
    }

    /// Links, rules and routes in the node namespaces that belong to pods: empty once
    /// every pod is gone.
    pub fn pod_wiring_left(&self) -> Vec<String> {
        let mut left = Vec::new();
        for n in self.nodes() {
            let links = netns::ip(&["-n", &n.netns, "-o", "link", "show"]).unwrap_or_default();
            for l in links.lines() {
                let name = l.split(':').nth(1).unwrap_or_default().trim();
                let name = name.split('@').next().unwrap_or_default();
                let node_link = name == "lo"
                    || name == "mgmt0"
                    || name.starts_with("eth")
                    || name.starts_with("vlan");
                if !node_link {
                    left.push(format!("{}: link {name}", n.name));
                }
            }
            let rules = netns::ip(&["-n", &n.netns, "rule", "show"]).unwrap_or_default();
            for r in rules.lines() {
                let prio = r.split(':').next().unwrap_or_default().trim();
                if prio == "512" || prio == "2048" {
                    left.push(format!("{}: rule {r}", n.name));
                }
            }
            let routes =
                netns::ip(&["-n", &n.netns, "route", "show", "table", "main"]).unwrap_or_default();
            for r in routes.lines() {
                let dev = r.split(" dev ").nth(1).unwrap_or_default();
                let dev = dev.split_whitespace().next().unwrap_or_default();
                if !(dev.starts_with("eth") || dev == "mgmt0" || dev.starts_with("vlan")) {
                    left.push(format!("{}: route {r}", n.name));
                }
            }
        }
        left
    }
}

/// The pod's IP when it is Ready.
pub fn ready_ip(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    status.pod_ip.as_ref()?.parse().ok()
}

impl Drop for Bed {
    fn drop(&mut self) {
        lock(&self.real_nodes).clear();
        lock(&self.kubelets).clear();
        lock(&self.agents).clear();
        lock(&self.operators).clear();
        // Sandboxes are the kubelet stand-ins'; vpc-sim removes its own namespaces when
        // it stops (after this), and any the kill of a process left are removed here.
        for ns in netns::list(&format!("{}k", self.prefix)) {
            let _ = netns::delete(&ns);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
