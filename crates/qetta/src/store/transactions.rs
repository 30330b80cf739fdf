//! Stored KFTC transactions and the per-connection sync bookkeeping (migration 0010).

use sqlx::Row;

use super::{Db, StoreError, WriteTx};
use crate::config::DatabaseKind;

/// One stored transaction; `print_content` and `branch_name` are vault ciphertexts.
#[derive(Debug, Clone)]
pub struct StoredTransaction {
    pub connection_id: String,
    pub fingerprint: String,
    pub fintech_use_num: String,
    pub seq: i64,
    pub added_seq: i64,
    pub tran_date: String,
    pub tran_time: String,
    pub inout_type: String,
    pub tran_type: String,
    pub amount: i64,
    pub balance_after: Option<i64>,
    pub print_content: Vec<u8>,
    pub branch_name: Vec<u8>,
}

const COLUMNS: &str = "connection_id, fingerprint, fintech_use_num, seq, added_seq, tran_date, tran_time, inout_type, tran_type, amount, balance_after, \
                       print_content, branch_name";

fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredTransaction, sqlx::Error> {
    Ok(StoredTransaction {
        connection_id: r.try_get(0)?,
        fingerprint: r.try_get(1)?,
        fintech_use_num: r.try_get(2)?,
        seq: r.try_get(3)?,
        added_seq: r.try_get(4)?,
        tran_date: r.try_get(5)?,
        tran_time: r.try_get(6)?,
        inout_type: r.try_get(7)?,
        tran_type: r.try_get(8)?,
        amount: r.try_get(9)?,
        balance_after: r.try_get(10)?,
        print_content: r.try_get(11)?,
        branch_name: r.try_get(12)?,
    })
}

/// The connection's bookkeeping row, created if missing and locked for the rest of `w` (on
/// PostgreSQL a row lock; on SQLite `w` holds the write lock already): syncs of one connection
/// are serialised, so its seqs are given and committed in order. Returns (last_seq, account_days).
pub async fn lock_sync_in(w: &mut WriteTx, connection_id: &str, now: i64) -> Result<(i64, String), StoreError> {
    sqlx::query(
        "INSERT INTO transaction_sync (connection_id, last_seq, account_days, next_due_at, created_at, updated_at) VALUES ($1, 0, '{}', $2, $2, $2) \
         ON CONFLICT (connection_id) DO NOTHING",
    )
    .bind(connection_id)
    .bind(now)
    .execute(&mut *w.tx)
    .await?;
    let lock = match w.kind {
        DatabaseKind::Postgres => " FOR UPDATE",
        DatabaseKind::Sqlite => "",
    };
    let row: (i64, String) = sqlx::query_as(&format!("SELECT last_seq, account_days FROM transaction_sync WHERE connection_id = $1{lock}"))
        .bind(connection_id)
        .fetch_one(&mut *w.tx)
        .await?;
    Ok(row)
}

pub async fn get_in(w: &mut WriteTx, connection_id: &str, fingerprint: &str) -> Result<Option<StoredTransaction>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM transactions WHERE connection_id = $1 AND fingerprint = $2"))
        .bind(connection_id)
        .bind(fingerprint)
        .fetch_optional(&mut *w.tx)
        .await?;
    Ok(row.map(|r| from_row(&r)).transpose()?)
}

/// Inserts `t`, or replaces the stored row of its fingerprint (`added_seq` is kept).
pub async fn upsert_in(w: &mut WriteTx, t: &StoredTransaction, key_id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO transactions ({COLUMNS}, key_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
         ON CONFLICT (connection_id, fingerprint) DO UPDATE SET seq = excluded.seq, tran_date = excluded.tran_date, tran_time = excluded.tran_time, \
         inout_type = excluded.inout_type, tran_type = excluded.tran_type, amount = excluded.amount, balance_after = excluded.balance_after, \
         print_content = excluded.print_content, branch_name = excluded.branch_name, key_id = excluded.key_id, updated_at = excluded.updated_at"
    ))
    .bind(&t.connection_id)
    .bind(&t.fingerprint)
    .bind(&t.fintech_use_num)
    .bind(t.seq)
    .bind(t.added_seq)
    .bind(&t.tran_date)
    .bind(&t.tran_time)
    .bind(&t.inout_type)
    .bind(&t.tran_type)
    .bind(t.amount)
    .bind(t.balance_after)
    .bind(&t.print_content)
    .bind(&t.branch_name)
    .bind(key_id)
    .bind(now)
    .execute(&mut *w.tx)
    .await?;
    Ok(())
}

