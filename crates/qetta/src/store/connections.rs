//! A user's connection to a provider: encrypted tokens plus what we know about the grant.
//! Token columns hold vault ciphertexts; this module never sees plaintext tokens.

use super::{Db, StoreError};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_NEEDS_REAUTH: &str = "needs_reauth";
pub const STATUS_REVOKED: &str = "revoked";
/// KFTC's inquiry consent ran out (SPEC A14): a kind of needs-reauth with its own message.
pub const STATUS_CONSENT_EXPIRED: &str = "consent_expired";

const COLUMNS: &str = "id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at, \
    refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, last_refreshed_at, \
    refresh_failures, next_refresh_at, label, account_display";

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
    /// Consecutive failed refreshes; reset by a successful one.
    pub refresh_failures: i64,
    /// While refreshes fail: no new attempt before this time.
    pub next_refresh_at: Option<i64>,
    /// The user's own name for it.
    pub label: Option<String>,
    /// The provider account as shown to the user, masked.
    pub account_display: Option<String>,
}

impl super::inline_sqlite::FromInline for Connection {
    fn from_inline(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        // The order of COLUMNS.
        Ok(Self {
            id: r.get(0)?,
            user_id: r.get(1)?,
            provider: r.get(2)?,
            access_token: r.get(3)?,
            refresh_token: r.get(4)?,
            key_id: r.get(5)?,
            token_type: r.get(6)?,
            scope: r.get(7)?,
            expires_at: r.get(8)?,
            refresh_expires_at: r.get(9)?,
            provider_user_id: r.get(10)?,
            status: r.get(11)?,
            metadata: r.get(12)?,
            version: r.get(13)?,
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
            last_refreshed_at: r.get(16)?,
            refresh_failures: r.get(17)?,
            next_refresh_at: r.get(18)?,
            label: r.get(19)?,
            account_display: r.get(20)?,
        })
    }
}

impl Connection {
    /// Whether the provider's grant stands (the user need not consent again).
    pub fn is_active(&self) -> bool {
        self.status == STATUS_ACTIVE && self.access_token.is_some()
    }
}

/// A connection to create for a provider account the user had not connected yet.
pub struct NewConnection<'a> {
    /// Chosen by the caller, so that the token ciphertexts can be bound to it before the insert.
    pub id: &'a str,
    pub user_id: &'a str,
    pub provider: &'a str,
    pub provider_user_id: &'a str,
    pub account_display: Option<&'a str>,
    pub label: Option<&'a str>,
    pub metadata: &'a str,
    pub tokens: &'a TokenWrite,
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
    // Sorted here, not by the database: the index (user_id, provider, created_at) gives no order
    // to connections made in the same second, and SQLite's sort for the `id` tie-break (a
    // temporary B-tree per query) cost about 11,000 instructions, 7 % of `GET /api/v1/oauth/status`
    // for a user with one connection. Byte order: the same on both databases whatever PostgreSQL's
    // collation.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM connections WHERE user_id = $1"));
    let mut rows: Vec<Connection> = match db.inline() {
        Some(r) => r.all(&SQL, [user_id])?,
        None => sqlx::query_as(&SQL).bind(user_id).fetch_all(db.pool()).await?,
    };
    rows.sort_unstable_by(|a, b| (a.provider.as_bytes(), a.created_at, a.id.as_bytes()).cmp(&(b.provider.as_bytes(), b.created_at, b.id.as_bytes())));
    Ok(rows)
}

pub async fn get_by_id(db: &Db, id: &str) -> Result<Option<Connection>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM connections WHERE id = $1"));
    if let Some(r) = db.inline() {
        return r.optional(&SQL, [id]);
    }
    read_by_id(db.pool(), id, false).await
}

/// Reads a row on any executor; `for_update` takes the row lock (PostgreSQL only: the caller
/// passes `false` on SQLite, which has a single writer anyway).
pub async fn read_by_id<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, id: &str, for_update: bool) -> Result<Option<Connection>, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE id = $1{lock}")).bind(id).fetch_optional(ex).await?)
}

/// The user's connection `id` (`None` when it does not exist or is another user's).
pub async fn get_for_user(db: &Db, user_id: &str, id: &str) -> Result<Option<Connection>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM connections WHERE id = $1 AND user_id = $2"));
    if let Some(r) = db.inline() {
        return r.optional(&SQL, [id, user_id]);
    }
    Ok(sqlx::query_as(&SQL).bind(id).bind(user_id).fetch_optional(db.pool()).await?)
}

