//! The `AuthUser` extractor: every `/api/v1` route except register and login takes one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::jwt::JwtError;
use crate::app::AppState;
use crate::error::ApiError;

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
        let claims = state.jwt.verify(token).map_err(|e| match e {
            JwtError::Expired => ApiError::Unauthorized("Your session has expired; sign in again.".into()),
            JwtError::Invalid => ApiError::Unauthorized("The token is not valid.".into()),
        })?;
        let is_backend = match (&state.config.service_key, parts.headers.get(SERVICE_KEY_HEADER)) {
            (Some(expected), Some(given)) => {
                let ok: bool = given.as_bytes().ct_eq(expected.expose_secret().as_bytes()).into();
                if !ok {
                    return Err(ApiError::Unauthorized("The service key is not valid.".into()));
                }
                true
            }
            _ => false,
        };
        crate::http::rate_limit::per_user(state, &claims.sub).await?;
        Ok(AuthUser { id: claims.sub, email: claims.email, is_backend })
    }
}
