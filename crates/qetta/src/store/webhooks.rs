//! Webhook endpoints, the event outbox and deliveries. Secrets are vault ciphertexts here; this
//! module never sees them in the clear.

use super::{Db, StoreError, WriteTx};
use crate::config::DatabaseKind;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

const ENDPOINT_COLUMNS: &str =
    "id, url, description, events, secret, previous_secret, previous_secret_until, key_id, enabled, disabled_reason, failing_since, created_at, updated_at";

#[derive(Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// JSON array of event types; empty: every type.
    pub events: String,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    pub key_id: String,
    pub enabled: i64,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("id", &self.id).field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn event_types(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }
}

pub async fn insert_endpoint(db: &Db, e: &Endpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, description, events, secret, previous_secret, previous_secret_until, key_id, enabled, \
         disabled_reason, failing_since, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&e.id)
    .bind(&e.url)
    .bind(e.description.as_ref())
    .bind(&e.events)
    .bind(&e.secret)
    .bind(e.previous_secret.as_ref())
    .bind(e.previous_secret_until)
    .bind(&e.key_id)
    .bind(e.enabled)
    .bind(e.disabled_reason.as_ref())
    .bind(e.failing_since)
    .bind(e.created_at)
    .bind(e.updated_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get_endpoint(db: &Db, id: &str) -> Result<Option<Endpoint>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1")).bind(id).fetch_optional(db.pool()).await?)
}

pub async fn list_endpoints(db: &Db) -> Result<Vec<Endpoint>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id")).fetch_all(db.pool()).await?)
}

pub async fn count_endpoints(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_endpoints").fetch_one(db.pool()).await?;
    Ok(n)
}

