//! `/api/v1/connections/{id}/sync` and `/api/v1/connections/{id}/transactions/sync`: sync a KFTC
//! connection's transactions now, and read the stored ones as a change feed (Plaid-style
//! `added` / `modified` / `removed`, with an opaque cursor). See `crate::sync`.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use base64::Engine;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Asia::Seoul;
use hmac::Mac;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::store::connections::Connection;
use crate::store::transactions::{self as store, StoredTransaction};
use crate::sync::SyncCounts;

const DEFAULT_COUNT: i64 = 100;
const MAX_COUNT: i64 = 500;
/// Bytes of HMAC-SHA256 kept in a cursor (128 bits).
const CURSOR_MAC_LEN: usize = 16;
/// The shortest time between two on-demand syncs of one connection.
const MIN_GAP_SECS: i64 = 60;

/// The caller's KFTC connection `id` (another user's is 404, like a missing one).
async fn kftc_connection(state: &AppState, user: &AuthUser, id: &str) -> Result<Connection, ApiError> {
    let c = state.connections.get(&user.id, id).await?;
    if c.provider != crate::http::kftc::PROVIDER {
        return Err(ApiError::bad_request("not_supported", "Transactions are synced for KFTC connections only."));
    }
    Ok(c)
}

/// `POST /api/v1/connections/{id}/sync`: the connection and what the sync did.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SyncResult)]
pub struct SyncAnswer {
    connection_id: String,
    #[serde(flatten)]
    counts: SyncCounts,
}

// `POST /api/v1/connections/{id}/sync`: fetches the connection's new transactions now.
/// Fetch the KFTC connection's new transactions now (also done in the background every QETTA_SYNC_INTERVAL_SECS); answers the counts; at most once a minute per connection (429 sync_too_soon)
#[utoipa::path(post, path = "/api/v1/connections/{id}/sync", tag = "kftc", params(crate::http::openapi::KftcConnectionPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = SyncAnswer),
    (status = 400, description = "not_supported: not a KFTC connection", body = ErrorBody),
    (status = 429, description = "sync_too_soon (or rate_limited), with Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn sync_now(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<SyncAnswer>, ApiError> {
    let conn = kftc_connection(&state, &user, &id).await?;
    if conn.access_token.is_none() {
        return Err(crate::tokens::TokenError::NotConnected.into());
    }
    // Each sync costs up to 12 KFTC calls per account: one per connection per minute is plenty.
    if let Some(last) = store::last_synced_at(&state.db, &conn.id).await? {
        let wait = last + MIN_GAP_SECS - state.clock.now();
        if wait > 0 {
            return Err(ApiError::TooManyRequests {
                code: "sync_too_soon",
                message: format!("This connection was synced less than {MIN_GAP_SECS} seconds ago; try again in {wait} s."),
                retry_after_secs: wait as u64,
            });
        }
    }
    let counts = crate::sync::sync_connection(&state, &conn).await?;
    Ok(Json(SyncAnswer { connection_id: conn.id, counts }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// a next_cursor this service returned to you for this connection
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 500, default = 100)]
    count: Option<i64>,
}

/// The cursor: the last change sequence number the client has seen. Sealed with an HMAC over
/// the user, the connection and the payload, so it is worthless to anyone else or elsewhere.
#[derive(Serialize, Deserialize)]
struct Cursor {
    s: i64,
}

fn cursor_mac(key: &[u8; 32], user_id: &str, connection_id: &str, payload: &[u8]) -> hmac::Hmac<Sha256> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    // Domain-separated from the transactions route's cursor, which uses the same key.
    mac.update(b"transactions-sync\0");
    mac.update(user_id.as_bytes());
    mac.update(b"\0");
    mac.update(connection_id.as_bytes());
    mac.update(b"\0");
    mac.update(payload);
    mac
}

fn seal(c: &Cursor, key: &[u8; 32], user_id: &str, connection_id: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = serde_json::to_vec(c).expect("cursor serialises");
    let tag = cursor_mac(key, user_id, connection_id, &payload).finalize().into_bytes();
    format!("{}.{}", b64.encode(&payload), b64.encode(&tag[..CURSOR_MAC_LEN]))
}

fn open(sealed: &str, key: &[u8; 32], user_id: &str, connection_id: &str) -> Option<Cursor> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, tag) = sealed.split_once('.')?;
    let (payload, tag) = (b64.decode(payload).ok()?, b64.decode(tag).ok()?);
    if tag.len() != CURSOR_MAC_LEN {
        return None;
    }
    cursor_mac(key, user_id, connection_id, &payload).verify_truncated_left(&tag).ok()?;
    let c: Cursor = serde_json::from_slice(&payload).ok()?;
    (c.s >= 0).then_some(c)
}

