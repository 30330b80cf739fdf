//! The append-only audit log. Each entry carries the SHA-256 of the previous entry's hash and its
//! own content, so any edit, deletion or reordering breaks the chain ([`verify`]).
//!
//! The log is [`CHAINS`] chains, not one (migration 0011), so that audited writes do not wait on
//! each other: an entry goes to the chain of its user ([`chain_of`]), and an append locks only
//! that chain's head row in `audit_chains` (`SELECT … FOR UPDATE` on PostgreSQL, to the end of the
//! transaction it is part of, and an entry of its own is one statement in autocommit; SQLite has
//! one writer anyway). Within a chain ids grow in chain
//! order (the id is taken while the head is locked), so [`verify`] walks all entries in id order,
//! each against its own chain, and then checks that every head names its chain's newest entry,
//! which also catches the newest entries of a chain being removed. Entries of different chains
//! are not ordered against each other by the hashes (only by their ids and times).

use sha2::{Digest, Sha256};

use super::{Db, StoreError};
use crate::config::DatabaseKind;

/// The hash that stands before the first entry of chain 0 (the single chain of old).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How many chains the log has (rows of `audit_chains`, made by migration 0011): as many audited
/// transactions can commit at once (when their users' chains differ). More would need a
/// migration adding head rows.
pub const CHAINS: i64 = 256;

/// The hash that stands before the first entry of `chain`: `chain` in 64 hex digits.
pub fn genesis(chain: i64) -> String {
    format!("{chain:064x}")
}

/// The chain of an entry: its user's (FNV-1a of the user id, stable across builds), so one user's
/// entries form one ordered chain; an entry without a user goes to any chain.
pub fn chain_of(user_id: Option<&str>) -> i64 {
    match user_id {
        Some(u) => {
            let h = u.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
            (h % CHAINS as u64) as i64
        }
        None => rand::random::<u64>().rem_euclid(CHAINS as u64) as i64,
    }
}

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
    /// Which chain it links into (internal: not part of the API's view of an entry).
    #[serde(skip)]
    pub chain: i64,
}

const COLUMNS: &str = "id, at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev_hash, hash, chain";

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

/// Appends `e` in a transaction of its own. On PostgreSQL it goes with the entries being appended
/// at the same moment through the same handle, in one statement ([`super::audit_group_commit`]).
pub async fn append(db: &Db, e: &NewEntry, now: i64) -> Result<i64, StoreError> {
    if let Some(group) = db.audit_group_commit() {
        return group.append(db.pool(), e.clone(), now).await;
    }
    let mut w = db.begin_write().await?;
    let id = append_in(&mut w, e, now).await;
    w.finish(id).await
}

/// The SQL of an entry's hash, over the SQL expressions of its fields in the order of
/// [`entry_hash`]: the same bytes (each field length-prefixed as a big-endian u64, `-` for a
/// missing one). `verify` recomputes every hash in Rust, so the two cannot drift unnoticed.
/// `at` is an `int8` expression; `optional` fields may be NULL.
fn hash_sql(prev: &str, at: &str, fields: [(&str, bool); 9]) -> String {
    let field = |x: &str| format!("int8send(octet_length({x})::int8) || convert_to({x}, 'UTF8')");
    let mut parts = vec![field(prev), field(&format!("{at}::text"))];
    for (x, optional) in fields {
        parts.push(if optional { format!("COALESCE({}, '\\x2d'::bytea)", field(x)) } else { field(x) });
    }
    format!("encode(sha256({}), 'hex')", parts.join(" || "))
}

/// The hashed fields of a row named `r` (the columns of [`Fields`]), for [`hash_sql`].
fn hashed_columns(r: &str) -> [(String, bool); 9] {
    [
        (format!("{r}.actor"), false),
        (format!("{r}.user_id"), true),
        (format!("{r}.provider"), true),
        (format!("{r}.connection_id"), true),
        (format!("{r}.action"), false),
        (format!("{r}.outcome"), false),
        (format!("{r}.request_id"), true),
        (format!("{r}.ip"), true),
        (format!("{r}.detail"), false),
    ]
}

/// The statement that appends `n` entries of distinct chains (PostgreSQL), each bound as 11
/// parameters: at, actor, user_id, provider, connection_id, action, outcome, request_id, ip,
/// detail, chain. It locks the chains' head rows in chain order (so that two such statements
/// never wait on each other in a cycle), computes each entry's hash from its chain's head in the
/// database, inserts the entries and moves the heads, in one round trip; it returns (chain, id)
/// per entry.
pub(super) fn batch_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p = |k: usize| i * 11 + k;
            format!(
                "(${}::int8, ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::text, ${}::int8)",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9),
                p(10),
                p(11)
            )
        })
        .collect();
    let cols = hashed_columns("i");
    let hash = hash_sql("h.prev", "i.at", cols.each_ref().map(|(c, o)| (c.as_str(), *o)));
    format!(
        "WITH i (at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, chain) AS (VALUES {}), \
         h AS (SELECT chain, head_hash AS prev FROM audit_chains WHERE chain IN (SELECT chain FROM i) ORDER BY chain FOR UPDATE), \
         v AS (SELECT i.*, h.prev, {hash} AS hash FROM i JOIN h ON h.chain = i.chain), \
         e AS (INSERT INTO audit_log (at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev_hash, hash, chain) \
             SELECT at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev, hash, chain FROM v RETURNING id, hash, chain) \
         UPDATE audit_chains SET head_id = e.id, head_hash = e.hash FROM e WHERE audit_chains.chain = e.chain RETURNING e.chain, e.id",
        rows.join(", ")
    )
}

