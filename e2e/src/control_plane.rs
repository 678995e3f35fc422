//! A real control plane for tests: etcd + kube-apiserver on loopback.
//!
//! TLS with a throwaway CA, a static token for the admin (the tests and the person
//! installing), service-account tokens signed by the API server (see `identities` for
//! the product's), and RBAC authorization, so the chart's RBAC is what the tests
//! exercise. Both processes die with the `ControlPlane` (on drop, also
//! when a test panics) and with the test process (parent-death signal); the temp dir goes
//! with it.
//!
//! For real nodes ([`Options::real_nodes`]) it is a whole control plane: kube-controller-
//! manager (service accounts, `kube-root-ca.crt`, ReplicaSets, DaemonSets, node
//! lifecycle) and kube-scheduler run too, authenticated with client certificates of the
//! bed's CA; the ServiceAccount admission plugin, the Node authorizer and NodeRestriction
//! are on, and kubelets get client certificates as `system:node:<name>`.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use tempfile::TempDir;

use crate::{binaries, process::ChildGuard};

/// Namespace the chart installs into; the product's service accounts live there.
pub const SYSTEM_NAMESPACE: &str = "eni-system";
/// The admin's user name (group `system:masters`).
const ADMIN_USER: &str = "eni-admin";

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Certs(#[from] rcgen::Error),
    #[error(transparent)]
    Binaries(#[from] binaries::BinaryError),
    #[error("starting {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} exited before it was ready; last log lines:\n{log}")]
    Exited { what: &'static str, log: String },
    #[error("{what} not ready after {secs}s; last log lines:\n{log}")]
    NotReady {
        what: &'static str,
        secs: u64,
        log: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("kube API: {0}")]
    Kube(#[from] kube::Error),
    #[error("CRD manifest {file}: {source}")]
    Manifest {
        file: String,
        source: serde_yaml::Error,
    },
    #[error("waiting for CRD {0} to be Established")]
    CrdTimeout(String),
    #[error("node credentials need a control plane started with `real_nodes`")]
    NoComponents,
}

/// Where the API server listens and which names its certificate carries.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address the API server binds to (127.0.0.1 unless node namespaces must reach it).
    pub bind_address: IpAddr,
    /// Extra addresses for the serving certificate (e.g. a management-link address).
    pub extra_sans: Vec<IpAddr>,
    /// Run kube-controller-manager and kube-scheduler too, with the admission plugins
    /// and authorizers real kubelets need. Off: pods are bound by hand and no
    /// controller touches them (the kubelet stand-in's bed).
    pub real_nodes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            extra_sans: Vec::new(),
            real_nodes: false,
        }
    }
}

/// kube-controller-manager and kube-scheduler.
struct Components {
    controller_manager: ChildGuard,
    scheduler: ChildGuard,
}

pub struct ControlPlane {
    // Field order is drop order: the controllers, then the API server, then etcd, the
    // dir last.
    components: Option<Components>,
    apiserver: ChildGuard,
    etcd: ChildGuard,
    dir: TempDir,
    server: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The admin's static token.
    admin_token: String,
}

const START_TIMEOUT: Duration = Duration::from_secs(90);

impl ControlPlane {
    /// Starts etcd and kube-apiserver on loopback.
    pub async fn start() -> Result<Self, ControlPlaneError> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Result<Self, ControlPlaneError> {
        crate::init_crypto();
        let bins = binaries::kubernetes(if opts.real_nodes {
            binaries::Need::RealNodes
        } else {
            binaries::Need::ControlPlane
        })?;
        let dir = tempfile::Builder::new()
            .prefix("eni-cp-")
            .tempdir()
            .map_err(|source| io_err(Path::new("/tmp"), source))?;
        let root = dir.path().to_path_buf();

        let (etcd, etcd_url) = start_etcd(&root).await?;

        let pki = write_pki(&root, &opts)?;
        let admin_token = random_token();
        let token_file = root.join("tokens.csv");
        write(
            &token_file,
            format!("{admin_token},{ADMIN_USER},uid-admin,\"system:masters\"\n"),
        )?;

        let port = free_port()?;
        let bind = opts.bind_address;
        let advertise = if bind.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bind
        };
        let mut cmd = std::process::Command::new(&bins.kube_apiserver);
        cmd.args([
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={port}"),
            format!("--bind-address={bind}"),
            format!("--advertise-address={advertise}"),
            format!("--tls-cert-file={}", pki.cert.display()),
            format!("--tls-private-key-file={}", pki.key.display()),
            format!("--token-auth-file={}", token_file.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
        ]);
        if opts.real_nodes {
            cmd.args([
                format!("--client-ca-file={}", pki.ca_file.display()),
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                // For logs and exec through the API (debugging a bed by hand).
                format!(
                    "--kubelet-client-certificate={}",
                    pki.kubelet_client.0.display()
                ),
                format!("--kubelet-client-key={}", pki.kubelet_client.1.display()),
            ]);
        } else {
            cmd.args([
                "--authorization-mode=RBAC",
                // No controller-manager runs here, so nothing would create the `default`
                // service account pods are admitted with.
                "--disable-admission-plugins=ServiceAccount",
            ]);
        }
        let apiserver = ChildGuard::spawn("kube-apiserver", cmd, &root.join("kube-apiserver.log"))
            .map_err(|source| ControlPlaneError::Spawn {
                what: "kube-apiserver",
                source,
            })?;

        let mut cp = ControlPlane {
            components: None,
            apiserver,
            etcd,
            dir,
            server: format!("https://{advertise}:{port}"),
            ca: pki.ca,
            admin_token,
        };
        cp.write_token_kubeconfig(&cp.kubeconfig_path(), "admin", &cp.admin_token)?;
        cp.wait_ready().await?;
        if opts.real_nodes {
            cp.components = Some(cp.start_components(&bins, &pki.sa_key, &pki.ca_file)?);
        }
        Ok(cp)
    }

