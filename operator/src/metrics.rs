//! The operator's Prometheus metrics (cloud calls are counted by the provider into the
//! same registry) and the HTTP endpoints /metrics, /healthz, /readyz.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use eni_crds::ENIPoolStatus;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    pool: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: Family<ReconcileLabels, Histogram>,
    allocations: Family<ResultLabel, Counter>,
    allocation_seconds: Histogram,
    units: Family<UnitLabels, Gauge>,
    pool_enis: Family<PoolLabel, Gauge>,
    node_enis: Family<NodeLabel, Gauge>,
    collected: Counter,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.5, 14)
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            allocations: Family::default(),
            allocation_seconds: Histogram::new(latency_buckets()),
            units: Family::default(),
            pool_enis: Family::default(),
            node_enis: Family::default(),
            collected: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("eni_operator");
        r.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_seconds",
            "Reconcile duration",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "allocations",
            "Pod allocations by result",
            m.allocations.clone(),
        );
        r.register(
            "allocation_seconds",
            "Time from seeing a bound pod to its PodNetwork",
            m.allocation_seconds.clone(),
        );
        r.register(
            "units",
            "Addresses (or ENIs) per pool and state",
            m.units.clone(),
        );
        r.register(
            "pool_enis",
            "ENIs held per pool across its nodes",
            m.pool_enis.clone(),
        );
        r.register(
            "node_enis",
            "ENIs the operator holds per node",
            m.node_enis.clone(),
        );
        r.register(
            "collected_enis",
            "Leaked ENIs deleted by the collector",
            m.collected.clone(),
        );
        m
    }

    pub fn reconciled(
        &self,
        controller: &'static str,
        error: Option<&'static str>,
        took: Duration,
    ) {
        let l = ReconcileLabels {
            controller,
            result: error.unwrap_or("ok"),
        };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn allocated(&self, result: &'static str, took: Duration) {
        self.allocations
            .get_or_create(&ResultLabel { result })
            .inc();
        if result == "ok" {
            self.allocation_seconds.observe(took.as_secs_f64());
        }
    }

    /// The counts of a pool's status as written.
    pub fn pool_gauges(&self, pool: &str, status: &ENIPoolStatus) {
        let a = &status.addresses;
        self.pool_enis
            .get_or_create(&PoolLabel {
                pool: pool.to_owned(),
            })
            .set(i64::from(status.enis));
        for (state, v) in [("used", a.used), ("warm", a.warm), ("cooling", a.cooling)] {
            self.units
                .get_or_create(&UnitLabels {
                    pool: pool.to_owned(),
                    state,
                })
                .set(i64::from(v));
        }
    }

    pub fn observe_node(&self, node: &str, enis: usize) {
        self.node_enis
            .get_or_create(&NodeLabel {
                node: node.to_owned(),
            })
            .set(enis as i64);
    }

    pub fn collected(&self) {
        self.collected.inc();
    }
}

#[derive(Clone)]
struct Http {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

/// Serves /metrics, /healthz and /readyz (ready once `ready` is set).
pub async fn serve(
    addr: std::net::SocketAddr,
    registry: Registry,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let state = Http {
        registry: Arc::new(registry),
        ready,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn metrics(State(s): State<Http>) -> Result<String, StatusCode> {
    let mut out = String::new();
    encode(&mut out, &s.registry).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(out)
}

async fn readyz(State(s): State<Http>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby")
    }
}

#[cfg(test)]
mod tests {
    use eni_crds::AddressCounts;

    use super::*;

    #[test]
    fn pool_gauges_follow_the_written_status() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let status = ENIPoolStatus {
            enis: 3,
            addresses: AddressCounts {
                total: 30,
                used: 7,
                warm: 20,
                cooling: 3,
            },
            ..Default::default()
        };
        m.pool_gauges("shared", &status);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"eni_operator_pool_enis{pool="shared"} 3"#,
            r#"eni_operator_units{pool="shared",state="used"} 7"#,
            r#"eni_operator_units{pool="shared",state="warm"} 20"#,
            r#"eni_operator_units{pool="shared",state="cooling"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
