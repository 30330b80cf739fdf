//! KFTC OpenBanking testbed simulator (SPEC Part A).
//!
//! Paths are those of the real API relative to its base URL: `/oauth/2.0/authorize`,
//! `/oauth/2.0/token`, `/v2.0/...`, plus the control API under `/_sandbox/`.

pub mod accounts;
pub mod codes;
pub mod consent_page;
pub mod data;
pub mod oauth;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::clock::SandboxClock;
use crate::config::{ConsentExpiredCode, KftcConfig, KftcQuirks, SandboxConfig};
use crate::control::{self, Simulator};
use crate::faults::{self, lock, FaultKind, FaultSettings, Faults, Provider};
use crate::stats::Stats;
use codes::{Envelope, KftcError};
use data::SandboxUser;

/// Scopes a client may request through the 3-legged flow (registered for the sandbox client).
pub const REGISTERED_SCOPES: &[&str] = &["login", "inquiry", "transfer"];

#[derive(Clone, Debug)]
pub(crate) struct AuthCode {
    pub user_id: String,
    pub scopes: BTreeSet<String>,
    pub redirect_uri: String,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    /// `None` for an `oob` (client_credentials) token.
    pub user_id: Option<String>,
    pub scopes: BTreeSet<String>,
    pub expires_at: DateTime<Utc>,
    /// Set by `/_sandbox/expire-tokens`.
    pub force_expired: bool,
    /// Set by `/v2.0/user/unlink`.
    pub revoked: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshToken {
    pub user_id: String,
    pub scopes: BTreeSet<String>,
    pub expires_at: DateTime<Utc>,
    pub spent: bool,
    pub revoked: bool,
}

/// One account registered by a user for this fintech (what user/me and account/list list).
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    pub fintech_use_num: String,
    pub registered_at: DateTime<Utc>,
    pub inquiry_agreed_at: Option<DateTime<Utc>>,
    pub transfer_agreed_at: Option<DateTime<Utc>>,
    pub inquiry_cancelled: bool,
    pub transfer_cancelled: bool,
    /// Set by `POST /_sandbox/expire-consent`; cleared by a new consent.
    pub consent_expired: bool,
}

impl Registration {
    pub fn inquiry_active(&self) -> bool {
        self.inquiry_agreed_at.is_some() && !self.inquiry_cancelled
    }
    pub fn transfer_active(&self) -> bool {
        self.transfer_agreed_at.is_some() && !self.transfer_cancelled
    }
    /// Inquiry consent ran out (its lifetime passed, or `/_sandbox/expire-consent`): SPEC A13.
    pub fn inquiry_consent_expired(&self, now: DateTime<Utc>, ttl_secs: i64) -> bool {
        self.consent_expired || self.inquiry_agreed_at.is_some_and(|t| t + chrono::Duration::seconds(ttl_secs) <= now)
    }
    /// `01` in use, `09` cancelled (SPEC A9).
    pub fn account_state(&self) -> &'static str {
        let inq = self.inquiry_agreed_at.is_some();
        let tr = self.transfer_agreed_at.is_some();
        if (inq && !self.inquiry_cancelled) || (tr && !self.transfer_cancelled) || (!inq && !tr) {
            "01"
        } else {
            "09"
        }
    }
}

pub(crate) struct KftcState {
    /// The date transactions were generated back from (see [`data`]).
    pub anchor: NaiveDate,
    pub users: Vec<SandboxUser>,
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    /// bank_tran_ids seen on the given KST day.
    pub bank_tran_ids: (NaiveDate, HashSet<String>),
    /// Registered accounts per sandbox user id (present = the user is linked to the fintech).
    pub links: HashMap<String, Vec<Registration>>,
    /// `befor_inquiry_trace_info` values handed out: value → (query fingerprint, offset, issued).
    pub traces: HashMap<String, (String, usize, DateTime<Utc>)>,
    /// How an expired consent is answered (config, or the last `/_sandbox/expire-consent`).
    pub consent_code: ConsentExpiredCode,
    pub quirks: KftcQuirks,
}

impl KftcState {
    pub fn user(&self, id: &str) -> Option<&SandboxUser> {
        self.users.iter().find(|u| u.id == id)
    }
}

/// The KFTC simulator.
pub struct KftcSim {
    pub(crate) config: KftcConfig,
    seed: u64,
    anchor: Option<NaiveDate>,
    pub(crate) clock: SandboxClock,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    state: Mutex<KftcState>,
    /// HMAC key of the JWT-shaped tokens (random per process; clients must not verify them).
    pub(crate) jwt_key: [u8; 32],
}

