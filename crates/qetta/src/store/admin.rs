//! Every statement of the admin dashboard: who is an administrator, and the aggregated figures of
//! `/api/v1/admin/stats` (one query per figure), the user search and a user's connections.
//!
//! Written for the connection core that is coming: nothing here assumes one connection per user
//! and provider, and the status `consent_expired` counts as "needs re-consent" with `needs_reauth`.

use super::{Db, StoreError};

/// Where a grant came from.
pub const SOURCE_ENV: &str = "env";
pub const SOURCE_CLI: &str = "cli";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Admin {
    pub email: String,
    /// The account the grant is bound to; `None` while no account has the email.
    pub user_id: Option<String>,
    pub source: String,
    pub granted_at: i64,
}

/// Whether `user_id` is an administrator now: a grant bound to this live account, whose email is
/// still the grant's (a deleted account's email is wiped, so its grant no longer matches).
pub async fn is_admin(db: &Db, user_id: &str) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT CAST(1 AS BIGINT) FROM admins a JOIN users u ON u.id = a.user_id \
         WHERE a.user_id = $1 AND u.email = a.email AND u.deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The live account registered with `email` (a local password; backend-minted users and
/// tombstones have placeholder emails that no normalised email equals).
pub async fn account_with_email(db: &Db, email: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE email = $1 AND deleted_at IS NULL").bind(email).fetch_optional(db.pool()).await?;
    Ok(row.map(|r| r.0))
}

pub async fn list(db: &Db) -> Result<Vec<Admin>, StoreError> {
    Ok(sqlx::query_as("SELECT email, user_id, source, granted_at FROM admins ORDER BY email").fetch_all(db.pool()).await?)
}

pub async fn get(db: &Db, email: &str) -> Result<Option<Admin>, StoreError> {
    Ok(sqlx::query_as("SELECT email, user_id, source, granted_at FROM admins WHERE email = $1").bind(email).fetch_optional(db.pool()).await?)
}

/// Creates or replaces the grant of `email`, bound to `user_id`, with its audit entry in the same
/// transaction.
pub async fn put(db: &Db, email: &str, user_id: Option<&str>, source: &str, now: i64, entry: &super::audit::NewEntry) -> Result<(), StoreError> {
    let mut w = db.begin_write().await?;
    let work = async {
        sqlx::query(
            "INSERT INTO admins (email, user_id, source, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO UPDATE SET user_id = excluded.user_id, source = excluded.source, granted_at = excluded.granted_at",
        )
        .bind(email)
        .bind(user_id)
        .bind(source)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        super::audit::append_in(&mut w, entry, now).await?;
        Ok(())
    }
    .await;
    w.finish(work).await
}

/// Deletes the grant of `email` with its audit entry; `false` (and nothing written) when there
/// was none.
pub async fn remove(db: &Db, email: &str, now: i64, entry: &super::audit::NewEntry) -> Result<bool, StoreError> {
    let mut w = db.begin_write().await?;
    let work = async {
        let done = sqlx::query("DELETE FROM admins WHERE email = $1").bind(email).execute(&mut *w.tx).await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        super::audit::append_in(&mut w, entry, now).await?;
        Ok(true)
    }
    .await;
    w.finish(work).await
}

/// Connections of one provider by state, at `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ConnectionCounts {
    pub provider: String,
    pub total: i64,
    pub active: i64,
    /// Active, with an access token that expired already (the next use refreshes it).
    pub expired: i64,
    /// Active, token expiring within 24 hours (not yet expired).
    pub expiring_24h: i64,
    /// Active, token expiring within 7 days (includes the 24-hour ones).
    pub expiring_7d: i64,
    /// `needs_reauth` or `consent_expired`: the user must consent again.
    pub needs_reconsent: i64,
    pub revoked: i64,
    /// Active with a refresh token, expiring before `due_before`: the background refresher's queue.
    pub refresh_due: i64,
}