/// The user's default connection to `provider` for the routes that name no connection: the
/// newest one whose grant stands, else the newest.
pub async fn default_for(db: &Db, user_id: &str, provider: &str) -> Result<Option<Connection>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM connections WHERE user_id = $1 AND provider = $2 \
         ORDER BY CASE WHEN status = 'active' AND access_token IS NOT NULL THEN 0 ELSE 1 END, created_at DESC, id LIMIT 1"
    ))
    .bind(user_id)
    .bind(provider)
    .fetch_optional(db.pool())
    .await?)
}

/// The user's connection to the provider account `provider_user_id`, if any.
pub async fn find_account<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    user_id: &str,
    provider: &str,
    provider_user_id: &str,
) -> Result<Option<Connection>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM connections WHERE user_id = $1 AND provider = $2 AND provider_user_id = $3"))
        .bind(user_id)
        .bind(provider)
        .bind(provider_user_id)
        .fetch_optional(ex)
        .await?)
}

/// Creates an active connection with its first grant. Returns `false` when the user already has
/// a connection to that provider account (a concurrent connect won: the caller updates that one)
/// or is a deleted account.
pub async fn insert<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, c: &NewConnection<'_>, now: i64) -> Result<bool, StoreError> {
    let t = c.tokens;
    let done = sqlx::query(
        "INSERT INTO connections (id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at, \
         refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, label, account_display) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active', $12, 1, $13, $13, $14, $15 \
         WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND deleted_at IS NULL) \
         ON CONFLICT (user_id, provider, provider_user_id) DO NOTHING",
    )
    .bind(c.id)
    .bind(c.user_id)
    .bind(c.provider)
    .bind(&t.access_token)
    .bind(t.refresh_token.as_ref())
    .bind(&t.key_id)
    .bind(&t.token_type)
    .bind(&t.scope)
    .bind(t.expires_at)
    .bind(t.refresh_expires_at)
    .bind(c.provider_user_id)
    .bind(c.metadata)
    .bind(now)
    .bind(c.label)
    .bind(c.account_display)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// After a re-consent: what the provider says about the account now, and the label the user
/// gave this time (a `None` keeps the old one).
pub async fn update_link<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    id: &str,
    account_display: Option<&str>,
    label: Option<&str>,
    metadata: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connections SET account_display = COALESCE($1, account_display), label = COALESCE($2, label), \
         metadata = COALESCE($3, metadata), updated_at = $4 WHERE id = $5",
    )
    .bind(account_display)
    .bind(label)
    .bind(metadata)
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(())
}

/// Renames the user's connection (`None` clears the label). `false`: no such connection of theirs.
pub async fn set_label<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    user_id: &str,
    id: &str,
    label: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE connections SET label = $1, updated_at = $2 WHERE id = $3 AND user_id = $4")
        .bind(label)
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts the connection in `status` unless it is in it already; `true` when it changed.
pub async fn change_status<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, id: &str, status: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE connections SET status = $1, version = version + 1, updated_at = $2 WHERE id = $3 AND status <> $1")
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a connection and its tokens. Returns whether there was one.
pub async fn delete_by_id<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, id: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("DELETE FROM connections WHERE id = $1").bind(id).execute(ex).await?.rows_affected() > 0)
}

/// Writes a new grant (connect or refresh) if the row is still at `expected_version`.
/// Returns `false` when someone else wrote first (the caller re-reads the row).
pub async fn write_tokens<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
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
         last_refreshed_at = CASE WHEN $10 = 1 THEN $9 ELSE last_refreshed_at END, \
         refresh_failures = 0, next_refresh_at = NULL, refresh_claimed_until = NULL \
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
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed refresh of the row at `expected_version`: the tokens stay, the next attempt
/// waits until `next_at`. Returns `false` when the row moved on (someone else refreshed).
pub async fn record_refresh_failure<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    id: &str,
    expected_version: i64,
    next_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET refresh_failures = refresh_failures + 1, next_refresh_at = $1, refresh_claimed_until = NULL, updated_at = $2 \
         WHERE id = $3 AND version = $4",
    )
    .bind(next_at)
    .bind(now)
    .bind(id)
    .bind(expected_version)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The provider says the grant of the row at `expected_version` is dead (`status`:
/// [`STATUS_NEEDS_REAUTH`] or [`STATUS_CONSENT_EXPIRED`]): the user must consent again. Returns
/// `false` when the row moved on (a newer grant was stored meanwhile).
pub async fn mark_needs_reauth<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    id: &str,
    expected_version: i64,
    status: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET status = $1, version = version + 1, refresh_claimed_until = NULL, updated_at = $2 \
         WHERE id = $3 AND version = $4",
    )
    .bind(status)
    .bind(now)
    .bind(id)
    .bind(expected_version)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Which connections the background refresher wants (Unix seconds): those expiring before
