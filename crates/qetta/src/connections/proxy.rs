//! The proxy: a call to the provider's API (`api_base` + path) with the connection's access
//! token injected, refreshed first when due and once more after a 401.
//!
//! What it never does: forward the caller's `Authorization`, cookies, service key or hop-by-hop
//! headers; leave `api_base` (the target is built from the base and a path checked for `..`,
//! backslashes and encoded separators, then compared with the base again); follow a redirect (the
//! upstream client follows none; a 3xx is answered as it is); retry a method that is not
//! idempotent after a failure that may have reached the provider (a 401 is retried for every
//! method: the provider refused to authenticate the call, so it did nothing); hand the provider's
//! cookies to the caller.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderName, Method};
use secrecy::ExposeSecret;

use super::{ConnectionError, ConnectionService};
use crate::store::connections::Connection;
use crate::tokens::AccessToken;

/// Request headers never sent upstream (besides every hop-by-hop one).
const DROPPED_REQUEST: [&str; 9] =
    ["authorization", "cookie", "host", "x-qetta-service-key", "x-request-id", "forwarded", "origin", "referer", "proxy-authorization"];
/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing, which the two connections set themselves.
const HOP_BY_HOP: [&str; 9] = ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "content-length", "expect"];
/// Longest path or query accepted.
const MAX_TARGET: usize = 2048;

/// Why a proxied call failed before the provider answered.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("This provider has no API to proxy to on this server.")]
    NoApi,
    #[error("{0}")]
    BadPath(&'static str),
    #[error("The provider did not answer in time.")]
    Timeout,
    #[error("The provider could not be reached.")]
    Unreachable,
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

/// The target URL: `base` + `path` (+ `query`), refused when it would leave `base`.
pub fn target(base: &str, path: &str, query: Option<&str>) -> Result<reqwest::Url, ProxyError> {
    if path.len() + query.map_or(0, str::len) > MAX_TARGET {
        return Err(ProxyError::BadPath("The path is too long."));
    }
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") || path.chars().any(|c| c.is_control()) {
        return Err(ProxyError::BadPath("The path may not contain backslashes, encoded separators or dots, or control characters."));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ProxyError::BadPath("The path may not contain . or .. segments."));
    }
    let base_url = reqwest::Url::parse(base).map_err(|_| ProxyError::NoApi)?;
    let joined = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
    let mut url = reqwest::Url::parse(&joined).map_err(|_| ProxyError::BadPath("The path is not valid."))?;
    url.set_query(query.filter(|q| !q.is_empty()));
    let base_path = base_url.path().trim_end_matches('/');
    let inside = url.path() == base_path || url.path().starts_with(&format!("{base_path}/"));
    if url.origin() != base_url.origin() || !inside || url.fragment().is_some() {
        return Err(ProxyError::BadPath("The path leaves the provider's API."));
    }
    Ok(url)
}

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

/// The caller's headers that go upstream.
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if DROPPED_REQUEST.contains(&n) || HOP_BY_HOP.contains(&n) || n.starts_with("x-forwarded-") || n.starts_with("sec-") || n.starts_with("proxy-") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The provider's headers that go back to the caller.
pub fn returned(headers: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "set-cookie" || n == "set-cookie2" || n.starts_with("proxy-") {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes()) {
            if let Ok(v) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
                out.append(name, v);
            }
        }
    }
    out
}

impl ConnectionService {
    /// Sends the call; the answer's body is left to stream.
    #[allow(clippy::too_many_arguments)]
    pub async fn proxy(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        connection: Connection,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, ProxyError> {
        let provider = self.provider(&connection.provider)?;
        let base = provider.info().api_base.clone().ok_or(ProxyError::NoApi)?;
        let url = target(&base, path, query)?;
        let headers = forwarded(headers);
        let provider_name = connection.provider.clone();
        let token = self.access_token(connection).await?;
        // One span per attempt; the path is the caller's and may carry ids: the span names the
        // provider only.
        let send = |t: &AccessToken| {
            let span = crate::observability::upstream_span(&provider_name, "proxy");
            let mut h = headers.clone();
            for (k, v) in span.in_scope(crate::observability::trace_headers) {
                h.insert(k, v);
            }
            h.insert(header::AUTHORIZATION, format!("Bearer {}", t.token.expose_secret()).parse().expect("a token is a header value"));
            let sent = http.request(method.clone(), url.clone()).headers(h).body(body.clone()).timeout(timeout).send();
            let traced = span.clone();
            tracing::Instrument::instrument(
                async move {
                    let answer = sent.await;
                    let outcome = match &answer {
                        Ok(a) if a.status().as_u16() < 400 => "ok".to_string(),
                        Ok(a) => format!("http_{}", a.status().as_u16()),
                        Err(e) if e.is_timeout() => "timeout".into(),
                        Err(_) => "network".into(),
                    };
                    traced.record("outcome", outcome.as_str());
                    if outcome != "ok" {
                        traced.record("otel.status_code", "error");
                    }
                    answer
                },
                span,
            )
        };
        let mut answer = send(&token).await;
        // One more try, for idempotent calls only, when the request may not have been handled.
        if idempotent(&method) && matches!(&answer, Err(e) if e.is_connect() || e.is_timeout()) {
            answer = send(&token).await;
        }
        let answer = answer.map_err(|e| if e.is_timeout() { ProxyError::Timeout } else { ProxyError::Unreachable })?;
        if answer.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        // The provider refused the token (revoked, rotated early): refresh once (unless another
        // caller already did) and try again.
        let fresh = self.after_rejection(&token).await?;
        send(&fresh).await.map_err(|e| if e.is_timeout() { ProxyError::Timeout } else { ProxyError::Unreachable })
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn targets_stay_inside_the_base() {
        let base = "https://api.example.com/v2";
        assert_eq!(target(base, "user/me", Some("a=1")).unwrap().as_str(), "https://api.example.com/v2/user/me?a=1");
        assert_eq!(target("https://api.example.com", "v1/x", None).unwrap().as_str(), "https://api.example.com/v1/x");
        for bad in ["../admin", "a/../../b", "..", "%2e%2e/admin", "a%2Fb", "a\\b", "./x", "a/%2E%2E/b"] {
            assert!(target(base, bad, None).is_err(), "{bad}");
        }
        // A path that parses as another authority is still checked against the base.
        assert!(target(base, "//evil.example/x", None).map(|u| u.host_str() == Some("api.example.com")).unwrap_or(true));
        assert!(target(base, &"a".repeat(3000), None).is_err());
    }
}
