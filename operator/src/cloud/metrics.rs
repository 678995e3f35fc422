//! Prometheus metrics of cloud calls: one sample per request sent to the cloud (so a
//! retried call counts every attempt, and throttled answers are visible as such).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::CloudError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

type HistogramMaker = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s: covers a local simulator and a throttled real cloud alike.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Cheap to clone: clones share the same series.
#[derive(Clone, Debug)]
pub struct CloudMetrics {
    calls: Family<CallLabels, Counter>,
    latency: Family<ActionLabels, Histogram, HistogramMaker>,
}

impl CloudMetrics {
    /// Creates the metrics and registers them as `eni_operator_cloud_requests_total` and
    /// `eni_operator_cloud_request_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "eni_operator_cloud_requests",
            "Requests sent to the cloud API, by action and result",
            metrics.calls.clone(),
        );
        registry.register(
            "eni_operator_cloud_request_duration_seconds",
            "Latency of requests sent to the cloud API, by action",
            metrics.latency.clone(),
        );
        metrics
    }

    fn unregistered() -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as HistogramMaker),
        }
    }

    /// Records one request and its outcome.
    pub fn observe<T>(&self, action: &'static str, result: &Result<T, CloudError>, took: Duration) {
        let result = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.calls
            .get_or_create(&CallLabels { action, result })
            .inc();
        self.latency
            .get_or_create(&ActionLabels { action })
            .observe(took.as_secs_f64());
    }

    /// Requests recorded so far for an action and result (`ok` or a [`CloudError::kind`]).
    pub fn count(&self, action: &'static str, result: &'static str) -> u64 {
        self.calls
            .get_or_create(&CallLabels { action, result })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn records_calls_by_action_and_result() {
        let mut registry = Registry::default();
        let metrics = CloudMetrics::register(&mut registry);
        let throttled: Result<(), CloudError> = Err(CloudError::Throttled {
            code: "RequestLimitExceeded".into(),
            message: "slow down".into(),
        });
        metrics.observe(
            "CreateNetworkInterface",
            &throttled,
            Duration::from_millis(3),
        );
        metrics.observe("CreateNetworkInterface", &Ok(()), Duration::from_millis(5));
        assert_eq!(metrics.count("CreateNetworkInterface", "throttled"), 1);
        assert_eq!(metrics.count("CreateNetworkInterface", "ok"), 1);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"eni_operator_cloud_requests_total{action="CreateNetworkInterface",result="throttled"} 1"#
        ));
        assert!(text.contains(
            r#"eni_operator_cloud_request_duration_seconds_count{action="CreateNetworkInterface"} 2"#
        ));
    }
}
