//! Cross-cutting middleware: JSON bodies for errors produced below the handlers, security headers.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{default_for_status, error_response};

/// Any 4xx/5xx response that has no body type yet (unknown route, 405, 408, 413, …), or a plain
/// text one (axum's extractor rejections: a bad path segment, a bad query string), gets the
/// standard JSON error body, so clients only ever parse one error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
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

/// Whether browsers reach this service over https (`QETTA_PUBLIC_URL`): then every response
/// tells them to keep doing so (HSTS).
#[derive(Clone, Copy)]
pub struct Https(pub bool);
/// Sets the deadline provider calls must meet: the request timeout less a margin (a tenth of it,
/// at most 1 s) for writing the answer.
pub async fn deadline(State(state): State<crate::app::AppState>, req: Request, next: Next) -> Response {
    let timeout = state.config.request_timeout;
    let margin = (timeout / 10).min(std::time::Duration::from_secs(1));
    let deadline = std::time::Instant::now() + timeout - margin;
    crate::providers::upstream::with_deadline(deadline, next.run(req)).await
}

/// Headers every response carries; a page handler may set its own Content-Security-Policy.
pub async fn security_headers(State(Https(https)): State<Https>, req: Request, next: Next) -> Response<Body> {
    // The embedded sandbox serves pages with a stylesheet of its own.
    let sandbox = req.uri().path().starts_with("/sandbox/");
    // Pages of the OAuth popup (launch, the provider's consent page, the callback) must keep
    // `window.opener`: any COOP other than unsafe-none on them would cut it. Our own pages
    // (/oauth …) get `same-origin-allow-popups`, which keeps popups that set none.
    let popup_flow = sandbox || req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page may allow same-origin referrers (the launch confirmation page, so that its form's
    // POST carries our `Origin`); everything else sends none.
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
    response
}
