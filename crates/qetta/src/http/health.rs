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
    let database = match tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => "ok",
        _ => {
            failing.push("database");
            "unreachable"
        }
    };
    let redis_check = if !state.shared.uses_redis() {
        "not_configured"
    } else {
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.shared.ping()).await {
            Ok(Ok(())) => "ok",
            _ => {
                failing.push("redis");
                "unreachable"
            }
        }
    };
    let mut body = json!({
        "status": if failing.is_empty() { "ready" } else { "not_ready" },
        "checks": { "database": database, "redis": redis_check },
        "failing": failing,
    });
    if !failing.is_empty() {
        body["error"] = json!({
            "code": "not_ready",
            "message": format!("Not ready: {} unreachable.", failing.join(", ")),
            "request_id": crate::http::request_id::current(),
        });
    }
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
