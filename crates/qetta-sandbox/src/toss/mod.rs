//! Toss Certification (토스인증 본인확인) simulator (SPEC Part B).
//!
//! Paths relative to the Toss base: `POST /token` (the OAuth host in real life),
//! `POST /api/v2/sign/user/auth/id/{request,status,result}`, the legacy
//! `POST /api/v2/sign/user/auth/{request,status,result}`, `POST /api/v1/certificate/validate`,
//! the simulated Toss app (`/_sandbox/app/...`) and the control API (`/_sandbox/...`).

pub mod app_page;
pub mod auth;
pub mod crypto;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::clock::SandboxClock;
use crate::config::{SandboxConfig, TossConfig};
use crate::control::{self, Simulator};
use crate::faults::{lock, FaultKind, FaultSettings, Faults, Provider};
use crate::stats::Stats;
use crypto::RsaKeys;

/// The fictitious person the Toss test environment returns (SPEC B2.1, B11.7).
pub mod test_person {
    pub const NAME: &str = "김토스";
    pub const BIRTHDAY: &str = "19930324";
    pub const GENDER: &str = "FEMALE";
    pub const NATIONALITY: &str = "LOCAL";
    pub const AGE_GROUP: &str = "ADULT";
    /// Not in the test-person table of the docs (SPEC E12); a fixed fictitious number.
    pub const PHONE: &str = "01000000000";
    /// `CI0110000000001…` padded to 88 characters (the docs show only the prefix).
    pub fn ci() -> String {
        format!("{:0<86}==", "CI0110000000001")
    }
    /// `DI0110000000001…` padded to 88 characters.
    pub fn di() -> String {
        format!("{:0<86}==", "DI0110000000001")
    }
}

/// A Toss error answer: HTTP status + FAIL envelope (SPEC B1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {reason}")]
pub struct TossError {
    pub status: StatusCode,
    pub code: String,
    pub reason: String,
}

impl TossError {
    pub fn new(status: StatusCode, code: &str, reason: &str) -> Self {
        Self { status, code: code.to_string(), reason: reason.to_string() }
    }
    /// CE1000, HTTP 401 (SPEC B11.2).
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "CE1000", "토큰이 유효하지 않습니다.")
    }
    /// Request-validation failure. SPEC B9: CE3000–CE3003 are "very likely request-validation
    /// errors" without confirmed meanings; we use CE3000 for a missing/invalid field.
    pub fn bad_field(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3000", &format!("요청 값이 올바르지 않습니다. ({field})"))
    }
    /// CE3001 for session-key / encrypted-field failures (SPEC B9 guess, see `bad_field`).
    pub fn crypto(detail: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3001", &format!("암호화 데이터를 복호화할 수 없습니다. ({detail})"))
    }
    /// CE3002 for decrypted personal data that is not valid (SPEC B9 guess).
    pub fn bad_personal(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3002", &format!("사용자 정보가 올바르지 않습니다. ({field})"))
    }
    pub fn unknown_request() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3100", "존재하지 않는 요청입니다")
    }
    pub fn not_completed() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3102", "요청이 아직 완료되지 않았습니다.")
    }
    /// SPEC B9/B11.6 [U]: result limit exceeded (third call or > 60 min after completion).
    pub fn result_limit() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3101", "결과 조회 가능 횟수 또는 시간을 초과했습니다.")
    }
    /// SPEC B9/B11.6 [U]: the verification expired.
    pub fn expired() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "CE3103", "인증 요청이 만료되었습니다.")
    }

    pub fn body(&self) -> Value {
        json!({
            "resultType": "FAIL",
            "error": { "errorType": 0, "errorCode": self.code, "reason": self.reason, "data": {}, "title": null },
            "success": null,
        })
    }
}

impl IntoResponse for TossError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// `{"resultType":"SUCCESS","success":{...}}`.
pub fn success(payload: Value) -> Response {
    Json(json!({ "resultType": "SUCCESS", "success": payload })).into_response()
}

#[derive(Clone, Debug)]
pub(crate) struct TossToken {
    pub expires_at: DateTime<Utc>,
    pub force_expired: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    UserPersonal,
    UserNone,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::UserPersonal => "USER_PERSONAL",
            RequestType::UserNone => "USER_NONE",
        }
    }
}

/// What the simulated user did in the Toss app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserAction {
    None,
    Opened,
    Approved(DateTime<Utc>),
    Declined,
}

/// Data the partner typed for USER_PERSONAL (decrypted), shown on the app page.
#[derive(Clone, Debug)]
pub(crate) struct PersonalInput {
    pub name: String,
    pub phone: String,
    pub birthday: String,
}

#[derive(Clone, Debug)]
pub(crate) struct AuthRequest {
    pub request_type: RequestType,
    pub requested_at: DateTime<Utc>,
    pub request_session_id: Option<String>,
    pub input: Option<PersonalInput>,
    pub action: UserAction,
    pub successful_results: u32,
}

/// Status of a request at a given time (SPEC B5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Requested,
    InProgress,
    Completed(DateTime<Utc>),
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "REQUESTED",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed(_) => "COMPLETED",
            Status::Expired => "EXPIRED",
        }
    }
}

