//! HTTP calls to KFTC OpenBanking (or the sandbox, which has the same paths under its base URL).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Asia::Seoul;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize as _;
use tracing::Instrument as _;

use super::error::KftcError;
use super::model::{AccountList, Balance, Envelope, TokenResponse, TransactionPage, UserMe};
use super::tran_id::TranIds;
use crate::providers::upstream::{self, backoff, BreakerPolicy, CircuitBreaker, Permit};
use crate::tokens::{Grant, RefreshError, Refresher};

/// Read-only calls are retried up to this many times on upstream trouble (with a new
/// bank_tran_id), as long as another attempt fits before the request's deadline.
const READ_RETRIES: u32 = 3;
/// Observed refresh-token lifetime: access-token expiry + 10 days (SPEC A6.3, [O]).
const REFRESH_EXTRA_SECS: i64 = 864_000;
/// SPEC A1 [C]: the token endpoint takes this content type, charset included.
const FORM_UTF8: &str = "application/x-www-form-urlencoded; charset=UTF-8";
/// SPEC A1 [C]: POST bodies of the business APIs.
const JSON_UTF8: &str = "application/json; charset=UTF-8";

/// What `account/cancel` found (SPEC A7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// KFTC cancelled the registration now.
    Cancelled,
    /// Bank code 551 / 555 / 556: it was not registered (any more); SPEC A7 says to treat this
    /// as "already cancelled".
    AlreadyCancelled,
}

/// Which registration `account/cancel` ends (SPEC A7 `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelScope {
    Inquiry,
    Transfer,
}

impl CancelScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inquiry => "inquiry",
            Self::Transfer => "transfer",
        }
    }
}

/// How a business call is sent.
enum Call<'a> {
    /// GET with these query parameters.
    Get(&'a [(&'a str, &'a str)]),
    /// POST with this JSON object as the body.
    PostJson(serde_json::Value),
}

/// Where and as whom we call KFTC.
#[derive(Clone)]
pub struct KftcEndpoints {
    pub base: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
}

/// The result of the authorization-code exchange.
pub struct CodeGrant {
    pub grant: Grant,
    pub user_seq_no: String,
}

/// Query of `/v2.0/account/transaction_list/fin_num` (SPEC A11.1).
#[derive(Debug, Clone)]
pub struct TransactionQuery {
    pub fintech_use_num: String,
    /// `A` all, `I` deposits, `O` withdrawals.
    pub inquiry_type: char,
    pub from_date: String,
    pub to_date: String,
    /// `D` newest first, `A` oldest first.
    pub sort_order: char,
}

pub struct KftcClient {
    http: reqwest::Client,
    endpoints: KftcEndpoints,
    tran_ids: TranIds,
    breaker: CircuitBreaker,
    /// Time-out of one attempt (`QETTA_UPSTREAM_TIMEOUT_MS`); the request's deadline may cut it.
    call_timeout: Duration,
}

/// The bank business day and request time, in KST.
fn kst_now() -> (String, String) {
    let now = Utc::now().with_timezone(&Seoul);
    (now.format("%Y%m%d").to_string(), now.format("%Y%m%d%H%M%S").to_string())
}

impl KftcClient {
    pub fn new(http: reqwest::Client, endpoints: KftcEndpoints, tran_ids: TranIds, call_timeout: Duration, breaker: BreakerPolicy) -> Self {
        Self { http, endpoints, tran_ids, breaker: CircuitBreaker::new("kftc", breaker), call_timeout }
    }