/// Writes the changeable fields (url, description, events, enabled); re-enabling clears the
/// reason and the failure run.
pub async fn update_endpoint(db: &Db, e: &Endpoint, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, enabled = $4, \
         disabled_reason = CASE WHEN $4 = 1 THEN NULL ELSE disabled_reason END, \
         failing_since = CASE WHEN $4 = 1 AND enabled = 0 THEN NULL ELSE failing_since END, updated_at = $5 WHERE id = $6",
    )
    .bind(&e.url)
    .bind(e.description.as_ref())
    .bind(&e.events)
    .bind(e.enabled)
    .bind(now)
    .bind(&e.id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_secrets(
    db: &Db,
    id: &str,
    secret: &[u8],
    previous: Option<&[u8]>,
    previous_until: Option<i64>,
    key_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE webhook_endpoints SET secret = $1, previous_secret = $2, previous_secret_until = $3, key_id = $4, updated_at = $5 WHERE id = $6")
            .bind(secret)
            .bind(previous)
            .bind(previous_until)
            .bind(key_id)
            .bind(now)
            .bind(id)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Key ids sealing endpoint secrets (start-up refuses a key ring without them).
pub async fn key_ids_in_use(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT key_id FROM webhook_endpoints").fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Endpoints whose secrets are sealed with a key other than `active_key`, for rotation.
pub async fn endpoints_not_on_key(db: &Db, active_key: &str, limit: i64) -> Result<Vec<Endpoint>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE key_id <> $1 ORDER BY id LIMIT $2"))
        .bind(active_key)
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// Replaces an endpoint's ciphertexts (same secrets, another key) if its secret is still
/// `old_secret` (a rotation of the secret meanwhile wins).
pub async fn reseal_endpoint(db: &Db, id: &str, old_secret: &[u8], secret: &[u8], previous: Option<&[u8]>, key_id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE webhook_endpoints SET secret = $1, previous_secret = $2, key_id = $3 WHERE id = $4 AND secret = $5")
        .bind(secret)
        .bind(previous)
        .bind(key_id)
        .bind(id)
        .bind(old_secret)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_endpoint(db: &Db, id: &str) -> Result<bool, StoreError> {
    // Deliveries first (SQLite enforces the foreign key only with the pragma, which we set).
    let mut w = db.begin_write().await?;
    let work = async {
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1").bind(id).execute(&mut *w.tx).await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *w.tx).await?;
        Ok(done.rows_affected() == 1)
    }
    .await;
    w.finish(work).await
}

/// Disables an endpoint (410 Gone, or failing too long); `false` when it already was.
pub async fn disable_endpoint_in(w: &mut WriteTx, id: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 WHERE id = $3 AND enabled = 1")
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the start of a run of failures (kept when one is running); returns its start.
pub async fn note_failure(db: &Db, id: &str, now: i64) -> Result<i64, StoreError> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2 RETURNING failing_since")
            .bind(now)
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.and_then(|r| r.0).unwrap_or(now))
}

pub async fn note_success(db: &Db, id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL").bind(id).execute(db.pool()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the outbox

/// Writes an event and one pending delivery per enabled endpoint that takes its type (or only to
/// `only_endpoint`), inside the caller's transaction. Returns the number of deliveries.
#[allow(clippy::too_many_arguments)]
pub async fn insert_event_in(
    w: &mut WriteTx,
    event_id: &str,
    event_type: &str,
    ordering_key: Option<&str>,
    payload: &str,
    only_endpoint: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    let endpoints: Vec<(String, String)> = match only_endpoint {
        Some(id) => sqlx::query_as("SELECT id, events FROM webhook_endpoints WHERE id = $1 AND enabled = 1").bind(id).fetch_all(&mut *w.tx).await?,
        None => sqlx::query_as("SELECT id, events FROM webhook_endpoints WHERE enabled = 1 ORDER BY id").fetch_all(&mut *w.tx).await?,
    };
    let targets: Vec<String> = endpoints
        .into_iter()
        .filter(|(_, events)| {
            let types: Vec<String> = serde_json::from_str(events).unwrap_or_default();
            only_endpoint.is_some() || types.is_empty() || types.iter().any(|t| t == event_type)
        })
        .map(|(id, _)| id)
        .collect();
    if targets.is_empty() {
        // Nobody listens: nothing to write.
        return Ok(0);
    }
    sqlx::query("INSERT INTO webhook_events (id, type, ordering_key, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(event_id)
        .bind(event_type)
        .bind(ordering_key)
        .bind(payload)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
    let mut n = 0;
    for endpoint_id in targets {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, ordering_key, status, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
        )
        .bind(format!("dlv_{}", uuid::Uuid::new_v4().simple()))
        .bind(&endpoint_id)
        .bind(event_id)
        .bind(ordering_key.unwrap_or(event_id))
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.status, d.attempts, d.next_attempt_at, \
    d.last_status_code, d.last_error, d.last_attempt_at, d.delivered_at, d.created_at";

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub seq: i64,
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub attempts: i64,
    pub created_at: i64,
    pub payload: String,
}

/// Claims up to `limit` due deliveries for `owner` until `claim_until`: pending, due, not claimed
/// by a live claim, their endpoint enabled, and no earlier delivery of the same ordering key to
/// the same endpoint still pending (one in flight per key and endpoint, in order). On PostgreSQL
/// `FOR UPDATE SKIP LOCKED` lets every replica claim at once without overlap; SQLite is one
/// process and takes its write lock.
pub async fn claim_due(db: &Db, owner: &str, now: i64, claim_until: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let skip_locked = match db.kind() {
        DatabaseKind::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        DatabaseKind::Sqlite => "",
    };
    let _local = match db.kind() {
        DatabaseKind::Sqlite => Some(db.local_write_lock().lock().await),
        DatabaseKind::Postgres => None,
    };
    let rows: Vec<(i64,)> = sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET claim_owner = $1, claimed_until = $2 WHERE seq IN (\
            SELECT d.seq FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
            WHERE d.status = 'pending' AND d.next_attempt_at <= $3 AND (d.claimed_until IS NULL OR d.claimed_until < $3) AND w.enabled = 1 \
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key \
                AND p.status = 'pending' AND p.seq < d.seq) \
            ORDER BY d.seq LIMIT $4{skip_locked}) RETURNING seq"
    ))
    .bind(owner)
    .bind(claim_until)
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    // Integers only: safe to inline.
    Ok(sqlx::query_as(&format!(
        "SELECT d.seq, d.id, d.endpoint_id, d.event_id, d.attempts, d.created_at, e.payload FROM webhook_deliveries d \
         JOIN webhook_events e ON e.id = d.event_id WHERE d.seq IN ({}) AND d.claim_owner = $1 ORDER BY d.seq",
        seqs.join(",")
    ))
    .bind(owner)
    .fetch_all(db.pool())
    .await?)
}

/// The outcome of one attempt, written if `owner` still holds the claim.
pub struct Attempt<'a> {
    pub status: &'a str,
    pub status_code: Option<i64>,
    pub error: Option<&'a str>,
    pub next_attempt_at: i64,
}

pub async fn record_attempt(db: &Db, seq: i64, owner: &str, a: &Attempt<'_>, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status_code = $2, last_error = $3, next_attempt_at = $4, \
         last_attempt_at = $5, delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END, claim_owner = NULL, claimed_until = NULL, \
         updated_at = $5 WHERE seq = $6 AND claim_owner = $7 AND status = 'pending'",
    )
    .bind(a.status)
    .bind(a.status_code)
    .bind(a.error)
    .bind(a.next_attempt_at)
    .bind(now)
    .bind(seq)
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lets go of a claim without an attempt (the endpoint was disabled or deleted meanwhile).
pub async fn release_claim(db: &Db, seq: i64, owner: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_deliveries SET claim_owner = NULL, claimed_until = NULL WHERE seq = $1 AND claim_owner = $2")
        .bind(seq)
        .bind(owner)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn list_deliveries(db: &Db, endpoint_id: &str, status: Option<&str>, before: Option<i64>, limit: i64) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
         WHERE d.endpoint_id = $1 AND ($2 = '' OR d.status = $2) AND d.seq < $3 ORDER BY d.seq DESC LIMIT $4"
    ))
    .bind(endpoint_id)
    .bind(status.unwrap_or(""))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

