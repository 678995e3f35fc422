//! A cluster for controller tests: the real control plane with the CRDs, vpc-sim as the
//! cloud, Node objects for registered instances, and the operator (in-process, or as
//! child processes of the built binary so that killing one is real).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use eni_crds::PodNetwork;
use eni_operator::{
    cloud::{CloudProvider, RateLimit},
    context::Config,
    metrics::Metrics,
    run,
};
use eni_test_support::{SimCloud, SimError};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};
use vpc_sim::{behaviour::SimConfig, server::ServerConfig};

use crate::{
    ControlPlane, ControlPlaneError,
    identities::{self, IdentityError, Who},
    process::ChildGuard,
};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("building {0}: {1}")]
    Build(&'static str, String),
    #[error("starting {0}: {1}")]
    Spawn(&'static str, std::io::Error),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("the chart's identities: {0}")]
    Identity(Box<IdentityError>),
}

impl From<IdentityError> for ClusterError {
    fn from(e: IdentityError) -> Self {
        ClusterError::Identity(Box::new(e))
    }
}

pub struct Cluster {
    // Drop order: operators before the cloud and the control plane.
    operators: Vec<InProcess>,
    pub sim: SimCloud,
    pub cp: ControlPlane,
    pub client: Client,
    /// Value of the ownership tag; unique per cluster.
    pub name: String,
}

struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

/// vpc-sim behaving like EC2 but fast: no latency, short attach, generous limits.
pub fn fast_cloud() -> SimConfig {
    let mut c = SimConfig::instant();
    c.attach_delay_ms = 50;
    c.detach_delay_ms = 50;
    c
}

impl Cluster {
    pub async fn start(behaviour: SimConfig) -> Result<Self, ClusterError> {
        let mut config = ServerConfig::new().map_err(SimError::from)?;
        config.behaviour = behaviour;
        Self::start_with(config).await
    }

    /// Like [`Cluster::start`], with vpc-sim configured in full (layout, catalog).
    pub async fn start_with(config: ServerConfig) -> Result<Self, ClusterError> {
        // In-process components log to the test's output (shown for failing tests).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("eni_operator=info")),
            )
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::start().await?;
        cp.install_crds().await?;
        let client = cp.client().await?;
        let ns: Api<Namespace> = Api::all(client.clone());
        let obj: Namespace = serde_json::from_value(
            json!({"metadata": {"name": crate::control_plane::SYSTEM_NAMESPACE}}),
        )
        .map_err(kube::Error::SerdeError)?;
        ns.create(&PostParams::default(), &obj).await?;
        identities::install(&client, cp.dir()).await?;
        identities::kubeconfig(&cp, &client, Who::Operator).await?;
        let sim = SimCloud::start_with(config).await?;
        let name = format!("test-{}", std::process::id());
        Ok(Cluster {
            operators: Vec::new(),
            sim,
            cp,
            client,
            name,
        })
    }

    /// Registers an instance in vpc-sim and creates its Node object (providerID, labels).
    pub async fn add_node(
        &self,
        name: &str,
        instance_type: &str,
        labels: &[(&str, &str)],
    ) -> Result<String, ClusterError> {
        let inst = self.sim.register(name, instance_type)?;
        let labels: BTreeMap<_, _> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": inst.provider_id},
        }))
        .map_err(kube::Error::SerdeError)?;
        Api::<Node>::all(self.client.clone())
            .create(&PostParams::default(), &node)
            .await?;
        Ok(inst.instance_id)
    }

    /// Applies a manifest (any kind the admin may create) from YAML.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<(), ClusterError> {
        apply_yaml(&self.client, yaml).await
    }

    /// Starts the operator in this process (no leader election: the only replica).
    pub async fn start_operator(
        &mut self,
        config: Config,
        rate: RateLimit,
    ) -> Result<Arc<dyn CloudProvider>, ClusterError> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let provider: Arc<dyn CloudProvider> =
            Arc::new(self.sim.provider(&self.name, rate, &mut registry).await);
        let client = identities::client(&self.cp, &self.client, Who::Operator).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run::run(
            client,
            provider.clone(),
            Config {
                cluster: self.name.clone(),
                ..config
            },
            metrics,
            stopped.map(|_| ()).boxed(),
        ));
        self.operators.push(InProcess {
            stop: Some(stop),
            task,
        });
        Ok(provider)
    }

    /// Stops the in-process operators (a restart starts a new one).
    pub fn stop_operators(&mut self) {
        self.operators.clear();
    }

    /// Starts a replica of the `eni-operator` binary (leader-elected) as a child process.
    pub fn spawn_operator(
        &self,
        identity: &str,
        extra: &[&str],
    ) -> Result<ChildGuard, ClusterError> {
        let bin = workspace_bin("eni-operator")?;
        spawn_operator_bin(&bin, &self.cp, &self.name, identity, extra, &self.sim.env())
    }

    /// [`Cluster::spawn_operator`] with its own kubeconfig (another way to the API
    /// server, such as an [`crate::api_relay::Relay`]), as the operator's identity.
    pub fn spawn_operator_via(
        &self,
        identity: &str,
        extra: &[&str],
        kubeconfig: &std::path::Path,
    ) -> Result<ChildGuard, ClusterError> {
        let bin = workspace_bin("eni-operator")?;
        let mut env = self.sim.env();
        env.push(("KUBECONFIG", kubeconfig.display().to_string()));
        spawn_operator_bin(&bin, &self.cp, &self.name, identity, extra, &env)
    }

    /// The operator replica holding the lease, if any.
    pub async fn leader(&self) -> Result<Option<String>, ClusterError> {
        Ok(lease_holder(&self.client).await?)
    }

    /// Where the operator's identity's kubeconfig is.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        Who::Operator.kubeconfig_path(&self.cp)
    }

    /// Creates `n` pods bound to `node` (spec.nodeName set, as the scheduler would).
    pub async fn create_pods(
        &self,
        ns: &str,
        prefix: &str,
        n: usize,
        node: &str,
        labels: &[(&str, &str)],
    ) -> Result<(), ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let labels: BTreeMap<_, _> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for i in 0..n {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("{prefix}-{i}"), "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/pause"}]},
            }))
            .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &pod).await?;
        }
        Ok(())
    }

    pub async fn podnetworks(&self) -> Result<Vec<PodNetwork>, ClusterError> {
        Ok(Api::<PodNetwork>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items)
    }

    /// Polls `check` until it returns Some or `timeout` passes.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ClusterError>>,
    {
        wait_for(what, timeout, check).await
    }
}

