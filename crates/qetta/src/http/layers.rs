//! Cross-cutting middleware, in one layer ([`edge`]) rather than one layer each: axum wraps every
//! route in every layer and a `from_fn` layer clones the whole stack below it on every request,
//! so ten small layers cost about 180 boxed-service clones (and as many allocations) per request
//! (issue 16's profile). In order, from the outside in: the client's address
//! ([`super::client_ip`]), security headers, request metrics, JSON bodies for bodiless errors, the
//! request time-out (408), the deadline of provider calls, and the per-IP rate limit. The request
//! id and its span stay a layer of their own, outside CORS (see [`super::router`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

use crate::error::{default_for_status, error_response};

/// Any 4xx/5xx response that has no body type yet (unknown route, 405, 408, 413, …), or a plain
/// text one (axum's extractor rejections: a bad path segment, a bad query string), gets the
/// standard JSON error body, so clients only ever parse one error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    with_json_error_body(next.run(req).await).await
}

/// What [`json_errors`] does to one response.
pub async fn with_json_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let plain = content_type.starts_with("text/plain");
    if !content_type.is_empty() && !plain {
        return response;
    }
    let (code, default_message) = default_for_status(status);
    let headers = response.headers().clone();
    let message = if plain {
        let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).trim().chars().take(300).collect::<String>();
        if text.is_empty() {
            default_message.to_string()
        } else {
            text
        }
    } else {
        default_message.to_string()
    };
    let mut fresh = error_response(status, code, &message, None);
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = headers.get(&name) {
            fresh.headers_mut().insert(name, v.clone());
        }
    }
    fresh
}

/// The cross-cutting work of every request (see the module's documentation for the order).
pub async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    super::client_ip::resolve(&state.config.trusted_proxies, &mut req);
    let path = Paths::of(req.uri().path());
    let timer = crate::observability::RequestTimer::start(&req);
    let timeout = state.config.request_timeout;
    let bucket = super::rate_limit::IpBucket::of(&req);
    let limited = async {
        match bucket {
            Some(bucket) => match super::rate_limit::check_ip(&state, bucket).await {
                Some(refusal) => refusal,
                None => next.run(req).await,
            },
            None => next.run(req).await,
        }
    };
    let response = match tokio::time::timeout(timeout, within_deadline(timeout, limited)).await {
        Ok(response) => response,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    let mut response = with_json_error_body(response).await;
    timer.finish(response.status());
    secure(&mut response, path, state.config.public_url.starts_with("https://"));
    response
}

/// Runs `fut` under the deadline provider calls must meet: the request timeout less a margin (a
/// tenth of it, at most 1 s) for writing the answer, so that an upstream time-out answers 504
/// `upstream_timeout` before the request times out as a whole.
async fn within_deadline<F: std::future::Future<Output = Response>>(timeout: std::time::Duration, fut: F) -> Response {
    let margin = (timeout / 10).min(std::time::Duration::from_secs(1));
    let deadline = std::time::Instant::now() + timeout - margin;
    crate::providers::upstream::with_deadline(deadline, fut).await
}

/// Which headers a path's responses get.
#[derive(Clone, Copy)]
struct Paths {
    /// The embedded sandbox serves pages with a stylesheet of its own.
    sandbox: bool,
    /// The sandbox's consent pages and the API's browser flows are opened as popups.
    popup_flow: bool,
}

impl Paths {
    fn of(path: &str) -> Self {
        let sandbox = path.starts_with("/sandbox/");
        Self { sandbox, popup_flow: sandbox || path.starts_with("/api/") }
    }
}

/// Headers every response carries; a page handler may set its own Content-Security-Policy. With
/// `https` (`QETTA_PUBLIC_URL`), browsers are told to keep using it (HSTS) and cookies are Secure.
fn secure(response: &mut Response<Body>, Paths { sandbox, popup_flow }: Paths, https: bool) {
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    if !popup_flow && !h.contains_key("cross-origin-opener-policy") {
        h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin-allow-popups"));
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let csp = if sandbox {
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
        } else {
            "default-src 'none'; frame-ancestors 'none'"
        };
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    }
    if https {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
        // Every cookie we set (flow cookies, and the ones that clear them) is https-only.
        let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        if cookies.iter().any(|c| !c.to_str().unwrap_or("").to_ascii_lowercase().contains("; secure")) {
            h.remove(header::SET_COOKIE);
            for c in cookies {
                let text = c.to_str().unwrap_or("");
                let secured = if text.to_ascii_lowercase().contains("; secure") {
                    c.clone()
                } else {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(c.clone())
                };
                h.append(header::SET_COOKIE, secured);
            }
        }
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
