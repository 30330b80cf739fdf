//! Naver Login simulator (docs/oauth-providers.md Part N).
//!
//! Under one sandbox base: nid (`/oauth2.0/authorize`, `/oauth2.0/token`, `/oauth2.0/revoke`,
//! the OIDC path `/oauth2/authorize`, `/oauth2/token`, `/oauth2/jwks`,
//! `/.well-known/openid-configuration`) and openapi (`/v1/nid/me`, `/v1/nid/verify`).

pub mod api;
pub mod auth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::clock::SandboxClock;
use crate::config::{NaverConfig, SandboxConfig};
use crate::control::{self, Simulator};
use crate::faults::{lock, FaultKind, FaultSettings, Faults, Provider};
use crate::oidc::KeyRing;
use crate::social;
use crate::stats::Stats;

#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub user: String,
    pub challenge: Option<String>,
    pub nonce: Option<String>,
    /// Issued on the OIDC path (`/oauth2/authorize`); exchanged only there.
    pub oidc: bool,
    pub auth_time: i64,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub user: String,
    pub expires_at: DateTime<Utc>,
    pub force_expired: bool,
    pub revoked: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    pub user: String,
    pub client_id: String,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Default)]
pub(crate) struct NaverState {
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    /// Persons connected to the app ("연결된 서비스"), with the time of first consent.
    pub links: HashMap<String, DateTime<Utc>>,
}

impl NaverState {
    /// N6: revocation kills the tokens at once and the link disappears (next login asks for
    /// consent again). Every token of the person for this app goes.
    pub fn unlink(&mut self, user: &str) {
        self.links.remove(user);
        self.access.values_mut().filter(|t| t.user == user).for_each(|t| t.revoked = true);
        self.refresh.values_mut().filter(|t| t.user == user).for_each(|t| t.revoked = true);
    }

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

/// An OAuth error of the token endpoints: `{"error", "error_description"}`. On the classic
/// endpoint it comes with HTTP 200 (N3 [O], D1); on the OIDC endpoint with `status` [U].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NaverOAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl NaverOAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
    /// The answer on the classic (`/oauth2.0/token`, HTTP 200) or OIDC (`/oauth2/token`) path.
    pub fn response(&self, oidc_path: bool) -> Response {
        let status = if oidc_path { self.status } else { StatusCode::OK };
        crate::oidc::no_store_json(status, self.body())
    }
}

/// The Naver simulator.
pub struct NaverSim {
    pub(crate) config: NaverConfig,
    pub(crate) seed: u64,
    pub(crate) clock: SandboxClock,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    pub(crate) keys: KeyRing,
    state: Mutex<NaverState>,
}

impl NaverSim {
    pub fn new(config: &SandboxConfig, clock: SandboxClock) -> Self {
        let faults = FaultSettings { latency_ms: config.faults.latency_ms, error_rate: config.faults.error_rate, error: config.faults.naver_error.clone() };
        Self {
            config: config.naver.clone(),
            seed: config.seed,
            clock,
            faults: Faults::new(Provider::Naver, faults, config.seed.wrapping_add(3)),
            stats: Stats::default(),
            keys: KeyRing::new(2),
            state: Mutex::new(NaverState::default()),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, NaverState> {
        lock(&self.state)
    }

    /// N5/D15: per-application (pairwise) id, a 43-character base64url string for apps created
    /// since 2021-05; derived from the seed and the client id. Also the ID-token `sub` [U].
    pub fn user_id(&self, person: &str) -> String {
        let b = social::derive(self.seed, &format!("naver\0{}", self.config.client_id), person);
        B64URL.encode(b)
    }
}

impl Simulator for NaverSim {
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
        *self.state() = NaverState::default();
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
                    "naver_id": self.user_id(p.id),
                    "email": p.email,
                    "declines": p.declines,
                    "linked": st.links.contains_key(p.id),
                })
            })
            .collect();
        json!({ "client_id": self.config.client_id, "users": users, "signing_kid": self.keys.current_kid() })
    }
}

async fn api_middleware(State(sim): State<Arc<NaverSim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    sim.stats.call(&path);
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
        Some(FaultKind::Code { code, .. }) => {
            if path.starts_with("/v1/nid/") {
                // N5: `500` internal error in the profile envelope.
                (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "resultcode": "500", "message": "Internal Server Error" }))).into_response()
            } else {
                let status = if code == "temporarily_unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
                let error: &'static str = if code == "temporarily_unavailable" { "temporarily_unavailable" } else { "server_error" };
                let err = NaverOAuthError::new(status, error, "sandbox injected fault");
                // Classic token endpoint: HTTP 200 like its other errors (N3, D1).
                err.response(path != "/oauth2.0/token")
            }
        }
    }
}

async fn count_only(State(sim): State<Arc<NaverSim>>, req: Request, next: Next) -> Response {
    sim.stats.call(req.uri().path());
    next.run(req).await
}

/// With OIDC off the `/oauth2/*` path and the OIDC documents do not exist.
async fn oidc_gate(State(sim): State<Arc<NaverSim>>, req: Request, next: Next) -> Response {
    if sim.config.oidc {
        next.run(req).await
    } else {
        (StatusCode::NOT_FOUND, "OIDC is switched off in this sandbox (QETTA_SANDBOX_NAVER_OIDC)").into_response()
    }
}

async fn method_not_allowed() -> Response {
    NaverOAuthError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "method not allowed").response(true)
}

async fn rotate_keys(State(sim): State<Arc<NaverSim>>, body: Bytes) -> Response {
    crate::kakao::rotate(&sim.keys, &body)
}

pub fn router(sim: Arc<NaverSim>) -> Router {
    let oidc_api = Router::new()
        .route("/oauth2/token", post(auth::token_oidc))
        .route("/oauth2/jwks", get(api::jwks))
        .route("/.well-known/openid-configuration", get(api::discovery))
        .route_layer(middleware::from_fn_with_state(sim.clone(), oidc_gate));
    let api = Router::new()
        // N3/D10: the classic token endpoint answers GET and POST.
        .route("/oauth2.0/token", get(auth::token_classic).post(auth::token_classic))
        .route("/oauth2.0/revoke", post(auth::revoke))
        .route("/v1/nid/me", get(api::me).post(api::me))
        .route("/v1/nid/verify", get(api::verify).post(api::verify))
        .merge(oidc_api)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_middleware))
        .with_state(sim.clone());
    let oidc_pages = Router::new()
        .route("/oauth2/authorize", get(auth::authorize_oidc_get).post(auth::authorize_oidc_post))
        .route_layer(middleware::from_fn_with_state(sim.clone(), oidc_gate));
    let pages = Router::new()
        .route("/oauth2.0/authorize", get(auth::authorize_get).post(auth::authorize_post))
        .merge(oidc_pages)
        .route_layer(middleware::from_fn_with_state(sim.clone(), count_only))
        .with_state(sim.clone());
    let extra_control = Router::new().route("/_sandbox/rotate-keys", post(rotate_keys)).with_state(sim.clone());
    Router::new().merge(api).merge(pages).merge(extra_control).merge(control::router(sim))
}
