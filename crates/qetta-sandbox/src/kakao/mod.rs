//! Kakao Login simulator (docs/oauth-providers.md Part K).
//!
//! Kakao has two hosts; under one sandbox base both sets of paths live side by side:
//! kauth (`/oauth/authorize`, `/oauth/token`, `/oauth/tokeninfo`, `/oauth/logout`,
//! `/.well-known/openid-configuration`, `/.well-known/jwks.json`) and kapi (`/v2/user/me`,
//! `/v1/user/access_token_info`, `/v1/user/logout`, `/v1/user/unlink`, `/v1/oidc/userinfo`).

pub mod api;
pub mod auth;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::clock::SandboxClock;
use crate::config::{KakaoConfig, SandboxConfig};
use crate::control::{self, Simulator};
use crate::faults::{lock, FaultKind, FaultSettings, Faults, Provider};
use crate::oidc::KeyRing;
use crate::social::{self, Person};
use crate::stats::Stats;

/// Consent items (scope values) the sandbox app knows (K2.1, K4).
pub const KNOWN_ITEMS: &[&str] = &[
    "profile_nickname",
    "profile_image",
    "account_email",
    "name",
    "gender",
    "age_range",
    "birthday",
    "birthyear",
    "phone_number",
    "openid",
    "talk_message",
    "friends",
];

/// The items the sandbox app asks for at every login (its console "동의 항목" settings).
pub const DEFAULT_ITEMS: &[&str] = &["profile_nickname", "profile_image", "account_email"];

#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user: String,
    pub scopes: BTreeSet<String>,
    pub challenge: Option<String>,
    pub nonce: Option<String>,
    pub id_token: bool,
    pub auth_time: i64,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub user: String,
    pub scopes: BTreeSet<String>,
    pub expires_at: DateTime<Utc>,
    pub force_expired: bool,
    pub revoked: bool,
    /// Tokens of one login (code exchange and its refreshes) share a session.
    pub session: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    pub user: String,
    pub client_id: String,
    pub scopes: BTreeSet<String>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    /// K3.3: an RT issued with an ID token brings a new ID token on refresh.
    pub id_token: bool,
    pub auth_time: i64,
    pub session: u64,
}

/// A person's connection to the app (created at first consent, removed by unlink).
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub connected_at: DateTime<Utc>,
    pub scopes: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct KakaoState {
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub links: HashMap<String, Link>,
    pub next_session: u64,
    /// Issue times of the last minute (KOE237 rate limit).
    pub issued: VecDeque<DateTime<Utc>>,
}

impl KakaoState {
    pub fn revoke_user(&mut self, user: &str) {
        self.access.values_mut().filter(|t| t.user == user).for_each(|t| t.revoked = true);
        self.refresh.values_mut().filter(|t| t.user == user).for_each(|t| t.revoked = true);
    }

    pub fn revoke_session(&mut self, session: u64) {
        self.access.values_mut().filter(|t| t.session == session).for_each(|t| t.revoked = true);
        self.refresh.values_mut().filter(|t| t.session == session).for_each(|t| t.revoked = true);
    }

    /// Keep memory bounded under load tests.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        const LIMIT: usize = 200_000;
        if self.access.len() > LIMIT {
            self.access.retain(|_, t| t.expires_at > now && !t.revoked);
        }
        if self.refresh.len() > LIMIT {
            self.refresh.retain(|_, t| t.expires_at > now && !t.revoked);
        }
        if self.codes.len() > LIMIT {
            self.codes.retain(|_, c| c.expires_at > now && !c.used);
        }
    }
}

/// A token-endpoint / authorize error (K3.5): `{"error", "error_description", "error_code"}`
/// with a 4xx status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KakaoAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub code: String,
}

impl KakaoAuthError {
    pub fn new(status: StatusCode, error: &'static str, code: &str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into(), code: code.to_string() }
    }
    /// Missing, duplicated or malformed parameter. The KOE code of a malformed request is
    /// KOE001 on the authorize page (K2.2); for the token endpoint the facts give none, we use
    /// the same [U].
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", "KOE001", description)
    }
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description, "error_code": self.code })
    }
}

