//! eni-operator: the cluster controller. Only the leader (a Lease) reconciles; a standby
//! waits and takes over when the leader's lease expires. A leader that cannot renew its
//! lease within the renew deadline (two thirds of the lease) exits before any standby
//! may take over, so two replicas never act at once.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::Parser;
use eni_operator::{
    cloud::{
        CloudProvider, RateLimit,
        alibaba::{AlibabaProvider, AlibabaSettings},
        aws::{AwsProvider, AwsSettings, load_sdk_config},
    },
    context::Config,
    leadership::{self, Ended},
    metrics::{Metrics, serve},
    run::run,
};
use futures::FutureExt;
use k8s_controller::LeaderElection;
use prometheus_client::registry::Registry;
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "eni-operator: pods with real VPC addresses from cloud ENIs"
)]
struct Args {
    /// Value of the `eni-operator.io/cluster` ownership tag on every cloud resource.
    #[arg(long, env = "ENI_CLUSTER_NAME", default_value = "eni-operator")]
    cluster_name: String,
    /// The cloud the cluster runs in: `aws` (EC2) or `alibaba` (ECS).
    #[arg(long, env = "ENI_CLOUD", value_enum, default_value_t = CloudKind::Aws)]
    cloud: CloudKind,
    /// EC2 endpoint override (vpc-sim, a VPC endpoint); the region's endpoint otherwise.
    #[arg(long, env = "ENI_EC2_ENDPOINT")]
    ec2_endpoint: Option<String>,
    /// ECS and VPC API endpoint override (vpc-sim serves both on one URL); the region's
    /// public endpoints otherwise.
    #[arg(long, env = "ENI_ECS_ENDPOINT")]
    ecs_endpoint: Option<String>,
    /// Region; on AWS the configuration chain's when unset, required on Alibaba Cloud.
    #[arg(long, env = "ENI_REGION")]
    region: Option<String>,
    /// Cloud requests per second (token bucket refill) and burst.
    #[arg(long, env = "ENI_CLOUD_QPS", default_value_t = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN))]
    qps: NonZeroU32,
    #[arg(long, env = "ENI_CLOUD_BURST", default_value_t = NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN))]
    burst: NonZeroU32,
    /// The same for describes, which have a bucket of their own (as in the cloud), so
    /// polling attaching ENIs never delays a mutation.
    #[arg(long, env = "ENI_CLOUD_DESCRIBE_QPS", default_value_t = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN))]
    describe_qps: NonZeroU32,
    #[arg(long, env = "ENI_CLOUD_DESCRIBE_BURST", default_value_t = NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN))]
    describe_burst: NonZeroU32,
    /// A bucket per mutating action as well (set both): EC2 and ECS throttle each action
    /// on its own, so a run of one action can exceed the cloud's limit within the budget.
    #[arg(long, env = "ENI_CLOUD_ACTION_QPS", requires = "action_burst")]
    action_qps: Option<NonZeroU32>,
    #[arg(long, env = "ENI_CLOUD_ACTION_BURST", requires = "action_qps")]
    action_burst: Option<NonZeroU32>,
    /// Seconds one cloud request may take before it counts as failed (and is retried:
    /// its effect may still have happened, which the next describe finds).
    #[arg(long, env = "ENI_CLOUD_ATTEMPT_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    cloud_attempt_timeout_seconds: u64,
    #[arg(long, env = "ENI_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
    #[arg(long, env = "POD_NAMESPACE", default_value = "eni-system")]
    lease_namespace: String,
    #[arg(long, default_value = "eni-operator")]
    lease_name: String,
    /// Seconds a lease lasts without renewal; a standby takes over after it. The leader
    /// renews every 2/15 of it and gives up (exits) once 2/3 of it passed without a
    /// renewal, as client-go's defaults (15 s, 10 s, 2 s) do.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_duration: u64,
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value_t = 10)]
    resync_seconds: u64,
    #[arg(long, default_value_t = 60)]
    gc_interval_seconds: u64,
    #[arg(long, default_value_t = 120)]
    gc_grace_seconds: u64,
    #[arg(long, default_value_t = 60)]
    attach_timeout_seconds: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CloudKind {
    Aws,
    Alibaba,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cloud provider: {0}")]
    Cloud(#[from] eni_operator::cloud::CloudError),
    #[error("{0}")]
    Config(String),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("a watch ended: stopped leading")]
    Stopped,
    #[error("starting the work's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // kube links rustls with ring and the AWS SDK with aws-lc-rs: say which one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match main_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "eni-operator exiting");
            ExitCode::FAILURE
        }
    }
}

