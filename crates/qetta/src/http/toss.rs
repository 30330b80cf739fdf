//! `/api/v1/oauth/toss/*`: the shared service token, a connection test, and identity
//! verification (본인확인), which is what "connecting Toss" means for a user.
//!
//! A verification: `POST verifications` sends Toss the request (the user's name, phone and
//! birthday encrypted under a fresh session for `USER_PERSONAL`) and answers the links that open
//! the Toss app; `GET verifications/{txId}` asks Toss how far the user got and, once COMPLETED,
//! fetches the result with a new session, stores the identity sealed and answers a masked
//! summary. `POST verifications/{txId}/result` fetches the result again explicitly (Toss allows
//! two result calls per txId). Browsers never see CI, DI, the full name or the birthday.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::TimeZone;
use chrono_tz::Asia::Seoul;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::http::kftc::mask_token;
use crate::http::rfc3339;
use crate::providers::toss::{TossAuthStatus, TossError, TossUser};
use crate::store::toss::{self as store, Verification};
use crate::store::users;
use crate::toss_service::{input, Request, TossServiceError, PROVIDER};

fn ip(peer: &SocketAddr) -> Option<String> {
    Some(peer.ip().to_string())
}

fn scope_list(scope: &str) -> Vec<&str> {
    let mut s: Vec<&str> = scope.split_whitespace().collect();
    s.sort_unstable();
    s
}

// ---------------------------------------------------------------------------------------------
// token and test

/// `GET /api/v1/oauth/toss/token`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TossToken {
    /// Always `toss`.
    pub provider: &'static str,
    /// Always `true`: one token for the whole service.
    pub shared: bool,
    pub scope: Vec<String>,
    pub token_type: String,
    pub expires_at: Option<String>,
    pub fetched_at: String,
    pub token_masked: String,
    /// only with x-qetta-service-key (audited)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub access_token: Option<String>,
}

/// The shared service token: masked for browsers, raw for the app's backend (service key).
#[utoipa::path(get, path = "/api/v1/oauth/toss/token", tag = "toss", security(("bearer" = []), ("bearer" = [], "serviceKey" = [])),
    summary = "The shared Toss service token: scope, expiry, masked token (raw with the service key)",
    responses(
    (status = 200, description = "OK", body = TossToken),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn token(State(state): State<AppState>, user: AuthUser, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Json<TossToken>, ApiError> {
    let t = state.toss()?.service_token().await?;
    let mut body = TossToken {
        provider: PROVIDER,
        shared: true,
        scope: scope_list(&t.scope).into_iter().map(str::to_string).collect(),
        token_type: t.token_type.clone(),
        expires_at: t.expires_at.map(rfc3339),
        fetched_at: rfc3339(t.fetched_at),
        token_masked: mask_token(t.token.expose_secret()),
        access_token: None,
    };
    if user.is_backend {
        // Never unaudited: no entry, no raw token.
        let entry = crate::toss_service::entry(Some(&user.id), ip(&peer), "token_fetch", "raw_token_returned", json!({"version": t.version}));
        crate::audit::require(&state.db, entry, state.clock.now()).await?;
        body.access_token = Some(t.token.expose_secret().to_string());
    }
    Ok(Json(body))
}

/// `POST /api/v1/oauth/toss/test`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TossTest {
    pub ok: bool,
    /// `token` (getting a token failed), `api` (the authenticated call failed) or `done`.
    pub step: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub provider_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
}

/// Gets a token if needed and makes one harmless authenticated call.
#[utoipa::path(post, path = "/api/v1/oauth/toss/test", tag = "toss", summary = "Get a token if needed and make one harmless call: {ok, step, provider_code?, latency_ms}",
    responses((status = 200, description = "OK", body = TossTest)))]
pub async fn test(State(state): State<AppState>, user: AuthUser, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Json<TossTest>, ApiError> {
    let o = state.toss()?.test().await?;
    let detail = json!({"step": o.step, "provider_code": o.provider_code, "latency_ms": o.latency_ms});
    state.toss()?.audit(Some(&user.id), ip(&peer), "test", if o.ok { "ok" } else { "failed" }, detail).await;
    Ok(Json(TossTest { ok: o.ok, step: o.step, latency_ms: o.latency_ms, provider_code: o.provider_code, message: o.message }))
}

// ---------------------------------------------------------------------------------------------
// verifications

/// `POST /api/v1/oauth/toss/verifications`: parsed loosely (every field optional) so that each
/// mistake gets its own code; the document states the two shapes, [`VerificationRequest`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVerification {
    #[serde(default, deserialize_with = "super::json::not_null")]
    request_type: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    birthday: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    trigger: Option<String>,
}