impl IntoResponse for KakaoAuthError {
    fn into_response(self) -> Response {
        let mut resp = crate::oidc::no_store_json(self.status, self.body());
        if self.status == StatusCode::UNAUTHORIZED {
            // K3.5 [O]: Kakao sends WWW-Authenticate on some errors (exact value unknown [U]).
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"oauth\""));
        }
        resp
    }
}

/// A kapi error (K4, D4): `{"msg", "code": <negative int>}`.
#[derive(Clone, Debug, PartialEq)]
pub struct KakaoApiError {
    pub status: StatusCode,
    pub code: i64,
    pub msg: String,
    pub extra: Option<Value>,
}

impl KakaoApiError {
    pub fn new(code: i64, msg: impl Into<String>) -> Self {
        let status = match code {
            -401 => StatusCode::UNAUTHORIZED,
            -402 => StatusCode::FORBIDDEN,
            -9798 => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self { status, code, msg: msg.into(), extra: None }
    }
    pub fn not_exist() -> Self {
        Self::new(-401, "this access token does not exist")
    }
    pub fn expired() -> Self {
        Self::new(-401, "this access token is already expired")
    }
}

impl IntoResponse for KakaoApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "msg": self.msg, "code": self.code });
        if let (Some(Value::Object(extra)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.extend(extra);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.code == -401 {
            // K4 [C]: `WWW-Authenticate: Bearer error=invalid_token`.
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer error=invalid_token"));
        }
        resp
    }
}

/// The Kakao simulator.
pub struct KakaoSim {
    pub(crate) config: KakaoConfig,
    pub(crate) seed: u64,
    pub(crate) clock: SandboxClock,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    pub(crate) keys: KeyRing,
    state: Mutex<KakaoState>,
}

impl KakaoSim {
    pub fn new(config: &SandboxConfig, clock: SandboxClock) -> Self {
        let faults = FaultSettings { latency_ms: config.faults.latency_ms, error_rate: config.faults.error_rate, error: config.faults.kakao_error.clone() };
        Self {
            config: config.kakao.clone(),
            seed: config.seed,
            clock,
            faults: Faults::new(Provider::Kakao, faults, config.seed.wrapping_add(2)),
            stats: Stats::default(),
            keys: KeyRing::new(0),
            state: Mutex::new(KakaoState::default()),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, KakaoState> {
        lock(&self.state)
    }

    /// K4/D15: the app user id, a 64-bit Long above 2^53 (a JavaScript double loses it), derived
    /// from the seed.
    pub fn user_id(&self, person: &str) -> u64 {
        let b = social::derive(self.seed, "kakao", person);
        let n = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        (1u64 << 60) | (n & ((1u64 << 60) - 1))
    }

    pub(crate) fn person_by_id(&self, id: u64) -> Option<&'static Person> {
        social::PEOPLE.iter().find(|p| self.user_id(p.id) == id)
    }

    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }
}

impl Simulator for KakaoSim {
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
    fn clock(&self) -> &SandboxClock {
        &self.clock
    }
    fn reset(&self) {
        self.clock.reset();
        *self.state() = KakaoState::default();
        self.keys.reset();
        self.faults.reset();
        self.stats.reset();
    }
    fn expire_tokens(&self) -> usize {
        let mut st = self.state();
        st.access.values_mut().for_each(|t| t.force_expired = true);
        st.access.len()
    }
    fn users(&self) -> Value {
        let st = self.state();
        let users: Vec<Value> = social::PEOPLE
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "name_en": p.name_en,
                    "kakao_id": self.user_id(p.id),
                    "kakao_id_string": self.user_id(p.id).to_string(),
                    "email": p.email,
                    "email_verified": p.email_verified,
                    "declines": p.declines,
                    "linked": st.links.contains_key(p.id),
                    "scopes": st.links.get(p.id).map(|l| l.scopes.iter().cloned().collect::<Vec<_>>()),
                })
            })
            .collect();
        json!({ "client_id": self.config.client_id, "users": users, "signing_kid": self.keys.current_kid() })
    }
}