impl KftcSim {
    pub fn new(config: &SandboxConfig, clock: SandboxClock) -> Self {
        let faults = FaultSettings { latency_ms: config.faults.latency_ms, error_rate: config.faults.error_rate, error: config.faults.kftc_error.clone() };
        let state = Self::initial_state(&config.kftc, config.seed, config.data_anchor_date, &clock);
        let mut jwt_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut jwt_key);
        Self {
            config: config.kftc.clone(),
            seed: config.seed,
            anchor: config.data_anchor_date,
            faults: Faults::new(Provider::Kftc, faults, config.seed),
            stats: Stats::default(),
            state: Mutex::new(state),
            clock,
            jwt_key,
        }
    }

    fn initial_state(config: &KftcConfig, seed: u64, anchor: Option<NaiveDate>, clock: &SandboxClock) -> KftcState {
        let anchor = anchor.unwrap_or_else(|| clock.today_kst());
        KftcState {
            anchor,
            users: data::generate(seed, &config.client_use_code, anchor),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            bank_tran_ids: (clock.today_kst(), HashSet::new()),
            links: HashMap::new(),
            traces: HashMap::new(),
            consent_code: config.consent_expired_code,
            quirks: config.quirks,
        }
    }

    /// The state, with transactions regenerated if the sandbox clock's KST date moved past the
    /// anchor (unless the anchor is fixed by configuration). Users, accounts, fintech_use_nums and
    /// balances do not depend on the anchor, so registrations and tokens stay valid; only the
    /// history slides, so "the last 90 days" always has data in a long-running sandbox.
    pub(crate) fn state(&self) -> MutexGuard<'_, KftcState> {
        let mut st = lock(&self.state);
        if self.anchor.is_none() {
            let today = self.clock.today_kst();
            if today != st.anchor {
                st.users = data::generate(self.seed, &self.config.client_use_code, today);
                st.anchor = today;
            }
        }
        st
    }

    pub fn client_use_code(&self) -> &str {
        &self.config.client_use_code
    }

    /// The common header values of a new answer.
    pub(crate) fn envelope<'a>(&self, bank_tran_id: Option<&'a str>, bank_code_tran: &str) -> Envelope<'a> {
        let now = self.clock.now_kst();
        Envelope {
            api_tran_id: uuid::Uuid::new_v4().to_string(),
            api_tran_dtm: now.format("%Y%m%d%H%M%S%3f").to_string(),
            bank_tran_id,
            bank_tran_date: now.format("%Y%m%d").to_string(),
            bank_code_tran: bank_code_tran.to_string(),
        }
    }

    /// Sandbox users as JSON (for `/_sandbox/users` and the consent page).
    fn users_json(&self) -> Value {
        let st = self.state();
        let users: Vec<Value> = st
            .users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "name": u.name,
                    "name_en": u.name_en,
                    "user_seq_no": u.user_seq_no,
                    "user_ci": u.user_ci,
                    "linked": st.links.contains_key(&u.id),
                    "accounts": u.accounts.iter().map(|a| json!({
                        "fintech_use_num": a.fintech_use_num,
                        "bank_code_std": a.bank_code_std,
                        "bank_name": a.bank_name,
                        "account_num_masked": a.account_num_masked,
                        "account_alias": a.account_alias,
                        "product_name": a.product_name,
                        "account_type": a.account_type,
                        "balance_amt": a.balance_amt.to_string(),
                        "transaction_count": a.transactions.len(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "client_use_code": self.config.client_use_code, "users": users })
    }
}

impl Simulator for KftcSim {
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
        // The clock is shared with the Toss simulator; a reset puts it back too (documented).
        self.clock.reset();
        let fresh = Self::initial_state(&self.config, self.seed, self.anchor, &self.clock);
        *self.state() = fresh;
        self.faults.reset();
        self.stats.reset();
    }
    fn expire_tokens(&self) -> usize {
        let mut st = self.state();
        st.access.values_mut().for_each(|t| t.force_expired = true);
        st.access.len()
    }
    fn users(&self) -> Value {
        self.users_json()
    }
}

/// Stats + faults for provider API calls (not for control calls or pages).
async fn api_middleware(State(sim): State<Arc<KftcSim>>, req: Request, next: Next) -> Response {
    sim.stats.call(req.uri().path());
    let _in_flight = sim.stats.enter(req.uri().path());
    let (latency, fault) = sim.faults.decide();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Http(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("sandbox injected fault: HTTP {}", status.as_u16())).into_response()
        }
        Some(FaultKind::Html200) => faults::html_page(),
        Some(FaultKind::Truncated) => {
            // The real answer, cut in the middle: what a proxy that drops the connection leaves.
            let resp = next.run(req).await;
            faults::truncate(resp).await
        }
        Some(FaultKind::Code { code, bank_rsp_code }) => {
            let relayed = is_bank_relayed(req.uri().path());
            let bank_tran_id = relayed.then(|| query_param(req.uri().query(), "bank_tran_id").unwrap_or_default());
            let err = match (code.as_str(), bank_rsp_code) {
                ("A0002", Some(b)) => KftcError::Bank { bank_rsp_code: b },
                // FaultKind::parse only accepts codes of the catalogue, so the fallback is unused.
                (c, _) => match codes::known_code(c) {
                    Some(k) if k.starts_with('O') => KftcError::Gateway { code: k, detail: None },
                    Some(k) => KftcError::Business { code: k, detail: None },
                    None => KftcError::business("A0003"),
                },
            };
            let env = sim.envelope(bank_tran_id.as_deref(), "");
            Json(env.error(&err)).into_response()
        }
    }
}