fn today_in_seoul(now: i64) -> chrono::NaiveDate {
    Seoul.timestamp_opt(now, 0).single().map(|d| d.date_naive()).unwrap_or_default()
}

/// Checks the body and builds the request: every message says what to fix.
fn parse_request(body: NewVerification, now: i64) -> Result<(Request, &'static str), TossServiceError> {
    let bad = |code: &'static str, message: &str| TossServiceError::Invalid(input::InputError { code, message: message.into() });
    let kind = match body.request_type.as_deref() {
        Some("USER_PERSONAL") => "USER_PERSONAL",
        Some("USER_NONE") => "USER_NONE",
        Some(_) => return Err(bad("invalid_request_type", "request_type must be USER_PERSONAL or USER_NONE.")),
        None => return Err(bad("invalid_request_type", "request_type is required: USER_PERSONAL or USER_NONE.")),
    };
    match body.trigger.as_deref() {
        None | Some("APP_SCHEME") => {}
        Some("PUSH") => return Err(bad("invalid_trigger", "trigger PUSH is not offered: the current Toss API opens the Toss app with APP_SCHEME.")),
        Some(_) => return Err(bad("invalid_trigger", "trigger must be APP_SCHEME (the default).")),
    }
    if kind == "USER_NONE" {
        if body.name.is_some() || body.phone.is_some() || body.birthday.is_some() {
            return Err(bad("unexpected_field", "USER_NONE takes no name, phone or birthday; use USER_PERSONAL to have Toss check them."));
        }
        return Ok((Request::None, kind));
    }
    let required = |v: Option<String>, field: &str| v.ok_or_else(|| bad("missing_field", &format!("{field} is required for USER_PERSONAL.")));
    let name = input::name(&required(body.name, "name")?)?;
    let phone = input::phone(&required(body.phone, "phone")?)?;
    let birthday = input::birthday(&required(body.birthday, "birthday")?, today_in_seoul(now))?;
    Ok((Request::Personal(TossUser { name, phone, birthday }), kind))
}

