//! The control API shared by both simulators (`<base>/_sandbox/...`), for tests and benchmarks:
//! stats, faults, expire-tokens, reset, clock, users, and the stylesheet of the HTML pages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::SandboxClock;
use crate::faults::{FaultRequest, Faults};
use crate::stats::Stats;

/// What the control API needs from a simulator.
pub trait Simulator: Send + Sync + 'static {
    fn faults(&self) -> &Faults;
    fn stats(&self) -> &Stats;
    fn clock(&self) -> &SandboxClock;
    /// Back to the initial state (data, tokens, requests, faults, stats, clock).
    fn reset(&self);
    /// Make every access token issued so far answer as expired; returns how many.
    fn expire_tokens(&self) -> usize;
    /// JSON for `GET /_sandbox/users`.
    fn users(&self) -> Value;
}

/// Stylesheet of the sandbox pages (served, never inline, so a strict CSP works).
pub const SANDBOX_CSS: &str = include_str!("../assets/sandbox.css");

pub fn router<T: Simulator>(sim: Arc<T>) -> Router {
    Router::new()
        .route("/_sandbox/stats", get(stats::<T>))
        .route("/_sandbox/faults", post(set_faults::<T>).get(get_faults::<T>))
        .route("/_sandbox/expire-tokens", post(expire_tokens::<T>))
        .route("/_sandbox/reset", post(reset::<T>))
        .route("/_sandbox/clock", post(advance_clock::<T>).get(get_clock::<T>))
        .route("/_sandbox/users", get(users::<T>))
        .route("/_sandbox/assets/sandbox.css", get(css))
        .with_state(sim)
}

/// Control-API error: HTTP 400 with `{"error": "..."}`.
pub fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg.into() }))).into_response()
}

/// Parse an optional JSON body (empty body = `{}`).
#[allow(clippy::result_large_err)]
fn parse_body<B: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<B, Response> {
    let text = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &body[..] };
    serde_json::from_slice(text).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

async fn stats<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    Json(sim.stats().snapshot()).into_response()
}

async fn get_faults<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    Json(sim.faults().view()).into_response()
}

async fn set_faults<T: Simulator>(State(sim): State<Arc<T>>, body: Bytes) -> Response {
    let req: FaultRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match req.into_settings(sim.faults().provider()) {
        Ok(settings) => {
            sim.faults().set(settings);
            Json(sim.faults().view()).into_response()
        }
        Err(e) => bad_request(e),
    }
}

async fn expire_tokens<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    let n = sim.expire_tokens();
    Json(json!({ "expired": n })).into_response()
}

async fn reset<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    sim.reset();
    Json(json!({ "reset": true })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    #[serde(default)]
    advance_seconds: i64,
}

fn clock_view(clock: &SandboxClock) -> Value {
    json!({
        "now": clock.now_kst().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "offset_seconds": clock.offset().as_secs(),
    })
}

async fn advance_clock<T: Simulator>(State(sim): State<Arc<T>>, body: Bytes) -> Response {
    let req: ClockRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.advance_seconds < 0 {
        return bad_request("advance_seconds must be >= 0 (the sandbox clock never goes back)");
    }
    sim.clock().advance_ms(req.advance_seconds.saturating_mul(1000));
    Json(clock_view(sim.clock())).into_response()
}

async fn get_clock<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    Json(clock_view(sim.clock())).into_response()
}

async fn users<T: Simulator>(State(sim): State<Arc<T>>) -> Response {
    Json(sim.users()).into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], SANDBOX_CSS).into_response()
}