    /// Starts kube-controller-manager and kube-scheduler, each with a client certificate
    /// for the user its bootstrap RBAC roles name.
    fn start_components(
        &self,
        bins: &binaries::KubernetesBinaries,
        sa_key: &Path,
        ca_file: &Path,
    ) -> Result<Components, ControlPlaneError> {
        let root = self.dir.path();
        let cm_kubeconfig = root.join("kubeconfig-controller-manager");
        self.write_cert_kubeconfig(&cm_kubeconfig, "system:kube-controller-manager", &[])?;
        let mut cmd = std::process::Command::new(&bins.kube_controller_manager);
        cmd.args([
            format!("--kubeconfig={}", cm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", cm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", cm_kubeconfig.display()),
            // Each controller acts as its own service account, as in kubeadm clusters.
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", sa_key.display()),
            // Published to every namespace as `kube-root-ca.crt` (projected into pods).
            format!("--root-ca-file={}", ca_file.display()),
            format!("--cluster-signing-cert-file={}", ca_file.display()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()?),
            format!(
                "--cert-dir={}",
                root.join("controller-manager-certs").display()
            ),
            // Pods of a node that stops reporting are evicted after this (the default 5
            // minutes outlasts a test).
            "--node-monitor-grace-period=20s".into(),
            "--profiling=false".into(),
        ]);
        let controller_manager = ChildGuard::spawn(
            "kube-controller-manager",
            cmd,
            &root.join("kube-controller-manager.log"),
        )
        .map_err(|source| ControlPlaneError::Spawn {
            what: "kube-controller-manager",
            source,
        })?;
        let sched_kubeconfig = root.join("kubeconfig-scheduler");
        self.write_cert_kubeconfig(&sched_kubeconfig, "system:kube-scheduler", &[])?;
        let mut cmd = std::process::Command::new(&bins.kube_scheduler);
        cmd.args([
            format!("--kubeconfig={}", sched_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", sched_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", sched_kubeconfig.display()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()?),
            format!("--cert-dir={}", root.join("scheduler-certs").display()),
            "--profiling=false".into(),
        ]);
        let scheduler = ChildGuard::spawn("kube-scheduler", cmd, &root.join("kube-scheduler.log"))
            .map_err(|source| ControlPlaneError::Spawn {
                what: "kube-scheduler",
                source,
            })?;
        Ok(Components {
            controller_manager,
            scheduler,
        })
    }

    /// Writes a kubeconfig for kubelet `node` (`system:node:<node>` in `system:nodes`,
    /// which the Node authorizer and NodeRestriction recognise).
    pub fn write_node_kubeconfig(&self, path: &Path, node: &str) -> Result<(), ControlPlaneError> {
        if self.components.is_none() {
            return Err(ControlPlaneError::NoComponents);
        }
        self.write_cert_kubeconfig(path, &format!("system:node:{node}"), &["system:nodes"])
    }

    /// Writes a kubeconfig for kube-proxy: user `system:kube-proxy`, which the bootstrap
    /// binding `system:node-proxier` names (what kubeadm gives its kube-proxy DaemonSet).
    pub fn write_proxy_kubeconfig(&self, path: &Path) -> Result<(), ControlPlaneError> {
        if self.components.is_none() {
            return Err(ControlPlaneError::NoComponents);
        }
        self.write_cert_kubeconfig(path, "system:kube-proxy", &[])
    }

