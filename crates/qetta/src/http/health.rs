//! `/health` (the process is alive) and `/ready` (its dependencies answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;
use crate::error::ErrorDetail;

/// `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The service's version.
    pub version: &'static str,
}

/// `GET /ready`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`, `degraded` (Redis down: still serving) or `not_ready` (503).
    pub status: &'static str,
    pub checks: ReadyChecks,
    /// The failing parts (`database`): 503.
    pub failing: Vec<&'static str>,
    /// The degraded parts (`redis`): still ready.
    pub degraded: Vec<&'static str>,
    /// With a 503 only: the error object (`not_ready`), as in every error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<ErrorDetail>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyChecks {
    /// `ok`, `disk_full`, `not_writable` or `unreachable`.
    pub database: &'static str,
    /// `ok`, `unreachable` or `not_configured`.
    pub redis: &'static str,
}

/// The process is alive
#[utoipa::path(get, path = "/health", tag = "ops", security(()), responses((status = 200, description = "OK", body = Health)))]
pub async fn health() -> impl IntoResponse {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// The database (and Redis) answer; 503 naming the failing part otherwise
#[utoipa::path(get, path = "/ready", tag = "ops", security(()), responses(
    (status = 200, description = "OK (`ready` or `degraded`)", body = Ready),
    (status = 503, description = "not_ready: the body names the failing part and carries the error object", body = Ready),
))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    let two_secs = std::time::Duration::from_secs(2);
    let database = match tokio::time::timeout(two_secs, state.db.ping()).await {
        Ok(Ok(())) if state.config.sqlite_path().is_some_and(|p| disk_nearly_full(&p)) => "disk_full",
        Ok(Ok(())) => match tokio::time::timeout(two_secs, state.db.write_probe(state.clock.now())).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) if e.to_string().contains("full") => "disk_full",
            _ => "not_writable",
        },
        _ => "unreachable",
    };
    if database != "ok" {
        failing.push("database");
    }
    // Redis failing degrades the service (in-process rate limits, database fallbacks) but does
    // not stop it: a replica without Redis still serves, so it stays ready. Taking every replica
    // out of rotation during a Redis outage would turn a degradation into an outage.
    let mut degraded = Vec::new();
    let redis_check = if !state.shared.uses_redis() {
        "not_configured"
    } else {
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.shared.ping()).await {
            Ok(Ok(())) => "ok",
            _ => {
                degraded.push("redis");
                "unreachable"
            }
        }
    };
    let status_text = match (failing.is_empty(), degraded.is_empty()) {
        (false, _) => "not_ready",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let error = (!failing.is_empty()).then(|| ErrorDetail::new("not_ready", &format!("Not ready: {} failing.", failing.join(", ")), None));
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Ready { status: status_text, checks: ReadyChecks { database, redis: redis_check }, failing, degraded, error };
    (status, Json(body))
}

/// Less than this much free space under the SQLite database counts as full: SQLite reuses its
/// WAL file, so small writes may still pass on a disk that cannot take a checkpoint or a new page.
const MIN_FREE_BYTES: u64 = 1 << 20;

#[cfg(unix)]
fn disk_nearly_full(db_file: &std::path::Path) -> bool {
    let dir = db_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize) < MIN_FREE_BYTES,
        Err(_) => false,
    }
}

#[cfg(not(unix))]
fn disk_nearly_full(_: &std::path::Path) -> bool {
    false
}
