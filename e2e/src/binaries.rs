//! Where the Go-built Kubernetes and containerd binaries come from.
//!
//! They are built once per machine by `e2e/k8s-bin/build.sh` into
//! `~/.cache/eni-operator/k8s/<version>/` and by `e2e/containerd/build.sh` into
//! `~/.cache/eni-operator/containerd/<version>/`; the first test that needs them builds
//! them (the scripts serialise concurrent builds with a lock).

use std::{path::PathBuf, process::Command};

/// The Kubernetes version the test bed runs (k8s-openapi feature `v1_36`).
pub const KUBERNETES_VERSION: &str = include_str!("../k8s-bin/VERSION");

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("running {script}: {source}")]
    Run {
        script: String,
        source: std::io::Error,
    },
    #[error("{script} failed (is Go installed?):\n{stderr}")]
    Build { script: String, stderr: String },
    #[error("{path} is missing: run e2e/setup.sh to build it")]
    Missing { path: PathBuf },
}

/// The helm binary e2e/setup.sh builds into the cache.
pub fn helm() -> Result<PathBuf, BinaryError> {
    let cache = std::env::var_os("ENI_OPERATOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/eni-operator")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache/eni-operator"));
    let path = cache.join("bin/helm");
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinaryError::Missing { path })
    }
}

/// The containerd version real nodes run.
pub const CONTAINERD_VERSION: &str = include_str!("../containerd/VERSION");

pub struct KubernetesBinaries {
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    pub kubelet: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
}

/// Which Kubernetes binaries a bed needs built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// kube-apiserver and kubectl: the stand-in bed, the demo, the API tests.
    ControlPlane,
    /// Also kubelet, kube-controller-manager, kube-scheduler and kube-proxy.
    RealNodes,
}

/// Paths of the Kubernetes binaries, building the ones `need` asks for first if the
/// cache lacks them (the others' paths may not exist yet).
pub fn kubernetes(need: Need) -> Result<KubernetesBinaries, BinaryError> {
    let wanted: &[&str] = match need {
        Need::ControlPlane => &["kube-apiserver", "kubectl"],
        Need::RealNodes => &[],
    };
    let dir = run_build(
        "e2e/k8s-bin/build.sh",
        wanted,
        "K8S_VERSION",
        KUBERNETES_VERSION,
    )?;
    Ok(KubernetesBinaries {
        kube_apiserver: dir.join("kube-apiserver"),
        kubectl: dir.join("kubectl"),
        kubelet: dir.join("kubelet"),
        kube_controller_manager: dir.join("kube-controller-manager"),
        kube_scheduler: dir.join("kube-scheduler"),
        kube_proxy: dir.join("kube-proxy"),
    })
}

pub struct ContainerdBinaries {
    pub containerd: PathBuf,
    /// `containerd-shim-runc-v2`; containerd finds it on its PATH.
    pub shim_dir: PathBuf,
    pub ctr: PathBuf,
}

/// Paths of containerd, its runc shim and ctr, building them first if needed.
pub fn containerd() -> Result<ContainerdBinaries, BinaryError> {
    let dir = run_build(
        "e2e/containerd/build.sh",
        &[],
        "CONTAINERD_VERSION",
        CONTAINERD_VERSION,
    )?;
    Ok(ContainerdBinaries {
        containerd: dir.join("containerd"),
        ctr: dir.join("ctr"),
        shim_dir: dir,
    })
}

/// `eni-libcni` (e2e/libcni-driver), which e2e/setup.sh builds into the cache: libcni
/// driven with a real node's conflist, result cache and sandbox list.
pub fn libcni_driver() -> Result<PathBuf, BinaryError> {
    let cache = std::env::var_os("ENI_OPERATOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/eni-operator")))
        .unwrap_or_default();
    let path = cache.join("bin/eni-libcni");
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinaryError::Missing { path })
    }
}

/// Runs a build script of this crate with `args` (a no-op when its cache is complete)
/// and returns the cache directory it prints.
fn run_build(
    script: &str,
    args: &[&str],
    version_var: &str,
    version: &str,
) -> Result<PathBuf, BinaryError> {
    let script = crate::repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .env(version_var, version.trim())
        .output()
        .map_err(|source| BinaryError::Run {
            script: script.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(BinaryError::Build {
            script: script.display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
