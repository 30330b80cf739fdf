//! `/api/v1/oauth/kftc/*`: KFTC OpenBanking's own routes: start a connection (the flow itself —
//! launch, confirmation, callback — is the connection core's, `http::connections` and
//! `oauth_flow`), read the connected accounts, balances and transactions, disconnect. Each acts on
//! the connection named by `?connection_id=` (or `connection_id` in a body), else on the user's
//! default KFTC connection (the newest whose grant stands); an account is looked up in every
//! KFTC connection of the user.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
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
use crate::connections::{Actor, StartRequest};
use crate::error::{ApiError, ErrorBody};
use crate::http::rfc3339;
pub use crate::mask::mask_token;
use crate::providers::kftc::client::TransactionQuery;
use crate::providers::kftc::model;
use crate::providers::kftc::{KftcError, StoredAccount};
use crate::store::connections::{self, Connection};
use crate::tokens::{AccessToken, TokenError};

pub const PROVIDER: &str = "kftc";
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

// ---------------------------------------------------------------------------------------------
// authorize: the flow itself (launch, confirm, callback) is the connection core's, shared by
// every provider (`http::connections`, `http::oauth_flow`).

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// 1: answer with a redirect instead
    redirect: Option<String>,
    /// renew the consent of this KFTC connection (default: the user's KFTC connection, when there is one)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    connection_id: Option<String>,
    /// your name for the connection (trimmed; empty or null: none); no control or invisible characters
    #[param(max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2066-\u2069\uFEFF]*$")]
    label: Option<String>,
}

/// `GET /api/v1/oauth/kftc/authorize`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KftcAuthorizeAnswer {
    /// The launch link on this service: open it in the user's browser.
    pub authorize_url: String,
    pub expires_at: String,
    /// `0` first consent, `1` renewal.
    #[schema(minimum = 0, maximum = 1)]
    pub auth_type: u8,
}

/// Start a KFTC connection: {authorize_url, expires_at, auth_type}
///
/// Stores a single-use state (10 minutes) and answers the launch URL. Also sets the initiator cookie `qetta_kftc_init` (HttpOnly, SameSite=Lax, Path=/api/v1/oauth/kftc): the browser that called this (the /oauth page, with fetch) goes straight from the launch URL to KFTC; any other browser, e.g. one that opens a link made by the app's backend, is shown a confirmation page naming the Qetta account first.
#[utoipa::path(get, path = "/api/v1/oauth/kftc/authorize", tag = "kftc", params(AuthorizeQuery), responses(
    (status = 200, description = "OK", body = KftcAuthorizeAnswer, headers(("Set-Cookie" = String, description = "qetta_kftc_init=<secret>; HttpOnly; SameSite=Lax"))),
    (status = 303, description = "with redirect=1: to the launch URL"),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
))]
pub async fn authorize(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    // Renewing when the user already holds a KFTC grant (auth_type 1, SPEC A5.1); a new
    // consent otherwise. `?connection_id=` names the connection to renew.
    let renew = match q.connection_id.as_deref() {
        Some(id) => Some(state.connections.pick(&user.id, PROVIDER, Some(id)).await?.id),
        None => connections::default_for(&state.db, &user.id, PROVIDER).await?.filter(|c| c.access_token.is_some()).map(|c| c.id),
    };
    let req = StartRequest { label: q.label, scopes: None, connection_id: renew, add_accounts: false };
    let (answer, started) = crate::http::connections::start_flow(&state, &user, &headers, peer, PROVIDER, req).await?;
    let mut resp = if matches!(q.redirect.as_deref(), Some("1") | Some("true")) {
        Redirect::to(&answer.authorize_url).into_response()
    } else {
        Json(KftcAuthorizeAnswer { authorize_url: answer.authorize_url, expires_at: answer.expires_at, auth_type: answer.auth_type.unwrap_or(0) })
            .into_response()
    };
    started.attach(&mut resp);
    Ok(resp)
}

fn stored_accounts(conn: &Connection) -> Vec<StoredAccount> {
    StoredAccount::from_metadata(&conn.metadata)
}

/// Which KFTC connection a data route acts on: `?connection_id=`, else the user's default one.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Which {
    /// which KFTC connection (default: the newest whose grant stands)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    connection_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// token, accounts, balance, transactions

