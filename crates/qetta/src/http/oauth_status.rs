//! `GET /api/v1/oauth/status`: every provider of the catalogue, connected or not, for the calling
//! user, with its default connection (the newest whose grant stands) and how many it has.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::store::connections;

/// `GET /api/v1/oauth/status` (documentation of the body built below).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StatusBody {
    /// One entry per provider of the catalogue: `{provider, configured, connected, status,
    /// scope, expires_at, connected_at, last_refreshed_at, connection_id?, connections}`; Toss's
    /// entry has `verified`, `identity` (masked) and `last_test` instead of the connection fields.
    #[schema(value_type = Vec<Object>)]
    providers: Vec<Value>,
}

/// Every provider with the caller's connection state
#[utoipa::path(get, path = "/api/v1/oauth/status", tag = "oauth", responses((status = 200, description = "OK", body = StatusBody)))]
pub async fn status(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>, ApiError> {
    let rows = connections::list_for_user(&state.db, &user.id).await?;
    let mut providers = Vec::new();
    for listed in state.connections.catalogue().listing() {
        let p = listed.name.as_str();
        if p == crate::toss_service::PROVIDER {
            // Toss has no per-user tokens: connected means the user's identity is verified.
            providers.push(crate::http::toss::status_entry(&state, &user.id).await?);
            continue;
        }
        let mine: Vec<&connections::Connection> = rows.iter().filter(|c| c.provider == p).collect();
        // The default connection: the newest whose grant stands, else the newest.
        let shown = mine.iter().rev().find(|c| c.is_active()).or(mine.last());
        providers.push(match shown {
            _ if !listed.configured => json!({
                "provider": p, "configured": false, "connected": false, "status": "not_configured", "scope": null,
                "expires_at": null, "connected_at": null, "last_refreshed_at": null, "connections": mine.len(),
            }),
            Some(c) => json!({
                "provider": p,
                "configured": true,
                "connected": c.status != connections::STATUS_REVOKED && c.access_token.is_some(),
                "status": c.status,
                "scope": c.scope.as_deref().map(|s| s.split_whitespace().collect::<Vec<_>>()),
                "expires_at": c.expires_at.map(rfc3339),
                "connected_at": rfc3339(c.created_at),
                "last_refreshed_at": c.last_refreshed_at.map(rfc3339),
                "connection_id": c.id,
                "connections": mine.len(),
            }),
            None => json!({
                "provider": p, "configured": true, "connected": false, "status": null, "scope": null,
                "expires_at": null, "connected_at": null, "last_refreshed_at": null, "connections": 0,
            }),
        });
    }
    Ok(Json(json!({ "providers": providers })))
}
