//! `GET /api/v1/oauth/status`: every provider of the catalogue, connected or not, for the calling
//! user, with its default connection (the newest whose grant stands) and how many it has.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::rfc3339;
use crate::store::connections;

/// `GET /api/v1/oauth/status`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    /// One entry per provider of the catalogue, in its order.
    pub providers: Vec<ProviderStatus>,
}

/// A provider's entry: Toss's (an identity instead of connections) or any other's.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ProviderStatus {
    Connections(ConnectionsStatus),
    Toss(crate::http::toss::TossStatus),
}

/// The entry of a provider that users connect accounts at.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionsStatus {
    pub provider: String,
    pub configured: bool,
    /// The default connection (the newest whose grant stands, else the newest) has tokens.
    pub connected: bool,
    /// The default connection's status; `not_configured` for a disabled provider; `null` without connections.
    pub status: Option<String>,
    pub scope: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub connected_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    /// The default connection's id, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub connection_id: Option<String>,
    /// How many connections the user has at this provider.
    pub connections: usize,
}

/// Every provider with the caller's connection state
#[utoipa::path(get, path = "/api/v1/oauth/status", tag = "oauth", responses((status = 200, description = "OK", body = StatusBody)))]
pub async fn status(State(state): State<AppState>, user: AuthUser) -> Result<Json<StatusBody>, ApiError> {
    let rows = connections::list_for_user(&state.db, &user.id).await?;
    let mut providers = Vec::new();
    for listed in state.connections.catalogue().listing() {
        let p = listed.name.as_str();
        if p == crate::toss_service::PROVIDER {
            // Toss has no per-user tokens: connected means the user's identity is verified.
            providers.push(ProviderStatus::Toss(crate::http::toss::status_entry(&state, &user.id).await?));
            continue;
        }
        let mine: Vec<&connections::Connection> = rows.iter().filter(|c| c.provider == p).collect();
        // The default connection: the newest whose grant stands, else the newest.
        let shown = mine.iter().rev().find(|c| c.is_active()).or(mine.last());
        let none = ConnectionsStatus {
            provider: p.to_string(),
            configured: listed.configured,
            connected: false,
            status: None,
            scope: None,
            expires_at: None,
            connected_at: None,
            last_refreshed_at: None,
            connection_id: None,
            connections: mine.len(),
        };
        providers.push(ProviderStatus::Connections(match shown {
            _ if !listed.configured => ConnectionsStatus { status: Some("not_configured".into()), ..none },
            Some(c) => ConnectionsStatus {
                connected: c.status != connections::STATUS_REVOKED && c.access_token.is_some(),
                status: Some(c.status.clone()),
                scope: c.scope.as_deref().map(|s| s.split_whitespace().map(str::to_string).collect()),
                expires_at: c.expires_at.map(rfc3339),
                connected_at: Some(rfc3339(c.created_at)),
                last_refreshed_at: c.last_refreshed_at.map(rfc3339),
                connection_id: Some(c.id.clone()),
                ..none
            },
            None => none,
        }));
    }
    Ok(Json(StatusBody { providers }))
}
