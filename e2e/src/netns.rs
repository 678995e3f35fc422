//! Named network namespaces of the test bed (made by `eni-netns` the iproute2 way, so
//! `ip netns exec` works for debugging), and `ip` commands run for the bed's plumbing.

use std::process::Command;

pub use eni_netns::{exists, path};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error(transparent)]
    Namespace(#[from] eni_netns::NetnsError),
}

/// Runs `ip <args>` and returns its stdout.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run(Command::new("ip").args(args))
}

/// Runs a command and returns its stdout, or its stderr as the error.
pub fn run(cmd: &mut Command) -> Result<String, NetnsError> {
    let text = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: text.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: text,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a namespace with its loopback up (a pod sandbox, a host outside the cluster).
pub async fn add(name: &str) -> Result<(), NetnsError> {
    Ok(eni_netns::create(name).await?)
}

/// Deletes a namespace; one that is already gone is fine.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    Ok(eni_netns::delete(name)?)
}

/// Namespaces whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    eni_netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// `program` run inside namespace `ns` (the way a node's processes see the network).
pub fn command_in(ns: &str, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}
