//! Prometheus metrics recorded with the `metrics` facade: request latency by route template and
//! status, provider call latency and outcomes by provider and endpoint. Rendered at the admin
//! listener's `/metrics` together with the gauges read from the service's state at that moment.
//!
//! The recorder is process-wide (installed once); in production a process is one service.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "qetta_http_requests_total";
pub const HTTP_DURATION: &str = "qetta_http_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "qetta_upstream_request_duration_seconds";

/// Seconds: from 1 ms (a cached answer) to 30 s (the request timeout).
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process's recorder (installed on first use).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS).expect("static buckets are valid");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a library user's): ours then stays local
        // and renders nothing recorded through the facade, which is only a loss of metrics.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before ours; /metrics shows only the service's gauges");
        }
        metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status.");
        metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "Time to answer an HTTP request, by route template, method and status.");
        metrics::describe_histogram!(UPSTREAM_DURATION, metrics::Unit::Seconds, "Provider calls, by provider, endpoint and outcome (ok, or an error kind).");
        handle
    })
}

/// Middleware: counts and times every request under its route template (`/api/v1/oauth/kftc/
/// balance/{fintech_use_num}`, never the concrete path, which would carry ids into labels).
pub async fn record_request(req: Request, next: Next) -> Response {
    let _ = handle();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = [("route", route), ("method", method), ("status", response.status().as_u16().to_string())];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// Records one provider call (also into the admin dashboard's rolling recorder).
pub fn upstream_call(provider: &'static str, endpoint: &str, outcome: &str, took: Duration) {
    let _ = handle();
    crate::admin::recorder::global().record(provider, outcome, took);
    metrics::histogram!(UPSTREAM_DURATION, "provider" => provider, "endpoint" => endpoint.to_string(), "outcome" => outcome.to_string())
        .record(took.as_secs_f64());
}
