//! Prometheus metrics recorded with the `metrics` facade: request latency by route template and
//! status, provider call latency and outcomes by provider and endpoint. Rendered at the admin
//! listener's `/metrics` together with the gauges read from the service's state at that moment.
//!
//! The recorder is process-wide (installed once); in production a process is one service.
//!
//! Also the span helpers of the OpenTelemetry traces (see `telemetry`): without an exporter they
//! cost a field lookup and do nothing.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub const HTTP_REQUESTS: &str = "qetta_http_requests_total";
pub const HTTP_DURATION: &str = "qetta_http_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "qetta_upstream_request_duration_seconds";
pub const DB_ACQUIRE_DURATION: &str = "qetta_db_pool_acquire_duration_seconds";

/// Seconds: from 1 ms (a cached answer) to 30 s (the request timeout).
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How often histogram samples are folded into their buckets (see [`handle`]).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

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
        // The recorder keeps every histogram sample until an upkeep folds it into the buckets:
        // without one, a service nobody scrapes would hold every request's duration forever
        // (tens of bytes each, hundreds of MiB a day under load). A thread of its own, so that it
        // runs whichever runtime (or none) first touched the metrics.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the metrics upkeep; histograms are folded only when /metrics is read");
        }
        metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status.");
        metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "Time to answer an HTTP request, by route template, method and status.");
        metrics::describe_histogram!(UPSTREAM_DURATION, metrics::Unit::Seconds, "Provider calls, by provider, endpoint and outcome (ok, or an error kind).");
        metrics::describe_histogram!(
            DB_ACQUIRE_DURATION,
            metrics::Unit::Seconds,
            "Waits for a database connection of the pool, for write transactions (reads wait in the same queue)."
        );
        handle
    })
}

/// Counts and times one request under its route template (`/api/v1/oauth/kftc/balance/
/// {fintech_use_num}`, never the concrete path, which would carry ids into labels), with its
/// final status ([`crate::http::layers::edge`]).
pub struct RequestTimer {
    route: String,
    method: &'static str,
    started: std::time::Instant,
}

impl RequestTimer {
    pub fn start(req: &Request) -> Self {
        let _ = handle();
        Self { route: route_of(req), method: method_label(req.method()), started: std::time::Instant::now() }
    }

    pub fn finish(self, status: axum::http::StatusCode) {
        let (requests, duration) = request_series(&self.route, self.method, status.as_u16());
        requests.increment(1);
        duration.record(self.started.elapsed().as_secs_f64());
    }
}

/// The method as a label: the standard ones by name, any other as `other` (a client may send
/// any token as a method, and each would be a series of its own).
fn method_label(m: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.into_iter().find(|s| *s == m.as_str()).unwrap_or("other")
}

type RequestSeries = (metrics::Counter, metrics::Histogram);