/// Applies a manifest (any kind the admin may create) from YAML.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Result<(), ClusterError> {
    let obj: kube::api::DynamicObject =
        serde_yaml::from_str(yaml).map_err(|e| ClusterError::Build("manifest", e.to_string()))?;
    let tm = obj
        .types
        .clone()
        .ok_or_else(|| ClusterError::Build("manifest", "no apiVersion/kind".into()))?;
    let (group, version) = tm
        .api_version
        .split_once('/')
        .unwrap_or(("", tm.api_version.as_str()));
    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        group, version, &tm.kind,
    ));
    let api: Api<kube::api::DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &obj.name_any(),
        &kube::api::PatchParams::apply("eni-e2e").force(),
        &kube::api::Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ClusterError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout(timeout, what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a replica of the `eni-operator` binary `bin` (leader-elected, lease in the
/// system namespace) for cluster `cluster`, with the cloud's `env`, as the chart's
/// operator ServiceAccount (its kubeconfig written by `identities::kubeconfig`); its log
/// goes to `<control plane dir>/<identity>.log`.
pub fn spawn_operator_bin(
    bin: &std::path::Path,
    cp: &ControlPlane,
    cluster: &str,
    identity: &str,
    extra: &[&str],
    env: &[(&'static str, String)],
) -> Result<ChildGuard, ClusterError> {
    let kubeconfig = Who::Operator.kubeconfig_path(cp);
    let mut cmd = Command::new(bin);
    cmd.args([
        "--cluster-name",
        cluster,
        "--identity",
        identity,
        "--metrics-addr",
        "127.0.0.1:0",
        "--lease-namespace",
        crate::control_plane::SYSTEM_NAMESPACE,
    ])
    .args(extra)
    .env("KUBECONFIG", &kubeconfig)
    .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = cp.dir().join(format!("{identity}.log"));
    ChildGuard::spawn("eni-operator", cmd, &log).map_err(|e| ClusterError::Spawn("eni-operator", e))
}

/// The holder of the operator's Lease (the chart's name, in the system namespace).
pub async fn lease_holder(client: &Client) -> Result<Option<String>, kube::Error> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), crate::control_plane::SYSTEM_NAMESPACE);
    Ok(leases
        .get_opt("eni-operator")
        .await?
        .and_then(|l| l.spec?.holder_identity))
}

/// The product's binaries the bed runs as processes.
const PRODUCT_BINS: [&str; 4] = ["vpc-sim", "eni-operator", "eni-agent", "eni-cni"];

/// Path of a binary of this workspace, building it first (a no-op when it is current).
pub fn workspace_bin(name: &'static str) -> Result<PathBuf, ClusterError> {
    Ok(workspace_bins(&[name])?.remove(0))
}

/// Paths of product binaries (see [`PRODUCT_BINS`]), built first when not current, in
/// the profile this program was built in (a release benchmark runs release binaries).
///
/// Always the same cargo selection as `e2e/demo.sh` and `e2e/test.sh` (every binary of
/// the workspace): another selection unifies dependency features differently and would
/// compile the heavy dependencies (the AWS SDK) a second time.
pub fn workspace_bins(names: &[&'static str]) -> Result<Vec<PathBuf>, ClusterError> {
    if let Some(other) = names.iter().find(|n| !PRODUCT_BINS.contains(n)) {
        return Err(ClusterError::Build(other, "not a product binary".into()));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--locked", "--workspace", "--bins"]);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        cmd.arg("--release");
        "release"
    };
    // Under `cargo test` this process carries the variables cargo sets for the crate
    // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Build scripts that watch them (ring's
    // does) would see a change against a plain `cargo build` and rebuild, and with them
    // everything above ring, here and again in the next plain build.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_the_crate) {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .current_dir(crate::repo_root())
        .output()
        .map_err(|e| ClusterError::Build("product binaries", e.to_string()))?;
    if !out.status.success() {
        return Err(ClusterError::Build(
            "product binaries",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo_root().join("target"));
    Ok(names.iter().map(|n| target.join(profile).join(n)).collect())
}

/// Variables cargo sets for a crate it builds or runs (not the user's configuration).
fn set_by_cargo_for_the_crate(key: &str) -> bool {
    key == "OUT_DIR"
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_BIN_")
        || matches!(
            key,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_for_the_crate;

    #[test]
    fn only_the_crates_variables_are_dropped_for_the_nested_build() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_EXE_eni-demo",
            "CARGO_PRIMARY_PACKAGE",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_the_crate(key), "{key}");
        }
        for key in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO",
            "PATH",
        ] {
            assert!(!set_by_cargo_for_the_crate(key), "{key}");
        }
    }
}
