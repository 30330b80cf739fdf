//! `POST /api/v1/auth/register`, `POST /api/v1/auth/login` and `DELETE /api/v1/auth/me`.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::{account, lockout, password, AuthUser};
use crate::error::ApiError;
use crate::store::users::{self, User};

#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub struct DeleteAccount {
    password: Option<String>,
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

pub async fn register(State(state): State<AppState>, ApiJson(body): ApiJson<Credentials>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let email = password::registrable_email(&body.email)?;
    password::check_policy(&body.password, &email)?;
    let hash = state.hasher.hash(body.password).await?;
    let user = users::create(&state.db, &email, &hash, state.clock.now()).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => ApiError::conflict("email_taken", "An account with this email already exists; sign in instead."),
        other => other.into(),
    })?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(session(&state, &user))))
}

/// Checks `password` against `user` (`None`: no such account, still one hash) for an attempt
/// already counted. `Ok(true)`: the right password of an existing account.
async fn check_counted(state: &AppState, attempt: lockout::Attempt<'_>, user: Option<&User>, password: String) -> Result<bool, ApiError> {
    match state.hasher.verify(password, user.map(|u| u.password_hash.clone())).await {
        Ok(true) if user.is_some() => {
            attempt.succeeded().await;
            Ok(true)
        }
        Ok(_) => {
            attempt.failed();
            Ok(false)
        }
        Err(e) => {
            attempt.not_checked().await;
            Err(e.into())
        }
    }
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Value>, ApiError> {
    // An email that cannot be valid cannot have an account; answer like any wrong login.
    let email = password::normalize_email(&body.email).unwrap_or_default();
    // Counted before anything is looked up or checked.
    let attempt = lockout::begin(&state, &email, peer.ip()).await?;
    let user = match if email.is_empty() { Ok(None) } else { users::find_by_email(&state.db, &email).await } {
        Ok(u) => u,
        Err(e) => {
            attempt.not_checked().await;
            return Err(e.into());
        }
    };
    match (check_counted(&state, attempt, user.as_ref(), body.password).await?, user) {
        (true, Some(user)) => Ok(Json(session(&state, &user))),
        _ => Err(ApiError::Unauthorized("The email or password is wrong.".into())),
    }
}

/// Deletes the caller's account. A registered user confirms with their password; the app's
/// backend (right `x-qetta-service-key`) needs none.
pub async fn delete_me(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    body: Option<ApiJson<DeleteAccount>>,
) -> Result<Json<Value>, ApiError> {
    let given = body.and_then(|ApiJson(b)| b.password);
    if !user.is_backend {
        let registered = users::find_by_id(&state.db, &user.id).await?.filter(User::has_password);
        let Some(registered) = registered else {
            return Err(ApiError::Forbidden(
                "This account was created by your app's backend: delete it through the backend (with x-qetta-service-key).".into(),
            ));
        };
        let Some(pw) = given else {
            return Err(ApiError::invalid("password_required", "Confirm the deletion with your password: {\"password\": \"...\"}."));
        };
        let attempt = lockout::begin(&state, &registered.email, peer.ip()).await?;
        if !check_counted(&state, attempt, Some(&registered), pw).await? {
            return Err(ApiError::Forbidden("The password is wrong.".into()));
        }
    }
    let removed = account::delete(&state, &user.id, user.is_backend, Some(peer.ip().to_string())).await?;
    Ok(Json(json!({"deleted": true, "user_id": user.id, "removed": removed})))
}
