//! Toss Certification storage: the shared service token row, verification requests and verified
//! identities. Token and personal columns hold vault ciphertexts; this module never sees
//! plaintext.

use super::{Db, StoreError};

// ---------------------------------------------------------------------------------------------
// service_tokens

/// A `service_tokens` row. The placeholder row (inserted so that there is something to lock)
/// has an empty token and key id: [`ServiceTokenRow::has_token`] is `false` for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceTokenRow {
    pub provider: String,
    pub access_token: Vec<u8>,
    pub key_id: String,
    pub token_type: String,
    pub scope: String,
    pub expires_at: Option<i64>,
    pub version: i64,
    pub updated_at: i64,
}

impl ServiceTokenRow {
    pub fn has_token(&self) -> bool {
        !self.access_token.is_empty() && !self.key_id.is_empty()
    }
}

const SERVICE_COLUMNS: &str = "provider, access_token, key_id, token_type, scope, expires_at, version, updated_at";

/// Inserts the placeholder row for `provider` unless a row exists.
pub async fn ensure_service_row(db: &Db, provider: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO service_tokens (provider, access_token, key_id, token_type, scope, expires_at, version, updated_at) \
         VALUES ($1, $2, '', '', '', NULL, 0, $3) ON CONFLICT (provider) DO NOTHING",
    )
    .bind(provider)
    .bind(Vec::<u8>::new())
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Reads the row on any executor; `for_update` takes the row lock (PostgreSQL only).
pub async fn read_service_row<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    provider: &str,
    for_update: bool,
) -> Result<Option<ServiceTokenRow>, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    Ok(sqlx::query_as(&format!("SELECT {SERVICE_COLUMNS} FROM service_tokens WHERE provider = $1{lock}")).bind(provider).fetch_optional(ex).await?)
}

/// The provider's row, without a lock (reads for display).
pub async fn get_service_row(db: &Db, provider: &str) -> Result<Option<ServiceTokenRow>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("SELECT {SERVICE_COLUMNS} FROM service_tokens WHERE provider = $1"));
    match db.inline() {
        Some(r) => r.optional(&SQL, [provider]),
        None => read_service_row(db.pool(), provider, false).await,
    }
}

/// A [`ServiceTokenRow`] from the columns of [`SERVICE_COLUMNS`] at `$base` of a row, read with
/// `$row.$get(index)` (rusqlite's `get`, sqlx's `try_get`): one list of fields for both readers.
macro_rules! service_row_at {
    ($row:expr, $get:ident, $base:expr) => {
        ServiceTokenRow {
            provider: $row.$get($base)?,
            access_token: $row.$get($base + 1)?,
            key_id: $row.$get($base + 2)?,
            token_type: $row.$get($base + 3)?,
            scope: $row.$get($base + 4)?,
            expires_at: $row.$get($base + 5)?,
            version: $row.$get($base + 6)?,
            updated_at: $row.$get($base + 7)?,
        }
    };
}

/// An [`Identity`] from the columns of [`IDENTITY_COLUMNS`] at `$base`, as [`service_row_at`].
macro_rules! identity_at {
    ($row:expr, $get:ident, $base:expr) => {
        Identity {
            user_id: $row.$get($base)?,
            tx_id: $row.$get($base + 1)?,
            ci: $row.$get($base + 2)?,
            di: $row.$get($base + 3)?,
            name: $row.$get($base + 4)?,
            birthday: $row.$get($base + 5)?,
            signature: $row.$get($base + 6)?,
            phone: $row.$get($base + 7)?,
            gender: $row.$get($base + 8)?,
            nationality: $row.$get($base + 9)?,
            age_group: $row.$get($base + 10)?,
            key_id: $row.$get($base + 11)?,
            verified_at: $row.$get($base + 12)?,
            version: $row.$get($base + 13)?,
        }
    };
}

impl super::inline_sqlite::FromInline for ServiceTokenRow {
    fn from_inline(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(service_row_at!(r, get, 0))
    }
}

impl super::inline_sqlite::FromInline for Identity {
    fn from_inline(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(identity_at!(r, get, 0))
    }
}

/// What Toss's entry of `GET /api/v1/oauth/status` shows, read in one statement: the user's
/// identity, the service token's row, and the stored JSON of `meta` key `last_test_key`. (Three
/// statements cost about a sixth of that request's instructions on embedded SQLite.)
#[derive(Debug, Default)]
pub struct StatusReads {
    pub identity: Option<Identity>,
    pub service: Option<ServiceTokenRow>,
    pub last_test: Option<String>,
}

struct StatusRow(StatusReads);

/// Columns: the identity's (14, from 0), the service row's (8, from 14), the meta value (22).
const STATUS_IDENTITY_AT: usize = 0;
const STATUS_SERVICE_AT: usize = 14;
const STATUS_META_AT: usize = 22;