/// Ends a successful sync: the new sequence and days, next due in `interval_secs`, claim released.
pub async fn finish_sync_in(w: &mut WriteTx, connection_id: &str, last_seq: i64, account_days: &str, now: i64, next_due: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE transaction_sync SET last_seq = $1, account_days = $2, last_synced_at = $3, next_due_at = $4, claimed_until = NULL, updated_at = $3 \
         WHERE connection_id = $5",
    )
    .bind(last_seq)
    .bind(account_days)
    .bind(now)
    .bind(next_due)
    .bind(connection_id)
    .execute(&mut *w.tx)
    .await?;
    Ok(())
}

/// After a failed sync: releases the claim and sets when to try again.
pub async fn release(db: &Db, connection_id: &str, next_due: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE transaction_sync SET next_due_at = $1, claimed_until = NULL, updated_at = $2 WHERE connection_id = $3")
        .bind(next_due)
        .bind(now)
        .bind(connection_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The connection's transactions changed after `after_seq`, in seq order, at most `limit`.
pub async fn changed_after(db: &Db, connection_id: &str, after_seq: i64, limit: i64) -> Result<Vec<StoredTransaction>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM transactions WHERE connection_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"))
        .bind(connection_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Claims up to `limit` active KFTC connections whose sync is due, until `claim_until`. Every
/// replica runs this: `FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas never claim the same rows),
/// the process's write lock on SQLite (one process). Connections without a bookkeeping row yet
/// (new ones) get one, due now.
pub async fn claim_due(db: &Db, now: i64, claim_until: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    let _local = match db.kind() {
        DatabaseKind::Sqlite => Some(db.local_write_lock().lock().await),
        DatabaseKind::Postgres => None,
    };
    sqlx::query(
        "INSERT INTO transaction_sync (connection_id, last_seq, account_days, next_due_at, created_at, updated_at) \
         SELECT id, 0, '{}', $1, $1, $1 FROM connections c WHERE c.provider = 'kftc' AND c.status = 'active' \
         AND NOT EXISTS (SELECT 1 FROM transaction_sync s WHERE s.connection_id = c.id) ON CONFLICT (connection_id) DO NOTHING",
    )
    .bind(now)
    .execute(db.pool())
    .await?;
    let skip_locked = match db.kind() {
        DatabaseKind::Postgres => " FOR UPDATE OF s SKIP LOCKED",
        DatabaseKind::Sqlite => "",
    };
    let rows: Vec<(String,)> = sqlx::query_as(&format!(
        "UPDATE transaction_sync SET claimed_until = $1 WHERE connection_id IN (\
            SELECT s.connection_id FROM transaction_sync s JOIN connections c ON c.id = s.connection_id \
            WHERE c.provider = 'kftc' AND c.status = 'active' AND c.access_token IS NOT NULL AND s.next_due_at <= $2 \
            AND (s.claimed_until IS NULL OR s.claimed_until < $2) ORDER BY s.next_due_at LIMIT $3{skip_locked}) RETURNING connection_id"
    ))
    .bind(claim_until)
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The vault key ids the stored transactions are sealed with (the start-up key check).
pub async fn key_ids_in_use(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT key_id FROM transactions").fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Up to `limit` transactions sealed with a key other than `active_key`, for rotation.
pub async fn not_on_key(db: &Db, active_key: &str, limit: i64) -> Result<Vec<StoredTransaction>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM transactions WHERE key_id <> $1 ORDER BY connection_id, fingerprint LIMIT $2"))
        .bind(active_key)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Replaces a row's ciphertexts with the same values under `key_id`, if the row was not changed
/// since it was read (same seq). Returns whether it was.
pub async fn reseal(db: &Db, t: &StoredTransaction, print_content: &[u8], branch_name: &[u8], key_id: &str) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE transactions SET print_content = $1, branch_name = $2, key_id = $3 WHERE connection_id = $4 AND fingerprint = $5 AND seq = $6")
            .bind(print_content)
            .bind(branch_name)
            .bind(key_id)
            .bind(&t.connection_id)
            .bind(&t.fingerprint)
            .bind(t.seq)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// When the connection was last synced, if ever.
pub async fn last_synced_at(db: &Db, connection_id: &str) -> Result<Option<i64>, StoreError> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT last_synced_at FROM transaction_sync WHERE connection_id = $1").bind(connection_id).fetch_optional(db.pool()).await?;
    Ok(row.and_then(|r| r.0))
}
