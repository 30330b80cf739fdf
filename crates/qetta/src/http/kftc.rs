//! `/api/v1/oauth/kftc/*`: connect a user's bank accounts through KFTC OpenBanking, read them,
//! disconnect.
//!
//! The connect flow ([`FLOW`], see `oauth_flow` for the provider-neutral part and why):
//! `authorize` (JWT) stores a single-use state, sets the initiator cookie and returns a `launch`
//! URL on this service; `launch` sends the browser that started the flow straight to KFTC's
//! consent page (binding the state to it), and shows any other browser a confirmation page naming
//! the Qetta account, whose form (`POST launch`) binds and redirects; KFTC redirects to
//! `callback`, which checks the state and the binding cookie before anything else, exchanges the
//! code, stores the tokens encrypted and the user's accounts, and reports to the opener window.

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine;
use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Asia::Seoul;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::oauth_flow::{ConfirmForm, Flow};
use crate::http::rfc3339;
use crate::providers::kftc::client::TransactionQuery;
use crate::providers::kftc::model::{self, AccountItem};
use crate::providers::kftc::KftcError;
use crate::store::connections::{self, Connection};
use crate::store::oauth_states::OAuthState;
use crate::store::{audit, users};
use crate::tokens::{AccessToken, TokenError};

pub const PROVIDER: &str = "kftc";
const STATE_TTL_SECS: i64 = 600;
/// KFTC returns at most 25 records per page (SPEC A11.2).
const KFTC_PAGE: usize = 25;
const MAX_LIMIT: usize = 100;
/// KFTC pages one of our transactions requests may read. A limit of 100 needs at most five
/// pages of 25 (plus one for an offset into the first); banks may send smaller pages, so we
/// allow twice that. A bank that keeps answering `next_page_yn=Y` (with empty or tiny pages)
/// ends in a 502 instead of a loop.
const MAX_PAGES_PER_REQUEST: usize = 12;
/// The time one transactions request may spend paging at KFTC, whatever the request timeout.
const TRANSACTIONS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);
/// The longest period one inquiry may cover. KFTC publishes no maximum (SPEC A11 is silent);
/// we cap at one year so that a request cannot make us page through a whole history.
const MAX_RANGE_DAYS: i64 = 366;

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Masks a token for display: the first 4 and last 4 characters.
pub fn mask_token(t: &str) -> String {
    let chars: Vec<char> = t.chars().collect();
    if chars.len() <= 12 {
        return "…".into();
    }
    format!("{}…{}", chars[..4].iter().collect::<String>(), chars[chars.len() - 4..].iter().collect::<String>())
}

fn audit_entry(user_id: &str, connection_id: Option<&str>, action: &str, outcome: &str, ip: Option<String>, detail: Value) -> audit::NewEntry {
    audit::NewEntry::user_action(Some(user_id), PROVIDER, connection_id, action, outcome, ip, detail)
}

pub(crate) async fn audit(state: &AppState, user_id: &str, connection_id: Option<&str>, action: &str, outcome: &str, ip: Option<String>, detail: Value) {
    crate::audit::record(&state.db, audit_entry(user_id, connection_id, action, outcome, ip, detail), state.clock.now()).await;
}

// ---------------------------------------------------------------------------------------------
// authorize → launch (→ confirm) → callback: the provider-neutral part is `oauth_flow`.

/// KFTC's browser connect flow.
pub const FLOW: Flow = Flow {
    provider: PROVIDER,
    base_path: "/api/v1/oauth/kftc",
    name_en: "KFTC Open Banking (your bank accounts)",
    name_ko: "금융결제원 오픈뱅킹(은행 계좌)",
    state_ttl_secs: STATE_TTL_SECS,
    consent_url,
};