fn is_bank_relayed(path: &str) -> bool {
    path.starts_with("/v2.0/account/balance") || path.starts_with("/v2.0/account/transaction_list") || path == "/v2.0/account/cancel"
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or("")).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `GET /oauth/2.0/token` and other wrong methods → `O0010` (SPEC A6.5).
async fn method_not_allowed() -> Response {
    Json(json!({ "rsp_code": "O0010", "rsp_message": codes::message("O0010") })).into_response()
}

pub fn router(sim: Arc<KftcSim>) -> Router {
    let api = Router::new()
        .route("/oauth/2.0/token", post(oauth::token).get(method_not_allowed))
        .route("/v2.0/user/me", get(accounts::user_me))
        .route("/v2.0/account/list", get(accounts::account_list))
        .route("/v2.0/account/balance/fin_num", get(accounts::balance))
        .route("/v2.0/account/transaction_list/fin_num", get(accounts::transaction_list))
        .route("/v2.0/user/unlink", post(accounts::unlink))
        .route("/v2.0/account/cancel", post(accounts::cancel))
        .route("/v2.0/user/close", post(accounts::close))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(sim.clone(), api_middleware))
        .with_state(sim.clone());
    let pages = Router::new()
        .route("/oauth/2.0/authorize", get(oauth::authorize_get).post(oauth::authorize_post))
        // SPEC A5.2: same parameters and callback as /authorize (account-add flow).
        .route("/oauth/2.0/authorize_account", get(oauth::authorize_account_get).post(oauth::authorize_account_post))
        .route_layer(middleware::from_fn_with_state(sim.clone(), count_only))
        .with_state(sim.clone());
    let kftc_control = Router::new()
        .route("/_sandbox/expire-consent", post(expire_consent))
        .route("/_sandbox/quirks", post(set_quirks).get(get_quirks))
        .route("/_sandbox/grants", post(oauth::seed_grants))
        .with_state(sim.clone());
    Router::new().merge(api).merge(pages).merge(kftc_control).merge(control::router(sim))
}

/// Body of `POST /_sandbox/expire-consent`: which consents end (all when `user` is missing; one
/// account with `fintech_use_num`) and how inquiries answer afterwards (`code`).
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ExpireConsent {
    user: Option<String>,
    fintech_use_num: Option<String>,
    code: Option<String>,
}

#[allow(clippy::result_large_err)]
fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| control::bad_request(format!("invalid JSON body: {e}")))
}

async fn expire_consent(State(sim): State<Arc<KftcSim>>, body: axum::body::Bytes) -> Response {
    let req: ExpireConsent = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let code = match req.code.as_deref().map(ConsentExpiredCode::parse) {
        Some(None) => return control::bad_request("code must be A0316, A0334 or 468"),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let mut st = sim.state();
    let user_id = match req.user.as_deref() {
        None => None,
        Some(u) => match st.users.iter().find(|x| x.id == u || x.user_seq_no == u) {
            Some(x) => Some(x.id.clone()),
            None => return control::bad_request(format!("no sandbox user {u:?}")),
        },
    };
    if let Some(c) = code {
        st.consent_code = c;
    }
    let mut expired = 0;
    for (uid, regs) in st.links.iter_mut() {
        if user_id.as_ref().is_some_and(|u| u != uid) {
            continue;
        }
        for r in regs.iter_mut().filter(|r| r.inquiry_active() && req.fintech_use_num.as_ref().is_none_or(|f| *f == r.fintech_use_num)) {
            r.consent_expired = true;
            expired += 1;
        }
    }
    let code = st.consent_code.as_str();
    Json(json!({ "expired": expired, "code": code })).into_response()
}

async fn set_quirks(State(sim): State<Arc<KftcSim>>, body: axum::body::Bytes) -> Response {
    let q: KftcQuirks = match parse_json(&body) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    sim.state().quirks = q;
    Json(q).into_response()
}

async fn get_quirks(State(sim): State<Arc<KftcSim>>) -> Response {
    let q = sim.state().quirks;
    Json(q).into_response()
}

async fn count_only(State(sim): State<Arc<KftcSim>>, req: Request, next: Next) -> Response {
    sim.stats.call(req.uri().path());
    next.run(req).await
}