    pub fn client_use_code(&self) -> &str {
        self.tran_ids.client_use_code()
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The consent page URL the user's browser is sent to (SPEC A5.1). `auth_type` 0 = first
    /// consent, 1 = re-authentication (what renews an expired inquiry consent, SPEC A13).
    pub fn authorize_url(&self, state: &str, scope: &str, auth_type: u8) -> String {
        self.consent_url("/oauth/2.0/authorize", state, scope, auth_type)
    }

    /// The account-add page (SPEC A5.2, `authorize_account`): same parameters and callback as
    /// [`Self::authorize_url`]; `auth_type` `0` or `2` are the documented values there [O], so
    /// anything else is sent as `0`.
    pub fn authorize_account_url(&self, state: &str, scope: &str, auth_type: u8) -> String {
        let auth_type = if auth_type == 2 { 2 } else { 0 };
        self.consent_url("/oauth/2.0/authorize_account", state, scope, auth_type)
    }

    fn consent_url(&self, path: &str, state: &str, scope: &str, auth_type: u8) -> String {
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.endpoints.client_id.as_str()),
            ("redirect_uri", self.endpoints.redirect_uri.as_str()),
            ("scope", scope),
            ("state", state),
            ("auth_type", &auth_type.to_string()),
        ])
        .expect("string pairs encode");
        format!("{}{path}?{query}", self.endpoints.base)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoints.base, path)
    }

    fn breaker_gate(&self) -> Result<Permit<'_>, KftcError> {
        self.breaker.check().map_err(|d| KftcError::CircuitOpen { retry_after_secs: d.as_secs_f64().ceil().max(1.0) as u64 })
    }

    /// Reports one logical call (after its retries) to the breaker.
    fn record(permit: Permit<'_>, r: &Result<impl Sized, KftcError>) {
        permit.record(matches!(r, Err(e) if e.is_upstream_failure()));
    }

    /// Sends a request and reads its envelope (KFTC errors arrive as HTTP 200 with `rsp_code`);
    /// the typed body is read only from a successful answer ([`Answer::body`]), so an odd field in
    /// an error answer never hides its code. The attempt is cut at the request's deadline.
    async fn send(&self, endpoint: &str, req: reqwest::RequestBuilder) -> Result<Answer, KftcError> {
        let started = std::time::Instant::now();
        let span = crate::observability::upstream_span("kftc", endpoint);
        let req = span.in_scope(|| crate::observability::traceparent(req));
        let result = self.exchange(req).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(a) if a.envelope.rsp_code.is_empty() || a.envelope.is_success() => "ok".to_string(),
            Ok(a) => a.envelope.rsp_code.clone(),
            Err(e) => e.kind().to_string(),
        };
        crate::observability::upstream_call(&span, "kftc", endpoint, &outcome, started.elapsed());
        result
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Answer, KftcError> {
        let limit = upstream::attempt_timeout(self.call_timeout).ok_or(KftcError::Timeout)?;
        let exchange = async {
            // A connect error means the request never left: the only failure a token call may
            // retry. Anything later may have reached KFTC.
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    KftcError::Timeout
                } else if e.is_connect() {
                    KftcError::Connect
                } else {
                    KftcError::Network
                }
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| if e.is_timeout() { KftcError::Timeout } else { KftcError::Network })?;
            Ok::<_, KftcError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(limit, exchange).await.map_err(|_| KftcError::Timeout)??;
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ if !status.is_success() => return Err(KftcError::Http { status: status.as_u16() }),
            Ok(_) => return Err(KftcError::Unreadable("not a JSON object".into())),
            Err(_) => return Err(KftcError::Unreadable(describe_body(&bytes))),
        };
        // Read from the parsed value in place (no copy of the whole answer).
        let envelope = Envelope::deserialize(&value).unwrap_or_default();
        if !status.is_success() && envelope.rsp_code.is_empty() {
            return Err(KftcError::Http { status: status.as_u16() });
        }
        Ok(Answer { envelope, value })
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenResponse, KftcError> {
        let permit = self.breaker_gate()?;
        let mut attempt = 0;
        let result = loop {
            let body = serde_urlencoded::to_string(form).expect("string pairs encode");
            let req = self.http.post(self.url("/oauth/2.0/token")).header(reqwest::header::CONTENT_TYPE, FORM_UTF8).body(body);
            let r = self.send("/oauth/2.0/token", req).await;
            // The token endpoint is retried only when the request provably never reached KFTC
            // (connect errors): one that reached it may have spent the code or refresh token, and
            // a second use would kill the grant.
            if matches!(r, Err(KftcError::Connect)) && attempt < READ_RETRIES {
                let pause = backoff(attempt + 1);
                if upstream::retry_fits(pause) {
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            break r;
        };
        Self::record(permit, &result);
        let answer = result?;
        let envelope = &answer.envelope;
        if !envelope.rsp_code.is_empty() && envelope.rsp_code != "A0000" {
            return Err(KftcError::from_codes(&envelope.rsp_code, &envelope.rsp_message, None, None));
        }
        answer.body("token response")
    }

    fn grant(t: TokenResponse) -> Grant {
        Grant {
            access_token: SecretString::from(t.access_token),
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()).map(SecretString::from),
            token_type: if t.token_type.is_empty() { "Bearer".into() } else { t.token_type },
            scope: t.scope,
            expires_in: t.expires_in,
            refresh_expires_in: t.expires_in.map(|e| e + REFRESH_EXTRA_SECS),
        }
    }

    /// `grant_type=authorization_code` (SPEC A6.1).
    pub async fn exchange_code(&self, code: &str) -> Result<CodeGrant, KftcError> {
        let t = self
            .token_call(&[
                ("code", code),
                ("client_id", &self.endpoints.client_id),
                ("client_secret", self.endpoints.client_secret.expose_secret()),
                ("redirect_uri", &self.endpoints.redirect_uri),
                ("grant_type", "authorization_code"),
            ])
            .await?;
        let user_seq_no = t.user_seq_no.clone().filter(|u| !u.is_empty()).ok_or_else(|| KftcError::Decode("no user_seq_no in the token response".into()))?;
        if t.refresh_token.as_deref().is_none_or(str::is_empty) {
            return Err(KftcError::Decode("no refresh_token in the token response".into()));
        }
        Ok(CodeGrant { grant: Self::grant(t), user_seq_no })
    }

    /// `grant_type=refresh_token` with the scopes of the original grant (SPEC A6.1).
    pub async fn refresh_grant(&self, refresh_token: &SecretString, scope: &str) -> Result<Grant, KftcError> {
        let t = self
            .token_call(&[
                ("client_id", &self.endpoints.client_id),
                ("client_secret", self.endpoints.client_secret.expose_secret()),
                ("refresh_token", refresh_token.expose_secret()),
                ("scope", scope),
                ("grant_type", "refresh_token"),
            ])
            .await?;
        Ok(Self::grant(t))
    }

    /// A read-only business call, retried on upstream trouble with a fresh bank_tran_id (as long
    /// as another attempt fits before the request's deadline).
    async fn inquiry<T: DeserializeOwned>(&self, token: &SecretString, path: &str, params: &[(&str, &str)], with_tran_id: bool) -> Result<T, KftcError> {
        self.business(token, path, Call::Get(params), with_tran_id, true).await
    }

    /// One business call. With `with_tran_id` it carries a new `bank_tran_id` (+ `tran_dtime` on
    /// GETs) on every attempt, and a duplicate-id answer (A0326 or A0008, SPEC A3) is tried once
    /// more with a fresh one: the id was refused, so nothing happened. With `retry`, upstream
    /// trouble is retried too (only for calls that are safe to repeat). The breaker counts the
    /// call once, with its final outcome.
    async fn business<T: DeserializeOwned>(&self, token: &SecretString, path: &str, call: Call<'_>, with_tran_id: bool, retry: bool) -> Result<T, KftcError> {
        let permit = self.breaker_gate()?;
        let mut attempt = 0;
        let mut duplicate_retried = false;
        loop {
            let (day, tran_dtime) = kst_now();
            let tran_id = if with_tran_id {
                match self.tran_ids.next(&day).await {
                    Ok(id) => Some(id),
                    // Nothing was sent: the breaker learns nothing (the permit is dropped unused).
                    Err(e) => return Err(KftcError::Internal(format!("bank_tran_id: {e}"))),
                }
            } else {
                None
            };
            let req = match &call {
                Call::Get(params) => {
                    let mut query: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
                    if let Some(id) = &tran_id {
                        query.push(("bank_tran_id", id.clone()));
                        query.push(("tran_dtime", tran_dtime));
                    }
                    self.http.get(self.url(path)).query(&query)
                }
                Call::PostJson(body) => {
                    let mut body = body.clone();
                    if let (Some(id), Some(m)) = (&tran_id, body.as_object_mut()) {
                        m.insert("bank_tran_id".into(), serde_json::Value::String(id.clone()));
                    }
                    let bytes = serde_json::to_vec(&body).expect("a JSON value serialises");
                    self.http.post(self.url(path)).header(reqwest::header::CONTENT_TYPE, JSON_UTF8).body(bytes)
                }
            };
            let req = req.bearer_auth(token.expose_secret());
            let result = match self.send(path, req).await {
                Ok(answer) if answer.envelope.is_success() => answer.body(path),
                Ok(answer) => {
                    let env = &answer.envelope;
                    Err(KftcError::from_codes(&env.rsp_code, &env.rsp_message, env.bank_rsp_code.as_deref(), env.bank_rsp_message.as_deref()))
                }
                Err(e) => Err(e),
            };
            match result {
                Err(KftcError::DuplicateTranId { code }) if with_tran_id && !duplicate_retried => {
                    tracing::debug!(code, "KFTC refused the bank_tran_id as a duplicate; retrying with a new one");
                    duplicate_retried = true;
                    continue;
                }
                Err(e) if retry && e.is_retryable() && attempt < READ_RETRIES && upstream::retry_fits(backoff(attempt + 1)) => {
                    tracing::debug!(error = %e, attempt, "KFTC call failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                other => {
                    Self::record(permit, &other);
                    return other;
                }
            }
        }
    }

    /// `GET /v2.0/user/me` (SPEC A8).
    pub async fn user_me(&self, token: &SecretString, user_seq_no: &str) -> Result<UserMe, KftcError> {
        self.inquiry(token, "/v2.0/user/me", &[("user_seq_no", user_seq_no)], false).await
    }

    /// `GET /v2.0/account/list` (SPEC A9): the registered accounts, with `account_state` (`01` in
    /// use, `09` cancelled) when `include_cancelled`; oldest registration first.
    pub async fn account_list(&self, token: &SecretString, user_seq_no: &str, include_cancelled: bool) -> Result<AccountList, KftcError> {
        let include = if include_cancelled { "Y" } else { "N" };
        self.inquiry(token, "/v2.0/account/list", &[("user_seq_no", user_seq_no), ("include_cancel_yn", include), ("sort_order", "A")], false).await
    }

    /// `GET /v2.0/account/balance/fin_num` (SPEC A10).
    pub async fn balance(&self, token: &SecretString, fintech_use_num: &str) -> Result<Balance, KftcError> {
        self.inquiry(token, "/v2.0/account/balance/fin_num", &[("fintech_use_num", fintech_use_num)], true).await
    }

    /// One page of `GET /v2.0/account/transaction_list/fin_num` (SPEC A11).
    pub async fn transaction_page(&self, token: &SecretString, q: &TransactionQuery, trace: Option<&str>) -> Result<TransactionPage, KftcError> {
        let inquiry_type = q.inquiry_type.to_string();
        let sort_order = q.sort_order.to_string();
        let mut params = vec![
            ("fintech_use_num", q.fintech_use_num.as_str()),
            ("inquiry_type", inquiry_type.as_str()),
            ("inquiry_base", "D"),
            ("from_date", q.from_date.as_str()),
            ("to_date", q.to_date.as_str()),
            ("sort_order", sort_order.as_str()),
        ];
        if let Some(t) = trace {
            params.push(("befor_inquiry_trace_info", t));
        }
        match self.inquiry(token, "/v2.0/account/transaction_list/fin_num", &params, true).await {
            // Some banks report an empty period as A0018 (SPEC A11.3): an empty page.
            Err(KftcError::NoHistory) => Ok(TransactionPage { next_page_yn: "N".into(), ..Default::default() }),
            // A0004 (format error) on a follow-up page: every other parameter is the one the
            // first page was accepted with (our cursor binds them), so the refused one is the
            // trace info we sent back. SPEC A11.3 describes it only for the next page and says
            // nothing of its lifetime, so an old one being refused is expected, not a bug.
            Err(KftcError::Other { code, .. }) if trace.is_some() && code == "A0004" => Err(KftcError::TraceExpired),
            other => other,
        }
    }

    /// `POST /v2.0/account/cancel` (SPEC A7): ends the inquiry (or transfer) registration of one
    /// account. Bank codes 551 / 555 / 556 mean it is not registered (any more): already
    /// cancelled, which is what the caller wanted. Safe to repeat, so retried like a read.
    pub async fn cancel_account(&self, token: &SecretString, fintech_use_num: &str, scope: CancelScope) -> Result<CancelOutcome, KftcError> {
        let body = serde_json::json!({ "scope": scope.as_str(), "fintech_use_num": fintech_use_num });
        match self.business::<serde_json::Value>(token, "/v2.0/account/cancel", Call::PostJson(body), true, true).await {
            Ok(_) => Ok(CancelOutcome::Cancelled),
            Err(KftcError::AccountNotRegistered { .. }) => Ok(CancelOutcome::AlreadyCancelled),
            Err(e) => Err(e),
        }
    }

    /// `POST /v2.0/user/unlink` (SPEC A7): the user's link to us ends and the tokens stop working.
    pub async fn unlink(&self, token: &SecretString, user_seq_no: &str) -> Result<(), KftcError> {
        self.leave("/v2.0/user/unlink", token, user_seq_no).await
    }

    /// `POST /v2.0/user/close` (SPEC A7, 서비스 해지): the user leaves the service; the tokens
    /// stop working. Not retried: a repeat after a success would be refused with the dead token.
    pub async fn close_user(&self, token: &SecretString, user_seq_no: &str) -> Result<(), KftcError> {
        self.leave("/v2.0/user/close", token, user_seq_no).await
    }

    async fn leave(&self, path: &str, token: &SecretString, user_seq_no: &str) -> Result<(), KftcError> {
        let body = serde_json::json!({ "client_use_code": self.client_use_code(), "user_seq_no": user_seq_no });
        self.business::<serde_json::Value>(token, path, Call::PostJson(body), false, false).await.map(|_| ())
    }
}

/// A JSON answer: its envelope, and the whole object for the typed body.
struct Answer {
    envelope: Envelope,
    value: serde_json::Value,
}

impl Answer {
    /// The typed body of a successful answer. JSON `null`s are dropped first, so a field a bank
    /// sends as `null` reads like a missing one (its default), not as a decode error.
    fn body<T: DeserializeOwned>(mut self, what: &str) -> Result<T, KftcError> {
        strip_nulls(&mut self.value);
        serde_json::from_value(self.value).map_err(|e| KftcError::Decode(format!("{what}: {e}")))
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// What a non-JSON body looked like, for logs (never its content: it may echo our request).
fn describe_body(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).to_ascii_lowercase();
    if head.trim_start().starts_with("<!doctype html") || head.trim_start().starts_with("<html") {
        format!("an HTML page of {} bytes", bytes.len())
    } else if bytes.is_empty() {
        "an empty body".into()
    } else {
        format!("{} bytes that are not JSON", bytes.len())
    }
}

/// The token manager refreshes KFTC connections through this.
pub struct KftcRefresher(pub Arc<KftcClient>);

#[async_trait::async_trait]
impl Refresher for KftcRefresher {
    async fn refresh(&self, refresh_token: &SecretString, scope: &str) -> Result<Grant, RefreshError> {
        let mut grant = self.0.refresh_grant(refresh_token, scope).await.map_err(|e| match e {
            KftcError::GrantDead { code } => RefreshError::GrantDead { provider_code: code },
            KftcError::Timeout | KftcError::ProviderTimeout { .. } => RefreshError::Timeout,
            other => RefreshError::Transient { provider_code: other.provider_code(), message: other.to_string() },
        })?;
        // SPEC A6 does not say whether KFTC rotates refresh tokens [U]. When it answers the same
        // one again (or none), the stored one stays, with the expiry it had: its lifetime was not
        // renewed, so we must not compute a new one from this answer.
        if grant.refresh_token.as_ref().is_none_or(|r| r.expose_secret() == refresh_token.expose_secret()) {
            grant.refresh_token = None;
            grant.refresh_expires_in = None;
        }
        Ok(grant)
    }
}