/// The two request shapes of `POST /api/v1/oauth/toss/verifications` (documentation).
// Deserialize only so that utoipa reads the serde attributes; the handler parses NewVerification.
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum VerificationRequest {
    /// Toss asks the user for name, phone and birthday in its app.
    UserNone(UserNone),
    /// Toss checks the given identity.
    UserPersonal(UserPersonal),
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UserNone {
    request_type: UserNoneType,
    #[schema(nullable = false)]
    trigger: Option<Trigger>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UserPersonal {
    request_type: UserPersonalType,
    /// letters (Hangul or Latin), spaces, '·' and '-'
    #[schema(min_length = 1, max_length = 50, pattern = "^[ ·-]*[A-Za-z가-힣][A-Za-z가-힣 ·-]*$")]
    name: String,
    #[schema(pattern = "^01[016789]-?[0-9]{3,4}-?[0-9]{4}$", example = "01012345678")]
    phone: String,
    /// YYYYMMDD (a real, past date from 1900 on; the pattern lists the days every month has)
    #[schema(pattern = "^(19[0-9]{2}|20[01][0-9])-?(0[1-9]|1[0-2])-?(0[1-9]|1[0-9]|2[0-8])$", example = "19900101")]
    birthday: String,
    #[schema(nullable = false)]
    trigger: Option<Trigger>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum UserNoneType {
    #[schema(rename = "USER_NONE")]
    UserNone,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub enum UserPersonalType {
    #[schema(rename = "USER_PERSONAL")]
    UserPersonal,
}

/// How the Toss app is opened (PUSH is not offered).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub enum Trigger {
    #[schema(rename = "APP_SCHEME")]
    AppScheme,
}

/// `POST /api/v1/oauth/toss/verifications`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerificationStarted {
    pub tx_id: String,
    /// `USER_PERSONAL` or `USER_NONE`.
    pub request_type: &'static str,
    /// `requested`.
    pub status: &'static str,
    pub app_scheme: Option<String>,
    pub android_app_uri: Option<String>,
    pub ios_app_uri: Option<String>,
    pub requested_at: String,
}

#[utoipa::path(post, path = "/api/v1/oauth/toss/verifications", tag = "toss", summary = "Start an identity verification", request_body = VerificationRequest, responses(
    (status = 201, description = "OK", body = VerificationStarted),
    (status = 422, description = "invalid_request_type, invalid_trigger, unexpected_field, missing_field, invalid_name, invalid_phone, invalid_birthday, invalid_body", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn create_verification(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<NewVerification>,
) -> Result<(StatusCode, Json<VerificationStarted>), ApiError> {
    let now = state.clock.now();
    let (request, kind) = parse_request(body, now)?;
    // A JWT minted by the app's backend may name a user this service has not seen yet.
    users::ensure_external(&state.db, &user.id, now).await?;
    let r = match state.toss()?.request(&request).await {
        Ok(r) => r,
        Err(e) => {
            let detail = json!({"request_type": kind, "error": e.api_code(), "provider_code": e.provider_code()});
            state.toss()?.audit(Some(&user.id), ip(&peer), "verification_request", "failed", detail).await;
            return Err(e.into());
        }
    };
    drop(request);
    let requested_at = r.requested_dt.timestamp();
    store::insert_verification(
        &state.db,
        &Verification {
            tx_id: r.tx_id.clone(),
            user_id: user.id.clone(),
            request_type: kind.into(),
            status: store::REQUESTED.into(),
            requested_at,
            completed_at: None,
            result_calls: 0,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    state.toss()?.audit(Some(&user.id), ip(&peer), "verification_request", "requested", json!({"tx_id": r.tx_id, "request_type": kind})).await;
    Ok((
        StatusCode::CREATED,
        Json(VerificationStarted {
            tx_id: r.tx_id,
            request_type: kind,
            status: store::REQUESTED,
            app_scheme: r.app_scheme,
            android_app_uri: r.android_app_uri,
            ios_app_uri: r.ios_app_uri,
            requested_at: rfc3339(requested_at),
        }),
    ))
}

fn valid_tx_id(tx_id: &str) -> bool {
    (1..=64).contains(&tx_id.len()) && tx_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The verification if it is the caller's; another user's txId is as unknown as a made-up one.
async fn own_verification(state: &AppState, user_id: &str, tx_id: &str) -> Result<Verification, ApiError> {
    if !valid_tx_id(tx_id) {
        return Err(ApiError::invalid("invalid_tx_id", "txId must be the tx_id a verification request returned."));
    }
    store::get_verification(&state.db, tx_id, user_id).await?.ok_or_else(|| ApiError::NotFound("No such verification among yours.".into()))
}

/// A verification as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TossVerification)]
pub struct VerificationBody {
    pub tx_id: String,
    /// `USER_PERSONAL` or `USER_NONE`.
    pub request_type: String,
    /// `requested`, `in_progress`, `completed` or `expired`.
    pub status: String,
    pub requested_at: String,
    pub completed_at: Option<String>,
    /// How many times the result was fetched (Toss allows two).
    pub result_calls: i64,
    pub verified: bool,
    /// Once completed: the verified identity, masked (`{name_masked, birth_year, gender,
    /// nationality, age_group, verified_at, tx_id}`).
    #[schema(value_type = Option<Object>)]
    pub identity: Option<Value>,
}

async fn verification_body(state: &AppState, v: &Verification) -> Result<VerificationBody, ApiError> {
    let identity = match store::get_identity(&state.db, &v.user_id).await? {
        Some(i) if i.tx_id == v.tx_id => Some(state.toss()?.identity_summary(&i)?),
        _ => None,
    };
    Ok(VerificationBody {
        tx_id: v.tx_id.clone(),
        request_type: v.request_type.clone(),
        status: v.status.clone(),
        requested_at: rfc3339(v.requested_at),
        completed_at: v.completed_at.map(rfc3339),
        result_calls: v.result_calls,
        verified: identity.is_some(),
        identity,
    })
}

/// Toss status calls per txId: at most one per this many seconds (see [`get_verification`]).
pub const STATUS_POLL_WINDOW_SECS: i64 = 3;

#[utoipa::path(get, path = "/api/v1/oauth/toss/verifications/{tx_id}", tag = "toss", summary = "Status; once completed, the masked verified identity",
    params(crate::http::openapi::TxIdPath), responses(
    (status = 200, description = "OK", body = VerificationBody),
    (status = 404, description = "not_found: not one of yours", body = ErrorBody),
    (status = 422, description = "invalid_tx_id", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn get_verification(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tx_id): Path<String>,
) -> Result<Json<VerificationBody>, ApiError> {
    let mut v = own_verification(&state, &user.id, &tx_id).await?;
    // Final states need no call to Toss (and a result already fetched is not fetched again).
    if v.status == store::EXPIRED || (v.status == store::COMPLETED && v.result_calls > 0) {
        return Ok(Json(verification_body(&state, &v).await?));
    }
    let now = state.clock.now();
    // A busy page (several tabs, a tight polling loop) must not multiply calls to Toss: at most
    // one status call per txId per STATUS_POLL_WINDOW_SECS window; other polls in the window
    // answer the status stored by the last call. The count lives in the shared state: in Redis
    // when configured (so it holds across replicas), otherwise in this process (each replica
    // then calls at most once per window). Fixed windows: two calls can fall either side of a
    // window boundary.
    let (polls, _) = state.shared.hit(&format!("toss_status:{}", v.tx_id), STATUS_POLL_WINDOW_SECS, now).await?;
    if polls > 1 {
        return Ok(Json(verification_body(&state, &v).await?));
    }
    let status = state.toss()?.status(&v.tx_id).await?;
    let new_status = match status.status {
        TossAuthStatus::Requested => store::REQUESTED,
        TossAuthStatus::InProgress => store::IN_PROGRESS,
        TossAuthStatus::Completed => store::COMPLETED,
        TossAuthStatus::Expired => store::EXPIRED,
        // An unknown status is treated as still pending.
        TossAuthStatus::Unknown => v.status.as_str(),
    }
    .to_string();
    if new_status != v.status {
        store::set_verification_status(&state.db, &v.tx_id, &new_status, None, now).await?;
        v.status = new_status;
    }
    if v.status == store::COMPLETED {
        return fetch_result(&state, &user, &peer, v).await;
    }
    Ok(Json(verification_body(&state, &v).await?))
}

/// Fetches the result again (Toss allows two result calls per txId, within 60 minutes of
/// completion).
#[utoipa::path(post, path = "/api/v1/oauth/toss/verifications/{tx_id}/result", tag = "toss", summary = "Fetch the result again explicitly (Toss allows two)",
    params(crate::http::openapi::TxIdPath), responses(
    (status = 200, description = "OK", body = VerificationBody),
    (status = 404, description = "not_found: not one of yours", body = ErrorBody),
    (status = 422, description = "invalid_tx_id", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn fetch_result_route(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tx_id): Path<String>,
) -> Result<Json<VerificationBody>, ApiError> {
    let v = own_verification(&state, &user.id, &tx_id).await?;
    fetch_result(&state, &user, &peer, v).await
}

async fn fetch_result(state: &AppState, user: &AuthUser, peer: &SocketAddr, mut v: Verification) -> Result<Json<VerificationBody>, ApiError> {
    let now = state.clock.now();
    let result = match state.toss()?.result(&v.tx_id).await {
        Ok(r) if r.tx_id == v.tx_id => r,
        Ok(_) => {
            state.toss()?.audit(Some(&user.id), ip(peer), "verification_result", "failed", json!({"tx_id": v.tx_id, "error": "tx_id_mismatch"})).await;
            return Err(ApiError::Upstream {
                code: "upstream_invalid",
                message: "Toss answered the result of another verification.".into(),
                provider_code: None,
            });
        }
        Err(e) => {
            if matches!(e, TossServiceError::Toss(TossError::Expired)) {
                store::set_verification_status(&state.db, &v.tx_id, store::EXPIRED, None, now).await?;
            }
            let detail = json!({"tx_id": v.tx_id, "error": e.api_code(), "provider_code": e.provider_code()});
            state.toss()?.audit(Some(&user.id), ip(peer), "verification_result", "failed", detail).await;
            return Err(e.into());
        }
    };
    let identity = state.toss()?.seal_identity(&user.id, &result, now);
    drop(result);
    let completed_at = v.completed_at.unwrap_or(now);
    // The identity, the count and (on the first result) the `verification.completed` event are
    // written together: the event goes out if and only if the result is stored.
    let mut w = state.db.begin_write().await?;
    let work = async {
        store::upsert_identity(&mut *w.tx, &identity).await?;
        let calls = store::add_result_call(&mut *w.tx, &v.tx_id, completed_at, now).await?;
        if calls == 1 {
            let event = crate::events::Event::VerificationCompleted {
                user_id: user.id.clone(),
                provider: PROVIDER.into(),
                tx_id: v.tx_id.clone(),
                request_type: v.request_type.clone(),
                status: store::COMPLETED.into(),
            };
            crate::events::enqueue_in(&mut w, &event, now).await?;
        }
        Ok(calls)
    }
    .await;
    v.result_calls = w.finish(work).await?;
    state.webhooks.wake();
    v.status = store::COMPLETED.into();
    v.completed_at = Some(completed_at);
    state
        .toss()?
        .audit(
            Some(&user.id),
            ip(peer),
            "verification_result",
            "verified",
            json!({"tx_id": v.tx_id, "request_type": v.request_type, "result_calls": v.result_calls}),
        )
        .await;
    Ok(Json(verification_body(state, &v).await?))
}

// ---------------------------------------------------------------------------------------------
// disconnect and status

/// `DELETE /api/v1/oauth/toss/disconnect`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TossDisconnected {
    pub disconnected: bool,
    /// Always `toss`.
    pub provider: &'static str,
    pub identity_forgotten: bool,
    pub verifications_deleted: u64,
}

/// Forgets the user's verified identity and their verifications.
#[utoipa::path(delete, path = "/api/v1/oauth/toss/disconnect", tag = "toss", summary = "Forget the caller's verified identity", responses(
    (status = 200, description = "OK", body = TossDisconnected),
    (status = 404, description = "not_found: nothing to forget", body = ErrorBody),
    (status = 503, description = "audit_unavailable", body = ErrorBody),
))]
pub async fn disconnect(State(state): State<AppState>, user: AuthUser, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Json<TossDisconnected>, ApiError> {
    // Works while Toss is disabled too: forgetting a user's identity never needs Toss. The data
    // goes together with the entry that records it, or not at all.
    let now = state.clock.now();
    let mut w = state.db.begin_write().await?;
    let work = async {
        let forgot = store::delete_identity(&mut *w.tx, &user.id).await?;
        let deleted = store::delete_verifications_for_user(&mut *w.tx, &user.id).await?;
        if forgot || deleted > 0 {
            let entry = crate::audit::stamp(crate::toss_service::entry(
                Some(&user.id),
                ip(&peer),
                "disconnect",
                "ok",
                json!({"identity_forgotten": forgot, "verifications_deleted": deleted}),
            ));
            crate::store::audit::append_in(&mut w, &entry, now).await?;
        }
        Ok((forgot, deleted))
    }
    .await;
    let (forgot, deleted) = match w.finish(work).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "Toss disconnect not recorded: refused");
            return Err(ApiError::AuditUnavailable);
        }
    };
    if !forgot && deleted == 0 {
        return Err(ApiError::NotFound("Toss is not connected: there is no verified identity to forget.".into()));
    }
    Ok(Json(TossDisconnected { disconnected: true, provider: PROVIDER, identity_forgotten: forgot, verifications_deleted: deleted }))
}

/// The Toss entry of `GET /api/v1/oauth/status`: connected = identity verified.
/// Toss's entry of `GET /api/v1/oauth/status`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TossStatus {
    /// Always `toss`.
    pub provider: &'static str,
    pub configured: bool,
    /// The user's identity is verified.
    pub connected: bool,
    /// `active` once verified; `not_configured` when Toss is disabled; else `null`.
    pub status: Option<&'static str>,
    /// The shared service token's scopes.
    pub scope: Option<Vec<String>>,
    pub expires_at: Option<String>,
    /// When the identity was verified.
    pub connected_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    pub verified: bool,
    /// The verified identity, masked (`{name_masked, birth_year, gender, nationality, age_group, verified_at, tx_id}`).
    #[schema(value_type = Option<Object>)]
    pub identity: Option<Value>,
    /// The last `POST /api/v1/oauth/toss/test`: `{ok, step, latency_ms, at, provider_code?}`.
    #[schema(value_type = Option<Object>)]
    pub last_test: Option<Value>,
}

pub async fn status_entry(state: &AppState, user_id: &str) -> Result<TossStatus, ApiError> {
    let Ok(toss) = state.toss() else {
        return Ok(TossStatus {
            provider: PROVIDER,
            configured: false,
            connected: false,
            status: Some("not_configured"),
            scope: None,
            expires_at: None,
            connected_at: None,
            last_refreshed_at: None,
            verified: false,
            identity: None,
            last_test: None,
        });
    };
    let (identity, token, last_test) = toss.status_of(user_id).await?;
    let summary = match &identity {
        Some(i) => Some(toss.identity_summary(i)?),
        None => None,
    };
    let last_test = last_test.map(|t| {
        let mut v = json!({"ok": t.ok, "step": t.step, "latency_ms": t.latency_ms, "at": rfc3339(t.at)});
        if let Some(pc) = t.provider_code {
            v["provider_code"] = json!(pc);
        }
        v
    });
    Ok(TossStatus {
        provider: PROVIDER,
        configured: true,
        connected: identity.is_some(),
        status: identity.as_ref().map(|_| "active"),
        scope: token.as_ref().map(|t| scope_list(&t.scope).into_iter().map(str::to_string).collect()),
        expires_at: token.as_ref().and_then(|t| t.expires_at).map(rfc3339),
        connected_at: identity.as_ref().map(|i| rfc3339(i.verified_at)),
        last_refreshed_at: token.as_ref().map(|t| rfc3339(t.updated_at)),
        verified: identity.is_some(),
        identity: summary,
        last_test,
    })
}
