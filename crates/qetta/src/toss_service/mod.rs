//! The Toss Certification service layer: the one shared client-credentials token, calls with a
//! single retry on a rejected token, and the verified identity sealed at rest.
//!
//! # The service token
//!
//! Toss asks partners not to call `/token` while they hold a valid token (SPEC B2), so one token
//! serves every user and every replica. It lives in `service_tokens` (provider `toss`), sealed
//! with the vault, and is reused until `expires_at - margin`, where the margin is
//! `QETTA_REFRESH_MARGIN_SECS` but never more than half the token's lifetime. A new one is
//! fetched once however many callers want it, by the single-flight primitive every refresh uses
//! (`tokens::single_flight`):
//!
//! 1. callers in this process queue on one lock;
//! 2. the winner takes the row's lease in the database (one short `UPDATE`, renewed while it
//!    works; no pooled connection or row lock is held while Toss answers), on SQLite and
//!    PostgreSQL alike, with or without Redis; the others wait by re-reading the row;
//! 3. it re-reads the row under the lease and calls `/token` only if the token is still missing,
//!    expiring, or still the one Toss rejected;
//! 4. the new token is written with the row version as fencing token and committed before use.
//!
//! A call that Toss answers with CE1000/401 gets a new token (unless another caller already
//! replaced the rejected one) and is retried once.

pub mod input;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::config::TokenSettings;
use crate::error::ApiError;
use crate::providers::toss::{AuthRequest, AuthResult, AuthStatus, TossClient, TossError, TossUser};
use crate::providers::upstream::{self, BreakerPolicy, CircuitBreaker};
use crate::store::leases::{self, SERVICE_TOKEN};
use crate::store::toss::{self as store, Identity, ServiceTokenRow, ServiceTokenWrite};
use crate::store::{audit, meta, Db, StoreError};
use crate::tokens::single_flight::{self, Heartbeat, LeaseTimes};
use crate::vault::{Aad, Vault, VaultError};

pub const PROVIDER: &str = "toss";
/// Where the service token's ciphertext is bound.
const SERVICE_AAD: Aad<'static> = Aad { row: "service", scope: "toss", field: "access_token" };
/// The scope of sealed identity fields.
pub const IDENTITY_SCOPE: &str = "toss_identity";
const LAST_TEST_KEY: &str = "toss.last_test";

/// The associated data of one sealed identity field.
pub fn identity_aad<'a>(user_id: &'a str, field: &'a str) -> Aad<'a> {
    Aad { row: user_id, scope: IDENTITY_SCOPE, field }
}

/// The associated data of the service token.
pub fn service_token_aad() -> Aad<'static> {
    SERVICE_AAD
}