/// One aggregated query over all connections, grouped by provider.
pub async fn connection_counts(db: &Db, now: i64, due_before: i64) -> Result<Vec<ConnectionCounts>, StoreError> {
    let n = |cond: &str| format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)");
    let sql = format!(
        "SELECT provider, CAST(COUNT(*) AS BIGINT) AS total, {active} AS active, {expired} AS expired, {d1} AS expiring_24h, {d7} AS expiring_7d, \
         {reconsent} AS needs_reconsent, {revoked} AS revoked, {due} AS refresh_due FROM connections GROUP BY provider ORDER BY provider",
        active = n("status = 'active'"),
        expired = n("status = 'active' AND expires_at IS NOT NULL AND expires_at < $1"),
        d1 = n("status = 'active' AND expires_at IS NOT NULL AND expires_at >= $1 AND expires_at < $2"),
        d7 = n("status = 'active' AND expires_at IS NOT NULL AND expires_at >= $1 AND expires_at < $3"),
        reconsent = n("status IN ('needs_reauth', 'consent_expired')"),
        revoked = n("status = 'revoked'"),
        due = n("status = 'active' AND refresh_token IS NOT NULL AND expires_at IS NOT NULL AND expires_at < $4"),
    );
    Ok(sqlx::query_as(&sql).bind(now).bind(now + 86_400).bind(now + 7 * 86_400).bind(due_before).fetch_all(db.pool()).await?)
}

/// Refresh outcomes (`ok`, `failed`, `needs_reauth`) of one provider and day of the last 7 days.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshCount {
    pub provider: String,
    pub outcome: String,
    /// 0 = the 24 hours ending now, 6 = six to seven days ago.
    pub days_ago: i64,
    pub count: i64,
}

/// One aggregated query over the audit log's `refresh` entries of the last 7 days (index
/// `audit_log_action_at`), by provider, outcome and 24-hour window counted back from `now`.
pub async fn refresh_counts(db: &Db, now: i64) -> Result<Vec<RefreshCount>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(provider, '') AS provider, outcome, CAST(($1 - at) / 86400 AS BIGINT) AS days_ago, CAST(COUNT(*) AS BIGINT) AS count \
         FROM audit_log WHERE action = 'refresh' AND at > $2 AND at <= $1 \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(now)
    .bind(now - 7 * 86_400)
    .fetch_all(db.pool())
    .await?)
}

/// A user as the admin search shows it (never a password hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    /// The stored email: a placeholder for backend-minted users and tombstones.
    pub email: String,
    /// 1: registered here with a password.
    pub has_password: i64,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub connections: i64,
}

const USER_COLUMNS: &str = "u.id, u.email, CAST(CASE WHEN u.password_hash = '!' THEN 0 ELSE 1 END AS BIGINT) AS has_password, u.created_at, u.deleted_at, \
     CAST((SELECT COUNT(*) FROM connections c WHERE c.user_id = u.id) AS BIGINT) AS connections";

/// Users whose id is `q`, or whose email contains `q` (lower case; `%` and `_` match themselves),
/// at most `limit`, the exact id first.
pub async fn search_users(db: &Db, q: &str, limit: i64) -> Result<Vec<UserRow>, StoreError> {
    let escaped: String = q.to_lowercase().chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 OR u.email LIKE $2 ESCAPE '\\' \
         ORDER BY CASE WHEN u.id = $1 THEN 0 ELSE 1 END, u.email LIMIT $3"
    ))
    .bind(q)
    .bind(format!("%{escaped}%"))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

pub async fn user(db: &Db, id: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1")).bind(id).fetch_optional(db.pool()).await?)
}

/// What the dashboard shows of a connection: no token, no ciphertext, no key id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: String,
    pub provider: String,
    pub status: String,
    pub scope: Option<String>,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub created_at: i64,
    pub last_refreshed_at: Option<i64>,
    pub refresh_failures: i64,
}

/// Every connection of a user (any number per provider), oldest first.
pub async fn user_connections(db: &Db, user_id: &str) -> Result<Vec<ConnectionRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, provider, status, scope, expires_at, refresh_expires_at, created_at, last_refreshed_at, refresh_failures \
         FROM connections WHERE user_id = $1 ORDER BY provider, created_at, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?)
}
