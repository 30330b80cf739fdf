//! `/health` (the process is alive) and `/ready` (its dependencies answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::AppState;

pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

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
    let mut body = json!({
        "status": status_text,
        "checks": { "database": database, "redis": redis_check },
        "failing": failing,
        "degraded": degraded,
    });
    if !failing.is_empty() {
        body["error"] = json!({
            "code": "not_ready",
            "message": format!("Not ready: {} failing.", failing.join(", ")),
            "request_id": crate::http::request_id::current(),
        });
    }
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
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