/// `margin_before` (within the refresh margin: any user would refresh them now), and those
/// expiring before `before` (the lookahead) that have less than half of their lifetime left,
/// counted from their last refresh (or creation). The second rule keeps a token whose whole
/// lifetime is shorter than the lookahead (hours, where the lookahead is days) from being
/// refreshed again by every pass.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub before: i64,
    pub margin_before: i64,
}

impl Due {
    /// [`Due`]'s rule for one row at `now`.
    pub fn wants(&self, c: &Connection, now: i64) -> bool {
        let Some(e) = c.expires_at else { return false };
        let issued = c.last_refreshed_at.unwrap_or(c.created_at);
        e < self.margin_before || (e < self.before && 2 * (e - now) < e - issued)
    }
}

/// Claims up to `limit` active connections that are [`Due`] and not in backoff or claimed by
/// another replica; the claim lasts until `claim_until`. On PostgreSQL `FOR UPDATE SKIP LOCKED`
/// lets any number of replicas claim concurrently without overlap.
pub async fn claim_due(db: &Db, due: Due, now: i64, claim_until: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    let skip_locked = match db.kind() {
        crate::config::DatabaseKind::Postgres => " FOR UPDATE SKIP LOCKED",
        crate::config::DatabaseKind::Sqlite => "",
    };
    let _local = match db.kind() {
        crate::config::DatabaseKind::Sqlite => Some(db.local_write_lock().lock().await),
        crate::config::DatabaseKind::Postgres => None,
    };
    let rows: Vec<(String,)> = sqlx::query_as(&format!(
        "UPDATE connections SET refresh_claimed_until = $1 WHERE id IN (\
            SELECT id FROM connections WHERE status = 'active' AND refresh_token IS NOT NULL AND expires_at IS NOT NULL \
            AND (expires_at < $5 OR (expires_at < $2 AND 2 * (expires_at - $3) < expires_at - COALESCE(last_refreshed_at, created_at))) \
            AND (next_refresh_at IS NULL OR next_refresh_at <= $3) \
            AND (refresh_claimed_until IS NULL OR refresh_claimed_until < $3) \
            ORDER BY expires_at LIMIT $4{skip_locked}) RETURNING id"
    ))
    .bind(claim_until)
    .bind(due.before)
    .bind(now)
    .bind(limit)
    .bind(due.margin_before)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// How many connections [`claim_due`] would claim now, without a limit or the claims (the
/// refresher's queue, for the metrics): one count on the `connections_due` index.
pub async fn count_due(db: &Db, due_before: i64, now: i64) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM connections WHERE status = 'active' AND refresh_token IS NOT NULL AND expires_at IS NOT NULL \
         AND expires_at < $1 AND (next_refresh_at IS NULL OR next_refresh_at <= $2) \
         AND (refresh_claimed_until IS NULL OR refresh_claimed_until < $2)",
    )
    .bind(due_before)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// Rows sealed with a key other than `active_key`, for rotation.
pub async fn ids_not_on_key(db: &Db, active_key: &str, limit: i64) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM connections WHERE key_id IS NOT NULL AND key_id <> $1 ORDER BY id LIMIT $2")
        .bind(active_key)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Replaces the ciphertexts of a row with the same tokens under another key, if the row is still
/// at `version`. Does not bump the version: the plaintext is unchanged, so a refresh that read
/// the row before still writes its new tokens (which are sealed with the active key anyway).
pub async fn reseal(db: &Db, id: &str, version: i64, access: &[u8], refresh: Option<&[u8]>, key_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE connections SET access_token = $1, refresh_token = $2, key_id = $3 WHERE id = $4 AND version = $5")
        .bind(access)
        .bind(refresh)
        .bind(key_id)
        .bind(id)
        .bind(version)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Key ids in use by stored ciphertexts (connections, service tokens except the empty
/// placeholder row, Toss identities).
pub async fn key_ids_in_use(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT key_id FROM connections WHERE key_id IS NOT NULL \
         UNION SELECT DISTINCT key_id FROM service_tokens WHERE key_id <> '' \
         UNION SELECT DISTINCT key_id FROM toss_identities",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn set_metadata<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, id: &str, metadata: &serde_json::Value, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE connections SET metadata = $1, updated_at = $2 WHERE id = $3").bind(metadata.to_string()).bind(now).bind(id).execute(ex).await?;
    Ok(())
}
