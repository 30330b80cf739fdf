//! Small service-wide facts stored as key/value pairs.

use super::{Db, StoreError};

pub async fn get(db: &Db, key: &str) -> Result<Option<String>, StoreError> {
    const SQL: &str = "SELECT value FROM meta WHERE key = $1";
    let row: Option<(String,)> = match db.inline() {
        Some(r) => r.optional(SQL, [key])?,
        None => sqlx::query_as(SQL).bind(key).fetch_optional(db.pool()).await?,
    };
    Ok(row.map(|r| r.0))
}

pub async fn set(db: &Db, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(db.pool())
        .await?;
    Ok(())
}
