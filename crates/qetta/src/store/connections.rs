//! A user's connection to a provider: encrypted tokens plus what we know about the grant.
//! Token columns hold vault ciphertexts; this module never sees plaintext tokens.

use super::{Db, StoreError};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_NEEDS_REAUTH: &str = "needs_reauth";
pub const STATUS_REVOKED: &str = "revoked";

const COLUMNS: &str = "id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at, \
    refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, last_refreshed_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Connection {
    pub id: String,
    pub user_id: String,
    pub provider: String,
    pub access_token: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub token_type: Option<String>,
    pub scope: Option<String>,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub provider_user_id: Option<String>,
    pub status: String,
    pub metadata: String,
    /// Bumped on every token write; a writer that read version N only writes if it is still N.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_refreshed_at: Option<i64>,
}

/// Everything a successful token grant writes.
#[derive(Debug, Clone)]
pub struct TokenWrite {
    pub access_token: Vec<u8>,
    pub refresh_token: Option<Vec<u8>>,
    pub key_id: String,
    pub token_type: String,
    pub scope: String,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
}

pub async fn list_for_user(db: &Db, user_id: &str) -> Result<Vec<Connection>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE user_id = $1 ORDER BY provider"))
        .bind(user_id)
        .fetch_all(db.pool())
        .await?)
}

pub async fn get(db: &Db, user_id: &str, provider: &str) -> Result<Option<Connection>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE user_id = $1 AND provider = $2"))
        .bind(user_id)
        .bind(provider)
        .fetch_optional(db.pool())
        .await?)
}

pub async fn get_by_id(db: &Db, id: &str) -> Result<Option<Connection>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE id = $1")).bind(id).fetch_optional(db.pool()).await?)
}

/// Creates the connection row for (user, provider) if it does not exist, without tokens, and
/// returns its id. Tokens are then written with [`write_tokens`], so that their ciphertexts can
/// be bound to the row id.
pub async fn ensure(db: &Db, user_id: &str, provider: &str, now: i64) -> Result<Connection, StoreError> {
    sqlx::query(
        "INSERT INTO connections (id, user_id, provider, status, metadata, version, created_at, updated_at) \
         VALUES ($1, $2, $3, 'needs_reauth', '{}', 0, $4, $4) ON CONFLICT (user_id, provider) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(user_id)
    .bind(provider)
    .bind(now)
    .execute(db.pool())
    .await?;
    get(db, user_id, provider).await?.ok_or(StoreError::NotFound)
}

/// Writes a new grant (connect or refresh) if the row is still at `expected_version`.
/// Returns `false` when someone else wrote first (the caller re-reads the row).
pub async fn write_tokens(
    db: &Db,
    id: &str,
    expected_version: i64,
    t: &TokenWrite,
    provider_user_id: Option<&str>,
    refreshed: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET access_token = $1, refresh_token = COALESCE($2, refresh_token), key_id = $3, token_type = $4, \
         scope = $5, expires_at = $6, refresh_expires_at = COALESCE($7, refresh_expires_at), \
         provider_user_id = COALESCE($8, provider_user_id), status = 'active', version = version + 1, updated_at = $9, \
         last_refreshed_at = CASE WHEN $10 = 1 THEN $9 ELSE last_refreshed_at END \
         WHERE id = $11 AND version = $12",
    )
    .bind(&t.access_token)
    .bind(t.refresh_token.as_ref())
    .bind(&t.key_id)
    .bind(&t.token_type)
    .bind(&t.scope)
    .bind(t.expires_at)
    .bind(t.refresh_expires_at)
    .bind(provider_user_id)
    .bind(now)
    .bind(if refreshed { 1i64 } else { 0i64 })
    .bind(id)
    .bind(expected_version)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_status(db: &Db, id: &str, status: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE connections SET status = $1, version = version + 1, updated_at = $2 WHERE id = $3")
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_metadata(db: &Db, id: &str, metadata: &serde_json::Value, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE connections SET metadata = $1, updated_at = $2 WHERE id = $3")
        .bind(metadata.to_string())
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes the connection and its tokens. Returns whether there was one.
pub async fn delete(db: &Db, user_id: &str, provider: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM connections WHERE user_id = $1 AND provider = $2")
        .bind(user_id)
        .bind(provider)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}
