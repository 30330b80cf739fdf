//! Transaction sync (KFTC): every active KFTC connection's transactions are fetched on a schedule
//! (and on demand, `POST /api/v1/connections/{id}/sync`), stored under a derived fingerprint
//! with the personal fields sealed by the vault, and handed to the app as a change feed
//! (`GET /api/v1/connections/{id}/transactions/sync`, `http::sync`).
//!
//! Each sync of a connection gives every new or changed row the next number of the connection's
//! change sequence, in one write transaction that also raises at most one `transactions.updated`
//! event. KFTC never says that a transaction was removed, so nothing is ever reported removed.

pub mod job;

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Asia::Seoul;
use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;
use crate::events::{self, Event};
use crate::providers::kftc::client::TransactionQuery;
use crate::providers::kftc::{model, StoredAccount};
use crate::store::connections::Connection;
use crate::store::transactions::{self as store, StoredTransaction};
use crate::vault::Aad;

/// Days fetched the first time an account is synced.
pub const FIRST_SYNC_DAYS: i64 = 90;
/// KFTC pages one account's sync may read in one run: the cap of the transactions route
/// (`http::kftc`, 12 pages of at most 25 rows, SPEC A11.2). A longer history is fetched over
/// the following runs (see [`fetch_account`]).
const MAX_PAGES: usize = 12;

/// What one sync of a connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyncCounts {
    pub accounts: i64,
    pub added: i64,
    pub modified: i64,
}