/// `detail` as stored: its JSON text (`{}` for none).
pub(super) fn detail_text(e: &NewEntry) -> String {
    if e.detail.is_null() {
        "{}".to_string()
    } else {
        e.detail.to_string()
    }
}

/// A query with the ten stored fields of `e` bound in column order (`at` to `detail`); the caller
/// binds what follows (`chain`, or `prev_hash, hash, chain`).
pub(super) fn bind_fields<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    e: &'q NewEntry,
    now: i64,
    detail: &'q str,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    q.bind(now)
        .bind(&e.actor)
        .bind(e.user_id.as_ref())
        .bind(e.provider.as_ref())
        .bind(e.connection_id.as_ref())
        .bind(&e.action)
        .bind(&e.outcome)
        .bind(e.request_id.as_ref())
        .bind(e.ip.as_ref())
        .bind(detail)
}

/// One append on PostgreSQL into `chain`: the statement of [`batch_sql`] for one entry (in
/// autocommit, or in the caller's transaction, which then holds the head row's lock to its end).
pub(super) async fn append_pg<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E, e: &NewEntry, now: i64, chain: i64) -> Result<i64, StoreError> {
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| batch_sql(1));
    let detail = detail_text(e);
    let row: Option<(i64, i64)> = bind_fields(sqlx::query_as(&ONE), e, now, &detail).bind(chain).fetch_optional(ex).await?;
    // No head row: the chains migration has not run.
    Ok(row.ok_or(StoreError::NotFound)?.1)
}

/// Appends `e` inside `w`, so that it is committed (or rolled back) with the change it records.
pub async fn append_in(w: &mut super::WriteTx, e: &NewEntry, now: i64) -> Result<i64, StoreError> {
    if w.kind == DatabaseKind::Postgres {
        // The head row's lock is held to the end of `w` (across replicas, one writer per chain).
        return append_pg(&mut *w.tx, e, now, chain_of(e.user_id.as_deref())).await;
    }
    // SQLite: one writer anyway (the process's write lock, taken by `begin_write`).
    let detail = detail_text(e);
    let chain = chain_of(e.user_id.as_deref());
    let head: Option<(String,)> = sqlx::query_as("SELECT head_hash FROM audit_chains WHERE chain = $1").bind(chain).fetch_optional(&mut *w.tx).await?;
    let prev_hash = head.ok_or(StoreError::NotFound)?.0;
    let hash = entry_hash(&prev_hash, now, &e.fields(&detail));
    let insert = sqlx::query_as(
        "INSERT INTO audit_log (at, actor, user_id, provider, connection_id, action, outcome, request_id, ip, detail, prev_hash, hash, chain) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    );
    let (id,): (i64,) = bind_fields(insert, e, now, &detail).bind(&prev_hash).bind(&hash).bind(chain).fetch_one(&mut *w.tx).await?;
    sqlx::query("UPDATE audit_chains SET head_id = $1, head_hash = $2 WHERE chain = $3").bind(id).bind(&hash).bind(chain).execute(&mut *w.tx).await?;
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

/// Walks the whole log in id order, recomputing every hash and checking each entry against its
/// chain, then checks every chain's head; all in one snapshot (a repeatable-read transaction on
/// PostgreSQL, a read transaction on SQLite), so that appends going on meanwhile are not taken
/// for gaps.
pub async fn verify(db: &Db) -> Result<Verification, StoreError> {
    use sqlx::Executor;
    let mut conn = db.pool().acquire().await?;
    let begin = match db.kind() {
        DatabaseKind::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        DatabaseKind::Sqlite => "BEGIN",
    };
    conn.execute(begin).await?;
    let result = verify_in(&mut conn).await;
    if conn.execute("ROLLBACK").await.is_err() {
        conn.close_on_drop();
    }
    result
}

async fn verify_in(conn: &mut sqlx::AnyConnection) -> Result<Verification, StoreError> {
    // Per chain: the newest entry seen (id, hash).
    let mut last: std::collections::HashMap<i64, (i64, String)> = Default::default();
    let mut after = i64::MIN;
    let mut count = 0u64;
    loop {
        let page: Vec<Entry> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT 1000")).bind(after).fetch_all(&mut *conn).await?;
        let Some(newest) = page.last().map(|e| e.id) else { break };
        for e in page {
            let expected_prev = last.get(&e.chain).map_or_else(|| genesis(e.chain), |(_, h)| h.clone());
            if e.prev_hash != expected_prev {
                return Ok(Verification::Broken { id: e.id, reason: "an entry before it was changed, removed or moved" });
            }
            let recomputed = entry_hash(&e.prev_hash, e.at, &e.fields());
            if recomputed != e.hash {
                return Ok(Verification::Broken { id: e.id, reason: "its content was changed" });
            }
            last.insert(e.chain, (e.id, e.hash));
            count += 1;
        }
        after = newest;
    }
    let heads: Vec<(i64, Option<i64>, String)> =
        sqlx::query_as("SELECT chain, head_id, head_hash FROM audit_chains ORDER BY chain").fetch_all(&mut *conn).await?;
    if let Some(id) = last.iter().filter(|(c, _)| !heads.iter().any(|h| h.0 == **c)).map(|(_, (id, _))| *id).min() {
        return Ok(Verification::Broken { id, reason: "it names a chain that does not exist" });
    }
    for (chain, head_id, head_hash) in heads {
        let (seen_id, seen_hash) = match last.remove(&chain) {
            Some((id, hash)) => (Some(id), hash),
            None => (None, genesis(chain)),
        };
        if head_id != seen_id || head_hash != seen_hash {
            // The newest entries of the chain are gone (or its head row was altered).
            return Ok(Verification::Broken { id: head_id.or(seen_id).unwrap_or(0), reason: "the newest entries of its chain were removed" });
        }
    }
    Ok(Verification::Intact { entries: count })
}
