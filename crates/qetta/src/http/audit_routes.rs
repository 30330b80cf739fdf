//! `GET /api/v1/oauth/audit`: the calling user's own audit entries, newest first, paged.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::store::audit;

#[derive(Deserialize)]
pub struct Page {
    before: Option<String>,
    limit: Option<String>,
}

pub async fn list(State(state): State<AppState>, user: AuthUser, Query(p): Query<Page>) -> Result<Json<Value>, ApiError> {
    let limit: i64 = match p.limit.as_deref() {
        None => 50,
        Some(l) => l.parse().ok().filter(|n| (1..=200).contains(n)).ok_or_else(|| ApiError::invalid("invalid_limit", "limit must be between 1 and 200."))?,
    };
    let before = match p.before.as_deref() {
        None => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| ApiError::invalid("invalid_cursor", "before must be an entry id from a previous page."))?),
    };
    let entries = audit::list_for_user(&state.db, &user.id, before, limit).await?;
    let next = if entries.len() as i64 == limit { entries.last().map(|e| e.id.to_string()) } else { None };
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": rfc3339(e.at),
                "actor": e.actor,
                "provider": e.provider,
                "action": e.action,
                "outcome": e.outcome,
                "request_id": e.request_id,
                "ip": e.ip,
                "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": items, "next_before": next })))
}