pub(crate) struct TossState {
    pub tokens: HashMap<String, TossToken>,
    pub requests: HashMap<String, AuthRequest>,
}

/// The Toss simulator.
pub struct TossSim {
    pub(crate) config: TossConfig,
    pub(crate) clock: SandboxClock,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    pub(crate) keys: RsaKeys,
    state: Mutex<TossState>,
}

impl TossSim {
    /// Fails only if the configured RSA key is invalid (`SandboxConfig::from_lookup` checks it).
    pub fn new(config: &SandboxConfig, clock: SandboxClock) -> Result<Self, crypto::CryptoError> {
        let keys = RsaKeys::from_pem(&config.toss.rsa_private_key_pem)?;
        let faults = FaultSettings { latency_ms: config.faults.latency_ms, error_rate: config.faults.error_rate, error: config.faults.toss_error.clone() };
        Ok(Self {
            config: config.toss.clone(),
            clock,
            faults: Faults::new(Provider::Toss, faults, config.seed.wrapping_add(1)),
            stats: Stats::default(),
            keys,
            state: Mutex::new(TossState { tokens: HashMap::new(), requests: HashMap::new() }),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, TossState> {
        lock(&self.state)
    }

    /// Effective status of a request now: user actions, auto-complete and expiry.
    pub(crate) fn status_of(&self, r: &AuthRequest, now: DateTime<Utc>) -> Status {
        let expires_at = r.requested_at + Duration::seconds(self.config.request_ttl_secs);
        match r.action {
            UserAction::Approved(at) => return Status::Completed(at),
            UserAction::Declined => {
                // SPEC B5 has no "declined" status; a declined request cannot proceed, so it
                // reads as EXPIRED (guess, documented in the README).
                return Status::Expired;
            }
            _ => {}
        }
        if let Some(delay) = self.config.auto_complete_after_secs {
            let at = r.requested_at + Duration::seconds(delay);
            if at <= now && at < expires_at {
                return Status::Completed(at);
            }
        }
        if now >= expires_at {
            return Status::Expired;
        }
        if r.action == UserAction::Opened {
            Status::InProgress
        } else {
            Status::Requested
        }
    }

    /// KST ISO-8601 with offset, e.g. `2022-02-13T17:52:22+09:00`.
    pub(crate) fn iso(t: DateTime<Utc>) -> String {
        t.with_timezone(&crate::clock::kst()).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

impl Simulator for TossSim {
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
        *self.state() = TossState { tokens: HashMap::new(), requests: HashMap::new() };
        self.faults.reset();
        self.stats.reset();
    }
    fn expire_tokens(&self) -> usize {
        let mut st = self.state();
        st.tokens.values_mut().for_each(|t| t.force_expired = true);
        st.tokens.len()
    }
    fn users(&self) -> Value {
        json!({
            "note": "The Toss test environment returns this fictitious person for every completed verification.",
            "person": {
                "name": test_person::NAME,
                "birthday": test_person::BIRTHDAY,
                "gender": test_person::GENDER,
                "nationality": test_person::NATIONALITY,
                "ageGroup": test_person::AGE_GROUP,
                "phone": test_person::PHONE,
                "ci": test_person::ci(),
                "di": test_person::di(),
            }
        })
    }
}

async fn api_middleware(State(sim): State<Arc<TossSim>>, req: Request, next: Next) -> Response {
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
        Some(FaultKind::Code { code, .. }) => {
            // CE0xxx are provider-side failures (SPEC B9): HTTP 500 [U]; CE1000 is 401.
            let status = match code.as_str() {
                "CE1000" | "CE1001" => StatusCode::UNAUTHORIZED,
                c if c.starts_with("CE0") => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            TossError::new(status, &code, "일시적인 오류가 발생했습니다. (sandbox injected fault)").into_response()
        }
    }
}

pub fn router(sim: Arc<TossSim>) -> Router {
    let api = Router::new()
        .route("/token", post(token::token))
        .route("/api/v2/sign/user/auth/id/request", post(auth::request_id))
        .route("/api/v2/sign/user/auth/id/status", post(auth::status))
        .route("/api/v2/sign/user/auth/id/result", post(auth::result))
        .route("/api/v2/sign/user/auth/request", post(auth::request_legacy))
        .route("/api/v2/sign/user/auth/status", post(auth::status))
        .route("/api/v2/sign/user/auth/result", post(auth::result))
        .route("/api/v1/certificate/validate", post(auth::certificate_validate))
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_middleware))
        .with_state(sim.clone());
    let app = Router::new()
        .route("/_sandbox/app", get(app_page::list))
        .route("/_sandbox/app/{tx_id}", get(app_page::show).post(app_page::decide))
        .route("/_sandbox/requests", get(app_page::requests_json))
        .route("/_sandbox/requests/{tx_id}", post(app_page::control).get(app_page::request_json))
        .with_state(sim.clone());
    Router::new().merge(api).merge(app).merge(control::router(sim))
}