/// Everything that can go wrong in the Toss service layer; [`ApiError`] is made from it in one
/// place (the `From` impl below).
#[derive(Debug, thiserror::Error)]
pub enum TossServiceError {
    #[error("{0}")]
    Invalid(#[from] input::InputError),
    #[error(transparent)]
    Toss(#[from] TossError),
    #[error("another replica is fetching the Toss token; try again")]
    Busy,
    /// Our circuit breaker is open after repeated upstream failures.
    #[error("Toss is failing; calls are paused for {retry_after_secs} s")]
    CircuitOpen { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a stored Toss value cannot be decrypted: {0}")]
    Vault(#[from] VaultError),
}

impl TossServiceError {
    /// The API error code this becomes (for audit entries).
    pub fn api_code(&self) -> &'static str {
        match self {
            Self::Invalid(i) => i.code,
            Self::Toss(t) => toss_api_error(t).code(),
            Self::Busy => "unavailable",
            Self::CircuitOpen { .. } => "upstream_unavailable",
            Self::Store(_) | Self::Redis(_) | Self::Vault(_) => "internal_error",
        }
    }

    /// Toss's own code for the failure, when there is one.
    pub fn provider_code(&self) -> Option<String> {
        match self {
            Self::Toss(e) => toss_code(e),
            _ => None,
        }
    }
}

fn toss_code(e: &TossError) -> Option<String> {
    match e {
        TossError::InvalidToken => Some("CE1000".into()),
        TossError::NotFound => Some("CE3100".into()),
        TossError::ResultLimit => Some("CE3101".into()),
        TossError::NotCompleted => Some("CE3102".into()),
        TossError::Expired => Some("CE3103".into()),
        TossError::Provider { code, .. } => Some(code.clone()),
        TossError::TokenRejected { error, .. } => error.clone(),
        _ => None,
    }
}

impl From<TossServiceError> for ApiError {
    fn from(e: TossServiceError) -> Self {
        match e {
            TossServiceError::Invalid(i) => ApiError::invalid(i.code, i.message),
            TossServiceError::Toss(t) => toss_api_error(&t),
            TossServiceError::Busy => ApiError::Unavailable("Another replica is fetching the Toss token; try again.".into()),
            TossServiceError::CircuitOpen { retry_after_secs } => {
                ApiError::UpstreamUnavailable { message: "Toss is failing right now; calls are paused briefly.".into(), retry_after_secs }
            }
            TossServiceError::Store(s) => s.into(),
            TossServiceError::Redis(r) => ApiError::internal(r),
            TossServiceError::Vault(v) => ApiError::internal(v),
        }
    }
}

/// Toss's answers as ours: CE1000 (after the one retry) and refused credentials 502
/// `upstream_auth`, CE3100 404, CE3102 409 `not_completed`, CE3103 409, CE3101 409
/// `result_limit`, any other code 502 with `provider_code`, a timeout 504.
fn toss_api_error(t: &TossError) -> ApiError {
    let upstream = |code: &'static str, message: String, provider_code: Option<String>| ApiError::Upstream { code, message, provider_code };
    match t {
        TossError::InvalidToken => upstream("upstream_auth", "Toss refused the service's access token, also a newly issued one.".into(), Some("CE1000".into())),
        TossError::NotFound => ApiError::NotFound("Toss has no such verification request.".into()),
        TossError::NotCompleted => ApiError::conflict(
            "not_completed",
            "The user has not completed the verification in the Toss app yet; fetch the result once the status is COMPLETED.",
        ),
        TossError::Expired => ApiError::conflict("verification_expired", "This verification has expired; start a new one."),
        TossError::ResultLimit => ApiError::conflict(
            "result_limit",
            "Toss gives the result of a verification at most twice, within 60 minutes of completion; start a new verification.",
        ),
        TossError::Provider { code, reason } => {
            let message = if reason.is_empty() { format!("Toss answered {code}.") } else { format!("Toss answered {code}: {reason}") };
            upstream("upstream_error", message, Some(code.clone()))
        }
        TossError::TokenRejected { status, error } => upstream(
            "upstream_auth",
            format!("Toss refused the service's client credentials (HTTP {status}); check TOSS_CLIENT_ID and TOSS_CLIENT_SECRET."),
            error.clone(),
        ),
        TossError::Http { status } => upstream("upstream_error", format!("Toss answered HTTP {status}."), None),
        TossError::Timeout => ApiError::UpstreamTimeout { message: "Toss did not answer in time.".into() },
        TossError::Network(_) => upstream("upstream_unreachable", "Could not reach Toss.".into(), None),
        TossError::Decode(what) => upstream("upstream_invalid", format!("Toss sent an unreadable {what}."), None),
        TossError::Crypto(_) => upstream(
            "upstream_invalid",
            "Toss's encrypted data could not be decrypted and verified (it may have been altered); nothing was stored.".into(),
            None,
        ),
    }
}

/// A usable service token. The token is a `SecretString`: never logged.
pub struct ServiceToken {
    pub token: SecretString,
    /// The row version it was read at (the fencing token of a later invalidation).
    pub version: i64,
    pub expires_at: Option<i64>,
    pub scope: String,
    pub token_type: String,
    /// When it was fetched from Toss.
    pub fetched_at: i64,
}

/// Why a token is wanted.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Any token that is not within the margin of its expiry.
    Fresh,
    /// Toss rejected the token at `version`: anything else that has not expired.
    Replacing { version: i64 },
}

impl Want {
    fn reason(self) -> &'static str {
        match self {
            Want::Fresh => "missing_or_expiring",
            Want::Replacing { .. } => "rejected_by_toss",
        }
    }
}

/// The outcome of `POST /api/v1/oauth/toss/test`, kept for the status page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TestOutcome {
    pub ok: bool,
    /// `token` (getting a token failed), `api` (the authenticated call failed) or `done`.
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<String>,
    pub latency_ms: u64,
    /// Unix seconds.
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a user asks Toss to verify.
pub enum Request {
    Personal(TossUser),
    None,
}

pub struct TossService {
    client: TossClient,
    db: Db,
    vault: Vault,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    request_url: String,
    local: tokio::sync::Mutex<()>,
    /// Names this process in lease owners.
    instance: String,
    /// The client talks to the embedded sandbox.
    pub sandbox: bool,
    /// Opens after repeated upstream failures (5xx, time-outs, CE0xxx), so that a failing Toss
    /// gets a pause instead of every request waiting for its time-out.
    breaker: CircuitBreaker,
}

/// Trouble on Toss's side (not a verdict about the request): counts against the breaker.
fn is_upstream_failure(e: &TossError) -> bool {
    match e {
        TossError::Timeout | TossError::Network(_) => true,
        TossError::Http { status } | TossError::TokenRejected { status, .. } => *status >= 500,
        TossError::Provider { code, .. } => code.starts_with("CE0"),
        _ => false,
    }
}

impl TossService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: TossClient,
        db: Db,
        vault: Vault,
        clock: Arc<dyn Clock>,
        settings: TokenSettings,
        request_url: String,
        sandbox: bool,
        breaker: BreakerPolicy,
    ) -> Self {
        Self {
            client,
            db,
            vault,
            clock,
            settings,
            request_url,
            local: tokio::sync::Mutex::new(()),
            instance: uuid::Uuid::new_v4().to_string(),
            sandbox,
            breaker: CircuitBreaker::new("toss", breaker),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    fn gate(&self) -> Result<crate::providers::upstream::Permit<'_>, TossServiceError> {
        self.breaker.check().map_err(|d| TossServiceError::CircuitOpen { retry_after_secs: d.as_secs_f64().ceil().max(1.0) as u64 })
    }

    /// One attempt, cut at the per-call time-out or the request's deadline.
    async fn attempt<T>(&self, call: impl Future<Output = Result<T, TossError>>) -> Result<T, TossError> {
        match upstream::attempt_timeout(self.settings.upstream_timeout) {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or(Err(TossError::Timeout)),
            None => Err(TossError::Timeout),
        }
    }

    /// One upstream call through the circuit breaker, cut at the request's deadline. A call that
    /// is cancelled (the client went away) reports nothing to the breaker: its permit is dropped.
    async fn upstream<T>(&self, call: impl Future<Output = Result<T, TossError>>) -> Result<T, TossServiceError> {
        let permit = self.gate()?;
        let r = self.attempt(call).await;
        permit.record(matches!(&r, Err(e) if is_upstream_failure(e)));
        Ok(r?)
    }

    /// The token call, retried on connection failures only (a request that reached Toss may have
    /// issued a token; Toss asks partners not to ask again).
    async fn issue_token(&self) -> Result<crate::providers::toss::TossAccessToken, TossServiceError> {
        // The breaker counts the call once, with the outcome after its retries.
        let permit = self.gate()?;
        let mut attempt = 0;
        let r = loop {
            match self.attempt(self.client.issue_token()).await {
                Err(TossError::Network(_)) if attempt < 2 && upstream::retry_fits(upstream::backoff(attempt + 1)) => {
                    attempt += 1;
                    tokio::time::sleep(upstream::backoff(attempt)).await;
                }
                other => break other,
            }
        };
        permit.record(matches!(&r, Err(e) if is_upstream_failure(e)));
        Ok(r?)
    }

    // -----------------------------------------------------------------------------------------
    // The service token

    /// A token valid beyond the margin, fetched from Toss only when the stored one is not.
    pub async fn service_token(&self) -> Result<ServiceToken, TossServiceError> {
        self.ensure(Want::Fresh).await
    }

    /// The stored token's row as it is (for the status page); `None` when none was fetched yet.
    pub async fn stored_token_row(&self) -> Result<Option<ServiceTokenRow>, TossServiceError> {
        Ok(store::get_service_row(&self.db, PROVIDER).await?.filter(ServiceTokenRow::has_token))
    }

    fn margin(&self, row: &ServiceTokenRow) -> i64 {
        let lifetime = row.expires_at.map(|e| e - row.updated_at).unwrap_or(i64::MAX);
        self.settings.refresh_margin_secs.min(lifetime / 2).max(0)
    }

    /// The row's token if it satisfies `want` at `now`.
    fn usable(&self, row: &ServiceTokenRow, want: Want, now: i64) -> Option<ServiceToken> {
        if !row.has_token() {
            return None;
        }
        let ok = match want {
            Want::Fresh => row.expires_at.is_none_or(|e| now < e - self.margin(row)),
            Want::Replacing { version } => row.version != version && row.expires_at.is_none_or(|e| now < e),
        };
        if !ok {
            return None;
        }
        match self.vault.open_string(&row.access_token, SERVICE_AAD) {
            Ok(token) => Some(ServiceToken {
                token,
                version: row.version,
                expires_at: row.expires_at,
                scope: row.scope.clone(),
                token_type: row.token_type.clone(),
                fetched_at: row.updated_at,
            }),
            Err(e) => {
                // Not fatal: a new token replaces the unreadable one.
                tracing::warn!(error = %e, "the stored Toss service token cannot be decrypted; fetching a new one");
                None
            }
        }
    }

    async fn read_usable(&self, want: Want) -> Result<Option<ServiceToken>, TossServiceError> {
        let row = store::read_service_row(self.db.pool(), PROVIDER, false).await?;
        Ok(row.and_then(|r| self.usable(&r, want, self.clock.now())))
    }

    async fn ensure(&self, want: Want) -> Result<ServiceToken, TossServiceError> {
        if let Some(t) = self.read_usable(want).await? {
            return Ok(t);
        }
        let _local = self.local.lock().await;
        // Someone in this process may have fetched while we queued.
        if let Some(t) = self.read_usable(want).await? {
            return Ok(t);
        }
        store::ensure_service_row(&self.db, PROVIDER, self.clock.now()).await?;
        // Within a request, waiting for another replica's fetch ends at the request's deadline.
        let wait = crate::providers::upstream::remaining().map_or(self.settings.upstream_timeout * 3, |left| left.min(self.settings.upstream_timeout * 3));
        let outcome = self.fetch_under_lease(want, wait).await;
        match outcome {
            Ok((token, fetched)) => {
                if fetched {
                    let detail = json!({"reason": want.reason(), "expires_at": token.expires_at, "version": token.version});
                    self.audit(None, None, "service_token_fetch", "ok", detail).await;
                }
                Ok(token)
            }
            Err(e) => {
                if let TossServiceError::Toss(t) = &e {
                    let detail = json!({"reason": want.reason(), "error": t.to_string(), "provider_code": toss_code(t)});
                    self.audit(None, None, "service_token_fetch", "failed", detail).await;
                }
                Err(e)
            }
        }
    }

    /// The row's lease (the single-flight primitive every refresh uses, `tokens::single_flight`),
    /// so that every process and replica fetches once; the others wait for the holder by
    /// re-reading the row. No pooled connection or row lock is held while Toss answers.
    async fn fetch_under_lease(&self, want: Want, wait: Duration) -> Result<(ServiceToken, bool), TossServiceError> {
        let deadline = Instant::now() + wait;
        let owner = format!("{}:{}", self.instance, uuid::Uuid::new_v4().simple());
        let times = LeaseTimes { lease: self.settings.refresh_lease, grace: self.settings.lease_grace };
        let mut pause = Duration::from_millis(5);
        loop {
            if single_flight::try_claim(&self.db, SERVICE_TOKEN, PROVIDER, &owner, times).await? {
                let heartbeat = Heartbeat::start(&self.db, SERVICE_TOKEN, PROVIDER, &owner, times.lease);
                let r = self.fetch_under_lock(want).await;
                drop(heartbeat);
                if let Err(e) = leases::release(self.db.pool(), SERVICE_TOKEN, PROVIDER, &owner).await {
                    tracing::warn!(error = %e, "could not release the Toss token lease (it expires on its own)");
                }
                return r;
            }
            if let Some(t) = self.read_usable(want).await? {
                return Ok((t, false));
            }
            if Instant::now() + pause >= deadline {
                return Err(TossServiceError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// With the lease held: re-read, fetch only if still needed, write with the version check.
    /// Returns the token and whether it was fetched.
    async fn fetch_under_lock(&self, want: Want) -> Result<(ServiceToken, bool), TossServiceError> {
        let row = store::read_service_row(self.db.pool(), PROVIDER, false).await?.ok_or(StoreError::NotFound)?;
        let now = self.clock.now();
        if let Some(t) = self.usable(&row, want, now) {
            return Ok((t, false));
        }
        let issued = self.issue_token().await?;
        let expires_at = i64::try_from(issued.expires_in).ok().map(|s| now.saturating_add(s));
        let sealed = self.vault.seal_str(issued.access_token.expose_secret(), SERVICE_AAD);
        let write =
            ServiceTokenWrite { access_token: &sealed, key_id: self.vault.active_key_id(), token_type: &issued.token_type, scope: &issued.scope, expires_at };
        let written = store::write_service_token(self.db.pool(), PROVIDER, row.version, &write, now).await?;
        if !written {
            // Our lock expired while Toss answered and someone else wrote a newer token; ours is
            // valid too, so use it this once (a rejection then re-reads the row).
            tracing::warn!("the Toss service token row changed while a new token was fetched");
        }
        let version = if written { row.version + 1 } else { row.version };
        Ok((ServiceToken { token: issued.access_token, version, expires_at, scope: issued.scope, token_type: issued.token_type, fetched_at: now }, true))
    }

    /// Runs `call` with the service token; on CE1000/401 gets a new token (unless another caller
    /// already replaced the rejected one) and retries once.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, TossServiceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, TossError>>,
    {
        let token = self.service_token().await?;
        match self.upstream(call(token.token)).await {
            Err(TossServiceError::Toss(TossError::InvalidToken)) => {
                let fresh = self.ensure(Want::Replacing { version: token.version }).await?;
                self.upstream(call(fresh.token)).await
            }
            other => other,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Calls

    /// Gets a token if needed and makes one harmless authenticated call (the status of a random
    /// txId: Toss answering "no such request" proves the token works). Records the outcome.
    pub async fn test(&self) -> Result<TestOutcome, TossServiceError> {
        let started = Instant::now();
        let failed = |step: &str, e: &TossServiceError| {
            let message = match e {
                TossServiceError::Toss(t) => toss_api_error(t).to_string(),
                other => other.to_string(),
            };
            (false, step.to_string(), e.provider_code(), Some(message))
        };
        let (ok, step, provider_code, message) = match self.service_token().await {
            Err(e @ (TossServiceError::Store(_) | TossServiceError::Redis(_))) => return Err(e),
            Err(e) => failed("token", &e),
            Ok(_) => {
                let probe = uuid::Uuid::new_v4().to_string();
                let client = &self.client;
                let probe = probe.as_str();
                match self.with_token(|t| async move { client.status(&t, probe).await }).await {
                    Ok(_) | Err(TossServiceError::Toss(TossError::NotFound)) => (true, "done".to_string(), None, None),
                    Err(e @ (TossServiceError::Store(_) | TossServiceError::Redis(_))) => return Err(e),
                    Err(e) => failed("api", &e),
                }
            }
        };
        let outcome = TestOutcome { ok, step, provider_code, latency_ms: started.elapsed().as_millis() as u64, at: self.clock.now(), message };
        let stored = serde_json::to_string(&outcome).expect("the outcome serialises");
        meta::set(&self.db, LAST_TEST_KEY, &stored).await?;
        Ok(outcome)
    }

    /// For the status of `user_id`, in one read: their identity, the service token's row (when it
    /// holds a token) and the last test outcome.
    pub async fn status_of(&self, user_id: &str) -> Result<(Option<store::Identity>, Option<ServiceTokenRow>, Option<TestOutcome>), TossServiceError> {
        let r = store::status_reads(&self.db, user_id, PROVIDER, LAST_TEST_KEY).await?;
        Ok((r.identity, r.service.filter(ServiceTokenRow::has_token), r.last_test.and_then(|s| serde_json::from_str(&s).ok())))
    }

    /// The last recorded test outcome.
    pub async fn last_test(&self) -> Result<Option<TestOutcome>, TossServiceError> {
        Ok(meta::get(&self.db, LAST_TEST_KEY).await?.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Starts a verification; `USER_PERSONAL` encrypts the person with a fresh session.
    pub async fn request(&self, request: &Request) -> Result<AuthRequest, TossServiceError> {
        let client = &self.client;
        let url = self.request_url.as_str();
        match request {
            Request::Personal(user) => self.with_token(|t| async move { client.request_user_personal(&t, url, user).await }).await,
            Request::None => self.with_token(|t| async move { client.request_user_none(&t, url).await }).await,
        }
    }

    pub async fn status(&self, tx_id: &str) -> Result<AuthStatus, TossServiceError> {
        let client = &self.client;
        self.with_token(|t| async move { client.status(&t, tx_id).await }).await
    }

    /// Fetches and decrypts the result (a new session for every call, retry included).
    pub async fn result(&self, tx_id: &str) -> Result<AuthResult, TossServiceError> {
        let client = &self.client;
        self.with_token(|t| async move { client.result(&t, tx_id).await }).await
    }

    // -----------------------------------------------------------------------------------------
    // Identity at rest

    /// Seals a verified result for `user_id` (every personal field bound to the user and field).
    pub fn seal_identity(&self, user_id: &str, r: &AuthResult, now: i64) -> Identity {
        let p = &r.personal_data;
        let seal = |field: &str, v: &str| self.vault.seal_str(v, identity_aad(user_id, field));
        Identity {
            user_id: user_id.to_string(),
            tx_id: r.tx_id.clone(),
            ci: seal("ci", &p.ci),
            di: seal("di", &p.di),
            name: seal("name", &p.name),
            birthday: seal("birthday", &p.birthday),
            signature: seal("signature", &r.signature),
            phone: p.phone.as_deref().map(|ph| seal("phone", ph)),
            gender: p.gender.clone(),
            nationality: p.nationality.clone(),
            age_group: p.age_group.clone(),
            key_id: self.vault.active_key_id().to_string(),
            verified_at: now,
            version: 0,
        }
    }

    /// What a browser may see of an identity: the name masked, the birth year, no CI or DI.
    pub fn identity_summary(&self, i: &Identity) -> Result<Value, TossServiceError> {
        let name = self.vault.open_string(&i.name, identity_aad(&i.user_id, "name"))?;
        let birthday = self.vault.open_string(&i.birthday, identity_aad(&i.user_id, "birthday"))?;
        Ok(json!({
            "name_masked": input::mask_name(name.expose_secret()),
            "birth_year": input::birth_year(birthday.expose_secret()),
            "gender": i.gender,
            "nationality": i.nationality,
            "age_group": i.age_group,
            "verified_at": crate::http::rfc3339(i.verified_at),
            "tx_id": i.tx_id,
        }))
    }

    // -----------------------------------------------------------------------------------------

    pub(crate) async fn audit(&self, user_id: Option<&str>, ip: Option<String>, action: &str, outcome: &str, detail: Value) {
        crate::audit::record(&self.db, entry(user_id, ip, action, outcome, detail), self.clock.now()).await;
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// A Toss audit entry.
pub(crate) fn entry(user_id: Option<&str>, ip: Option<String>, action: &str, outcome: &str, detail: Value) -> audit::NewEntry {
    audit::NewEntry::user_action(user_id, PROVIDER, None, action, outcome, ip, detail)
}