/// Route template → the series of each (method, status) seen on it.
type SeriesByRoute = std::collections::HashMap<String, Vec<(&'static str, u16, RequestSeries)>>;

/// Series kept at most (routes × methods × statuses seen); beyond, a request registers its
/// labels with the recorder as it goes (correct, only slower).
const SERIES_KEPT: usize = 2048;

/// The request counter and duration histogram of (route, method, status), registered once:
/// building and hashing the labels on every request cost about 8,000 instructions (5 % of a
/// status read), a lookup here a few hundred.
fn request_series(route: &str, method: &'static str, status: u16) -> RequestSeries {
    static SERIES: OnceLock<std::sync::RwLock<SeriesByRoute>> = OnceLock::new();
    let series = SERIES.get_or_init(Default::default);
    let find = |m: &SeriesByRoute| m.get(route)?.iter().find(|(me, st, _)| *me == method && *st == status).map(|(_, _, s)| s.clone());
    if let Some(found) = find(&series.read().unwrap_or_else(|p| p.into_inner())) {
        return found;
    }
    let labels = [("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
    let made = (metrics::counter!(HTTP_REQUESTS, &labels), metrics::histogram!(HTTP_DURATION, &labels));
    let mut map = series.write().unwrap_or_else(|p| p.into_inner());
    if find(&map).is_none() && map.values().map(Vec::len).sum::<usize>() < SERIES_KEPT {
        map.entry(route.to_string()).or_default().push((method, status, made.clone()));
    }
    made
}

/// The route template of a request (`/api/v1/connections/{id}`), never its concrete path; a
/// nested service (the embedded sandbox) by its mount point (`/sandbox/kftc/*`); `unmatched`
/// for the rest.
pub fn route_of(req: &Request) -> String {
    if let Some(p) = req.extensions().get::<MatchedPath>() {
        return p.as_str().to_string();
    }
    let path = req.uri().path();
    match path.strip_prefix("/sandbox/").and_then(|rest| rest.split_once('/')) {
        Some((provider, _)) if !provider.is_empty() && provider.bytes().all(|b| b.is_ascii_lowercase()) => format!("/sandbox/{provider}/*"),
        _ => "unmatched".into(),
    }
}

/// Records how long a write transaction waited for a pooled connection.
pub fn db_acquired(took: Duration) {
    let _ = handle();
    metrics::histogram!(DB_ACQUIRE_DURATION).record(took.as_secs_f64());
}

/// Records one provider call (also into the admin dashboard's rolling recorder), and its outcome
/// on its span ([`upstream_span`]).
pub fn upstream_call(span: &Span, provider: &'static str, endpoint: &str, outcome: &str, took: Duration) {
    let _ = handle();
    span.record("outcome", outcome);
    if outcome != "ok" {
        span.record("otel.status_code", "error");
    }
    crate::admin::recorder::global().record(provider, outcome, took);
    metrics::histogram!(UPSTREAM_DURATION, "provider" => provider, "endpoint" => endpoint.to_string(), "outcome" => outcome.to_string())
        .record(took.as_secs_f64());
}

/// The span of one provider call, a child of the request's: named `{provider} {endpoint}`
/// (`kftc /v2.0/account/balance/fin_num`), with the provider and the endpoint template; the
/// outcome is recorded by [`upstream_call`]. Run the call inside it (`.instrument(span)`) and
/// send [`traceparent`] with it.
pub fn upstream_span(provider: &str, endpoint: &str) -> Span {
    if !crate::telemetry::traces_on() {
        // For the log only (lines logged during the call name it), at debug level.
        return tracing::debug_span!("upstream", provider, endpoint);
    }
    tracing::info_span!(
        "upstream",
        provider,
        endpoint,
        outcome = tracing::field::Empty,
        otel.name = %format_args!("{provider} {endpoint}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
    )
}

/// The W3C `traceparent` (and `tracestate`) of the current span, for a provider call: the
/// provider's side of the trace joins ours. Nothing when traces are off.
pub fn trace_headers() -> Vec<(HeaderName, HeaderValue)> {
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut headers = HeaderMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Injector(&mut headers)));
    headers.into_iter().filter_map(|(k, v)| Some((k?, v))).collect()
}

/// [`trace_headers`] added to a request.
pub fn traceparent(mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (k, v) in trace_headers() {
        req = req.header(k, v);
    }
    req
}

/// Makes the request's span continue the caller's trace when it sent a `traceparent`, and gives
/// it the HTTP semantic-convention attributes (exported only, not logged).
pub fn continue_trace(span: &Span, headers: &HeaderMap, route: &str, method: &str) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.route", route.to_string());
    span.set_attribute("http.request.method", method.to_string());
}

/// Records the final status on the request's span (5xx marks it failed).
pub fn end_request_span(span: &Span, status: u16) {
    span.record("status", status);
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

struct Injector<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for Injector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

struct Extractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Extractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::DELETE), "DELETE");
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"FROBNICATE").unwrap()), "other");
    }

    #[test]
    fn a_request_series_is_registered_once_and_counts_every_request() {
        let _ = handle();
        for _ in 0..3 {
            let (requests, _) = request_series("/test/series/{id}", "GET", 204);
            requests.increment(1);
        }
        let rendered = handle().render();
        let line = rendered.lines().find(|l| l.starts_with("qetta_http_requests_total{") && l.contains("route=\"/test/series/{id}\"")).expect("the series");
        assert!(line.ends_with(" 3"), "{line}");
    }
}