/// Runs `call` with a fresh token; on O0003 refreshes once (single-flight) and retries; on a dead
/// grant marks the connection `needs_reauth`.
pub(crate) async fn with_token<T, F, Fut>(state: &AppState, conn: &Connection, call: F) -> Result<T, ApiError>
where
    F: Fn(AccessToken) -> Fut,
    Fut: std::future::Future<Output = Result<T, KftcError>>,
{
    let token = state.tokens.access_token(conn.clone()).await?;
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
                Err(e) => Err(on_kftc_error(state, conn, e).await),
            }
        }
        Err(e) => Err(on_kftc_error(state, conn, e).await),
    }
}

/// A dead grant makes the connection `needs_reauth`; an expired inquiry consent (SPEC A14:
/// A0316, A0334, bank 468) makes it `consent_expired`, after which its calls answer 409
/// `consent_expired` without reaching KFTC until the user consents again (which restores the same
/// connection: the same `user_seq_no`).
async fn on_kftc_error(state: &AppState, conn: &Connection, e: KftcError) -> ApiError {
    let status = match &e {
        KftcError::GrantDead { .. } => Some(connections::STATUS_NEEDS_REAUTH),
        KftcError::ConsentExpired { .. } => Some(connections::STATUS_CONSENT_EXPIRED),
        _ => None,
    };
    if let Some(status) = status {
        if let Err(err) = state.connections.mark_status(conn, status).await {
            tracing::error!(error = %err, status, "could not record the connection's state");
        }
    }
    e.into()
}

async fn active_connection(state: &AppState, user_id: &str, which: &Which) -> Result<Connection, ApiError> {
    match state.connections.pick(user_id, PROVIDER, which.connection_id.as_deref()).await? {
        c if c.access_token.is_some() => Ok(c),
        _ => Err(TokenError::NotConnected.into()),
    }
}

/// `GET /api/v1/oauth/kftc/token`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KftcToken {
    /// Always `kftc`.
    pub provider: &'static str,
    pub connection_id: String,
    pub status: String,
    pub scope: Vec<String>,
    pub token_type: Option<String>,
    pub expires_at: Option<String>,
    pub token_masked: String,
    /// KFTC's user number.
    pub user_seq_no: Option<String>,
    /// only with x-qetta-service-key (audited)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub access_token: Option<String>,
}

/// Scope set, expiry and masked token; the raw access_token with the service key
#[utoipa::path(get, path = "/api/v1/oauth/kftc/token", tag = "kftc", params(Which), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = KftcToken),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn token(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(which): Query<Which>,
) -> Result<Json<KftcToken>, ApiError> {
    let conn = active_connection(&state, &user.id, &which).await?;
    let t = state.tokens.access_token(conn).await?;
    let conn = connections::get_by_id(&state.db, &t.connection_id).await?.ok_or(TokenError::NotConnected)?;
    let mut scope: Vec<String> = t.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_string).collect();
    scope.sort_unstable();
    let mut body = KftcToken {
        provider: PROVIDER,
        connection_id: conn.id.clone(),
        status: conn.status.clone(),
        scope,
        token_type: conn.token_type.clone(),
        expires_at: t.expires_at.map(rfc3339),
        token_masked: mask_token(t.token.expose_secret()),
        user_seq_no: conn.provider_user_id.clone(),
        access_token: None,
    };
    if user.is_backend {
        // Never unaudited: no entry, no raw token.
        let entry = crate::store::audit::NewEntry::user_action(
            Some(&user.id),
            PROVIDER,
            Some(&conn.id),
            "token_fetch",
            "raw_token_returned",
            Some(peer.ip().to_string()),
            json!({}),
        );
        crate::audit::require(&state.db, entry, state.clock.now()).await?;
        body.access_token = Some(t.token.expose_secret().to_string());
    }
    Ok(Json(body))
}

/// `GET /api/v1/oauth/kftc/accounts`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KftcAccounts {
    pub accounts: Vec<StoredAccount>,
    pub status: String,
    pub connection_id: String,
}

/// The connected accounts
#[utoipa::path(get, path = "/api/v1/oauth/kftc/accounts", tag = "kftc", params(Which), responses(
    (status = 200, description = "OK", body = KftcAccounts),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn accounts(State(state): State<AppState>, user: AuthUser, Query(which): Query<Which>) -> Result<Json<KftcAccounts>, ApiError> {
    let conn = active_connection(&state, &user.id, &which).await?;
    Ok(Json(KftcAccounts { accounts: stored_accounts(&conn), status: conn.status, connection_id: conn.id }))
}

