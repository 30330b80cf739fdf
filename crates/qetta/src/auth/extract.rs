//! The `AuthUser` extractor: every `/api/v1` route except register and login takes one.

use axum::extract::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::net::SocketAddr;

use super::service_key;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::users;

pub const SERVICE_KEY_HEADER: &str = "x-qetta-service-key";

/// The caller, from a valid `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub email: Option<String>,
    /// The request also carried the right `x-qetta-service-key`: it comes from the app's backend
    /// and may receive raw tokens. Always `false` when no service key is configured.
    pub is_backend: bool,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("Sign in first: send Authorization: Bearer <token>.".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("The Authorization header must be: Bearer <token>.".into()))?;
        let claims = state.jwt.verify_with_clock(token, state.clock.now())?;
        // A deleted account's tokens are all refused (one primary-key lookup).
        if users::is_deleted(&state.db, &claims.sub).await? {
            return Err(ApiError::Unauthorized("This account has been deleted.".into()));
        }
        let is_backend = match (&state.config.service_key, parts.headers.get(SERVICE_KEY_HEADER)) {
            (Some(expected), Some(given)) => {
                let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
                let path = parts.extensions.get::<axum::extract::OriginalUri>().map(|u| u.0.path().to_string()).unwrap_or_else(|| parts.uri.path().to_string());
                service_key::check(state, expected, given, ip, &claims.sub, &path).await?;
                true
            }
            _ => false,
        };
        crate::http::request_id::set_user(&claims.sub);
        crate::http::rate_limit::per_user(state, &claims.sub).await?;
        Ok(AuthUser { id: claims.sub, email: claims.email, is_backend })
    }
}

/// The app's backend on routes that belong to the app rather than to a user (webhooks): the right
/// `x-qetta-service-key` and nothing else (a user's JWT alone is refused). Without
/// `QETTA_SERVICE_KEY` configured these routes are off: 403 `service_key_not_configured`. Wrong keys
/// are throttled per IP and audited like everywhere else.
#[derive(Debug, Clone, Copy)]
pub struct AppBackend;

impl FromRequestParts<AppState> for AppBackend {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.config.service_key else {
            return Err(ApiError::Refused {
                code: "service_key_not_configured",
                message: "This route is for the app's backend, with the service key; QETTA_SERVICE_KEY is not configured on this server.".into(),
            });
        };
        let given = parts
            .headers
            .get(SERVICE_KEY_HEADER)
            .ok_or_else(|| ApiError::Unauthorized(format!("This route is for the app's backend: send the {SERVICE_KEY_HEADER} header.")))?;
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let path = parts.extensions.get::<axum::extract::OriginalUri>().map(|u| u.0.path().to_string()).unwrap_or_else(|| parts.uri.path().to_string());
        service_key::check_as(state, expected, given, ip, None, &path).await?;
        Ok(AppBackend)
    }
}
