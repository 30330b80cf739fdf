//! `x-request-id`: accepted from the caller when it looks sane, generated otherwise, returned on
//! every response, recorded on every log line of the request and in every error body.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
    /// The signed-in user of the request, once the auth extractor knows it (for the access log).
    static REQUEST_USER: std::sync::Mutex<Option<String>>;
}

/// Records the request's user for its access-log line (called by the auth extractor).
pub fn set_user(user_id: &str) {
    let _ = REQUEST_USER.try_with(|u| *u.lock().expect("request user") = Some(user_id.to_string()));
}

/// The id of the request being served on this task, or `""` outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("request ids are ASCII");
    req.headers_mut().insert(HEADER, header.clone());
    let route = crate::observability::route_of(&req);
    let route = route.as_str();
    // With traces on, the span is the trace's server span and carries what OpenTelemetry wants;
    // without them it only gives every log line the request id (each span field is formatted
    // for the log on every request: the lean span saves a tenth of a proxied call's CPU time).
    let span = if crate::telemetry::traces_on() {
        let method = req.method().as_str();
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            route,
            status = tracing::field::Empty,
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
        );
        crate::observability::continue_trace(&span, req.headers(), route, method);
        span
    } else {
        tracing::info_span!("request", request_id = %id)
    };
    let probe = matches!(req.uri().path(), "/health" | "/ready" | "/metrics");
    let started = std::time::Instant::now();
    let logged_id = id.clone();
    let request_span = span.clone();
    let served = async move {
        let response = next.run(req).await;
        let status = response.status().as_u16();
        crate::observability::end_request_span(&request_span, status);
        if !probe {
            // One line per request: the request id, the route template (never ids), the status,
            // the latency and the user. Never a token or a query string.
            let user = REQUEST_USER.try_with(|u| u.lock().expect("request user").clone()).ok().flatten();
            tracing::info!(
                request_id = %logged_id,
                route,
                status,
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                user_id = user.as_deref().unwrap_or(""),
                "request"
            );
        }
        response
    };
    let mut response = REQUEST_ID.scope(id, REQUEST_USER.scope(std::sync::Mutex::new(None), served.instrument(span))).await;
    response.headers_mut().insert(HEADER, header);
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sane_ids_are_accepted() {
        assert!(super::acceptable("abc-123_X.y:z"));
        assert!(!super::acceptable(""));
        assert!(!super::acceptable("a b"));
        assert!(!super::acceptable("<script>"));
        assert!(!super::acceptable(&"a".repeat(129)));
    }
}