/// KFTC's consent page for a state (`redirect_to` holds the auth_type).
fn consent_url(state: &AppState, pending: &OAuthState) -> Result<String, ApiError> {
    let auth_type: u8 = pending.redirect_to.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
    let target = state.kftc()?.authorize_url(&pending.state, &state.kftc_settings.scope, auth_type);
    // The real KFTC page lives on another host; the embedded sandbox is served to browsers at
    // the public URL even though the service calls it over loopback.
    Ok(if state.kftc_settings.sandbox { target.replacen(&state.kftc_settings.api_base, &state.kftc_settings.authorize_base, 1) } else { target })
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    redirect: Option<String>,
}

pub async fn authorize(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    // A JWT minted by the app's backend may name a user this service has not seen yet.
    users::ensure_external(&state.db, &user.id, now).await?;
    let existing = connections::get(&state.db, &user.id, PROVIDER).await?;
    let auth_type = match &existing {
        Some(c) if c.access_token.is_some() => 1,
        _ => 0,
    };
    let started = FLOW.start(&state, &headers, &user.id, Some(auth_type.to_string())).await?;
    audit(&state, &user.id, existing.as_ref().map(|c| c.id.as_str()), "authorize", "started", Some(peer.ip().to_string()), json!({"auth_type": auth_type}))
        .await;
    let mut resp = if matches!(q.redirect.as_deref(), Some("1") | Some("true")) {
        Redirect::to(&started.launch_url).into_response()
    } else {
        Json(json!({ "authorize_url": started.launch_url, "expires_at": rfc3339(started.expires_at), "auth_type": auth_type })).into_response()
    };
    started.attach(&mut resp);
    Ok(resp)
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    state: Option<String>,
}

/// Straight to KFTC's consent page for the browser that started the flow; a confirmation page
/// naming the Qetta account for any other.
pub async fn launch(State(state): State<AppState>, headers: HeaderMap, ConnectInfo(peer): ConnectInfo<SocketAddr>, Query(q): Query<LaunchQuery>) -> Response {
    FLOW.launch(&state, &headers, q.state.as_deref(), Some(peer.ip().to_string())).await
}

/// The confirmation page's form: binds this browser and goes on to KFTC, or cancels.
pub async fn launch_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    FLOW.confirm(&state, &headers, form, Some(peer.ip().to_string())).await
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    // Error callback (SPEC A5.3 / E2: format unconfirmed; accept both spellings).
    error: Option<String>,
    error_description: Option<String>,
    rsp_code: Option<String>,
    rsp_message: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let ip = Some(peer.ip().to_string());
    // 1. The state and the browser binding, before anything else.
    let pending = match FLOW.take_callback_state(&state, &headers, q.state.as_deref(), ip.clone()).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let user_id = pending.user_id.clone();

    // 2. The provider's error callback.
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        let provider_code = q.rsp_code.clone().or(q.error.clone()).unwrap_or_else(|| "unknown".into());
        let reason = q.rsp_message.clone().or(q.error_description.clone()).unwrap_or_default();
        audit(&state, &user_id, None, "callback", "denied", ip, json!({"provider_code": provider_code})).await;
        let message =
            if reason.is_empty() { "The bank connection was cancelled.".to_string() } else { format!("The bank connection was not completed: {reason}") };
        return result_page(StatusCode::OK, false, "consent_denied", &message);
    };
    if code.len() > 512 {
        return result_page(StatusCode::BAD_REQUEST, false, "code_invalid", "The bank returned an invalid authorization code. Start again.");
    }

    // 3. Exchange, store, fetch accounts.
    match finish_connect(&state, &user_id, code, q.scope.as_deref()).await {
        Ok((conn, accounts)) => {
            audit(&state, &user_id, Some(&conn.id), "callback", "connected", ip, json!({"accounts": accounts, "scope": conn.scope})).await;
            result_page(StatusCode::OK, true, "connected", &format!("Connected: {accounts} bank account(s)."))
        }
        Err(e) => {
            let code = e.code();
            audit(&state, &user_id, None, "callback", "failed", ip, json!({"error": code})).await;
            result_page(e.status(), false, code, &e.to_string())
        }
    }
}

