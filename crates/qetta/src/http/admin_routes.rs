//! `/api/v1/admin/…`: the admin dashboard's JSON routes. Every one takes an [`AdminUser`] (401
//! without a JWT, 403 `forbidden` for a user who is not an administrator now) and writes an audit
//! entry with the admin as actor before it answers: what cannot be audited is not shown (503
//! `audit_unavailable`).
//!
//! What they show of a user: id, email, kind, connections (provider, status, expiry; never a
//! token, ciphertext or key id) and the user's audit entries. The actions "refresh now" and
//! "disconnect" act on any user's connection through the connection core (refresh once across
//! replicas; revoke at the provider, then forget), audited with the admin as actor.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::admin::stats::{self, Stats};
use crate::admin::AdminUser;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::http::rfc3339;
use crate::store::audit::{self, NewEntry};
use crate::store::{admin as store, users};

/// Records what the admin looked at, or refuses to show it.
async fn audit_view(state: &AppState, admin: &AdminUser, action: &str, detail: serde_json::Value) -> Result<(), ApiError> {
    let entry = NewEntry {
        actor: admin.actor(),
        user_id: Some(admin.id.clone()),
        action: action.into(),
        outcome: "ok".into(),
        request_id: Some(crate::http::request_id::current()).filter(|r| !r.is_empty()),
        detail,
        ..Default::default()
    };
    audit::append(&state.db, &entry, state.clock.now()).await.map_err(|e| {
        tracing::error!(error = %e, action, "audit log unavailable: refusing an admin view");
        ApiError::AuditUnavailable
    })?;
    Ok(())
}

// `GET /api/v1/admin/stats`.
/// Admin dashboard figures per provider
///
/// Connections by state and refresh outcomes (24 h, 7 d, daily) from the database; upstream latency p50/p95, top error codes and the refresher's counters of the replica that answers. Needs the JWT of a user who is an administrator now (QETTA_ADMIN_EMAILS or `qetta admin grant`): 401 without a valid JWT, 403 `forbidden` for anyone else. Audited with the admin as actor; 503 `audit_unavailable` when the audit log cannot be written.
#[utoipa::path(get, path = "/api/v1/admin/stats", tag = "admin", security(("bearer" = ["admin"])), responses((status = 200, description = "OK", body = Stats), (status = 403, description = "forbidden: not an administrator", body = ErrorBody),))]
pub async fn stats(State(state): State<AppState>, admin: AdminUser) -> Result<Json<Stats>, ApiError> {
    audit_view(&state, &admin, "admin_stats", serde_json::json!({})).await?;
    Ok(Json(stats::collect(&state).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// a user id, or part of an email (case-insensitive; % and _ match themselves); 422 invalid_query when empty or longer
    #[param(required = true, nullable = false, min_length = 1, max_length = 254)]
    q: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminUserSummary)]
pub struct UserSummary {
    pub id: String,
    /// `null` for users minted by the app's backend and for deleted accounts.
    pub email: Option<String>,
    /// `registered` (a local password), `external` (minted by the app's backend) or `deleted`.
    #[schema(value_type = UserKind)]
    pub kind: &'static str,
    pub created_at: String,
    pub deleted_at: Option<String>,
    pub connections: i64,
}

impl From<store::UserRow> for UserSummary {
    fn from(u: store::UserRow) -> Self {
        let kind = match (u.deleted_at, u.has_password) {
            (Some(_), _) => "deleted",
            (None, 1) => "registered",
            (None, _) => "external",
        };
        // Placeholders (`external {id}@…`, `deleted {id}@…`) are not emails.
        let email = (kind == "registered" && u.email != users::external_placeholder_email(&u.id)).then_some(u.email);
        Self { id: u.id, email, kind, created_at: rfc3339(u.created_at), deleted_at: u.deleted_at.map(rfc3339), connections: u.connections }
    }
}

/// `kind` of [`UserSummary`] (documentation of the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum UserKind {
    Registered,
    External,
    Deleted,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminUserSearch)]
pub struct SearchResult {
    pub users: Vec<UserSummary>,
    /// At most this many are returned; refine the query to see others.
    pub limit: i64,
}

const SEARCH_LIMIT: i64 = 20;

