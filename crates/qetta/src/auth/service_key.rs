//! Checking `x-qetta-service-key`. Wrong keys are throttled per client IP (shared across replicas
//! through the shared state) and audited; the key given is never recorded.

use std::net::IpAddr;

use axum::http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::error::ApiError;
use crate::store::audit::NewEntry;

/// Wrong service keys allowed per client IP and minute; beyond: 429 `too_many_attempts`.
pub const MAX_FAILURES_PER_MIN: i64 = 10;
const WINDOW_SECS: i64 = 60;

/// Checks `given` against the configured key for a caller whose JWT named `user_id`. Each check
/// is counted first (atomically) and taken back when the key is right, so that however many
/// guesses arrive at once, at most [`MAX_FAILURES_PER_MIN`] are compared per IP and minute.
pub async fn check(state: &AppState, expected: &SecretString, given: &HeaderValue, ip: Option<IpAddr>, user_id: &str, path: &str) -> Result<(), ApiError> {
    check_as(state, expected, given, ip, Some(user_id), path).await
}

/// [`check`] for a caller without a user (the app's backend on its own routes, e.g. webhooks):
/// audited with actor `service`.
pub async fn check_as(
    state: &AppState,
    expected: &SecretString,
    given: &HeaderValue,
    ip: Option<IpAddr>,
    user_id: Option<&str>,
    path: &str,
) -> Result<(), ApiError> {
    let ip_text = ip.map(|i| i.to_string()).unwrap_or_default();
    let key = format!("service-key-fail:ip:{ip_text}");
    let now = state.clock.now();
    let (n, reset_in) = state.shared.hit(&key, WINDOW_SECS, now).await?;
    if n > MAX_FAILURES_PER_MIN {
        // Refused without comparing; the count keeps growing until the window ends, so the
        // throttling itself is audited once per window.
        if n == MAX_FAILURES_PER_MIN + 1 {
            audit(state, user_id, &ip_text, path, "throttled", now).await;
        }
        return Err(ApiError::TooManyRequests {
            code: "too_many_attempts",
            message: "Too many wrong service keys from your address; try again later.".into(),
            retry_after_secs: reset_in.max(1) as u64,
        });
    }
    let ok: bool = given.as_bytes().ct_eq(expected.expose_secret().as_bytes()).into();
    if ok {
        if let Err(e) = state.shared.undo(&key, WINDOW_SECS, now).await {
            tracing::warn!(error = %e, "could not take back a service key count");
        }
        return Ok(());
    }
    tracing::warn!(ip = %ip_text, "wrong service key");
    audit(state, user_id, &ip_text, path, "refused", now).await;
    Err(ApiError::Unauthorized("The service key is not valid.".into()))
}

async fn audit(state: &AppState, user_id: Option<&str>, ip: &str, path: &str, outcome: &str, now: i64) {
    let entry = NewEntry {
        actor: user_id.map(|u| format!("user:{u}")).unwrap_or_else(|| "service".into()),
        user_id: user_id.map(str::to_string),
        action: "service_key".into(),
        outcome: outcome.into(),
        ip: Some(ip.to_string()).filter(|i| !i.is_empty()),
        detail: json!({"path": path, "reason": "wrong x-qetta-service-key"}),
        ..Default::default()
    };
    crate::audit::record(&state.db, entry, now).await;
}