/// A [`StatusRow`] read with `$row.$get(index)`, as [`service_row_at`]. A column that is never
/// NULL in its table tells whether the LEFT JOIN found a row.
macro_rules! status_row {
    ($row:expr, $get:ident) => {{
        let identity: Option<String> = $row.$get(STATUS_IDENTITY_AT)?;
        let service: Option<String> = $row.$get(STATUS_SERVICE_AT)?;
        StatusRow(StatusReads {
            identity: match identity {
                Some(_) => Some(identity_at!($row, $get, STATUS_IDENTITY_AT)),
                None => None,
            },
            service: match service {
                Some(_) => Some(service_row_at!($row, $get, STATUS_SERVICE_AT)),
                None => None,
            },
            last_test: $row.$get(STATUS_META_AT)?,
        })
    }};
}

impl super::inline_sqlite::FromInline for StatusRow {
    fn from_inline(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(status_row!(r, get))
    }
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for StatusRow {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(status_row!(r, try_get))
    }
}

pub async fn status_reads(db: &Db, user_id: &str, provider: &str, last_test_key: &str) -> Result<StatusReads, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let prefixed = |cols: &str, t: &str| cols.split(", ").map(|c| format!("{t}.{c}")).collect::<Vec<_>>().join(", ");
        format!(
            // The parameters appear in their order: SQLite numbers `$n` by first appearance.
            "SELECT {}, {}, m.value FROM (SELECT 1 AS one) AS one LEFT JOIN toss_identities i ON i.user_id = $1 \
             LEFT JOIN service_tokens s ON s.provider = $2 LEFT JOIN meta m ON m.key = $3",
            prefixed(IDENTITY_COLUMNS, "i"),
            prefixed(SERVICE_COLUMNS, "s")
        )
    });
    let row: Option<StatusRow> = match db.inline() {
        Some(r) => r.optional(&SQL, [user_id, provider, last_test_key])?,
        None => sqlx::query_as(&SQL).bind(user_id).bind(provider).bind(last_test_key).fetch_optional(db.pool()).await?,
    };
    Ok(row.map(|r| r.0).unwrap_or_default())
}

/// What a successful token call writes.
pub struct ServiceTokenWrite<'a> {
    pub access_token: &'a [u8],
    pub key_id: &'a str,
    pub token_type: &'a str,
    pub scope: &'a str,
    pub expires_at: Option<i64>,
}

/// Writes a new token if the row is still at `expected_version`; `false` when someone else
/// wrote first.
pub async fn write_service_token<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    ex: E,
    provider: &str,
    expected_version: i64,
    t: &ServiceTokenWrite<'_>,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE service_tokens SET access_token = $1, key_id = $2, token_type = $3, scope = $4, expires_at = $5, \
         version = version + 1, updated_at = $6 WHERE provider = $7 AND version = $8",
    )
    .bind(t.access_token)
    .bind(t.key_id)
    .bind(t.token_type)
    .bind(t.scope)
    .bind(t.expires_at)
    .bind(now)
    .bind(provider)
    .bind(expected_version)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Service tokens sealed with a key other than `active_key` (placeholders excluded).
pub async fn service_tokens_not_on_key(db: &Db, active_key: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT provider FROM service_tokens WHERE key_id <> '' AND key_id <> $1 ORDER BY provider")
        .bind(active_key)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Replaces the ciphertext with the same token under another key if the row is still at
/// `version` (the version is not bumped: the token is unchanged).
pub async fn reseal_service_token(db: &Db, provider: &str, version: i64, access_token: &[u8], key_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE service_tokens SET access_token = $1, key_id = $2 WHERE provider = $3 AND version = $4")
        .bind(access_token)
        .bind(key_id)
        .bind(provider)
        .bind(version)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------------------------------------
// toss_verifications

pub const REQUESTED: &str = "REQUESTED";
pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const COMPLETED: &str = "COMPLETED";
pub const EXPIRED: &str = "EXPIRED";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Verification {
    pub tx_id: String,
    pub user_id: String,
    pub request_type: String,
    pub status: String,
    pub requested_at: i64,
    pub completed_at: Option<i64>,
    pub result_calls: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const VERIFICATION_COLUMNS: &str = "tx_id, user_id, request_type, status, requested_at, completed_at, result_calls, created_at, updated_at";

pub async fn insert_verification(db: &Db, v: &Verification) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO toss_verifications (tx_id, user_id, request_type, status, requested_at, completed_at, result_calls, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&v.tx_id)
    .bind(&v.user_id)
    .bind(&v.request_type)
    .bind(&v.status)
    .bind(v.requested_at)
    .bind(v.completed_at)
    .bind(v.result_calls)
    .bind(v.created_at)
    .bind(v.updated_at)
    .execute(db.pool())
    .await
    .map_err(|e| StoreError::unique_as(e, "A verification with this txId"))?;
    Ok(())
}

/// The verification if it belongs to `user_id` (another user's txId reads as absent).
pub async fn get_verification(db: &Db, tx_id: &str, user_id: &str) -> Result<Option<Verification>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {VERIFICATION_COLUMNS} FROM toss_verifications WHERE tx_id = $1 AND user_id = $2"))
        .bind(tx_id)
        .bind(user_id)
        .fetch_optional(db.pool())
        .await?)
}