// `GET /api/v1/admin/users?q=`: by exact id, or part of the email.
/// Search users by exact id or part of the email
///
/// At most 20 users; the exact id first. Needs the JWT of a user who is an administrator now (QETTA_ADMIN_EMAILS or `qetta admin grant`): 401 without a valid JWT, 403 `forbidden` for anyone else. Audited with the admin as actor; 503 `audit_unavailable` when the audit log cannot be written.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = ["admin"])), params(Search), responses(
    (status = 200, description = "OK", body = SearchResult), (status = 403, description = "forbidden: not an administrator", body = ErrorBody),
    (status = 422, description = "invalid_query", body = ErrorBody),
))]
pub async fn search(State(state): State<AppState>, admin: AdminUser, Query(s): Query<Search>) -> Result<Json<SearchResult>, ApiError> {
    let q = s.q.as_deref().map(str::trim).unwrap_or_default();
    if q.is_empty() || q.chars().count() > 254 || q.chars().any(char::is_control) {
        return Err(ApiError::invalid("invalid_query", "q must be a user id or part of an email, 1 to 254 characters."));
    }
    let found = store::search_users(&state.db, q, SEARCH_LIMIT).await?;
    // The query itself may be an email: the entry keeps its length and what it found, not the text.
    audit_view(&state, &admin, "admin_user_search", serde_json::json!({"query_chars": q.chars().count(), "found": found.len()})).await?;
    Ok(Json(SearchResult { users: found.into_iter().map(UserSummary::from).collect(), limit: SEARCH_LIMIT }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// entry id to page from (next_before of the previous page)
    #[param(value_type = Option<i64>)]
    before: Option<String>,
    /// 1-200, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `{user_id}` of the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct UserPath {
    #[param(min_length = 1, max_length = 128)]
    user_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminConnection)]
pub struct ConnectionView {
    pub id: String,
    pub provider: String,
    /// `active`, `needs_reauth`, `consent_expired` or `revoked`.
    #[schema(value_type = crate::http::connections::ConnectionStatus)]
    pub status: String,
    pub scope: Vec<String>,
    pub expires_at: Option<String>,
    pub refresh_expires_at: Option<String>,
    pub created_at: String,
    pub last_refreshed_at: Option<String>,
    pub refresh_failures: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminAuditEntry)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub provider: Option<String>,
    pub connection_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminUserDetail)]
pub struct UserDetail {
    pub user: UserSummary,
    pub is_admin: bool,
    pub connections: Vec<ConnectionView>,
    /// The user's audit entries, newest first, one page.
    pub audit: Vec<AuditView>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<String>,
}

// `GET /api/v1/admin/users/{user_id}?before=&limit=`.
/// A user's connections (never tokens) and audit entries, paged
///
/// 404 user_not_found for an unknown id. Needs the JWT of a user who is an administrator now (QETTA_ADMIN_EMAILS or `qetta admin grant`): 401 without a valid JWT, 403 `forbidden` for anyone else. Audited with the admin as actor; 503 `audit_unavailable` when the audit log cannot be written.
#[utoipa::path(get, path = "/api/v1/admin/users/{user_id}", tag = "admin", security(("bearer" = ["admin"])), params(UserPath, Page), responses(
    (status = 200, description = "OK", body = UserDetail), (status = 403, description = "forbidden: not an administrator", body = ErrorBody),
    (status = 404, description = "user_not_found", body = ErrorBody),
    (status = 422, description = "invalid_limit, invalid_cursor", body = ErrorBody),
))]
pub async fn user(State(state): State<AppState>, admin: AdminUser, Path(user_id): Path<String>, Query(p): Query<Page>) -> Result<Json<UserDetail>, ApiError> {
    let limit: i64 = match p.limit.as_deref() {
        None => 50,
        Some(l) => l.parse().ok().filter(|n| (1..=200).contains(n)).ok_or_else(|| ApiError::invalid("invalid_limit", "limit must be between 1 and 200."))?,
    };
    let before = match p.before.as_deref() {
        None => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| ApiError::invalid("invalid_cursor", "before must be an entry id from a previous page."))?),
    };
    if user_id.len() > 128 {
        return Err(ApiError::NotFoundCode { code: "user_not_found", message: "No such user.".into() });
    }
    let Some(row) = store::user(&state.db, &user_id).await? else {
        return Err(ApiError::NotFoundCode { code: "user_not_found", message: "No such user.".into() });
    };
    audit_view(&state, &admin, "admin_user_view", serde_json::json!({"viewed_user": user_id})).await?;
    let is_admin = store::is_admin(&state.db, &user_id).await?;
    let connections = store::user_connections(&state.db, &user_id)
        .await?
        .into_iter()
        .map(|c| ConnectionView {
            id: c.id,
            provider: c.provider,
            status: c.status,
            scope: c.scope.as_deref().map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default(),
            expires_at: c.expires_at.map(rfc3339),
            refresh_expires_at: c.refresh_expires_at.map(rfc3339),
            created_at: rfc3339(c.created_at),
            last_refreshed_at: c.last_refreshed_at.map(rfc3339),
            refresh_failures: c.refresh_failures,
        })
        .collect();
    let entries = audit::list_for_user(&state.db, &user_id, before, limit).await?;
    let next_before = if entries.len() as i64 == limit { entries.last().map(|e| e.id.to_string()) } else { None };
    let audit = entries
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            provider: e.provider,
            connection_id: e.connection_id,
            action: e.action,
            outcome: e.outcome,
            request_id: e.request_id,
            ip: e.ip,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(Json(UserDetail { user: row.into(), is_admin, connections, audit, next_before }))
}