async fn finish_connect(state: &AppState, user_id: &str, code: &str, _callback_scope: Option<&str>) -> Result<(Connection, usize), ApiError> {
    let kftc = state.kftc()?;
    let granted = kftc.exchange_code(code).await.map_err(ApiError::from)?;
    let conn = state.tokens.store_grant(user_id, PROVIDER, &granted.grant, Some(&granted.user_seq_no)).await?;
    let accounts = match kftc.user_me(&granted.grant.access_token, &granted.user_seq_no).await {
        Ok(me) => me.res_list,
        Err(e) => {
            // The connection stands; the list can be fetched again later.
            tracing::warn!(error = %e, "user/me failed after connect");
            Vec::new()
        }
    };
    let n = accounts.len();
    save_accounts(state, &conn, &accounts).await?;
    let conn = connections::get_by_id(&state.db, &conn.id).await?.unwrap_or(conn);
    Ok((conn, n))
}

/// What we keep of an account (no holder name: not needed, and personal).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StoredAccount {
    pub fintech_use_num: String,
    pub bank_code: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub alias: String,
    pub account_type: String,
    pub inquiry_agreed: bool,
}

async fn save_accounts(state: &AppState, conn: &Connection, accounts: &[AccountItem]) -> Result<(), ApiError> {
    let stored: Vec<StoredAccount> = accounts
        .iter()
        .filter(|a| !a.fintech_use_num.is_empty() && a.account_state != "09")
        .map(|a| StoredAccount {
            fintech_use_num: a.fintech_use_num.clone(),
            bank_code: a.bank_code_std.clone(),
            bank_name: if a.savings_bank_name.is_empty() { a.bank_name.clone() } else { a.savings_bank_name.clone() },
            account_num_masked: a.account_num_masked.clone(),
            alias: a.account_alias.clone(),
            account_type: a.account_type.clone(),
            inquiry_agreed: a.inquiry_agree_yn != "N",
        })
        .collect();
    connections::set_metadata(&state.db, &conn.id, &json!({ "accounts": stored }), state.clock.now()).await?;
    Ok(())
}

fn stored_accounts(conn: &Connection) -> Vec<StoredAccount> {
    serde_json::from_str::<Value>(&conn.metadata).ok().and_then(|v| v.get("accounts").cloned()).and_then(|a| serde_json::from_value(a).ok()).unwrap_or_default()
}

/// The callback's result page (it clears the binding cookie).
fn result_page(status: StatusCode, ok: bool, code: &str, message: &str) -> Response {
    FLOW.page(status, ok, code, message, None, true)
}

// ---------------------------------------------------------------------------------------------
// token, accounts, balance, transactions

/// Runs `call` with a fresh token; on O0003 refreshes once (single-flight) and retries; on a dead
/// grant marks the connection `needs_reauth`.
async fn with_token<T, F, Fut>(state: &AppState, user_id: &str, call: F) -> Result<T, ApiError>
where
    F: Fn(AccessToken) -> Fut,
    Fut: std::future::Future<Output = Result<T, KftcError>>,
{
    let token = state.tokens.access_token(user_id, PROVIDER).await?;
    let conn_id = token.connection_id.clone();
    let version = token.version;
    let retry_with =
        AccessToken { connection_id: conn_id.clone(), token: token.token.clone(), version, expires_at: token.expires_at, scope: None, provider_user_id: None };
    match call(token).await {
        Ok(v) => Ok(v),
        Err(KftcError::TokenExpired) => {
            let fresh = state.tokens.after_rejection(&retry_with).await?;
            match call(fresh).await {
                Ok(v) => Ok(v),
                Err(e) => Err(on_kftc_error(state, &conn_id, e).await),
            }
        }
        Err(e) => Err(on_kftc_error(state, &conn_id, e).await),
    }
}