/// Records the status Toss reported; `completed_at` is kept once set.
pub async fn set_verification_status(db: &Db, tx_id: &str, status: &str, completed_at: Option<i64>, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE toss_verifications SET status = $1, completed_at = COALESCE(completed_at, $2), updated_at = $3 WHERE tx_id = $4")
        .bind(status)
        .bind(completed_at)
        .bind(now)
        .bind(tx_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Counts one successful result call; returns the new count.
pub async fn add_result_call<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, tx_id: &str, completed_at: i64, now: i64) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "UPDATE toss_verifications SET status = 'COMPLETED', completed_at = COALESCE(completed_at, $1), \
         result_calls = result_calls + 1, updated_at = $2 WHERE tx_id = $3 RETURNING result_calls",
    )
    .bind(completed_at)
    .bind(now)
    .bind(tx_id)
    .fetch_one(ex)
    .await?;
    Ok(n)
}

pub async fn delete_verifications_for_user<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, user_id: &str) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM toss_verifications WHERE user_id = $1").bind(user_id).execute(ex).await?;
    Ok(done.rows_affected())
}

// ---------------------------------------------------------------------------------------------
// toss_identities

/// A stored identity. The `Vec<u8>` fields are vault ciphertexts.
#[derive(Clone, sqlx::FromRow)]
pub struct Identity {
    pub user_id: String,
    pub tx_id: String,
    pub ci: Vec<u8>,
    pub di: Vec<u8>,
    pub name: Vec<u8>,
    pub birthday: Vec<u8>,
    pub signature: Vec<u8>,
    pub phone: Option<Vec<u8>>,
    pub gender: String,
    pub nationality: String,
    pub age_group: Option<String>,
    pub key_id: String,
    pub verified_at: i64,
    pub version: i64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("user_id", &self.user_id).field("tx_id", &self.tx_id).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

const IDENTITY_COLUMNS: &str = "user_id, tx_id, ci, di, name, birthday, signature, phone, gender, nationality, age_group, key_id, verified_at, version";

/// Stores the user's identity, replacing an earlier one.
pub async fn upsert_identity<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, i: &Identity) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO toss_identities (user_id, tx_id, ci, di, name, birthday, signature, phone, gender, nationality, age_group, key_id, verified_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0) \
         ON CONFLICT (user_id) DO UPDATE SET tx_id = excluded.tx_id, ci = excluded.ci, di = excluded.di, name = excluded.name, \
         birthday = excluded.birthday, signature = excluded.signature, phone = excluded.phone, gender = excluded.gender, \
         nationality = excluded.nationality, age_group = excluded.age_group, key_id = excluded.key_id, \
         verified_at = excluded.verified_at, version = toss_identities.version + 1",
    )
    .bind(&i.user_id)
    .bind(&i.tx_id)
    .bind(&i.ci)
    .bind(&i.di)
    .bind(&i.name)
    .bind(&i.birthday)
    .bind(&i.signature)
    .bind(i.phone.as_ref())
    .bind(&i.gender)
    .bind(&i.nationality)
    .bind(i.age_group.as_ref())
    .bind(&i.key_id)
    .bind(i.verified_at)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn get_identity(db: &Db, user_id: &str) -> Result<Option<Identity>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("SELECT {IDENTITY_COLUMNS} FROM toss_identities WHERE user_id = $1"));
    if let Some(r) = db.inline() {
        return r.optional(&SQL, [user_id]);
    }
    Ok(sqlx::query_as(&SQL).bind(user_id).fetch_optional(db.pool()).await?)
}

pub async fn delete_identity<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, user_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM toss_identities WHERE user_id = $1").bind(user_id).execute(ex).await?;
    Ok(done.rows_affected() > 0)
}

/// Users whose identity is sealed with a key other than `active_key`, for rotation.
pub async fn identities_not_on_key(db: &Db, active_key: &str, limit: i64) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT user_id FROM toss_identities WHERE key_id <> $1 ORDER BY user_id LIMIT $2")
        .bind(active_key)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Replaces the ciphertexts of an identity (same plaintexts, another key) if it is still at
/// `i.version`.
pub async fn reseal_identity(db: &Db, i: &Identity) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE toss_identities SET ci = $1, di = $2, name = $3, birthday = $4, signature = $5, phone = $6, key_id = $7 \
         WHERE user_id = $8 AND version = $9",
    )
    .bind(&i.ci)
    .bind(&i.di)
    .bind(&i.name)
    .bind(&i.birthday)
    .bind(&i.signature)
    .bind(i.phone.as_ref())
    .bind(&i.key_id)
    .bind(&i.user_id)
    .bind(i.version)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