// `POST /api/v1/admin/connections/{id}/refresh`: refresh a connection now.
/// Refresh a user's connection now (once across replicas)
///
/// Needs the JWT of a user who is an administrator now (QETTA_ADMIN_EMAILS or `qetta admin grant`): 401 without a valid JWT, 403 `forbidden` for anyone else. Audited with the admin as actor; 503 `audit_unavailable` when the audit log cannot be written.
#[utoipa::path(post, path = "/api/v1/admin/connections/{id}/refresh", tag = "admin", security(("bearer" = ["admin"])), params(crate::http::openapi::AdminConnectionPath), responses(
    (status = 200, description = "OK", body = crate::http::connections::ConnectionView), (status = 403, description = "forbidden: not an administrator", body = ErrorBody),
    (status = 404, description = "connection_not_found", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn refresh_connection(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Json<crate::http::connections::ConnectionView>, ApiError> {
    let c = admin_connection(&state, &id).await?;
    audit_view(&state, &admin, "admin_refresh", serde_json::json!({"connection_id": c.id, "provider": c.provider, "user_id": c.user_id})).await?;
    let c = state.connections.refresh(c).await?;
    Ok(Json(crate::http::connections::ConnectionView::from(&c)))
}

// `DELETE /api/v1/admin/connections/{id}`: disconnect any user's connection.
/// Disconnect a user's connection: revoked at the provider where it can, then forgotten
///
/// Needs the JWT of a user who is an administrator now (QETTA_ADMIN_EMAILS or `qetta admin grant`): 401 without a valid JWT, 403 `forbidden` for anyone else. Audited with the admin as actor; 503 `audit_unavailable` when the audit log cannot be written.
#[utoipa::path(delete, path = "/api/v1/admin/connections/{id}", tag = "admin", security(("bearer" = ["admin"])), params(crate::http::openapi::AdminConnectionPath), responses(
    (status = 200, description = "OK", body = crate::http::connections::DisconnectedBody), (status = 403, description = "forbidden: not an administrator", body = ErrorBody),
    (status = 404, description = "connection_not_found", body = ErrorBody),
))]
pub async fn disconnect_connection(
    State(state): State<AppState>,
    admin: AdminUser,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<crate::http::connections::DisconnectedBody>, ApiError> {
    let c = admin_connection(&state, &id).await?;
    let actor = crate::connections::Actor { name: admin.actor(), ip: Some(peer.ip().to_string()) };
    let done = state.connections.disconnect(c, &actor).await?;
    Ok(Json(crate::http::connections::DisconnectedBody {
        disconnected: true,
        id: done.connection.id,
        provider: done.connection.provider,
        revocation: done.revoked,
    }))
}

async fn admin_connection(state: &AppState, id: &str) -> Result<crate::store::connections::Connection, ApiError> {
    if id.len() > 64 {
        return Err(crate::connections::ConnectionError::NotFound.into());
    }
    Ok(crate::store::connections::get_by_id(&state.db, id).await?.ok_or(crate::connections::ConnectionError::NotFound)?)
}
