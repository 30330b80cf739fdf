//! `GET /api/v1/oauth/audit`: the calling user's own audit entries, newest first, paged.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::store::audit;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// entry id to page from
    #[param(value_type = Option<i64>)]
    before: Option<String>,
    /// 1-200
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `GET /api/v1/oauth/audit`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub provider: Option<String>,
    pub action: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// What the entry records (never a secret).
    pub detail: Value,
}

/// The caller's audit entries, newest first
#[utoipa::path(get, path = "/api/v1/oauth/audit", tag = "oauth", params(Page), responses((status = 200, description = "OK", body = AuditPage)))]
pub async fn list(State(state): State<AppState>, user: AuthUser, Query(p): Query<Page>) -> Result<Json<AuditPage>, ApiError> {
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
    let items: Vec<AuditEntry> = entries
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            provider: e.provider,
            action: e.action,
            outcome: e.outcome,
            request_id: e.request_id,
            ip: e.ip,
            detail: serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
        })
        .collect();
    Ok(Json(AuditPage { entries: items, next_before: next }))
}