fn valid_fintech_use_num(f: &str) -> bool {
    f.len() == 24 && f.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The account and its connection if it is one of this user's (never send another user's number
/// upstream): in the connection named, else in any of the user's active KFTC connections.
async fn own_account(state: &AppState, user_id: &str, fintech_use_num: &str, which: &Which) -> Result<(Connection, StoredAccount), ApiError> {
    if !valid_fintech_use_num(fintech_use_num) {
        return Err(ApiError::invalid("invalid_fintech_use_num", "fintech_use_num must be 24 letters or digits."));
    }
    let candidates = match &which.connection_id {
        Some(_) => vec![active_connection(state, user_id, which).await?],
        None => {
            let all: Vec<Connection> =
                state.connections.list(user_id).await?.into_iter().filter(|c| c.provider == PROVIDER && c.access_token.is_some()).collect();
            if all.is_empty() {
                return Err(TokenError::NotConnected.into());
            }
            all
        }
    };
    candidates
        .into_iter()
        .find_map(|c| stored_accounts(&c).into_iter().find(|a| a.fintech_use_num == fintech_use_num).map(|a| (c, a)))
        .ok_or_else(|| ApiError::NotFound("No such account among your connected accounts.".into()))
}

fn parse_amount(s: &str, field: &str) -> Result<Option<i64>, ApiError> {
    model::amount(s).map_err(|e| ApiError::Upstream { code: "upstream_invalid", message: format!("KFTC sent an unreadable {field}: {e}"), provider_code: None })
}

/// `GET /api/v1/oauth/kftc/balance/{fintech_use_num}`: amounts as integers (KRW).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub fintech_use_num: String,
    pub balance: Option<i64>,
    pub available: Option<i64>,
    /// Always `KRW`.
    pub currency: &'static str,
    pub product_name: String,
    pub bank_name: String,
    pub bank_code: String,
    pub account_num_masked: String,
    pub account_type: String,
    /// `YYYYMMDD` as KFTC sends it; `null` when KFTC sends none.
    pub account_issue_date: Option<String>,
    pub maturity_date: Option<String>,
    pub last_tran_date: Option<String>,
}

/// `POST /api/v1/oauth/kftc/transactions`: one page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionPage {
    pub fintech_use_num: String,
    /// The balance KFTC reported with the first page read.
    pub balance: Option<i64>,
    pub transactions: Vec<Transaction>,
    /// Pass as `cursor` (with the same query) for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A transaction as KFTC reported it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Transaction {
    pub at: String,
    /// `in`, `out` or `other`.
    pub direction: &'static str,
    pub amount: i64,
    pub balance_after: Option<i64>,
    pub description: String,
    pub kind: String,
    pub branch: String,
}

/// `{fintech_use_num}` of the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct FintechPath {
    /// 24 characters
    #[param(pattern = "^[A-Za-z0-9]{24}$")]
    fintech_use_num: String,
}

