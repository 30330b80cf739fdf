//! `POST /api/v1/auth/register`, `POST /api/v1/auth/login` and `DELETE /api/v1/auth/me`.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::{account, lockout, password, AuthUser};
use crate::error::{ApiError, ErrorBody};
use crate::store::users::{self, User};

/// `POST /api/v1/auth/register`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// Normalised with Unicode NFKC, trimmed and lower-cased; invisible or format characters
    /// (zero-width, BOM, bidi controls) are refused with 422 invalid_email; the domain
    /// external.invalid is reserved
    #[schema(format = "email", max_length = 254)]
    email: String,
    /// 10–128 characters with a letter (Latin or Hangul) and something else (the pattern), not
    /// the email or containing its local part (4+ characters), not one of the built-in common
    /// passwords (compared case-insensitively): 422 weak_password
    #[schema(min_length = 10, max_length = 128, pattern = "^(.*[A-Za-z가-힣].*[^A-Za-z가-힣].*|.*[^A-Za-z가-힣].*[A-Za-z가-힣].*)$")]
    password: String,
}

/// `POST /api/v1/auth/login`: the same fields as [`Credentials`], with the limits of sign-in
/// (no password policy: a wrong one is just wrong).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LoginCredentials {
    /// Normalised with Unicode NFKC, trimmed and lower-cased; invisible or format characters
    /// (zero-width, BOM, bidi controls) are refused with 422 invalid_email
    #[schema(format = "email", max_length = 254)]
    email: String,
    #[schema(min_length = 10, max_length = 128)]
    password: String,
}

/// `DELETE /api/v1/auth/me`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeleteAccount {
    #[schema(max_length = 128)]
    password: Option<String>,
}

/// A signed-in session: the answer of register and login.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Session {
    /// The JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_at: String,
    pub user: SessionUser,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub created_at: String,
}

/// `DELETE /api/v1/auth/me`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountDeleted {
    /// Always `true`.
    pub deleted: bool,
    pub user_id: String,
    /// What went: `{connections: [{provider, connection_id, unlink}], toss: {identity_forgotten,
    /// verifications_deleted}}`.
    #[schema(value_type = Object)]
    pub removed: Value,
}

fn session(state: &AppState, user: &User) -> Session {
    let (token, exp) = state.jwt.issue(&user.id, Some(&user.email), state.clock.now());
    Session {
        token,
        token_type: "Bearer",
        expires_at: crate::http::rfc3339(exp),
        user: SessionUser { id: user.id.clone(), email: user.email.clone(), created_at: crate::http::rfc3339(user.created_at) },
    }
}

/// Create a local user; returns a JWT
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", security(()), request_body = Credentials, responses(
    (status = 201, description = "{token, token_type, expires_at, user}", body = Session),
    (status = 409, description = "email_taken", body = ErrorBody),
    (status = 422, description = "invalid_email or weak_password (or invalid_body: the wrong shape)", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::Busy),
))]
pub async fn register(State(state): State<AppState>, ApiJson(body): ApiJson<Credentials>) -> Result<(StatusCode, Json<Session>), ApiError> {
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

/// Sign in; returns a JWT (429 after repeated failures)
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()), request_body = LoginCredentials, responses(
    (status = 200, description = "{token, token_type, expires_at, user}", body = Session),
    (status = 401, description = "unauthorized: wrong email or password", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::Busy),
))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<Session>, ApiError> {
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

/// Delete the caller's account: connections unlinked (KFTC, best effort) and forgotten, Toss identity and verifications forgotten, audit trail kept; afterwards every JWT for this user id answers 401
///
/// A registered user confirms with their password; the app's backend (right
/// `x-qetta-service-key`) needs none.
#[utoipa::path(delete, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = []), ("bearer" = [], "serviceKey" = [])),
    request_body(content = Option<DeleteAccount>, description = "A registered user confirms with the password (checked under the sign-in limits). The app's backend, sending the right x-qetta-service-key, sends no body."),
    responses(
        (status = 200, description = "{deleted, user_id, removed: {connections: [{provider, connection_id, unlink}], toss: {identity_forgotten, verifications_deleted}}}", body = AccountDeleted),
        (status = 401, description = "unauthorized: no valid JWT, a wrong service key, or the account is already deleted", body = ErrorBody),
        (status = 403, description = "forbidden: wrong password, or a backend-minted user without the service key", body = ErrorBody),
        (status = 422, description = "password_required", body = ErrorBody),
        (status = 503, response = crate::http::openapi::responses::Busy),
    ))]
pub async fn delete_me(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    body: Option<ApiJson<DeleteAccount>>,
) -> Result<Json<AccountDeleted>, ApiError> {
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
    Ok(Json(AccountDeleted { deleted: true, user_id: user.id, removed }))
}
