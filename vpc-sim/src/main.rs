//! vpc-sim: serves the simulated VPC on a loopback port and prints where, as one JSON
//! line on stdout: {"ec2":"http://127.0.0.1:PORT","ecs":"http://127.0.0.1:PORT",
//! "admin":"http://127.0.0.1:PORT/admin"} (EC2 and ECS share the endpoint).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use vpc_sim::behaviour::SimConfig;
use vpc_sim::catalog::Cloud;
use vpc_sim::dataplane_view::DataplaneView;
use vpc_sim::layout::Layout;
use vpc_sim::materialize::{MaterializeError, Materializer};
use vpc_sim::server::{self, ServerConfig, ServerError};
use vpc_sim::sigv4::Credentials;

#[derive(Parser, Debug)]
#[command(
    name = "vpc-sim",
    version,
    about = "A strict VPC simulator speaking EC2's and Alibaba Cloud ECS's APIs"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "VPC_SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// VPC layout YAML (CIDR, subnets, security groups); built-in default otherwise.
    #[arg(long, env = "VPC_SIM_LAYOUT")]
    layout: Option<PathBuf>,
    /// Whose cloud the built-in layout is in: `aws` (EC2 ids and instance types) or
    /// `alibaba` (ECS ids, zones and instance types). Both APIs are served either way.
    #[arg(long, env = "VPC_SIM_CLOUD", default_value = "aws", value_parser = parse_cloud)]
    cloud: Cloud,
    /// Behaviour YAML/JSON (latency, rate limits, faults, attach delay, describe lag).
    #[arg(long, env = "VPC_SIM_BEHAVIOUR")]
    behaviour: Option<PathBuf>,
    /// No latency, attach time, throttling or faults (before --behaviour is applied).
    #[arg(long)]
    instant: bool,
    #[arg(long, env = "VPC_SIM_ACCESS_KEY", default_value = "vpcsim")]
    access_key: String,
    #[arg(long, env = "VPC_SIM_SECRET_KEY", default_value = "vpcsim-secret")]
    secret_key: String,
    /// Only check the access key id, not the SigV4 signature.
    #[arg(long)]
    no_verify_signatures: bool,
    /// Seed of ids, MACs, latency jitter and faults.
    #[arg(long, env = "VPC_SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Make ENIs real links in network namespaces (needs root).
    #[arg(long)]
    materialize: bool,
    /// Prefix of the namespaces the materializer creates.
    #[arg(long, env = "VPC_SIM_PREFIX", default_value = "vsim")]
    prefix: String,
    /// Leave the materialized dataplane in place on exit.
    #[arg(long)]
    keep_dataplane: bool,
}

fn parse_cloud(s: &str) -> Result<Cloud, String> {
    match s {
        "aws" => Ok(Cloud::Aws),
        "alibaba" => Ok(Cloud::Alibaba),
        other => Err(format!("unknown cloud {other}: aws or alibaba")),
    }
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Layout(#[from] vpc_sim::layout::LayoutError),
    #[error("cannot read behaviour file {path}: {source}")]
    BehaviourRead {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid behaviour file {path}: {source}")]
    BehaviourParse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error(transparent)]
    Materialize(#[from] MaterializeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the address line: {0}")]
    Json(#[from] serde_json::Error),
}

fn behaviour(args: &Args) -> Result<SimConfig, MainError> {
    let base = if args.instant {
        SimConfig::instant()
    } else {
        SimConfig::default()
    };
    let Some(path) = &args.behaviour else {
        return Ok(base);
    };
    let text = std::fs::read_to_string(path).map_err(|source| MainError::BehaviourRead {
        path: path.display().to_string(),
        source,
    })?;
    let patch: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|source| MainError::BehaviourParse {
            path: path.display().to_string(),
            source,
        })?;
    base.merged(&patch).map_err(|e| MainError::BehaviourParse {
        path: path.display().to_string(),
        source: serde::de::Error::custom(e),
    })
}

/// Applies every new view; a failed pass is retried, since `apply` is level-triggered.
async fn materialize(
    mut materializer: Materializer,
    mut views: watch::Receiver<DataplaneView>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let view = views.borrow_and_update().clone();
        let retry = match materializer.apply(&view).await {
            Ok(()) => None,
            Err(e) => {
                warn!(error = %e, "materializing the dataplane failed; retrying");
                Some(Duration::from_secs(1))
            }
        };
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            _ = async { match retry { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn run(args: Args) -> Result<(), MainError> {
    let mut config = ServerConfig::new()?;
    config.listen = args.listen;
    config.layout = Layout::builtin_for(args.cloud)?;
    if let Some(path) = &args.layout {
        config.layout = Layout::from_file(path)?;
    }
    config.behaviour = behaviour(&args)?;
    config.credentials = vec![Credentials {
        access_key: args.access_key.clone(),
        secret_key: args.secret_key.clone(),
    }];
    config.verify_signatures = !args.no_verify_signatures;
    config.seed = args.seed;

    let handle = server::spawn(config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let materializer_task = if args.materialize {
        let materializer = Materializer::new(&args.prefix).await?;
        Some(tokio::spawn(materialize(
            materializer,
            handle.views(),
            stop_rx,
        )))
    } else {
        None
    };
    let line = serde_json::json!({
        "ec2": handle.ec2_url,
        "ecs": handle.ec2_url,
        "admin": handle.admin_url,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    drop(stdout);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    let _ = stop_tx.send(true);
    if let Some(task) = materializer_task {
        if let Err(e) = task.await {
            warn!(error = %e, "materializer task failed");
        }
        if !args.keep_dataplane {
            Materializer::cleanup(&args.prefix).await?;
        }
    }
    handle.shutdown().await?;
    info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "vpc-sim failed");
            std::process::ExitCode::FAILURE
        }
    }
}
