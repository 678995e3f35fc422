//! The demo: a real control plane with the eni-operator.io API installed and one ENIPool
//! per mode applied, left running for kubectl until Ctrl-C (or `--once`).

use std::{process::ExitCode, time::Instant};

use eni_e2e::{ControlPlane, binaries};

#[tokio::main]
async fn main() -> ExitCode {
    let once = std::env::args().any(|a| a == "--once");
    match run(once).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(once: bool) -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    println!(
        "==> starting etcd + kube-apiserver {} (TLS, token auth, RBAC)",
        binaries::KUBERNETES_VERSION.trim()
    );
    let cp = ControlPlane::start().await?;
    println!(
        "    API server at {} ({:.1}s)",
        cp.server(),
        t0.elapsed().as_secs_f64()
    );
    println!("==> installing CRDs from charts/eni-operator/crds");
    cp.install_crds().await?;
    let bins = binaries::kubernetes()?;
    let kubectl = |args: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let out = std::process::Command::new(&bins.kubectl)
            .args(args)
            .env("KUBECONFIG", cp.kubeconfig_path())
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    println!("==> applying examples/ (one ENIPool per mode)");
    let examples = eni_e2e::repo_root().join("examples");
    print!(
        "{}",
        kubectl(&["apply", "--server-side", "-f", &examples.to_string_lossy()])?
    );
    println!("==> kubectl get enipools,trunkenis,podnetworks -A");
    print!(
        "{}",
        kubectl(&["get", "enipools,trunkenis,podnetworks", "-A"])?
    );
    println!("==> kubectl explain enipool.spec.warm (excerpt)");
    for line in kubectl(&["explain", "enipool.spec.warm"])?.lines().take(12) {
        println!("    {line}");
    }
    println!("\nready in {:.1}s", t0.elapsed().as_secs_f64());
    if once {
        return Ok(());
    }
    println!(
        "point kubectl at it with:\n\n    export KUBECONFIG={}\n",
        cp.kubeconfig_path().display()
    );
    println!("Ctrl-C stops the cluster and removes everything.");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    Ok(())
}
