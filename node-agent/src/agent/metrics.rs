//! Prometheus metrics of the agent.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub command: &'static str,
    /// `ok` or the CNI error code.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub feature: String,
}

/// The agent's metrics and the registry that exposes them.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub add_duration: Histogram,
    pub wiring_errors: Family<CommandLabels, Counter>,
    pub status_write_errors: Counter,
    pub watch_errors: Counter,
    pub kernel_features: Family<FeatureLabels, Gauge>,
    /// What /readyz says, for alerting on agents that stay unready.
    pub cache_synced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eni_agent");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cni_requests",
            "CNI requests handled, by command and result (ok or CNI error code)",
            requests.clone(),
        );
        // 1 ms .. ~16 s: wiring is milliseconds, waiting for an allocation is seconds.
        let add_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "cni_add_duration_seconds",
            "Time to answer a CNI ADD, including any wait for the allocation",
            add_duration.clone(),
        );
        let wiring_errors = Family::<CommandLabels, Counter>::default();
        registry.register(
            "wiring_errors",
            "Dataplane operations that failed, by CNI command",
            wiring_errors.clone(),
        );
        let status_write_errors = Counter::default();
        registry.register(
            "status_write_errors",
            "PodNetwork status writes that failed",
            status_write_errors.clone(),
        );
        let watch_errors = Counter::default();
        registry.register(
            "watch_errors",
            "Errors of the PodNetwork watch (it retries with backoff)",
            watch_errors.clone(),
        );
        let kernel_features = Family::<FeatureLabels, Gauge>::default();
        registry.register(
            "kernel_feature_available",
            "1 when the node's kernel has the feature, 0 when modes needing it are refused",
            kernel_features.clone(),
        );
        let cache_synced = Gauge::default();
        registry.register(
            "podnetwork_cache_synced",
            "1 once the first list of this node's PodNetworks arrived (the agent is ready), else 0",
            cache_synced.clone(),
        );
        Self {
            registry,
            cache_synced,
            requests,
            add_duration,
            wiring_errors,
            status_write_errors,
            watch_errors,
            kernel_features,
        }
    }

    pub fn record_request(&self, command: &'static str, error_code: Option<u32>, took: Duration) {
        let result = error_code.map_or_else(|| "ok".to_string(), |c| c.to_string());
        self.requests
            .get_or_create(&RequestLabels { command, result })
            .inc();
        if command == "ADD" {
            self.add_duration.observe(took.as_secs_f64());
        }
    }

    pub fn wiring_error(&self, command: &'static str) {
        self.wiring_errors
            .get_or_create(&CommandLabels { command })
            .inc();
    }

    pub fn set_feature(&self, feature: &str, available: bool) {
        self.kernel_features
            .get_or_create(&FeatureLabels {
                feature: feature.to_string(),
            })
            .set(i64::from(available));
    }

    pub fn set_cache_synced(&self, synced: bool) {
        self.cache_synced.set(i64::from(synced));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_requests_latency_and_features() {
        let m = Metrics::new();
        m.record_request("ADD", None, Duration::from_millis(3));
        m.record_request("ADD", Some(11), Duration::from_secs(10));
        m.wiring_error("ADD");
        m.set_feature("ipvlan", false);
        let text = m.encode();
        assert!(
            text.contains("eni_agent_podnetwork_cache_synced 0"),
            "{text}"
        );
        m.set_cache_synced(true);
        let text = m.encode();
        assert!(
            text.contains("eni_agent_podnetwork_cache_synced 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"eni_agent_cni_requests_total{command="ADD",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"eni_agent_cni_requests_total{command="ADD",result="11"} 1"#));
        assert!(text.contains("eni_agent_cni_add_duration_seconds_count 2"));
        assert!(text.contains(r#"eni_agent_wiring_errors_total{command="ADD"} 1"#));
        assert!(text.contains(r#"eni_agent_kernel_feature_available{feature="ipvlan"} 0"#));
    }
}
