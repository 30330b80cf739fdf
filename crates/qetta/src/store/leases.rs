//! Leases on rows: the storage half of the one single-flight primitive
//! (`crate::tokens::single_flight`). A lease is an owner and an end (wall-clock Unix
//! milliseconds) in two columns of the row it protects; taking, renewing and giving it up are
//! one short `UPDATE` each, so no pooled connection or row lock is held while the owner works.

use super::{Db, StoreError};

/// Which row, and which of its columns hold the lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRow {
    pub table: &'static str,
    pub key: &'static str,
    pub owner: &'static str,
    pub until: &'static str,
}

/// A connection's refresh (user tokens).
pub const CONNECTION_REFRESH: LeaseRow = LeaseRow { table: "connections", key: "id", owner: "refresh_lease_owner", until: "refresh_lease_until" };
/// A service token's fetch (client credentials: Toss).
pub const SERVICE_TOKEN: LeaseRow = LeaseRow { table: "service_tokens", key: "provider", owner: "lock_owner", until: "lock_until" };

/// Takes the lease of row `key` for `owner` until `until_ms` if nobody holds it: free, or ended
/// before `expired_before_ms` (its end plus a grace), or `owner`'s already.
pub async fn claim(db: &Db, row: LeaseRow, key: &str, owner: &str, expired_before_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
    let LeaseRow { table, key: k, owner: o, until: u } = row;
    let done = sqlx::query(&format!("UPDATE {table} SET {o} = $1, {u} = $2 WHERE {k} = $3 AND ({u} IS NULL OR {u} < $4 OR {o} = $1)"))
        .bind(owner)
        .bind(until_ms)
        .bind(key)
        .bind(expired_before_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Who holds (or last held) the lease.
pub async fn owner(db: &Db, row: LeaseRow, key: &str) -> Result<Option<String>, StoreError> {
    let got: Option<(Option<String>,)> =
        sqlx::query_as(&format!("SELECT {} FROM {} WHERE {} = $1", row.owner, row.table, row.key)).bind(key).fetch_optional(db.pool()).await?;
    Ok(got.and_then(|r| r.0))
}

/// Extends `owner`'s lease; `false` when it is no longer `owner`'s.
pub async fn renew(db: &Db, row: LeaseRow, key: &str, owner: &str, until_ms: i64) -> Result<bool, StoreError> {
    let LeaseRow { table, key: k, owner: o, until: u } = row;
    let done = sqlx::query(&format!("UPDATE {table} SET {u} = $1 WHERE {k} = $2 AND {o} = $3")).bind(until_ms).bind(key).bind(owner).execute(db.pool()).await?;
    Ok(done.rows_affected() == 1)
}

/// Gives up `owner`'s lease (a no-op when someone else holds it now); on any executor, so that a
/// write can release it in its own transaction.
pub async fn release<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, row: LeaseRow, key: &str, owner: &str) -> Result<(), StoreError> {
    let LeaseRow { table, key: k, owner: o, until: u } = row;
    sqlx::query(&format!("UPDATE {table} SET {o} = NULL, {u} = NULL WHERE {k} = $1 AND {o} = $2")).bind(key).bind(owner).execute(ex).await?;
    Ok(())
}
