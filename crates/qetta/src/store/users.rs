//! Local users (the embedded/demo mode's accounts, and the subject of every JWT).

use super::{Db, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
}

pub async fn create(db: &Db, email: &str, password_hash: &str, now: i64) -> Result<User, StoreError> {
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.to_string(),
        password_hash: password_hash.to_string(),
        created_at: now,
    };
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
    Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db.pool())
        .await?)
}

pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?)
}

/// Makes sure a user row exists for a subject minted by the app's own backend (JWTs signed with
/// the shared secret for users that never registered here). Returns whether it was created.
pub async fn ensure_external(db: &Db, id: &str, now: i64) -> Result<bool, StoreError> {
    let email = format!("{id}@external.invalid");
    let done = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, '!', $3) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&email)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}
