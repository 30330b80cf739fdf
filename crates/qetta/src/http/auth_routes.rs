//! `POST /api/v1/auth/register` and `POST /api/v1/auth/login`.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::password::{self, CredentialError};
use crate::error::ApiError;
use crate::store::users::{self, User};

#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        let code = match e {
            CredentialError::BadEmail => "invalid_email",
            _ => "weak_password",
        };
        ApiError::invalid(code, e.to_string())
    }
}

fn session(state: &AppState, user: &User) -> Value {
    let (token, exp) = state.jwt.issue(&user.id, Some(&user.email), state.clock.now());
    json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": crate::http::rfc3339(exp),
        "user": { "id": user.id, "email": user.email, "created_at": crate::http::rfc3339(user.created_at) },
    })
}

/// Hashing is CPU-heavy: keep it off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

pub async fn register(State(state): State<AppState>, ApiJson(body): ApiJson<Credentials>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let email = password::normalize_email(&body.email)?;
    password::check_policy(&body.password, &email)?;
    let pw = body.password;
    let hash = blocking(move || password::hash(&pw)).await?.map_err(|e| ApiError::internal(anyhow::anyhow!("argon2: {e}")))?;
    let user = users::create(&state.db, &email, &hash, state.clock.now()).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => ApiError::conflict("email_taken", "An account with this email already exists; sign in instead."),
        other => other.into(),
    })?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(session(&state, &user))))
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    // An email that cannot be valid cannot have an account; answer like any wrong login.
    let email = password::normalize_email(&body.email).unwrap_or_default();
    // Failed sign-ins are counted per email and per client IP (which may be shared by many
    // users, so it gets four times the allowance), in shared counters when Redis is set.
    let window = state.config.login_lockout.as_secs().max(1) as i64;
    let max = state.config.login_max_failures as i64;
    let keys = [(format!("login-fail:email:{email}"), max), (format!("login-fail:ip:{}", peer.ip()), max * 4)];
    for (key, limit) in &keys {
        let (failures, reset_in) = state.shared.count(key, window, now).await?;
        if failures >= *limit {
            return Err(ApiError::TooManyRequests {
                code: "too_many_attempts",
                message: "Too many failed sign-in attempts; try again later.".into(),
                retry_after_secs: reset_in as u64,
            });
        }
    }
    let user = if email.is_empty() { None } else { users::find_by_email(&state.db, &email).await? };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let pw = body.password;
    let ok = blocking(move || password::verify(&pw, stored.as_deref())).await?;
    match (ok, user) {
        (true, Some(user)) => {
            state.shared.clear(&keys[0].0, window, now).await?;
            Ok(Json(session(&state, &user)))
        }
        _ => {
            for (key, _) in &keys {
                state.shared.hit(key, window, now).await?;
            }
            Err(ApiError::Unauthorized("The email or password is wrong.".into()))
        }
    }
}