/// The provider of `--cloud`. AWS credentials come from the standard AWS chain; Alibaba
/// Cloud's from `ALIBABA_CLOUD_ACCESS_KEY_ID` / `ALIBABA_CLOUD_ACCESS_KEY_SECRET` (the
/// chart mounts them from a Secret into the operator only).
async fn cloud_provider(
    args: &Args,
    registry: &mut Registry,
) -> Result<Arc<dyn CloudProvider>, MainError> {
    let rate = RateLimit {
        qps: args.qps,
        burst: args.burst,
    };
    let describe_rate = RateLimit {
        qps: args.describe_qps,
        burst: args.describe_burst,
    };
    let action_rate = args
        .action_qps
        .zip(args.action_burst)
        .map(|(qps, burst)| RateLimit { qps, burst });
    let attempt_timeout = Duration::from_secs(args.cloud_attempt_timeout_seconds);
    match args.cloud {
        CloudKind::Aws => {
            let sdk = load_sdk_config(args.region.clone()).await;
            let mut settings = AwsSettings::new(args.cluster_name.clone());
            settings.attempt_timeout = attempt_timeout;
            settings.endpoint_url = args.ec2_endpoint.clone();
            settings.rate = rate;
            settings.describe_rate = describe_rate;
            settings.action_rate = action_rate;
            Ok(Arc::new(AwsProvider::new(&sdk, settings, registry)))
        }
        CloudKind::Alibaba => {
            let region = args.region.clone().ok_or_else(|| {
                MainError::Config("--region is required with --cloud alibaba".into())
            })?;
            let env = |name: &str| {
                std::env::var(name).map_err(|_| {
                    MainError::Config(format!(
                        "{name} is not set (the Alibaba Cloud credentials Secret)"
                    ))
                })
            };
            let mut settings = AlibabaSettings::new(
                args.cluster_name.clone(),
                &region,
                env("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
                env("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
            );
            if let Some(url) = &args.ecs_endpoint {
                settings.endpoints.ecs = url.clone();
                settings.endpoints.vpc = url.clone();
            }
            settings.attempt_timeout = attempt_timeout;
            settings.rate = rate;
            settings.describe_rate = describe_rate;
            settings.action_rate = action_rate;
            Ok(Arc::new(AlibabaProvider::new(settings, registry)?))
        }
    }
}

async fn main_inner(args: Args) -> Result<(), MainError> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let provider = cloud_provider(&args, &mut registry).await?;
    let client = kube::Client::try_default().await?;

    let ready = Arc::new(AtomicBool::new(false));
    let addr = args.metrics_addr;
    let http_ready = ready.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(addr, registry, http_ready).await {
            error!(error = %e, %addr, "metrics server");
        }
    });

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("eni-operator-{}", std::process::id()));
    let lease = Duration::from_secs(args.lease_duration);
    let (renew_deadline, retry) = leadership::timings(lease);
    let election = LeaderElection::new(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
    )
    .with_lease_duration(lease)
    .with_renew_deadline(renew_deadline)
    .with_retry_period(retry);
    info!(%identity, lease = %args.lease_name, "waiting for leadership");
    let config = Config {
        cluster: args.cluster_name,
        resync: Duration::from_secs(args.resync_seconds),
        gc_interval: Duration::from_secs(args.gc_interval_seconds),
        gc_grace: Duration::from_secs(args.gc_grace_seconds),
        attach_timeout: Duration::from_secs(args.attach_timeout_seconds),
        ..Config::default()
    };
    let work = || {
        let config = Config {
            writer: format!(
                "{identity} leading since {}",
                k8s_openapi::jiff::Timestamp::now()
            ),
            ..config
        };
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        run(
            client,
            provider,
            config,
            metrics,
            futures::future::pending().boxed(),
        )
    };
    match leadership::lead(&election, &identity, shutdown_signal()?, work)
        .await
        .map_err(MainError::Runtime)?
    {
        Ended::Stopped => Ok(()),
        // The Deployment starts the replica again.
        Ended::WorkReturned => Err(MainError::Stopped),
    }
}

/// Resolves on SIGTERM (what kubelet sends on a rollout or drain) or SIGINT.
fn shutdown_signal() -> Result<futures::future::BoxFuture<'static, ()>, MainError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(MainError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(MainError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
    }
    .boxed())
}
