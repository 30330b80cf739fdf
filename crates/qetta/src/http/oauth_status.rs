//! `GET /api/v1/oauth/status`: every provider, connected or not, for the calling user.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::store::connections;

/// The providers this service knows, in display order.
pub const PROVIDERS: [&str; 2] = ["kftc", "toss"];

pub async fn status(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>, ApiError> {
    let rows = connections::list_for_user(&state.db, &user.id).await?;
    let mut providers: Vec<Value> = PROVIDERS
        .iter()
        .filter(|p| **p != crate::toss_service::PROVIDER)
        .map(|p| match rows.iter().find(|c| c.provider == *p) {
            _ if !state.provider_configured(p) => json!({
                "provider": p, "configured": false, "connected": false, "status": "not_configured", "scope": null,
                "expires_at": null, "connected_at": null, "last_refreshed_at": null,
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
            }),
            None => json!({
                "provider": p, "configured": true, "connected": false, "status": null, "scope": null,
                "expires_at": null, "connected_at": null, "last_refreshed_at": null,
            }),
        })
        .collect();
    // Toss has no per-user tokens: connected means the user's identity is verified.
    let toss = crate::http::toss::status_entry(&state, &user.id).await?;
    let at = PROVIDERS.iter().position(|p| *p == crate::toss_service::PROVIDER).unwrap_or(providers.len()).min(providers.len());
    providers.insert(at, toss);
    Ok(Json(json!({ "providers": providers })))
}