/// A stored transaction as the feed shows it: the shape of the transactions route, plus its id
/// (the fingerprint) and account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SyncedTransaction {
    /// stable fingerprint (KFTC gives no transaction id; see README, Transaction sync)
    transaction_id: String,
    fintech_use_num: String,
    at: String,
    #[schema(format = Date)]
    date: String,
    /// `in`, `out` or `other`.
    direction: &'static str,
    amount: i64,
    balance_after: Option<i64>,
    description: String,
    kind: String,
    branch: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TransactionSyncPage)]
pub struct FeedAnswer {
    added: Vec<SyncedTransaction>,
    modified: Vec<SyncedTransaction>,
    /// Always empty: KFTC never says that a transaction was removed.
    removed: Vec<String>,
    /// opaque; pass it as cursor to get what changed since
    next_cursor: String,
    has_more: bool,
}

fn view(state: &AppState, t: &StoredTransaction) -> Result<SyncedTransaction, ApiError> {
    let row = crate::sync::row_id(&t.connection_id, &t.fingerprint);
    let open = |blob: &[u8], field: &str| {
        state.vault.open_string(blob, crate::sync::aad(&row, field)).map(|s| s.expose_secret().to_string()).map_err(ApiError::internal)
    };
    let date = NaiveDate::parse_from_str(&t.tran_date, "%Y%m%d").map_err(ApiError::internal)?;
    let time = chrono::NaiveTime::parse_from_str(if t.tran_time.is_empty() { "000000" } else { &t.tran_time }, "%H%M%S").unwrap_or_default();
    let at = Seoul.from_local_datetime(&date.and_time(time)).earliest().map(|d| d.to_rfc3339()).unwrap_or_default();
    Ok(SyncedTransaction {
        transaction_id: t.fingerprint.clone(),
        fintech_use_num: t.fintech_use_num.clone(),
        at,
        date: date.format("%Y-%m-%d").to_string(),
        direction: crate::http::kftc::direction(&t.inout_type),
        amount: t.amount,
        balance_after: t.balance_after,
        description: open(&t.print_content, "print_content")?,
        kind: t.tran_type.clone(),
        branch: open(&t.branch_name, "branch_name")?,
    })
}

// `GET /api/v1/connections/{id}/transactions/sync?cursor=&count=`: the connection's
// transactions changed since `cursor` (all of them without one), oldest change first.
/// The connection's stored transactions as a change feed (Plaid-style): start without cursor, follow next_cursor while has_more; a forged cursor is 400 invalid_cursor
#[utoipa::path(get, path = "/api/v1/connections/{id}/transactions/sync", tag = "kftc", params(crate::http::openapi::KftcConnectionPath, FeedQuery), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = FeedAnswer),
    (status = 400, description = "invalid_cursor, invalid_query, not_supported", body = ErrorBody),
    (status = 422, description = "invalid_count", body = ErrorBody),
))]
pub async fn feed(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Json<FeedAnswer>, ApiError> {
    let q: FeedQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("invalid_query", "Query parameters: cursor (a next_cursor we returned), count (1-500)."))?;
    let count = q.count.unwrap_or(DEFAULT_COUNT);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(ApiError::invalid("invalid_count", format!("count must be between 1 and {MAX_COUNT}.")));
    }
    let conn = kftc_connection(&state, &user, &id).await?;
    let key = &state.kftc_settings.cursor_key;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => {
            open(c, key, &user.id, &conn.id).ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not one this service returned to you."))?.s
        }
    };
    let mut rows = store::changed_after(&state.db, &conn.id, after, count + 1).await?;
    let has_more = rows.len() as i64 > count;
    rows.truncate(count as usize);
    let last = rows.last().map(|r| r.seq).unwrap_or(after);
    let (mut added, mut modified) = (Vec::new(), Vec::new());
    for r in &rows {
        // First seen after the cursor: added; seen before it and changed since: modified.
        if r.added_seq > after {
            added.push(view(&state, r)?);
        } else {
            modified.push(view(&state, r)?);
        }
    }
    Ok(Json(FeedAnswer { added, modified, removed: Vec::new(), next_cursor: seal(&Cursor { s: last }, key, &user.id, &conn.id), has_more }))
}
