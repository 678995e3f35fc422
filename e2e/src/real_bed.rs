//! The bed with real nodes (`Bed::start_real`): nodes run kubelet and containerd
//! ([`RealNode`]), the product is installed by the real `helm install` of the chart as a
//! user with admin rights would, so the operator and the agents run as the chart's pods
//! under the chart's service accounts, and test pods are real containers.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{Node, Pod, Secret},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use serde_json::json;

use crate::{
    bed::{Bed, BedError, BedNode, FAST_OPERATOR, lock},
    cluster,
    control_plane::SYSTEM_NAMESPACE,
    images, netns,
    real_node::{ProxyMode, RealNode, RealNodeConfig},
};

/// Name of the helm release (the chart's resources are `<release>-…`).
pub const RELEASE: &str = "eni";
/// Secret with vpc-sim's credentials (the chart's `cloud.credentialsSecret`).
const CREDENTIALS_SECRET: &str = "vpc-sim-credentials";
/// Ports of the test pod's servers: busybox httpd and an nc echo.
pub const HTTP_PORT: u16 = 8080;
pub const ECHO_PORT: u16 = 7000;

impl Bed {
    /// Adds a real node: the instance in vpc-sim (namespace, primary ENI), the management
    /// link, then containerd and kubelet, which registers the Node (providerID, node IP
    /// = primary ENI address, `labels`). Returns once the Node exists.
    pub async fn add_real_node(
        &self,
        name: &str,
        instance_type: &str,
        labels: &[(&str, &str)],
    ) -> Result<BedNode, BedError> {
        let images = self
            .images
            .clone()
            .ok_or_else(|| BedError::Other("add_real_node needs Bed::start_real".into()))?;
        let instance = self.add_host(name, instance_type).await?;
        let index = self.next_node.fetch_add(1, Ordering::Relaxed) as u8;
        let mgmt_ip = lock(&self.mgmt).attach(&instance.netns, index)?;
        let dir = self.cp.dir().join("nodes").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| BedError::Other(e.to_string()))?;
        let kubeconfig = dir.join("kubeconfig");
        self.cp.write_node_kubeconfig(&kubeconfig, name)?;
        let proxy_kubeconfig = dir.join("kubeconfig-proxy");
        self.cp.write_proxy_kubeconfig(&proxy_kubeconfig)?;
        let client_ca = dir.join("ca.crt");
        std::fs::write(&client_ca, self.cp.ca_pem()).map_err(|e| BedError::Other(e.to_string()))?;
        let config = RealNodeConfig {
            name: name.to_owned(),
            netns: instance.netns.clone(),
            node_ip: instance.primary_ip,
            provider_id: instance.provider_id.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: dir.clone(),
            kubeconfig,
            client_ca,
            cgroup_root: format!("/{}-{name}", self.prefix),
            images: images.tars.clone(),
            sandbox_image: images::PAUSE.to_owned(),
            proxy_mode: *lock(&self.proxy_mode),
            proxy_kubeconfig,
        };
        let node = Arc::new(RealNode::start(config).await?);
        lock(&self.real_nodes).insert(name.to_owned(), node.clone());
        let nodes: Api<Node> = Api::all(self.client.clone());
        cluster::wait_for(
            &format!("Node {name} registered by its kubelet"),
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                async move { Ok(nodes.get_opt(name).await?.map(|_| ())) }
            },
        )
        .await
        .map_err(|e| BedError::Other(format!("{e}\n{}", node.logs(30))))?;
        let bed_node = BedNode {
            name: name.to_owned(),
            index,
            instance,
            netns: node.config().netns.clone(),
            mgmt_ip,
            socket_path: PathBuf::from("/run/eni-operator/agent.sock"),
            state_dir: PathBuf::from("/var/lib/eni-operator/agent"),
        };
        lock(&self.nodes).push(bed_node.clone());
        Ok(bed_node)
    }

    /// kube-proxy's mode on the real nodes added after this call (nftables by default).
    pub fn set_proxy_mode(&self, mode: ProxyMode) {
        *lock(&self.proxy_mode) = mode;
    }

    /// Builds the agent image again as version `version` ([`images::build_agent_version`])
    /// and imports it into every real node's containerd, as a registry pull of a new
    /// release would put it there. Returns the image's reference.
    pub async fn import_agent_version(&self, version: &str) -> Result<String, BedError> {
        let images = self
            .images
            .clone()
            .ok_or_else(|| BedError::Other("import_agent_version needs Bed::start_real".into()))?;
        let version = version.to_owned();
        let (tar, reference) =
            tokio::task::spawn_blocking(move || images::build_agent_version(&images, &version))
                .await
                .map_err(|e| BedError::Other(e.to_string()))??;
        let nodes: Vec<Arc<RealNode>> = lock(&self.real_nodes).values().cloned().collect();
        for node in nodes {
            node.import_image(&tar)?;
        }
        Ok(reference)
    }

    /// The chart's agent pods (the DaemonSet's), whatever their state.
    pub async fn agent_pods(&self) -> Result<Vec<Pod>, kube::Error> {
        let lp = ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=agent"
        ));
        Ok(
            Api::<Pod>::namespaced(self.client.clone(), SYSTEM_NAMESPACE)
                .list(&lp)
                .await?
                .items,
        )
    }

    /// Tag of the product images the bed built (the chart's `images.*.tag`).
    pub fn product_tag(&self) -> Result<String, BedError> {
        self.images
            .as_ref()
            .map(|i| i.product_tag.clone())
            .ok_or_else(|| BedError::Other("no images: a bed without real nodes".into()))
    }

    pub fn real_node(&self, name: &str) -> Result<Arc<RealNode>, BedError> {
        lock(&self.real_nodes)
            .get(name)
            .cloned()
            .ok_or_else(|| BedError::Other(format!("no real node {name}")))
    }

    /// `helm install` of the chart into the system namespace, as the admin, with the
    /// bed's images (never pulled), vpc-sim as the cloud and the management address as
    /// the API server; waits until the operator Deployment and the agent DaemonSet are
    /// rolled out on every real node. Returns how long the install took.
    /// Runs the real helm with `args` against the bed as its admin (the person installing
    /// the chart), with helm's state under the bed's directory; returns its output.
    pub async fn helm(&self, args: &[&str]) -> Result<String, BedError> {
        let helm_home = self.cp.dir().join("helm");
        let mut cmd =
            Command::new(crate::binaries::helm().map_err(|e| BedError::Other(e.to_string()))?);
        cmd.args(args)
            .env("KUBECONFIG", self.cp.kubeconfig_path())
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_DATA_HOME", helm_home.join("data"));
        let what = args.first().copied().unwrap_or_default().to_owned();
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| BedError::Other(e.to_string()))?
            .map_err(|e| BedError::Other(format!("running helm: {e}")))?;
        if !out.status.success() {
            return Err(BedError::Other(format!(
                "helm {what} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `helm upgrade` of the release with its values and `--set <set>` (returns once
    /// helm has applied it; the rollout is the caller's to wait for).
    pub async fn helm_upgrade_set(&self, set: &str) -> Result<String, BedError> {
        let chart = chart_dir().display().to_string();
        self.helm(&[
            "upgrade",
            RELEASE,
            &chart,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--reuse-values",
            "--set",
            set,
        ])
        .await
    }

    pub async fn install_chart(&self) -> Result<Duration, BedError> {
        let started = Instant::now();
        let images = self
            .images
            .clone()
            .ok_or_else(|| BedError::Other("install_chart needs Bed::start_real".into()))?;
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": SYSTEM_NAMESPACE},
            "stringData": self.vpc.credentials().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }))
        .map_err(kube::Error::SerdeError)?;
        Api::<Secret>::namespaced(self.client.clone(), SYSTEM_NAMESPACE)
            .create(&PostParams::default(), &secret)
            .await?;
        let values = self.chart_values(&images.product_tag)?;
        let values_file = self.cp.dir().join("values.yaml");
        std::fs::write(&values_file, values).map_err(|e| BedError::Other(e.to_string()))?;
        let chart = chart_dir();
        let (chart, values_file) = (
            chart.display().to_string(),
            values_file.display().to_string(),
        );
        self.helm(&[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--values",
            &values_file,
        ])
        .await?;
        self.wait_rolled_out(Duration::from_secs(240)).await?;
        Ok(started.elapsed())
    }

    /// The chart's values for this bed.
    fn chart_values(&self, tag: &str) -> Result<String, BedError> {
        let (host, port) = api_host_port(self.cp.server())?;
        // The chart sets the lease duration itself; the other fast periods go as extra
        // arguments.
        let mut extra = Vec::new();
        let mut lease = "15".to_owned();
        let mut args = FAST_OPERATOR.iter();
        while let Some(flag) = args.next() {
            let value = args.next().copied().unwrap_or_default();
            if *flag == "--lease-duration" {
                lease = value.to_owned();
            } else {
                extra.push(format!("{flag}={value}"));
            }
        }
        let values = json!({
            "clusterName": self.name,
            "images": {
                "operator": {"repository": images::OPERATOR_REPO, "tag": tag, "pullPolicy": "Never"},
                "agent": {"repository": images::AGENT_REPO, "tag": tag, "pullPolicy": "Never"},
            },
            "cloud": {
                "provider": self.vpc.chart_cloud().0,
                "region": self.vpc.chart_cloud().1,
                "endpoint": self.vpc.ec2_url,
                "credentialsSecret": CREDENTIALS_SECRET,
            },
            "apiServer": {"host": host, "port": port},
            "operator": {
                "replicas": 1,
                "leaderElection": {"leaseDurationSeconds": lease.parse::<u32>().unwrap_or(15)},
                "extraArgs": extra,
            },
        });
        serde_yaml::to_string(&values).map_err(|e| BedError::Other(e.to_string()))
    }

    /// Waits until the operator Deployment has a ready replica and the agent DaemonSet a
    /// ready pod on every node it schedules to.
    pub async fn wait_rolled_out(&self, timeout: Duration) -> Result<(), BedError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let want_nodes = lock(&self.real_nodes).len() as i32;
        // The chart's objects, found by the release's instance label (their names
        // depend on the release name).
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
        let waited = cluster::wait_for("operator and agents rolled out", timeout, || {
            let (deployments, daemonsets, lp) =
                (deployments.clone(), daemonsets.clone(), lp.clone());
            async move {
                let ops = deployments.list(&lp).await?.items;
                let dss = daemonsets.list(&lp).await?.items;
                let op_ready = ops.len() == 1
                    && ops.iter().all(|d| {
                        d.status
                            .as_ref()
                            .and_then(|s| s.ready_replicas)
                            .unwrap_or(0)
                            >= 1
                    });
                let ds_ready = dss.len() == 1
                    && dss.iter().all(|d| {
                        d.status.as_ref().is_some_and(|s| {
                            s.desired_number_scheduled == want_nodes
                                && s.number_ready == want_nodes
                                && s.updated_number_scheduled.unwrap_or(0) == want_nodes
                        })
                    });
                Ok((op_ready && ds_ready).then_some(()))
            }
        })
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(e) => Err(BedError::Other(format!(
                "{e}\n{}",
                self.pod_report(SYSTEM_NAMESPACE).await
            ))),
        }
    }

    /// Each pod of `ns` with its phase, node and container states (for failure reports).
    pub async fn pod_report(&self, ns: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let Ok(list) = pods.list(&Default::default()).await else {
            return format!("(cannot list pods of {ns})");
        };
        let mut out = String::new();
        for p in list.items {
            let status = p.status.unwrap_or_default();
            let states: Vec<String> = status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .chain(status.container_statuses.unwrap_or_default())
                .map(|c| {
                    format!(
                        "{} ready={} restarts={} {:?}",
                        c.name, c.ready, c.restart_count, c.state
                    )
                })
                .collect();
            out += &format!(
                "pod {ns}/{} on {:?}: {:?} {:?} {states:?}\n",
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name),
                status.phase,
                status.conditions.map(|c| c
                    .into_iter()
                    .map(|c| format!("{}={}", c.type_, c.status))
                    .collect::<Vec<_>>()),
            );
        }
        out
    }

    /// Creates a pod of the test image on `node` ([`test_pod`]).
    pub async fn create_test_pod(
        &self,
        ns: &str,
        name: &str,
        node: &str,
        labels: &[(&str, &str)],
    ) -> Result<(), BedError> {
        self.create_pod_from(test_pod(ns, name, node, labels)).await
    }

    /// Creates the pod `manifest` describes.
    pub async fn create_pod_from(&self, manifest: serde_json::Value) -> Result<(), BedError> {
        let pod: Pod = serde_json::from_value(manifest).map_err(kube::Error::SerdeError)?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        Api::<Pod>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await?;
        Ok(())
    }

    /// Makes the network namespace of real pod `ns/name` reachable from the host as the
    /// named namespace `<prefix>k-<name>` (a bind mount of its sandbox process's
    /// namespace; removed with the bed) and returns that name, for probes from the pod.
    pub async fn expose_pod_netns(&self, ns: &str, name: &str) -> Result<String, BedError> {
        let pod = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get(name)
            .await?;
        let node = pod
            .spec
            .and_then(|s| s.node_name)
            .ok_or_else(|| BedError::Other(format!("pod {ns}/{name} is not scheduled")))?;
        let real = self.real_node(&node)?;
        let pid = real
            .sandbox_pid(ns, name)
            .map_err(|e| BedError::Other(e.to_string()))?;
        let ns_name = format!("{}k-{name}", self.prefix);
        let _ = netns::delete(&ns_name);
        let path = netns::path(&ns_name);
        std::fs::write(&path, "")
            .map_err(|e| BedError::Other(format!("{}: {e}", path.display())))?;
        netns::run(
            Command::new("mount")
                .arg("--bind")
                .arg(format!("/proc/{pid}/ns/net"))
                .arg(&path),
        )?;
        Ok(ns_name)
    }
}