/// Stats + faults for provider calls (not for pages or control calls).
async fn api_middleware(State(sim): State<Arc<KakaoSim>>, req: Request, next: Next) -> Response {
    sim.stats.call(req.uri().path());
    let (latency, fault) = sim.faults.decide();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Html200) => crate::faults::html_page(),
        Some(FaultKind::Truncated) => crate::faults::truncate(next.run(req).await).await,
        Some(FaultKind::Http(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("sandbox injected fault: HTTP {}", status.as_u16())).into_response()
        }
        Some(FaultKind::Code { code, .. }) => fault_response(&code),
    }
}

/// An injected provider error: `KOE###` in the token-error shape, a negative code in the kapi
/// shape.
fn fault_response(code: &str) -> Response {
    if let Ok(n) = code.parse::<i64>() {
        let msg = match n {
            -1 => "internal error",
            -2 => "invalid parameter",
            -10 => "exceeded the quota",
            -101 => "the user is not linked to the app",
            -103 => "the account does not exist or is dormant",
            -401 => "this access token does not exist",
            -402 => "insufficient scopes",
            -9798 => "service under maintenance",
            _ => "sandbox injected fault",
        };
        return KakaoApiError::new(n, msg).into_response();
    }
    let (status, error, description) = match code {
        "KOE237" => (StatusCode::BAD_REQUEST, "invalid_request", "token request rate limit exceeded"),
        "KOE010" => (StatusCode::UNAUTHORIZED, "invalid_client", "Bad client credentials"),
        "KOE101" => (StatusCode::UNAUTHORIZED, "invalid_client", "invalid client"),
        "KOE320" | "KOE303" | "KOE322" | "KOE319" => (StatusCode::BAD_REQUEST, "invalid_grant", "sandbox injected fault"),
        "KOE009" => (StatusCode::BAD_REQUEST, "misconfigured", "sandbox injected fault"),
        "KOE003" => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "sandbox injected fault"),
        _ => (StatusCode::BAD_REQUEST, "invalid_request", "sandbox injected fault"),
    };
    KakaoAuthError::new(status, error, code, description).into_response()
}

async fn count_only(State(sim): State<Arc<KakaoSim>>, req: Request, next: Next) -> Response {
    sim.stats.call(req.uri().path());
    next.run(req).await
}

async fn method_not_allowed() -> Response {
    KakaoAuthError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "KOE001", "method not allowed").into_response()
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    keep_previous: Option<bool>,
}

/// `POST _sandbox/rotate-keys` `{"keep_previous": true}` (default true): the ID-token signing
/// key moves to the next shipped key; the old one stays in the JWKS unless `keep_previous` is
/// false (K6: keys rotate periodically).
async fn rotate_keys(State(sim): State<Arc<KakaoSim>>, body: Bytes) -> Response {
    rotate(&sim.keys, &body)
}

pub(crate) fn rotate(keys: &KeyRing, body: &Bytes) -> Response {
    let req: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return control::bad_request(format!("invalid JSON body: {e}")),
        }
    };
    let (kid, retired) = keys.rotate(req.keep_previous.unwrap_or(true));
    Json(json!({ "kid": kid, "previous_kid": retired, "jwks": keys.jwks() })).into_response()
}

pub fn router(sim: Arc<KakaoSim>) -> Router {
    let api = Router::new()
        .route("/oauth/token", post(auth::token))
        .route("/oauth/tokeninfo", post(api::id_token_info))
        .route("/.well-known/openid-configuration", get(api::discovery))
        .route("/.well-known/jwks.json", get(api::jwks))
        .route("/v2/user/me", get(api::user_me).post(api::user_me))
        .route("/v1/user/access_token_info", get(api::access_token_info))
        .route("/v1/user/logout", post(api::logout))
        .route("/v1/user/unlink", post(api::unlink))
        .route("/v1/oidc/userinfo", get(api::oidc_userinfo).post(api::oidc_userinfo))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_middleware))
        .with_state(sim.clone());
    let pages = Router::new()
        .route("/oauth/authorize", get(auth::authorize_get).post(auth::authorize_post))
        .route("/oauth/logout", get(auth::logout_with_account))
        .route_layer(middleware::from_fn_with_state(sim.clone(), count_only))
        .with_state(sim.clone());
    let extra_control = Router::new().route("/_sandbox/rotate-keys", post(rotate_keys)).with_state(sim.clone());
    Router::new().merge(api).merge(pages).merge(extra_control).merge(control::router(sim))
}
