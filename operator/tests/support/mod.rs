//! Shared pieces of the provider tests: backends (moto, vpc-sim), the fixture they
//! produce, and the suite that runs against each of them.

pub mod moto;
pub mod strict;
pub mod suite;
pub mod vpc_sim;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eni_operator::cloud::alibaba::{AlibabaProvider, AlibabaSettings};
use eni_operator::cloud::aws::{AwsProvider, AwsSettings};
use eni_test_support::cloud::sdk_config;
use std::num::NonZeroU32;

use ::vpc_sim::catalog::Cloud;
use eni_operator::cloud::{Backoff, CloudMetrics, CloudProvider, Eni, EniQuery, RateLimit, Tags};
use prometheus_client::registry::Registry;

/// What a backend implements beyond the calls every EC2 emulation has.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// Assign answers list only the addresses just added (moto lists all of them).
    pub exact_assign_answer: bool,
    /// Client tokens make creates idempotent (moto ignores them).
    pub client_tokens: bool,
}

impl Capabilities {
    pub const MOTO: Self = Self {
        exact_assign_answer: false,
        client_tokens: false,
    };
    pub const STRICT: Self = Self {
        exact_assign_answer: true,
        client_tokens: true,
    };
}

/// A backend with one VPC, subnet, security groups and one node instance.
pub struct Fixture {
    pub backend: &'static str,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub instance_id: String,
    pub subnet_id: String,
    /// Tags that select `subnet_id` (and maybe others).
    pub subnet_tags: Tags,
    /// At least two groups.
    pub security_groups: Vec<String>,
    pub caps: Capabilities,
}

pub fn generous_rate() -> RateLimit {
    RateLimit {
        qps: NonZeroU32::new(1000).expect("non-zero"),
        burst: NonZeroU32::new(100).expect("non-zero"),
    }
}

pub fn quick_backoff() -> Backoff {
    Backoff {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(1),
        max_retries: 20,
        max_total_delay: Duration::from_secs(30),
    }
}

/// A provider for the fixture's backend, with a unique cluster name so runs never see
/// each other.
pub async fn provider(
    fx: &Fixture,
    rate: RateLimit,
    backoff: Backoff,
) -> (Arc<AwsProvider>, Registry) {
    provider_with_timeout(fx, rate, backoff, Duration::from_secs(10)).await
}

pub async fn provider_with_timeout(
    fx: &Fixture,
    rate: RateLimit,
    backoff: Backoff,
    attempt_timeout: Duration,
) -> (Arc<AwsProvider>, Registry) {
    let mut settings = AwsSettings::new(cluster_name());
    settings.endpoint_url = Some(fx.endpoint.clone());
    settings.rate = rate;
    settings.describe_rate = rate;
    settings.backoff = backoff;
    settings.attempt_timeout = attempt_timeout;
    let mut registry = Registry::default();
    let sdk = sdk_config(&fx.endpoint, &fx.access_key, &fx.secret_key).await;
    let provider = AwsProvider::new(&sdk, settings, &mut registry);
    (Arc::new(provider), registry)
}

/// The ECS provider for a fixture on vpc-sim's ECS front end (same endpoint and keys).
pub fn alibaba_provider(
    fx: &Fixture,
    rate: RateLimit,
    backoff: Backoff,
) -> (Arc<AlibabaProvider>, Registry) {
    alibaba_provider_with_timeout(fx, rate, backoff, Duration::from_secs(10))
}

pub fn alibaba_provider_with_timeout(
    fx: &Fixture,
    rate: RateLimit,
    backoff: Backoff,
    attempt_timeout: Duration,
) -> (Arc<AlibabaProvider>, Registry) {
    let mut settings = AlibabaSettings::new(
        cluster_name(),
        "cn-hangzhou",
        fx.access_key.clone(),
        fx.secret_key.clone(),
    );
    settings.endpoints.ecs = fx.endpoint.clone();
    settings.endpoints.vpc = fx.endpoint.clone();
    settings.rate = rate;
    settings.describe_rate = rate;
    settings.backoff = backoff;
    settings.attempt_timeout = attempt_timeout;
    let mut registry = Registry::default();
    let provider = AlibabaProvider::new(settings, &mut registry).expect("ECS provider");
    (Arc::new(provider), registry)
}

/// The provider of `cloud` for the fixture, as `dyn CloudProvider`, with its metrics.
pub async fn provider_on(
    cloud: Cloud,
    fx: &Fixture,
    rate: RateLimit,
    backoff: Backoff,
    attempt_timeout: Duration,
) -> (Arc<dyn CloudProvider>, CloudMetrics) {
    match cloud {
        Cloud::Aws => {
            let (p, _registry) = provider_with_timeout(fx, rate, backoff, attempt_timeout).await;
            let metrics = p.metrics().clone();
            (p, metrics)
        }
        Cloud::Alibaba => {
            let (p, _registry) = alibaba_provider_with_timeout(fx, rate, backoff, attempt_timeout);
            let metrics = p.metrics().clone();
            (p, metrics)
        }
    }
}

/// A cluster name no other run uses, so runs never see each other's ENIs.
fn cluster_name() -> String {
    static RUN: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh client token.
pub fn token(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Polls until `check` accepts the interface (clouds settle attach/detach later).
pub async fn wait_for_eni(
    provider: &dyn CloudProvider,
    eni_id: &str,
    what: &str,
    check: impl Fn(&Eni) -> bool,
) -> Eni {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let enis = provider
            .list_enis(&EniQuery::Ids(vec![eni_id.to_owned()]))
            .await
            .expect("describe interface");
        if let Some(eni) = enis.into_iter().find(|e| e.id == eni_id) {
            if check(&eni) {
                return eni;
            }
            assert!(
                Instant::now() < deadline,
                "{eni_id} never became {what}: {eni:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Latency figures of one action, in milliseconds.
pub struct Latency {
    pub samples: Vec<f64>,
}

impl Latency {
    pub fn new() -> Self {
        Self {
            samples: Vec::new(),
        }
    }

    pub async fn time<T, Fut: Future<Output = T>>(&mut self, f: Fut) -> T {
        let started = Instant::now();
        let out = f.await;
        self.samples.push(started.elapsed().as_secs_f64() * 1000.0);
        out
    }

    pub fn summary(&self) -> serde_json::Value {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        };
        let round = |v: f64| (v * 100.0).round() / 100.0;
        serde_json::json!({
            "n": s.len(),
            "mean_ms": round(mean),
            "p50_ms": round(pick(0.5)),
            "p90_ms": round(pick(0.9)),
            "max_ms": round(pick(1.0)),
        })
    }
}
