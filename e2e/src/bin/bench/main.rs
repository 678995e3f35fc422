//! bench: the product's benchmarks, one program. Each prints its JSON document, writes
//! it to `bench/results/<name>.json` (or `--out PATH`) and ends with a one-line summary.
//! Run them from a release build: `cargo run --release -p eni-e2e --bin bench -- cni`;
//! `--smoke` runs a small size (what CI runs: no figure is asserted).
//!
//! - `cni`: CNI ADD/DEL as a runtime execs them, against ptp + host-local (`cni.rs`).
//! - `dataplane`: throughput and round trips per pod path against node to node
//!   (`dataplane.rs`).
//! - `burst`: allocation bursts in every mode, cold and warm, against their bounds;
//!   what the pools hold afterwards and after half the pods go; the operator's memory
//!   (`burst.rs`).
//! - `scale`: 10,000 PodNetworks over 500 nodes: the operator's memory and CPU per pod,
//!   and a pod's time to its PodNetwork at that size (`scale.rs`).
//!
//! `burst` and `scale` drive the real control plane the same way (`cluster_wait.rs`).

mod burst;
mod cluster_wait;
mod cni;
mod dataplane;
mod reference;
mod report;
mod scale;

use std::path::PathBuf;

use serde_json::json;

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(
        "usage: bench cni|dataplane|burst|scale [--smoke] [--out PATH] [burst: --pods N --nodes N --cloud aws|alibaba --mode shared|exclusive|trunk] [scale: --pods N --nodes N]: {0}"
    )]
    Usage(String),
    #[error(transparent)]
    Bed(#[from] eni_e2e::bed::BedError),
    #[error(transparent)]
    Cluster(#[from] eni_e2e::cluster::ClusterError),
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Netns(#[from] eni_netns::NetnsError),
    #[error(transparent)]
    Ip(#[from] eni_e2e::netns::NetnsError),
    #[error(transparent)]
    Vpc(#[from] eni_e2e::vpc::VpcError),
    #[error("{0}")]
    Io(std::io::Error),
    /// A step of a benchmark that failed: a plugin, iperf3, a worker.
    #[error("{0}")]
    Failed(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error(transparent)]
    Sim(#[from] eni_test_support::SimError),
    #[error("vpc-sim: {0}")]
    Server(#[from] vpc_sim::server::ServerError),
    #[error(transparent)]
    Layout(#[from] vpc_sim::layout::LayoutError),
    #[error("watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    #[error("{pods} pods do not fit on {nodes} {instance_type} nodes ({per} each at most)")]
    TooMany {
        pods: u32,
        nodes: u32,
        instance_type: &'static str,
        per: u32,
    },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, String),
    #[error("timed out after {timeout:?} waiting for {what}; the operator's log ends with:\n{log}")]
    Stuck {
        timeout: std::time::Duration,
        what: String,
        log: String,
    },
    #[error("the operator exited; its log ends with:\n{0}")]
    OperatorDied(String),
    #[error("reading the operator's memory: {0}")]
    Proc(std::io::Error),
}

struct Args {
    name: String,
    smoke: bool,
    out: PathBuf,
    /// The benchmark's own arguments.
    rest: Vec<String>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, BenchError> {
    let mut it = args.into_iter();
    let name = it
        .next()
        .ok_or_else(|| BenchError::Usage("name a benchmark".into()))?;
    let (mut smoke, mut out, mut rest) = (false, None, Vec::new());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--out" => {
                out =
                    Some(PathBuf::from(it.next().ok_or_else(|| {
                        BenchError::Usage("--out needs a path".into())
                    })?))
            }
            _ => rest.push(a),
        }
    }
    let out = out.unwrap_or_else(|| {
        eni_e2e::repo_root()
            .join("bench/results")
            .join(format!("{name}.json"))
    });
    Ok(Args {
        name,
        smoke,
        out,
        rest,
    })
}

/// The value of `flag`, a positive number (the benchmarks' sizes).
fn positive(flag: &str, value: Option<String>) -> Result<u32, BenchError> {
    let v = value.ok_or_else(|| BenchError::Usage(format!("{flag} needs a value")))?;
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(BenchError::Usage(format!(
            "{flag} {v:?} is not a positive number"
        ))),
    }
}

/// Benchmarks that parse arguments of their own; the others take none.
const WITH_ARGS: [&str; 2] = ["burst", "scale"];

async fn run(args: &Args) -> Result<String, BenchError> {
    if !WITH_ARGS.contains(&args.name.as_str())
        && let Some(other) = args.rest.first()
    {
        return Err(BenchError::Usage(format!("unknown argument {other:?}")));
    }
    let (mut doc, summary) = match args.name.as_str() {
        "cni" => cni::run(if args.smoke { &cni::SMOKE } else { &cni::FULL }).await?,
        "dataplane" => {
            dataplane::run(if args.smoke {
                &dataplane::SMOKE
            } else {
                &dataplane::FULL
            })
            .await?
        }
        "burst" => burst::run(&burst::parse_args(args.rest.clone(), args.smoke)?).await?,
        "scale" => scale::run(&scale::parse_args(args.rest.clone(), args.smoke)?).await?,
        other => return Err(BenchError::Usage(format!("no benchmark {other:?}"))),
    };
    doc["bench"] = json!(args.name);
    doc["size"] = json!(if args.smoke { "smoke" } else { "full" });
    doc["machine"] = report::machine();
    println!("{}", serde_json::to_string_pretty(&doc)?);
    report::write(&args.out, &doc).map_err(BenchError::Io)?;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    Ok(format!(
        "{summary} [{profile} build, written to {}]",
        args.out.display()
    ))
}

/// A benchmark's arguments in a test: `s` split on spaces, `--smoke` taken out and
/// returned as a flag (as `parse_args` hands them on).
#[cfg(test)]
fn split_test_args(s: &str) -> (Vec<String>, bool) {
    let args = s
        .split_whitespace()
        .filter(|a| *a != "--smoke")
        .map(String::from)
        .collect();
    (args, s.contains("--smoke"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    eni_e2e::init_crypto();
    let result = match parse_args(std::env::args().skip(1)) {
        Ok(args) => run(&args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_positive_numbers() {
        assert_eq!(positive("--pods", Some("12".into())).ok(), Some(12));
        for bad in [None, Some("0"), Some("-1"), Some("x"), Some("")] {
            assert!(
                positive("--pods", bad.map(String::from)).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn only_some_benchmarks_take_arguments() {
        let args = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let a = args("scale --smoke --pods 10 --out /tmp/x.json").ok();
        assert_eq!(
            a.as_ref()
                .map(|a| (a.name.as_str(), a.smoke, a.rest.clone())),
            Some(("scale", true, vec!["--pods".to_owned(), "10".to_owned()]))
        );
        assert_eq!(a.map(|a| a.out), Some(PathBuf::from("/tmp/x.json")));
        assert!(args("").is_err());
        assert!(args("cni --out").is_err());
    }
}