/// Balance of one of the caller's accounts (integers, KRW)
///
/// 409 consent_expired when the inquiry consent expired at KFTC (provider_code A0316, A0334 or A0002/468; the user renews it), 409 scope_not_granted, 409 account_not_registered (bank 551/555/556).
#[utoipa::path(get, path = "/api/v1/oauth/kftc/balance/{fintech_use_num}", tag = "kftc", params(FintechPath, Which), responses(
    (status = 200, description = "OK", body = Balance),
    (status = 409, description = "consent_expired, scope_not_granted, account_not_registered", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn balance(
    State(state): State<AppState>,
    user: AuthUser,
    Path(fintech_use_num): Path<String>,
    Query(which): Query<Which>,
) -> Result<Json<Balance>, ApiError> {
    let (conn, account) = own_account(&state, &user.id, &fintech_use_num, &which).await?;
    let kftc = state.kftc()?.clone();
    let fin = fintech_use_num.clone();
    let b = with_token(&state, &conn, |t| {
        let kftc = kftc.clone();
        let fin = fin.clone();
        async move { kftc.balance(&t.token, &fin).await }
    })
    .await?;
    let date = |d: &str| if d.is_empty() || d.chars().all(|c| c == '0') { None } else { Some(d.to_string()) };
    Ok(Json(Balance {
        balance: parse_amount(&b.balance_amt, "balance_amt")?,
        available: parse_amount(&b.available_amt, "available_amt")?,
        fintech_use_num,
        currency: "KRW",
        product_name: b.product_name,
        bank_name: if b.savings_bank_name.is_empty() {
            if b.bank_name.is_empty() {
                account.bank_name
            } else {
                b.bank_name
            }
        } else {
            b.savings_bank_name
        },
        bank_code: account.bank_code,
        account_num_masked: account.account_num_masked,
        account_type: b.account_type,
        account_issue_date: date(&b.account_issue_date),
        maturity_date: date(&b.maturity_date),
        last_tran_date: date(&b.last_tran_date),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionsBody {
    /// one of the caller's accounts (another: 404, checked first)
    #[schema(pattern = "^[A-Za-z0-9]{24}$")]
    fintech_use_num: String,
    /// YYYYMMDD, YYYY-MM-DD or an RFC 3339 time (KST date); a real date; from_date ≤ to_date, not in the future, at most 366 days apart (422)
    #[schema(example = "20260901", pattern = "^[0-9]{8}$|^[0-9]{4}-[0-9]{2}-[0-9]{2}")]
    from_date: String,
    /// YYYYMMDD, YYYY-MM-DD or an RFC 3339 time (KST date); a real date; from_date ≤ to_date, not in the future, at most 366 days apart (422)
    #[schema(example = "2026-11-28", pattern = "^[0-9]{8}$|^[0-9]{4}-[0-9]{2}-[0-9]{2}")]
    to_date: String,
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, value_type = Option<InquiryType>)]
    inquiry_type: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, value_type = Option<SortOrder>)]
    sort_order: Option<String>,
    /// next_cursor of the previous page, for the same query; anything else: 400 invalid_cursor
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, min_length = 1)]
    cursor: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// the KFTC connection holding the account (default: whichever of yours holds it)
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    connection_id: Option<String>,
}

/// `inquiry_type` of [`TransactionsBody`] (documentation: the handler matches the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum InquiryType {
    A,
    I,
    O,
    #[schema(rename = "all")]
    All,
    #[schema(rename = "in")]
    In,
    #[schema(rename = "out")]
    Out,
}

/// `sort_order` of [`TransactionsBody`] (documentation: the handler matches the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum SortOrder {
    D,
    A,
    #[schema(rename = "desc")]
    Desc,
    #[schema(rename = "asc")]
    Asc,
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

pub(crate) fn direction(inout: &str) -> &'static str {
    match inout {
        "입금" => "in",
        "출금" | "지급" => "out",
        _ => "other",
    }
}