async fn on_kftc_error(state: &AppState, conn_id: &str, e: KftcError) -> ApiError {
    if matches!(e, KftcError::GrantDead { .. }) {
        if let Err(err) = connections::set_status(&state.db, conn_id, connections::STATUS_NEEDS_REAUTH, state.clock.now()).await {
            tracing::error!(error = %err, "could not mark the connection needs_reauth");
        }
    }
    e.into()
}

async fn active_connection(state: &AppState, user_id: &str) -> Result<Connection, ApiError> {
    match connections::get(&state.db, user_id, PROVIDER).await? {
        Some(c) if c.access_token.is_some() => Ok(c),
        _ => Err(TokenError::NotConnected.into()),
    }
}

pub async fn token(State(state): State<AppState>, user: AuthUser, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Json<Value>, ApiError> {
    let t = state.tokens.access_token(&user.id, PROVIDER).await?;
    let conn = connections::get_by_id(&state.db, &t.connection_id).await?.ok_or(TokenError::NotConnected)?;
    let mut scope: Vec<&str> = t.scope.as_deref().unwrap_or("").split_whitespace().collect();
    scope.sort_unstable();
    let mut body = json!({
        "provider": PROVIDER,
        "status": conn.status,
        "scope": scope,
        "token_type": conn.token_type,
        "expires_at": t.expires_at.map(rfc3339),
        "token_masked": mask_token(t.token.expose_secret()),
        "user_seq_no": conn.provider_user_id,
    });
    if user.is_backend {
        // Never unaudited: no entry, no raw token.
        let entry = audit_entry(&user.id, Some(&conn.id), "token_fetch", "raw_token_returned", Some(peer.ip().to_string()), json!({}));
        crate::audit::require(&state.db, entry, state.clock.now()).await?;
        body["access_token"] = json!(t.token.expose_secret());
    }
    Ok(Json(body))
}

pub async fn accounts(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>, ApiError> {
    let conn = active_connection(&state, &user.id).await?;
    Ok(Json(json!({ "accounts": stored_accounts(&conn), "status": conn.status })))
}

fn valid_fintech_use_num(f: &str) -> bool {
    f.len() == 24 && f.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The account if it is one of this user's (never send another user's number upstream).
async fn own_account(state: &AppState, user_id: &str, fintech_use_num: &str) -> Result<StoredAccount, ApiError> {
    if !valid_fintech_use_num(fintech_use_num) {
        return Err(ApiError::invalid("invalid_fintech_use_num", "fintech_use_num must be 24 letters or digits."));
    }
    let conn = active_connection(state, user_id).await?;
    stored_accounts(&conn)
        .into_iter()
        .find(|a| a.fintech_use_num == fintech_use_num)
        .ok_or_else(|| ApiError::NotFound("No such account among your connected accounts.".into()))
}

fn parse_amount(s: &str, field: &str) -> Result<Option<i64>, ApiError> {
    model::amount(s).map_err(|e| ApiError::Upstream { code: "upstream_invalid", message: format!("KFTC sent an unreadable {field}: {e}"), provider_code: None })
}

pub async fn balance(State(state): State<AppState>, user: AuthUser, Path(fintech_use_num): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = own_account(&state, &user.id, &fintech_use_num).await?;
    let kftc = state.kftc()?.clone();
    let fin = fintech_use_num.clone();
    let b = with_token(&state, &user.id, |t| {
        let kftc = kftc.clone();
        let fin = fin.clone();
        async move { kftc.balance(&t.token, &fin).await }
    })
    .await?;
    let date = |d: &str| if d.is_empty() || d.chars().all(|c| c == '0') { Value::Null } else { json!(d) };
    Ok(Json(json!({
        "fintech_use_num": fintech_use_num,
        "balance": parse_amount(&b.balance_amt, "balance_amt")?,
        "available": parse_amount(&b.available_amt, "available_amt")?,
        "currency": "KRW",
        "product_name": b.product_name,
        "bank_name": if b.savings_bank_name.is_empty() { if b.bank_name.is_empty() { account.bank_name } else { b.bank_name } } else { b.savings_bank_name },
        "bank_code": account.bank_code,
        "account_num_masked": account.account_num_masked,
        "account_type": b.account_type,
        "account_issue_date": date(&b.account_issue_date),
        "maturity_date": date(&b.maturity_date),
        "last_tran_date": date(&b.last_tran_date),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionsBody {
    fintech_use_num: String,
    from_date: String,
    to_date: String,
    #[serde(default, deserialize_with = "super::json::not_null")]
    inquiry_type: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    sort_order: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    cursor: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    limit: Option<i64>,
}

/// Our cursor: where the next item is in KFTC's paging (the trace info of the page that holds
/// it, or none for the first page, plus an offset in that page), bound to the query.
#[derive(Serialize, Deserialize)]
struct Cursor {
    t: Option<String>,
    o: usize,
    q: String,
}

/// Bytes of HMAC-SHA256 kept in a cursor (128 bits).
const CURSOR_MAC_LEN: usize = 16;

fn cursor_mac(key: &[u8; 32], user_id: &str, payload: &[u8]) -> hmac::Hmac<Sha256> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    mac.update(b"\0");
    mac.update(payload);
    mac
}

impl Cursor {
    /// `base64(json).base64(mac)`: the MAC (over the user and the JSON) makes a cursor we did
    /// not hand to this user worthless, so a forged trace value never reaches KFTC.
    fn seal(&self, key: &[u8; 32], user_id: &str) -> String {
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = serde_json::to_vec(self).expect("cursor serialises");
        let tag = cursor_mac(key, user_id, &payload).finalize().into_bytes();
        format!("{}.{}", b64.encode(&payload), b64.encode(&tag[..CURSOR_MAC_LEN]))
    }

    fn open(sealed: &str, key: &[u8; 32], user_id: &str) -> Option<Self> {
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, tag) = sealed.split_once('.')?;
        let (payload, tag) = (b64.decode(payload).ok()?, b64.decode(tag).ok()?);
        if tag.len() != CURSOR_MAC_LEN {
            return None;
        }
        cursor_mac(key, user_id, &payload).verify_truncated_left(&tag).ok()?;
        serde_json::from_slice(&payload).ok()
    }
}

fn parse_date(s: &str, field: &str) -> Result<NaiveDate, ApiError> {
    let t = s.trim();
    NaiveDate::parse_from_str(t, "%Y%m%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&Seoul).date_naive()))
        .map_err(|_| ApiError::invalid("invalid_date", format!("{field} must be a date as YYYYMMDD or YYYY-MM-DD.")))
}

fn direction(inout: &str) -> &'static str {
    match inout {
        "입금" => "in",
        "출금" | "지급" => "out",
        _ => "other",
    }
}

pub async fn transactions(State(state): State<AppState>, user: AuthUser, ApiJson(body): ApiJson<TransactionsBody>) -> Result<Json<Value>, ApiError> {
    // Whose account first: about an account that is not the caller's, nothing else is said.
    own_account(&state, &user.id, &body.fintech_use_num).await?;
    let from = parse_date(&body.from_date, "from_date")?;
    let to = parse_date(&body.to_date, "to_date")?;
    if from > to {
        return Err(ApiError::invalid("invalid_range", "from_date must not be after to_date."));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(ApiError::invalid("range_too_long", format!("The period may cover at most {MAX_RANGE_DAYS} days.")));
    }
    let today = state.clock.now();
    let today = Seoul.timestamp_opt(today, 0).single().map(|d| d.date_naive()).unwrap_or(to);
    if from > today {
        return Err(ApiError::invalid("invalid_range", "from_date is in the future."));
    }
    let inquiry_type = match body.inquiry_type.as_deref().unwrap_or("A") {
        "A" | "all" => 'A',
        "I" | "in" => 'I',
        "O" | "out" => 'O',
        _ => return Err(ApiError::invalid("invalid_inquiry_type", "inquiry_type must be A (all), I (in) or O (out).")),
    };
    let sort_order = match body.sort_order.as_deref().unwrap_or("D") {
        "D" | "desc" => 'D',
        "A" | "asc" => 'A',
        _ => return Err(ApiError::invalid("invalid_sort_order", "sort_order must be D (newest first) or A (oldest first).")),
    };
    let limit = body.limit.unwrap_or(KFTC_PAGE as i64);
    if !(1..=MAX_LIMIT as i64).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}.")));
    }
    let limit = limit as usize;

    let query = TransactionQuery {
        fintech_use_num: body.fintech_use_num.clone(),
        inquiry_type,
        from_date: format!("{:04}{:02}{:02}", from.year(), from.month(), from.day()),
        to_date: format!("{:04}{:02}{:02}", to.year(), to.month(), to.day()),
        sort_order,
    };
    let fingerprint =
        sha256_hex(&format!("{}|{}|{}|{}|{}", query.fintech_use_num, query.inquiry_type, query.from_date, query.to_date, query.sort_order))[..16].to_string();
    let cursor_key = &state.kftc_settings.cursor_key;
    let (mut trace, mut offset) = match &body.cursor {
        None => (None, 0),
        Some(c) => {
            let cursor = Cursor::open(c, cursor_key, &user.id)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not one this service returned to you."))?;
            if cursor.q != fingerprint {
                return Err(ApiError::bad_request(
                    "invalid_cursor",
                    "cursor belongs to a different query; send the same fintech_use_num, dates, inquiry_type and sort_order.",
                ));
            }
            (cursor.t, cursor.o)
        }
    };

    // An old cursor whose trace info KFTC no longer accepts ends in 410 `cursor_expired`
    // (KftcError::TraceExpired) rather than in a restart that skips to the old position: between
    // the two calls new transactions may have arrived (newest-first lists shift with each one),
    // so skipping N rows of a fresh inquiry could silently repeat or drop rows, and it would cost
    // N/25 extra bank calls. The caller, who knows what it already shows, starts again.
    let deadline = std::time::Instant::now() + TRANSACTIONS_DEADLINE;
    let deadline = match crate::providers::upstream::remaining() {
        Some(left) => deadline.min(std::time::Instant::now() + left),
        None => deadline,
    };
    crate::providers::upstream::with_deadline(deadline, async {
        let mut out = Vec::with_capacity(limit);
        let mut next_cursor = None;
        let mut balance = None;
        let mut pages = 0usize;
        loop {
            if pages >= MAX_PAGES_PER_REQUEST {
                // Rows read so far are answered with a cursor to go on from; a bank that announced
                // page after page without rows is broken.
                if out.is_empty() {
                    tracing::warn!(pages, "KFTC kept announcing further transaction pages without rows");
                    return Err(ApiError::Upstream {
                        code: "upstream_paging",
                        message: format!("KFTC announced more than {MAX_PAGES_PER_REQUEST} pages of transactions without sending them; try again later."),
                        provider_code: None,
                    });
                }
                next_cursor = Some(Cursor { t: trace.clone(), o: offset, q: fingerprint.clone() });
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(ApiError::UpstreamTimeout { message: "KFTC did not send the transactions in time.".into() });
            }
            pages += 1;
            let kftc = state.kftc()?.clone();
            let q = query.clone();
            let tr = trace.clone();
            let page = with_token(&state, &user.id, |t| {
                let kftc = kftc.clone();
                let q = q.clone();
                let tr = tr.clone();
                async move { kftc.transaction_page(&t.token, &q, tr.as_deref()).await }
            })
            .await?;
            if balance.is_none() {
                balance = parse_amount(&page.balance_amt, "balance_amt")?;
            }
            let items = &page.res_list;
            let take = (limit - out.len()).min(items.len().saturating_sub(offset));
            for item in items.iter().skip(offset).take(take) {
                out.push(transaction_json(item)?);
            }
            let consumed = offset + take;
            let more_in_page = consumed < items.len();
            let more_pages = page.next_page_yn == "Y" && !page.befor_inquiry_trace_info.is_empty();
            if out.len() >= limit {
                if more_in_page {
                    next_cursor = Some(Cursor { t: trace.clone(), o: consumed, q: fingerprint.clone() });
                } else if more_pages {
                    next_cursor = Some(Cursor { t: Some(page.befor_inquiry_trace_info.clone()), o: 0, q: fingerprint.clone() });
                }
                break;
            }
            if !more_pages {
                break;
            }
            trace = Some(page.befor_inquiry_trace_info.clone());
            offset = 0;
        }
        let next_cursor = next_cursor.map(|c| c.seal(cursor_key, &user.id));
        Ok(Json(json!({
            "fintech_use_num": body.fintech_use_num,
            "balance": balance,
            "transactions": out,
            "next_cursor": next_cursor,
        })))
    })
    .await
}

fn transaction_json(t: &model::TransactionItem) -> Result<Value, ApiError> {
    let at = NaiveDate::parse_from_str(&t.tran_date, "%Y%m%d")
        .ok()
        .and_then(|d| {
            let time = chrono::NaiveTime::parse_from_str(if t.tran_time.is_empty() { "000000" } else { &t.tran_time }, "%H%M%S").ok()?;
            Seoul.from_local_datetime(&d.and_time(time)).single()
        })
        .ok_or_else(|| ApiError::Upstream { code: "upstream_invalid", message: "KFTC sent an unreadable transaction date.".into(), provider_code: None })?;
    Ok(json!({
        "at": at.to_rfc3339(),
        "direction": direction(&t.inout_type),
        "amount": parse_amount(&t.tran_amt, "tran_amt")?.unwrap_or(0),
        "balance_after": parse_amount(&t.after_balance_amt, "after_balance_amt")?,
        "description": t.print_content,
        "kind": t.tran_type,
        "branch": t.branch_name,
    }))
}

// ---------------------------------------------------------------------------------------------
// disconnect

/// Best effort: tells KFTC to unlink the user (the caller forgets the local tokens whatever it
/// answers). Returns what happened, for the answer and the audit log.
pub(crate) async fn unlink(state: &AppState, conn: &Connection) -> Value {
    match (&conn.access_token, &conn.provider_user_id) {
        (Some(blob), Some(seq)) => match state.vault.open_string(blob, crate::tokens::aad(conn, "access_token")) {
            // Disconnecting works while KFTC is disabled: the local tokens go all the same.
            Ok(token) => match state.kftc() {
                Ok(kftc) => match kftc.unlink(&token, seq).await {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"ok": false, "error": e.to_string(), "provider_code": e.provider_code()}),
                },
                Err(_) => json!({"ok": false, "error": "KFTC is not configured on this server"}),
            },
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        _ => json!({"ok": false, "error": "no token to unlink with"}),
    }
}

pub async fn disconnect(State(state): State<AppState>, user: AuthUser, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Json<Value>, ApiError> {
    let Some(conn) = connections::get(&state.db, &user.id, PROVIDER).await? else {
        return Err(TokenError::NotConnected.into());
    };
    let unlink = unlink(&state, &conn).await;
    // The tokens go together with the entry that records it, or not at all (503, try again; a
    // second unlink at KFTC is harmless).
    let entry = crate::audit::stamp(audit_entry(&user.id, Some(&conn.id), "disconnect", "ok", Some(peer.ip().to_string()), json!({"unlink": unlink})));
    let now = state.clock.now();
    let done = async {
        let mut w = state.db.begin_write().await?;
        let work = async {
            sqlx::query("DELETE FROM connections WHERE id = $1").bind(&conn.id).execute(&mut *w.tx).await?;
            audit::append_in(&mut w, &entry, now).await
        }
        .await;
        w.finish(work).await
    }
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "disconnect not recorded: refused");
        return Err(ApiError::AuditUnavailable);
    }
    Ok(Json(json!({ "disconnected": true, "provider": PROVIDER, "unlink": unlink })))
}