    /// The CA certificate (PEM) that signs the serving and client certificates.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes a kubeconfig with a fresh client certificate for user `cn` in `groups`.
    fn write_cert_kubeconfig(
        &self,
        path: &Path,
        cn: &str,
        groups: &[&str],
    ) -> Result<(), ControlPlaneError> {
        let (cert, key) = client_cert(&self.ca, cn, groups)?;
        let ca = BASE64.encode(self.ca.pem().as_bytes());
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: eni-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: c\n  context:\n    cluster: eni-test\n    user: u\ncurrent-context: c\n",
            server = self.server,
            cert = BASE64.encode(cert.as_bytes()),
            key = BASE64.encode(key.as_bytes()),
        );
        write(path, yaml)
    }

    /// `https://host:port` of the API server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig (written at start; for kubectl and humans).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Directory that lives as long as the control plane (logs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client authenticated as the cluster admin.
    pub async fn client(&self) -> Result<Client, ControlPlaneError> {
        self.token_client("admin", &self.admin_token).await
    }

    /// A client presenting `token` (named `user` in its kubeconfig); subject to RBAC.
    pub async fn token_client(&self, user: &str, token: &str) -> Result<Client, ControlPlaneError> {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml(user, token))
            .map_err(|e| ControlPlaneError::Kubeconfig(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ControlPlaneError::Kubeconfig(e.to_string()))?;
        Ok(Client::try_from(config)?)
    }

    /// Writes a kubeconfig presenting `token` (named `user`) to `path`.
    pub fn write_token_kubeconfig(
        &self,
        path: &Path,
        user: &str,
        token: &str,
    ) -> Result<(), ControlPlaneError> {
        write(path, self.kubeconfig_yaml(user, token))
    }

    fn kubeconfig_yaml(&self, ctx: &str, token: &str) -> String {
        let ca = BASE64.encode(self.ca.pem().as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: eni-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {ctx}\n  user:\n    token: {token}\ncontexts:\n- name: {ctx}\n  context:\n    cluster: eni-test\n    user: {ctx}\ncurrent-context: {ctx}\n",
            server = self.server
        )
    }

    async fn wait_ready(&self) -> Result<(), ControlPlaneError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = self.client().await?;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new());
            if let Ok(req) = req
                && let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if self.apiserver.has_exited() {
                return Err(ControlPlaneError::Exited {
                    what: "kube-apiserver",
                    log: self.apiserver.log_tail(40),
                });
            }
            if Instant::now() > deadline {
                return Err(ControlPlaneError::NotReady {
                    what: "kube-apiserver",
                    secs: START_TIMEOUT.as_secs(),
                    log: self.apiserver.log_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Installs the chart's CRDs (server-side apply) and waits until they are Established.
    pub async fn install_crds(&self) -> Result<(), ControlPlaneError> {
        let client = self.client().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        // The files users `kubectl apply`, not a fresh rendering: this tests what ships.
        let dir = crate::repo_root().join("charts/eni-operator/crds");
        let mut names = Vec::new();
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|source| io_err(&dir, source))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let yaml = fs::read_to_string(&path).map_err(|source| io_err(&path, source))?;
            let file = path.display().to_string();
            let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)
                .map_err(|source| ControlPlaneError::Manifest { file, source })?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply("eni-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await?;
            names.push(name);
        }
        for name in names {
            let established = await_condition(api.clone(), &name, conditions::is_crd_established());
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .map_err(|_| ControlPlaneError::CrdTimeout(name.clone()))?
                .map_err(|e| ControlPlaneError::Kubeconfig(e.to_string()))?;
        }
        Ok(())
    }

    /// Process ids of etcd and kube-apiserver (and the controllers, if they run).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd.pid(), self.apiserver.pid()];
        if let Some(c) = &self.components {
            pids.extend([c.controller_manager.pid(), c.scheduler.pid()]);
        }
        pids
    }

    /// Log tails of kube-controller-manager and kube-scheduler (for failure reports).
    pub fn component_logs(&self, lines: usize) -> String {
        match &self.components {
            Some(c) => format!(
                "--- kube-controller-manager\n{}\n--- kube-scheduler\n{}\n",
                c.controller_manager.log_tail(lines),
                c.scheduler.log_tail(lines)
            ),
            None => String::new(),
        }
    }

    /// Log file of kube-apiserver (for failure reports).
    pub fn apiserver_log(&self) -> String {
        self.apiserver.log_tail(60)
    }

    /// Kills kube-apiserver (SIGKILL), keeps it down for `down`, starts it again with the
    /// same flags (port, certificates, etcd) and returns once it is ready: every client's
    /// connections and watches break meanwhile.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<(), ControlPlaneError> {
        self.apiserver.kill();
        tokio::time::sleep(down).await;
        self.apiserver
            .start_again()
            .map_err(|source| ControlPlaneError::Spawn {
                what: "kube-apiserver",
                source,
            })?;
        self.wait_ready().await
    }

    /// Kills etcd (SIGKILL), keeps it down for `down`, starts it again on the same data
    /// and ports, and returns once the API server is ready again.
    pub async fn restart_etcd(&self, down: Duration) -> Result<(), ControlPlaneError> {
        self.etcd.kill();
        tokio::time::sleep(down).await;
        self.etcd
            .start_again()
            .map_err(|source| ControlPlaneError::Spawn {
                what: "etcd",
                source,
            })?;
        self.wait_ready().await
    }
}