/// Transactions, paged with cursor
///
/// At most 12 KFTC pages and 20 s per request: 502 upstream_paging when a bank announces pages without rows. 410 cursor_expired when KFTC no longer accepts the cursor's paging position (start again without a cursor). 409 consent_expired as for the balance.
#[utoipa::path(post, path = "/api/v1/oauth/kftc/transactions", tag = "kftc", request_body = TransactionsBody, responses(
    (status = 200, description = "OK", body = TransactionPage),
    (status = 400, description = "invalid_cursor (or malformed_json)", body = ErrorBody),
    (status = 409, description = "consent_expired, scope_not_granted", body = ErrorBody),
    (status = 410, description = "cursor_expired", body = ErrorBody),
    (status = 422, description = "invalid_date, invalid_range, range_too_long, invalid_inquiry_type, invalid_sort_order, invalid_limit, invalid_body", body = ErrorBody),
    (status = 502, description = "upstream_paging, upstream_error", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn transactions(State(state): State<AppState>, user: AuthUser, ApiJson(body): ApiJson<TransactionsBody>) -> Result<Json<TransactionPage>, ApiError> {
    // Whose account first: about an account that is not the caller's, nothing else is said.
    let (conn, _) = own_account(&state, &user.id, &body.fintech_use_num, &Which { connection_id: body.connection_id.clone() }).await?;
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
            let page = with_token(&state, &conn, |t| {
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
        Ok(Json(TransactionPage { fintech_use_num: body.fintech_use_num, balance, transactions: out, next_cursor }))
    })
    .await
}

fn transaction_json(t: &model::TransactionItem) -> Result<Transaction, ApiError> {
    let at = NaiveDate::parse_from_str(&t.tran_date, "%Y%m%d")
        .ok()
        .and_then(|d| {
            let time = chrono::NaiveTime::parse_from_str(if t.tran_time.is_empty() { "000000" } else { &t.tran_time }, "%H%M%S").ok()?;
            Seoul.from_local_datetime(&d.and_time(time)).single()
        })
        .ok_or_else(|| ApiError::Upstream { code: "upstream_invalid", message: "KFTC sent an unreadable transaction date.".into(), provider_code: None })?;
    Ok(Transaction {
        at: at.to_rfc3339(),
        direction: direction(&t.inout_type),
        amount: parse_amount(&t.tran_amt, "tran_amt")?.unwrap_or(0),
        balance_after: parse_amount(&t.after_balance_amt, "after_balance_amt")?,
        description: t.print_content.clone(),
        kind: t.tran_type.clone(),
        branch: t.branch_name.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// disconnect

/// `DELETE /api/v1/oauth/kftc/disconnect`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KftcDisconnected {
    pub disconnected: bool,
    /// Always `kftc`.
    pub provider: &'static str,
    pub connection_id: String,
    /// What KFTC was told.
    pub unlink: crate::providers::provider::Revoked,
}

/// Unlink at KFTC (best effort) and forget the tokens
#[utoipa::path(delete, path = "/api/v1/oauth/kftc/disconnect", tag = "kftc", params(Which), responses(
    (status = 200, description = "OK", body = KftcDisconnected),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn disconnect(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(which): Query<Which>,
) -> Result<Json<KftcDisconnected>, ApiError> {
    let conn = state.connections.pick(&user.id, PROVIDER, which.connection_id.as_deref()).await?;
    let actor = Actor { name: if user.is_backend { "backend".into() } else { format!("user:{}", user.id) }, ip: Some(peer.ip().to_string()) };
    let done = state.connections.disconnect(conn, &actor).await?;
    Ok(Json(KftcDisconnected { disconnected: true, provider: PROVIDER, connection_id: done.connection.id, unlink: done.revoked }))
}

// ---------------------------------------------------------------------------------------------
// A KFTC connection's accounts: read again, add, remove (`/api/v1/connections/{id}/accounts…`)

async fn audit(state: &AppState, user_id: &str, connection_id: Option<&str>, action: &str, outcome: &str, ip: Option<String>, detail: Value) {
    let entry = crate::store::audit::NewEntry::user_action(Some(user_id), PROVIDER, connection_id, action, outcome, ip, detail);
    crate::audit::record(&state.db, entry, state.clock.now()).await;
}

/// The caller's KFTC connection `id`.
async fn kftc_connection(state: &AppState, user_id: &str, id: &str) -> Result<Connection, ApiError> {
    let c = state.connections.get(user_id, id).await?;
    if c.provider != PROVIDER {
        return Err(ApiError::bad_request("not_supported", "Accounts are managed on KFTC connections only."));
    }
    Ok(c)
}

/// Stores `accounts` as the connection's list, with its `connection.updated` event.
async fn keep_accounts(state: &AppState, conn: &Connection, accounts: &[StoredAccount]) -> Result<(), ApiError> {
    state.connections.set_accounts(conn, &StoredAccount::metadata(accounts)).await?;
    Ok(())
}

// `POST /api/v1/connections/{id}/accounts/refresh`: KFTC's list of the user's registered
// accounts (`account/list`, SPEC A9) replaces ours, so accounts removed at the bank disappear.
/// The answer of `POST /api/v1/connections/{id}/accounts/refresh` and of removing an account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionAccounts {
    /// Only when an account was removed: always `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub removed: Option<bool>,
    /// Only when an account was removed: it was cancelled at the bank already (551/555/556).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub already_cancelled: Option<bool>,
    pub connection_id: String,
    /// The connection's accounts now.
    pub accounts: Vec<StoredAccount>,
}

/// Read the connection's accounts again from KFTC (account/list): accounts removed at the bank disappear
#[utoipa::path(post, path = "/api/v1/connections/{id}/accounts/refresh", tag = "kftc", params(crate::http::openapi::KftcConnectionPath),
    security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = ConnectionAccounts),
    (status = 400, description = "not_supported: not a KFTC connection", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn refresh_accounts(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<ConnectionAccounts>, ApiError> {
    let conn = kftc_connection(&state, &user.id, &id).await?;
    let seq = conn.provider_user_id.clone().ok_or_else(|| ApiError::from(TokenError::NotConnected))?;
    let kftc = state.kftc()?.clone();
    let list = with_token(&state, &conn, |t| {
        let (kftc, seq) = (kftc.clone(), seq.clone());
        async move { kftc.account_list(&t.token, &seq, false).await }
    })
    .await?;
    let accounts = StoredAccount::from_items(&list.res_list);
    keep_accounts(&state, &conn, &accounts).await?;
    audit(&state, &user.id, Some(&conn.id), "accounts_refresh", "ok", None, json!({"accounts": accounts.len()})).await;
    Ok(Json(ConnectionAccounts { removed: None, already_cancelled: None, connection_id: conn.id, accounts }))
}

// `DELETE /api/v1/connections/{id}/accounts/{fintech_use_num}`: cancels the account's inquiry
// registration at KFTC (`account/cancel`, SPEC A7; bank 551/555/556 mean it was already gone)
// and forgets it; its balance is refused from then on.
/// `{id}` and `{fintech_use_num}` of `DELETE /api/v1/connections/{id}/accounts/{fintech_use_num}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AccountPath {
    /// your KFTC connection (another provider's: 400 not_supported)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
    /// an account of this connection
    #[param(pattern = "^[A-Za-z0-9]{24}$")]
    fintech_use_num: String,
}

/// Remove an account: its inquiry registration cancelled at KFTC (account/cancel; bank 551/555/556: already cancelled), then forgotten; its balance is refused from then on
#[utoipa::path(delete, path = "/api/v1/connections/{id}/accounts/{fintech_use_num}", tag = "kftc", params(AccountPath),
    security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = ConnectionAccounts),
    (status = 400, description = "not_supported: not a KFTC connection", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn remove_account(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, fintech_use_num)): Path<(String, String)>,
) -> Result<Json<ConnectionAccounts>, ApiError> {
    if !valid_fintech_use_num(&fintech_use_num) {
        return Err(ApiError::invalid("invalid_fintech_use_num", "fintech_use_num must be 24 letters or digits."));
    }
    let conn = kftc_connection(&state, &user.id, &id).await?;
    let mut accounts = stored_accounts(&conn);
    if !accounts.iter().any(|a| a.fintech_use_num == fintech_use_num) {
        return Err(ApiError::NotFound("No such account among this connection's accounts.".into()));
    }
    let kftc = state.kftc()?.clone();
    let fin = fintech_use_num.clone();
    let outcome = with_token(&state, &conn, |t| {
        let (kftc, fin) = (kftc.clone(), fin.clone());
        async move { kftc.cancel_account(&t.token, &fin, crate::providers::kftc::client::CancelScope::Inquiry).await }
    })
    .await?;
    let already = matches!(outcome, crate::providers::kftc::client::CancelOutcome::AlreadyCancelled);
    accounts.retain(|a| a.fintech_use_num != fintech_use_num);
    keep_accounts(&state, &conn, &accounts).await?;
    audit(&state, &user.id, Some(&conn.id), "account_cancel", "ok", Some(peer.ip().to_string()), json!({"already_cancelled": already})).await;
    Ok(Json(ConnectionAccounts { removed: Some(true), already_cancelled: Some(already), connection_id: conn.id, accounts }))
}

// `POST /api/v1/connections/{id}/accounts/authorize`: adds accounts to the connection's consent
// (`authorize_account`, SPEC A5.2); the browser flow and its answer are those of authorize.
/// Add accounts to the connection's consent (authorize_account): {authorize_url, expires_at} like authorize
#[utoipa::path(post, path = "/api/v1/connections/{id}/accounts/authorize", tag = "kftc", params(crate::http::openapi::KftcConnectionPath),
    security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = crate::http::connections::AuthorizeAnswer, headers(("Set-Cookie" = String, description = "qetta_kftc_init=<secret>; HttpOnly; SameSite=Lax"))),
    (status = 400, description = "not_supported: not a KFTC connection", body = ErrorBody),
))]
pub async fn add_accounts(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conn = kftc_connection(&state, &user.id, &id).await?;
    let req = StartRequest { label: None, scopes: None, connection_id: Some(conn.id), add_accounts: true };
    let (answer, started) = crate::http::connections::start_flow(&state, &user, &headers, peer, PROVIDER, req).await?;
    let mut resp = Json(answer).into_response();
    started.attach(&mut resp);
    Ok(resp)
}
