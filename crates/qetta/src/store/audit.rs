//! The append-only audit log. Each entry carries the SHA-256 of the previous entry's hash and its
//! own content, so any edit or deletion in the middle breaks the chain ([`verify`]).

use sha2::{Digest, Sha256};

use super::{Db, StoreError};
use crate::config::DatabaseKind;

/// The hash that stands before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to record. `detail` must never hold a secret.
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    pub actor: String,
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub connection_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub connection_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "id, at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev_hash, hash";

/// The hashed content of an entry: every field but `id`, `at`, `prev_hash` and `hash`.
struct Fields<'a> {
    actor: &'a str,
    user_id: Option<&'a str>,
    provider: Option<&'a str>,
    connection_id: Option<&'a str>,
    action: &'a str,
    outcome: &'a str,
    request_id: Option<&'a str>,
    ip: Option<&'a str>,
    detail: &'a str,
}

impl NewEntry {
    /// What a user (or, without one, the service) did with a provider: actor `user:<id>` or
    /// `service`.
    pub fn user_action(
        user_id: Option<&str>,
        provider: &str,
        connection_id: Option<&str>,
        action: &str,
        outcome: &str,
        ip: Option<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            actor: match user_id {
                Some(u) => format!("user:{u}"),
                None => "service".into(),
            },
            user_id: user_id.map(str::to_string),
            provider: Some(provider.to_string()),
            connection_id: connection_id.map(str::to_string),
            action: action.into(),
            outcome: outcome.into(),
            request_id: None,
            ip,
            detail,
        }
    }

    fn fields<'a>(&'a self, detail: &'a str) -> Fields<'a> {
        Fields {
            actor: &self.actor,
            user_id: self.user_id.as_deref(),
            provider: self.provider.as_deref(),
            connection_id: self.connection_id.as_deref(),
            action: &self.action,
            outcome: &self.outcome,
            request_id: self.request_id.as_deref(),
            ip: self.ip.as_deref(),
            detail,
        }
    }
}

impl Entry {
    fn fields(&self) -> Fields<'_> {
        Fields {
            actor: &self.actor,
            user_id: self.user_id.as_deref(),
            provider: self.provider.as_deref(),
            connection_id: self.connection_id.as_deref(),
            action: &self.action,
            outcome: &self.outcome,
            request_id: self.request_id.as_deref(),
            ip: self.ip.as_deref(),
            detail: &self.detail,
        }
    }
}

/// The hash of an entry, chained to the previous one. Fields are length-prefixed so that no two
/// different entries serialise alike.
fn entry_hash(prev_hash: &str, at: i64, f: &Fields<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |s: Option<&str>| match s {
        None => h.update(b"-"),
        Some(s) => {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    };
    field(Some(prev_hash));
    field(Some(&at.to_string()));
    field(Some(f.actor));
    field(f.user_id);
    field(f.provider);
    field(f.connection_id);
    field(Some(f.action));
    field(Some(f.outcome));
    field(f.request_id);
    field(f.ip);
    field(Some(f.detail));
    hex::encode(h.finalize())
}

/// Appends `e` in a transaction of its own.
pub async fn append(db: &Db, e: &NewEntry, now: i64) -> Result<i64, StoreError> {
    let mut w = db.begin_write().await?;
    let id = append_in(&mut w, e, now).await;
    w.finish(id).await
}

/// Appends `e` inside `w`, so that it is committed (or rolled back) with the change it records.
pub async fn append_in(w: &mut super::WriteTx, e: &NewEntry, now: i64) -> Result<i64, StoreError> {
    let detail = if e.detail.is_null() { "{}".to_string() } else { e.detail.to_string() };
    // The chain needs one writer at a time: a table lock on PostgreSQL (across replicas, held to
    // the end of the transaction), the process's write lock on SQLite (taken by `begin_write`).
    if w.kind == DatabaseKind::Postgres {
        sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE").execute(&mut *w.tx).await?;
    }
    let prev: Option<(String,)> = sqlx::query_as("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetch_optional(&mut *w.tx).await?;
    let prev_hash = prev.map(|p| p.0).unwrap_or_else(|| GENESIS.to_string());
    let hash = entry_hash(&prev_hash, now, &e.fields(&detail));
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_log (at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(now)
    .bind(&e.actor)
    .bind(e.user_id.as_ref())
    .bind(e.provider.as_ref())
    .bind(e.connection_id.as_ref())
    .bind(&e.action)
    .bind(&e.outcome)
    .bind(e.request_id.as_ref())
    .bind(e.ip.as_ref())
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .fetch_one(&mut *w.tx)
    .await?;
    Ok(id)
}

/// A page of one user's entries, newest first, with ids below `before` when given.
pub async fn list_for_user(db: &Db, user_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<Entry>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_log WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"))
        .bind(user_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// What [`verify`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    Intact {
        entries: u64,
    },
    /// The first entry whose stored hashes do not match the chain.
    Broken {
        id: i64,
        reason: &'static str,
    },
}

/// Walks the whole log in id order, recomputing every hash.
pub async fn verify(db: &Db) -> Result<Verification, StoreError> {
    let mut expected_prev = GENESIS.to_string();
    let mut after = i64::MIN;
    let mut count = 0u64;
    loop {
        let page: Vec<Entry> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000")).bind(after).fetch_all(db.pool()).await?;
        if page.is_empty() {
            return Ok(Verification::Intact { entries: count });
        }
        for e in page {
            if e.prev_hash != expected_prev {
                return Ok(Verification::Broken { id: e.id, reason: "an entry before it was changed or removed" });
            }
            let recomputed = entry_hash(&e.prev_hash, e.at, &e.fields());
            if recomputed != e.hash {
                return Ok(Verification::Broken { id: e.id, reason: "its content was changed" });
            }
            expected_prev = e.hash;
            after = e.id;
            count += 1;
        }
    }
}