async fn start_etcd(root: &Path) -> Result<(ChildGuard, String), ControlPlaneError> {
    let bin = etcd_bin_vendored::etcd_bin_path().map_err(|e| ControlPlaneError::Spawn {
        what: "etcd",
        source: std::io::Error::other(e.to_string()),
    })?;
    let client_port = free_port()?;
    let peer_port = free_port()?;
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--name=eni-test".to_string(),
        format!("--data-dir={}", root.join("etcd").display()),
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=eni-test={peer}"),
        // Test data: durability across power loss buys nothing and costs seconds.
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ]);
    let etcd = ChildGuard::spawn("etcd", cmd, &root.join("etcd.log")).map_err(|source| {
        ControlPlaneError::Spawn {
            what: "etcd",
            source,
        }
    })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", client_port)).is_ok() {
            return Ok((etcd, url));
        }
        if etcd.has_exited() {
            return Err(ControlPlaneError::Exited {
                what: "etcd",
                log: etcd.log_tail(40),
            });
        }
        if Instant::now() > deadline {
            return Err(ControlPlaneError::NotReady {
                what: "etcd",
                secs: 30,
                log: etcd.log_tail(40),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
    /// The API server's client certificate towards kubelets (cert, key).
    kubelet_client: (PathBuf, PathBuf),
}

/// A client certificate (PEM cert, PEM key) for user `cn` in `groups`, signed by `ca`.
fn client_cert(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    groups: &[&str],
) -> Result<(String, String), ControlPlaneError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for g in groups {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *g);
    }
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_pki(root: &Path, opts: &Options) -> Result<Pki, ControlPlaneError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "eni-operator test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
    ];
    ips.extend(opts.extra_sans.iter().copied());
    if !opts.bind_address.is_unspecified() {
        ips.push(opts.bind_address);
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    let pki = Pki {
        ca_file: root.join("ca.crt"),
        cert: root.join("apiserver.crt"),
        key: root.join("apiserver.key"),
        sa_key: root.join("sa.key"),
        sa_pub: root.join("sa.pub"),
        kubelet_client: (
            root.join("apiserver-kubelet-client.crt"),
            root.join("apiserver-kubelet-client.key"),
        ),
        ca,
    };
    // The serving chain includes the CA so clients that only pin the CA verify it.
    write(&pki.cert, format!("{}{}", cert.pem(), pki.ca.pem()))?;
    write(&pki.key, key.serialize_pem())?;
    write(&pki.ca_file, pki.ca.pem())?;
    let (kc_cert, kc_key) = client_cert(
        &pki.ca,
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )?;
    write(&pki.kubelet_client.0, kc_cert)?;
    write(&pki.kubelet_client.1, kc_key)?;
    let sa = KeyPair::generate()?;
    write(&pki.sa_key, sa.serialize_pem())?;
    write(&pki.sa_pub, sa.public_key_pem())?;
    Ok(pki)
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ControlPlaneError> {
    fs::write(path, contents).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> ControlPlaneError {
    ControlPlaneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A port that was free a moment ago. Two control planes starting at once may race for
/// it; the loser fails to bind and the test reports it, which has not happened with the
/// kernel's randomised ephemeral ports.
/// A port free now, for a child process to listen on. Picked below Linux's ephemeral
/// range (32768 and up): a port the kernel hands out there may be taken as the source
/// port of some connection before the child binds it (etcd once failed to start so).
fn free_port() -> Result<u16, ControlPlaneError> {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rng.random_range(20000..32000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|source| io_err(Path::new("127.0.0.1:0"), source))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| io_err(Path::new("127.0.0.1:0"), source))
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}
