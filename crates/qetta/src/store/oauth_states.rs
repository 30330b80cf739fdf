//! OAuth `state` values: stored at authorize time, consumed exactly once at the callback.

use super::{Db, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthState {
    pub state: String,
    pub user_id: String,
    pub provider: String,
    pub flow_data: Option<String>,
    pub browser_binding: Option<String>,
    /// SHA-256 (hex) of the initiator cookie's secret of the browser that started the flow, when
    /// it was started from a browser (see `http::oauth_flow`).
    pub initiator_hash: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

pub async fn insert(db: &Db, s: &OAuthState) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO oauth_states (state, user_id, provider, flow_data, browser_binding, initiator_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.state)
    .bind(&s.user_id)
    .bind(&s.provider)
    .bind(s.flow_data.as_ref())
    .bind(s.browser_binding.as_ref())
    .bind(s.initiator_hash.as_ref())
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(db.pool())
    .await
    .map_err(|e| StoreError::unique_as(e, "This state"))?;
    Ok(())
}

/// Marks the state consumed and returns it, or `None` when it is unknown or was already consumed.
/// Expiry is the caller's decision (it gets `expires_at`), so that an expired state is reported as
/// expired rather than unknown; an expired state is consumed all the same.
pub async fn consume(db: &Db, state: &str, now: i64) -> Result<Option<OAuthState>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE oauth_states SET consumed_at = $1 WHERE state = $2 AND consumed_at IS NULL \
         RETURNING state, user_id, provider, flow_data, browser_binding, initiator_hash, created_at, expires_at, consumed_at",
    )
    .bind(now)
    .bind(state)
    .fetch_optional(db.pool())
    .await?)
}

/// Whether the state exists at all (consumed or not): tells "replayed" from "unknown".
pub async fn exists(db: &Db, state: &str) -> Result<bool, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT state FROM oauth_states WHERE state = $1").bind(state).fetch_optional(db.pool()).await?;
    Ok(row.is_some())
}

/// Deletes states that expired more than a day ago.
pub async fn purge_expired(db: &Db, now: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1").bind(now - 86400).execute(db.pool()).await?;
    Ok(done.rows_affected())
}

/// Forgets every pending state of a user (account deletion).
pub async fn delete_for_user(db: &Db, user_id: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM oauth_states WHERE user_id = $1").bind(user_id).execute(db.pool()).await?.rows_affected())
}
