//! `eni-agent`: the node daemon (DaemonSet) that wires pods for eni-cni.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use eni_node_agent::agent::cache;
use eni_node_agent::agent::kube::{KubeStatusWriter, run_watch};
use eni_node_agent::agent::metrics::Metrics;
use eni_node_agent::agent::server::{self, ServerError};
use eni_node_agent::agent::state::{StateDir, StateError};
use eni_node_agent::agent::status_queue::QueuedStatusWriter;
use eni_node_agent::agent::{Agent, AgentConfig, http};
use eni_node_agent::dataplane::{Dataplane, DataplaneConfig, DataplaneError, Egress};
use eni_node_agent::protocol::DEFAULT_SOCKET_PATH;
use ipnet::Ipv4Net;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig, KubeconfigError};
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser, Debug)]
#[command(
    name = "eni-agent",
    about = "Wires pods' VPC addresses on this node for eni-cni"
)]
struct Args {
    /// This node's name (the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// This node's IPv4 address (status.hostIP); Exclusive, Trunk and ipvlan pods reach
    /// the node through it.
    #[arg(long, env = "NODE_IP")]
    node_ip: Ipv4Addr,
    /// Service CIDRs that Exclusive and Trunk pods reach through the host.
    #[arg(
        long,
        env = "SERVICE_CIDRS",
        value_delimiter = ',',
        default_value = "10.96.0.0/12"
    )]
    service_cidr: Vec<Ipv4Net>,
    /// Leave SNAT of traffic leaving the VPC to the VPC (a NAT gateway): pods keep their
    /// address everywhere. Off: the node SNATs it to its own address.
    #[arg(long, env = "EXTERNAL_SNAT", default_value_t = false, action = clap::ArgAction::Set)]
    external_snat: bool,
    /// The VPC's CIDRs, which pods reach with their own address.
    #[arg(
        long,
        env = "VPC_CIDRS",
        value_delimiter = ',',
        default_value = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    )]
    vpc_cidr: Vec<Ipv4Net>,
    /// Destinations outside the VPC that pods also reach with their own address.
    #[arg(long, env = "EXCLUDE_SNAT_CIDRS", value_delimiter = ',')]
    exclude_snat_cidr: Vec<Ipv4Net>,
    /// Kubeconfig file; without it the in-cluster config (or $KUBECONFIG) is used.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Unix socket eni-cni connects to.
    #[arg(long, env = "ENI_AGENT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    socket_path: PathBuf,
    /// Directory for per-container records (must survive agent restarts: a hostPath).
    #[arg(
        long,
        env = "ENI_AGENT_STATE_DIR",
        default_value = "/var/lib/eni-operator/agent"
    )]
    state_dir: PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ENI_AGENT_METRICS_ADDR", default_value = "0.0.0.0:9961")]
    metrics_addr: SocketAddr,
    /// How long ADD waits for the operator's allocation before "try again later".
    #[arg(long, env = "ENI_AGENT_ALLOCATION_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    allocation_timeout: Duration,
    /// Network namespace of the node, when the agent runs outside it (test beds).
    #[arg(long, env = "ENI_AGENT_HOST_NETNS")]
    host_netns: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "ENI_AGENT_LOG_JSON")]
    log_json: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

#[derive(Debug, Error)]
enum StartError {
    #[error("reading kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("connecting to the API server: {0}")]
    Kube(#[from] kube::Error),
    #[error("inferring the cluster config: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("dataplane: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Socket(#[from] ServerError),
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The workspace links rustls with both ring and aws-lc-rs (feature unification with
    // the operator's AWS SDK): name the provider rather than let rustls refuse to pick.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "eni-agent failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    let config = match &args.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(
                Kubeconfig::read_from(path)?,
                &KubeConfigOptions::default(),
            )
            .await?
        }
        None => Config::infer().await?,
    };
    let client = Client::try_from(config)?;
    let dataplane = Dataplane::new(DataplaneConfig {
        host_netns: args.host_netns.clone(),
        node_ip: args.node_ip,
        service_cidrs: args.service_cidr.clone(),
        egress: Egress {
            external_snat: args.external_snat,
            vpc_cidrs: args.vpc_cidr.clone(),
            exclude_snat_cidrs: args.exclude_snat_cidr.clone(),
        },
    })
    .await?;
    let state = StateDir::open(&args.state_dir)?;
    let metrics = Arc::new(Metrics::new());
    let (cache, writer) = cache::cache();
    let watch = tokio::spawn(run_watch(
        client.clone(),
        args.node_name.clone(),
        writer,
        metrics.clone(),
    ));
    let agent = Arc::new(Agent::new(
        AgentConfig {
            node_name: args.node_name.clone(),
            allocation_timeout: args.allocation_timeout,
        },
        cache.clone(),
        dataplane,
        QueuedStatusWriter::start(KubeStatusWriter::new(client), metrics.clone()),
        state,
        metrics.clone(),
    ));
    let listener = server::bind(&args.socket_path)?;
    let serving = tokio::spawn(server::serve(listener, agent));
    let http_listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| StartError::Metrics {
            addr: args.metrics_addr,
            source,
        })?;
    let router = http::router(cache, metrics);
    let http = tokio::spawn(async move { axum::serve(http_listener, router).await });
    tracing::info!(
        node = args.node_name,
        socket = %args.socket_path.display(),
        metrics = %args.metrics_addr,
        "eni-agent started"
    );
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    // Pods stay wired: the kernel keeps them and the next agent finds them.
    serving.abort();
    watch.abort();
    http.abort();
    let _ = std::fs::remove_file(&args.socket_path);
    Ok(())
}