pub async fn get_delivery(db: &Db, endpoint_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE d.endpoint_id = $1 AND d.id = $2"
    ))
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(db.pool())
    .await?)
}

/// Puts a failed (or pending) delivery back in the queue, due now; a delivered one is left alone.
pub async fn retry_delivery(db: &Db, endpoint_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
         WHERE endpoint_id = $2 AND id = $3 AND status IN ('failed', 'pending')",
    )
    .bind(now)
    .bind(endpoint_id)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets finished deliveries (delivered or failed) last touched before `before`, and events
/// left without deliveries. Returns the deliveries removed.
pub async fn prune(db: &Db, before: i64) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND updated_at < $1").bind(before).execute(db.pool()).await?;
    sqlx::query("DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)")
        .bind(before)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Pending deliveries and the creation time of the oldest (for the metrics).
pub async fn queue_stats(db: &Db) -> Result<(i64, Option<i64>), StoreError> {
    let row: (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(db.pool()).await?;
    Ok(row)
}

/// Deliveries that ended since `since`: (delivered, failed), for the admin dashboard.
pub async fn outcomes_since(db: &Db, since: i64) -> Result<(i64, i64), StoreError> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) \
         FROM webhook_deliveries WHERE status <> 'pending' AND updated_at >= $1",
    )
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

/// When the next pending delivery of an enabled endpoint is due (the worker sleeps until then).
pub async fn next_due(db: &Db) -> Result<Option<i64>, StoreError> {
    let row: (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(CASE WHEN d.claimed_until IS NOT NULL AND d.claimed_until > d.next_attempt_at THEN d.claimed_until ELSE d.next_attempt_at END) \
         FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id WHERE d.status = 'pending' AND w.enabled = 1",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(row.0)
}
