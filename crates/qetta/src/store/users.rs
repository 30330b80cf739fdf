//! Local users (the embedded/demo mode's accounts, and the subject of every JWT).
//!
//! Three kinds of rows: registered users (an email and an argon2 hash), users minted by the app's
//! backend (a placeholder email, password hash `!`), and tombstones of deleted accounts
//! (`deleted_at` set, email and hash wiped) that keep every JWT for their id refused.

use super::{Db, StoreError};

/// The password hash of a user without a local password (minted by the app's backend, or deleted).
pub const NO_PASSWORD: &str = "!";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
}

impl User {
    /// Whether the user registered here with a password (rather than being minted by the backend).
    pub fn has_password(&self) -> bool {
        self.password_hash != NO_PASSWORD
    }
}

/// The email column of a user minted by the app's backend. It contains a space, so
/// `password::normalize_email` refuses it and no registration can ever take it (or block it).
pub fn external_placeholder_email(id: &str) -> String {
    format!("external {id}@external.invalid")
}

/// The email column of a deleted account (the real email is wiped; the column is unique).
pub fn tombstone_email(id: &str) -> String {
    format!("deleted {id}@external.invalid")
}

pub async fn create(db: &Db, email: &str, password_hash: &str, now: i64) -> Result<User, StoreError> {
    let user = User { id: uuid::Uuid::new_v4().to_string(), email: email.to_string(), password_hash: password_hash.to_string(), created_at: now };
    sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.created_at)
        .execute(db.pool())
        .await
        .map_err(|e| StoreError::unique_as(e, "An account with this email"))?;
    Ok(user)
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1 AND deleted_at IS NULL")
        .bind(email)
        .fetch_optional(db.pool())
        .await?)
}

/// A live (not deleted) user.
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1 AND deleted_at IS NULL").bind(id).fetch_optional(db.pool()).await?)
}

/// Whether `id` is a deleted account (one primary-key lookup; `false` for ids never seen).
pub async fn is_deleted(db: &Db, id: &str) -> Result<bool, StoreError> {
    const SQL: &str = "SELECT deleted_at FROM users WHERE id = $1";
    let row: Option<(Option<i64>,)> = match db.inline() {
        Some(r) => r.optional(SQL, [id])?,
        None => sqlx::query_as(SQL).bind(id).fetch_optional(db.pool()).await?,
    };
    Ok(matches!(row, Some((Some(_),))))
}

/// Makes sure a user row exists for a subject minted by the app's own backend (JWTs signed with
/// the shared secret for users that never registered here). Returns whether it was created. An
/// existing row, a tombstone included, is left as it is.
pub async fn ensure_external(db: &Db, id: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .bind(external_placeholder_email(id))
        .bind(NO_PASSWORD)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Turns the user into a tombstone: personal data wiped, `deleted_at` set. Creates the tombstone
/// when the id was never seen (a backend-minted user deleted before first use). Returns `false`
/// when it was already deleted.
pub async fn tombstone(db: &Db, id: &str, now: i64) -> Result<bool, StoreError> {
    let updated = sqlx::query("UPDATE users SET email = $1, password_hash = $2, deleted_at = $3 WHERE id = $4 AND deleted_at IS NULL")
        .bind(tombstone_email(id))
        .bind(NO_PASSWORD)
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await?;
    if updated.rows_affected() > 0 {
        return Ok(true);
    }
    let inserted = sqlx::query("INSERT INTO users (id, email, password_hash, created_at, deleted_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .bind(tombstone_email(id))
        .bind(NO_PASSWORD)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(inserted.rows_affected() > 0)
}