/// The stable id of a transaction. KFTC gives none (SPEC A11.2 lists no id field), so it is
/// derived: SHA-256 over the account (`fintech_use_num`), `tran_date`, `tran_time`,
/// `inout_type`, `tran_type`, `tran_amt` and the occurrence number of that combination within
/// the day's rows (0 for the first, 1 for an identical second one, …).
///
/// Why it is stable across pages and re-fetches: every field in it is a fact of the transaction
/// itself, not of the inquiry (no page number, trace info or position in a page), and a sync
/// always fetches whole days, oldest first, so the occurrence numbers are counted over the same
/// complete set of the day's rows whatever the paging.
///
/// Left out on purpose, so that a change in them is a *modification* of the same transaction
/// rather than a new one: `print_content` and `branch_name` (banks correct memos; and an unkeyed
/// hash of personal text would leak it to a dictionary), and `after_balance_amt` (a balance
/// recomputed by the bank — the sandbox recomputes its whole history backwards from a fixed
/// current balance when its clock moves a day).
///
/// What it cannot tell apart: two transactions of one account on one day at the same second with
/// the same type, direction and amount are told apart only by their order; if the bank later
/// drops one of them (or sends them in another order), the remaining one may take the other's id
/// (seen as a modification of it), and a dropped transaction is never reported as removed.
pub fn fingerprint(fintech_use_num: &str, t: &model::TransactionItem, occurrence: u32) -> String {
    let mut h = Sha256::new();
    for part in [fintech_use_num, &t.tran_date, &t.tran_time, &t.inout_type, &t.tran_type, t.tran_amt.trim()] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(occurrence.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

fn upstream_invalid(field: &str) -> ApiError {
    ApiError::Upstream { code: "upstream_invalid", message: format!("KFTC sent an unreadable {field}."), provider_code: None }
}

fn ymd(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn parse_ymd(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// Today in Seoul on the service's clock.
pub fn today(state: &AppState) -> NaiveDate {
    let now = state.clock.now();
    Seoul.timestamp_opt(now, 0).single().map(|d| d.date_naive()).unwrap_or_else(|| chrono::Utc::now().with_timezone(&Seoul).date_naive())
}

/// The rows of `from..=to` for one account, oldest first, and the last day they cover
/// completely. Reads at most [`MAX_PAGES`]: when KFTC has more, the rows of the last day read
/// (maybe incomplete) are dropped and the next run starts there, so each run makes progress and
/// occurrence numbers are only ever counted over complete days. (One day of more than 300 rows
/// would be stored as far as it was read, with a note in the log.)
async fn fetch_account(
    state: &AppState,
    conn: &Connection,
    fin: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Vec<model::TransactionItem>, NaiveDate), ApiError> {
    let query = TransactionQuery { fintech_use_num: fin.to_string(), inquiry_type: 'A', from_date: ymd(from), to_date: ymd(to), sort_order: 'A' };
    let kftc = state.kftc()?.clone();
    let mut rows = Vec::new();
    let mut trace: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (k, q, tr) = (kftc.clone(), query.clone(), trace.clone());
        let page = crate::http::kftc::with_token(state, conn, |t| {
            let (k, q, tr) = (k.clone(), q.clone(), tr.clone());
            async move { k.transaction_page(&t.token, &q, tr.as_deref()).await }
        })
        .await?;
        rows.extend(page.res_list);
        if page.next_page_yn != "Y" || page.befor_inquiry_trace_info.is_empty() {
            return Ok((rows, to));
        }
        trace = Some(page.befor_inquiry_trace_info);
    }
    // More pages than we read: keep the complete days.
    let last = rows.last().and_then(|r| parse_ymd(&r.tran_date)).ok_or_else(|| upstream_invalid("tran_date"))?;
    let complete: Vec<_> = rows.iter().filter(|r| parse_ymd(&r.tran_date).is_some_and(|d| d < last)).cloned().collect();
    if complete.is_empty() {
        tracing::warn!(pages = MAX_PAGES, "one day holds more transactions than a sync run reads; storing what was read");
        return Ok((rows, last));
    }
    Ok((complete, last - Duration::days(1)))
}

/// The vault's associated data of a transaction's sealed `field`.
pub(crate) fn aad<'a>(row: &'a str, field: &'a str) -> Aad<'a> {
    Aad { row, scope: "transaction", field }
}

/// Row identity for the vault's associated data: a ciphertext moved to another row does not open.
pub(crate) fn row_id(connection_id: &str, fingerprint: &str) -> String {
    format!("{connection_id}:{fingerprint}")
}

/// A fetched row as it would be stored (before sealing): the fields compared for a modification.
struct Fetched {
    fingerprint: String,
    fin: String,
    item: model::TransactionItem,
    amount: i64,
    balance_after: Option<i64>,
}

/// Syncs one KFTC connection: fetches each of its accounts from the day before its last synced
/// day (or [`FIRST_SYNC_DAYS`] back the first time) to today (Seoul), then stores new and changed
/// rows, the bookkeeping and, if anything changed, one `transactions.updated` event, in one
/// transaction. Nothing is stored when a fetch fails.
pub async fn sync_connection(state: &AppState, conn: &Connection) -> Result<SyncCounts, ApiError> {
    let accounts = StoredAccount::from_metadata(&conn.metadata);
    let today = today(state);
    let days: BTreeMap<String, String> = {
        let mut w = state.db.begin_write().await?;
        let got = store::lock_sync_in(&mut w, &conn.id, state.clock.now()).await;
        let (_, days) = w.finish(got).await?;
        serde_json::from_str(&days).unwrap_or_default()
    };
    let mut fetched: Vec<Fetched> = Vec::new();
    let mut new_days = days.clone();
    for account in &accounts {
        let fin = &account.fintech_use_num;
        let from = match days.get(fin).and_then(|d| parse_ymd(d)) {
            // One day of overlap: rows a bank posts late to the previous day are picked up.
            Some(last) => (last - Duration::days(1)).min(today),
            None => today - Duration::days(FIRST_SYNC_DAYS),
        };
        let (rows, through) = fetch_account(state, conn, fin, from, today).await?;
        let mut seen: HashMap<String, u32> = HashMap::new();
        for item in rows {
            if parse_ymd(&item.tran_date).is_none() {
                return Err(upstream_invalid("tran_date"));
            }
            let amount = model::amount(&item.tran_amt).map_err(|_| upstream_invalid("tran_amt"))?.unwrap_or(0);
            let balance_after = model::amount(&item.after_balance_amt).map_err(|_| upstream_invalid("after_balance_amt"))?;
            let base = fingerprint(fin, &item, 0);
            let n = seen.entry(base).or_insert(0);
            let fp = fingerprint(fin, &item, *n);
            *n += 1;
            fetched.push(Fetched { fingerprint: fp, fin: fin.clone(), item, amount, balance_after });
        }
        new_days.insert(fin.clone(), ymd(through));
    }

    let now = state.clock.now();
    let next_due = now + state.config.sync.interval.as_secs() as i64;
    let mut w = state.db.begin_write().await?;
    let work = async {
        let (mut seq, _) = store::lock_sync_in(&mut w, &conn.id, now).await?;
        let mut counts = SyncCounts { accounts: accounts.len() as i64, ..Default::default() };
        for f in &fetched {
            let rid = row_id(&conn.id, &f.fingerprint);
            let old = store::get_in(&mut w, &conn.id, &f.fingerprint).await?;
            let added_seq = match &old {
                None => None,
                Some(o) => {
                    let same_text = |blob: &[u8], field: &str, now: &str| {
                        state.vault.open_string(blob, aad(&rid, field)).map(|s| s.expose_secret() == now).unwrap_or(false)
                    };
                    let unchanged = o.tran_time == f.item.tran_time
                        && o.amount == f.amount
                        && o.balance_after == f.balance_after
                        && same_text(&o.print_content, "print_content", &f.item.print_content)
                        && same_text(&o.branch_name, "branch_name", &f.item.branch_name);
                    if unchanged {
                        continue;
                    }
                    Some(o.added_seq)
                }
            };
            seq += 1;
            match added_seq {
                None => counts.added += 1,
                Some(_) => counts.modified += 1,
            }
            let row = StoredTransaction {
                connection_id: conn.id.clone(),
                fingerprint: f.fingerprint.clone(),
                fintech_use_num: f.fin.clone(),
                seq,
                added_seq: added_seq.unwrap_or(seq),
                tran_date: f.item.tran_date.clone(),
                tran_time: f.item.tran_time.clone(),
                inout_type: f.item.inout_type.clone(),
                tran_type: f.item.tran_type.clone(),
                amount: f.amount,
                balance_after: f.balance_after,
                print_content: state.vault.seal_str(&f.item.print_content, aad(&rid, "print_content")),
                branch_name: state.vault.seal_str(&f.item.branch_name, aad(&rid, "branch_name")),
            };
            store::upsert_in(&mut w, &row, state.vault.active_key_id(), now).await?;
        }
        let days = serde_json::to_string(&new_days).expect("a map of strings serialises");
        store::finish_sync_in(&mut w, &conn.id, seq, &days, now, next_due).await?;
        if counts.added + counts.modified > 0 {
            let event = Event::TransactionsUpdated {
                connection_id: conn.id.clone(),
                user_id: conn.user_id.clone(),
                provider: conn.provider.clone(),
                accounts: counts.accounts,
                new_transactions: counts.added,
            };
            events::enqueue_in(&mut w, &event, now).await?;
        }
        Ok(counts)
    }
    .await;
    let counts = w.finish(work).await?;
    if counts.added + counts.modified > 0 {
        state.webhooks.wake();
    }
    Ok(counts)
}
