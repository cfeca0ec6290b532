//! Request metrics in the Prometheus text format, served at `/_nimbus/metrics`.

use std::time::Duration;

use nimbus_storage::remote;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: &'static str,
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 25 µs to about 0.8 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nimbus");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "API requests by service, operation and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "API request latency through the edge, authentication included",
            latency.clone(),
        );
        for backend in [&*remote::METADATA, &*remote::BLOBS] {
            registry
                .sub_registry_with_label(("backend".into(), backend.name().into()))
                .register(
                    "backend_call_seconds",
                    "Calls to the metadata and blob backends, connection waits included",
                    backend.latency().clone(),
                );
        }
        Self {
            registry,
            requests,
            latency,
        }
    }
}

impl Metrics {
    pub fn observe(
        &self,
        service: &'static str,
        operation: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                service,
                operation,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { service, operation })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.observe("sts", "GetCallerIdentity", 200, Duration::from_micros(40));
        metrics.observe("sts", "GetCallerIdentity", 200, Duration::from_micros(60));
        let text = metrics.render();
        assert!(
            text.contains(r#"nimbus_requests_total{service="sts",operation="GetCallerIdentity",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"nimbus_request_duration_seconds_count{service="sts",operation="GetCallerIdentity"} 2"#));
    }
}
