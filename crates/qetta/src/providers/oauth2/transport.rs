//! One HTTP exchange with the provider, cut at the request's deadline, and the retry rule:
//! a call that may have reached the provider (a token exchange spends the code, a refresh may
//! rotate the refresh token) is retried only when the connection was never made; idempotent
//! reads (discovery, JWKS, userinfo) also on time-outs and 5xx.

use std::time::Duration;

use tracing::Instrument as _;

use crate::providers::upstream;

use super::error::OAuthError;

/// Attempts of one call at most.
const ATTEMPTS: u32 = 3;

/// Retry policy of a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// POSTs that may change state at the provider: connect failures only.
    ConnectOnly,
    /// Reads: connect failures, time-outs and 5xx.
    Idempotent,
}

/// The answer of one exchange: status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

enum Failure {
    /// The connection was never made: nothing reached the provider.
    Connect,
    Timeout,
    /// The request may have been sent.
    Other,
}

async fn once(req: reqwest::RequestBuilder, per_call: Duration) -> Result<Answer, Failure> {
    let limit = upstream::attempt_timeout(per_call).ok_or(Failure::Timeout)?;
    let classify = |e: reqwest::Error| {
        if e.is_connect() {
            Failure::Connect
        } else if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Other
        }
    };
    let (client, request) = req.build_split();
    let mut request = request.map_err(|_| Failure::Other)?;
    // A span per attempt, named by the provider's host and the path (never the query).
    let span = crate::observability::upstream_span(request.url().host_str().unwrap_or(""), request.url().path());
    for (k, v) in span.in_scope(crate::observability::trace_headers) {
        request.headers_mut().insert(k, v);
    }
    let exchange = async {
        let resp = client.execute(request).await.map_err(classify)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(classify)?.to_vec();
        Ok(Answer { status, body })
    };
    let answer = tokio::time::timeout(limit, exchange).instrument(span.clone()).await.map_err(|_| Failure::Timeout).and_then(|r| r);
    let outcome = match &answer {
        Ok(a) if a.status < 400 => "ok".to_string(),
        Ok(a) => format!("http_{}", a.status),
        Err(Failure::Connect) => "connect".into(),
        Err(Failure::Timeout) => "timeout".into(),
        Err(Failure::Other) => "network".into(),
    };
    span.record("outcome", outcome.as_str());
    if outcome != "ok" {
        span.record("otel.status_code", "error");
    }
    answer
}

/// Sends the request built by `build` (called again for each attempt), with the retry policy.
pub(crate) async fn send(build: impl Fn() -> reqwest::RequestBuilder, per_call: Duration, retry: Retry) -> Result<Answer, OAuthError> {
    let mut attempt = 1;
    loop {
        let outcome = once(build(), per_call).await;
        let retryable = match &outcome {
            Err(Failure::Connect) => true,
            Err(Failure::Timeout | Failure::Other) => retry == Retry::Idempotent,
            Ok(a) => retry == Retry::Idempotent && a.status >= 500,
        };
        if retryable && attempt < ATTEMPTS {
            let pause = upstream::backoff(attempt);
            if upstream::retry_fits(pause) {
                attempt += 1;
                tokio::time::sleep(pause).await;
                continue;
            }
        }
        return match outcome {
            Ok(a) => Ok(a),
            Err(Failure::Timeout) => Err(OAuthError::Timeout),
            Err(Failure::Connect | Failure::Other) => Err(OAuthError::Network),
        };
    }
}