/// The chart's directory in the repository (what `helm install` and `helm upgrade` get).
pub fn chart_dir() -> PathBuf {
    crate::repo_root().join("charts/eni-operator")
}

/// Host and port of the API server's URL `https://host:port`.
fn api_host_port(server: &str) -> Result<(String, u16), BedError> {
    let rest = server.trim_start_matches("https://");
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| BedError::Other(format!("API server URL {server} has no port")))?;
    let port = port
        .trim_end_matches('/')
        .parse()
        .map_err(|e| BedError::Other(format!("API server URL {server}: {e}")))?;
    Ok((host.to_owned(), port))
}

/// A pod of the test image on `node`: busybox httpd on [`HTTP_PORT`] (the readiness
/// probe; `/index.html` is the pod's name, `/cgi-bin/peer` the client's address) and an nc echo on [`ECHO_PORT`] (the liveness probe), both probed by kubelet
/// over the pod network.
pub fn test_pod(ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> serde_json::Value {
    let labels: BTreeMap<_, _> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // /cgi-bin/peer answers the client's address as the pod saw it (whether a Service
    // path preserved or rewrote the source).
    let script = format!(
        "echo {name} > /www/index.html && mkdir -p /www/cgi-bin && \
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/peer && \
         chmod +x /www/cgi-bin/peer && httpd -p {HTTP_PORT} -h /www && exec nc -ll -p {ECHO_PORT} -e cat"
    );
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": images::TESTPOD,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "ports": [
                    {"name": "http", "containerPort": HTTP_PORT},
                    {"name": "echo", "containerPort": ECHO_PORT},
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/index.html", "port": HTTP_PORT},
                    "periodSeconds": 2,
                },
                "livenessProbe": {
                    "tcpSocket": {"port": ECHO_PORT},
                    "periodSeconds": 3,
                    "failureThreshold": 2,
                },
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            }],
            "volumes": [{"name": "www", "emptyDir": {}}],
        },
    })
}
