//! Where the Go-built Kubernetes binaries come from.
//!
//! They are built once per machine by `e2e/k8s-bin/build.sh` into
//! `~/.cache/eni-operator/k8s/<version>/`; the first test that needs them builds them
//! (the script serialises concurrent builds with a lock).

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
}

pub struct KubernetesBinaries {
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
}

/// Paths of kube-apiserver and kubectl, building them first if the cache lacks them.
pub fn kubernetes() -> Result<KubernetesBinaries, BinaryError> {
    let script = crate::repo_root().join("e2e/k8s-bin/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["kube-apiserver", "kubectl"])
        .env("K8S_VERSION", KUBERNETES_VERSION.trim())
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
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(KubernetesBinaries {
        kube_apiserver: dir.join("kube-apiserver"),
        kubectl: dir.join("kubectl"),
    })
}
