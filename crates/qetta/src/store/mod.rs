//! Storage: one SQL dialect-neutral layer over SQLite (embedded default) and PostgreSQL.
//!
//! Queries are written once with `$N` placeholders (both databases accept them) and run through
//! sqlx's `Any` driver; the few statements that differ (row locks, `SKIP LOCKED`) branch on
//! [`Db::kind`]. Each backend has its own migrations folder. Times are Unix seconds.

pub mod admin;
pub mod audit;
mod audit_group_commit;
pub mod connections;
pub mod inline_sqlite;
pub mod leases;
pub mod meta;
pub mod oauth_states;
pub mod toss;
pub mod transactions;
pub mod users;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::DatabaseKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated (e.g. the email is taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A read of [`inline_sqlite`] failed.
    #[error("database error: {0}")]
    Inline(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`].
    pub(crate) fn unique_as(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what),
            _ => Self::Database(e),
        }
    }
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("Not found.".into()),
            StoreError::Conflict(what) => Self::conflict("conflict", format!("{what} already exists.")),
            // The database is down or unreachable (not a bug, and not the caller's fault).
            StoreError::Database(e) if is_outage(&e) => {
                tracing::warn!(error = %e, "storage unavailable");
                Self::Unavailable("Storage is unavailable; try again in a few seconds.".into())
            }
            StoreError::Inline(e) if inline_sqlite::is_outage(&e) => {
                tracing::warn!(error = %e, "storage unavailable");
                Self::Unavailable("Storage is unavailable; try again in a few seconds.".into())
            }
            other => Self::internal(other),
        }
    }
}

/// The innermost cause of an error, for messages that should name it once ("Connection refused
/// (os error 111)", not three wrappers of it).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether `e` says the database cannot be reached or cannot write right now (an outage), rather
/// than that a statement is wrong.
pub fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: connection exceptions (08…), operator intervention / shutdown (57P…),
            // insufficient resources (53…), read-only transaction (25006). SQLite: full, read-only,
            // I/O error, busy.
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "25006"
                || ["13", "8", "10", "5", "14"].contains(&code.as_str())
                || db.message().contains("database or disk is full")
                || db.message().contains("readonly database")
                || db.message().contains("disk I/O error")
        }
        _ => false,
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The file of the SQLite database at `url` (`None` for an in-memory one, or not SQLite).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.contains(":memory:") && !rest.contains("mode=memory")).then(|| std::path::PathBuf::from(path))
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    kind: DatabaseKind,
    /// SQLite runs in one process: writes that must be serialised (the audit chain) take this lock.
    local_write_lock: Arc<tokio::sync::Mutex<()>>,
    /// SQLite (on a file): the hot reads, run in place ([`inline_sqlite`]).
    inline: Option<Arc<inline_sqlite::InlineReader>>,
    /// PostgreSQL: the queue that writes concurrent audit entries together.
    audit_group: Option<Arc<audit_group_commit::GroupCommit>>,
    /// PostgreSQL: the pool of background work ([`Self::background`]), opened lazily, and its
    /// own audit queue (a flusher writes with the pool of the handle that started it).
    background: Option<(AnyPool, Arc<audit_group_commit::GroupCommit>)>,
}

/// PostgreSQL: connections of the request path's pool, and of background work's pool. Three
/// replicas hold at most 72 of the server's default 100.
const POSTGRES_POOL: u32 = 16;
const POSTGRES_BACKGROUND_POOL: u32 = 8;

impl Db {
    /// Connects, waiting up to `wait` for a database that is not up yet (connection refused, the
    /// server starting or shutting down): a service started together with its database should not
    /// fail because it was quicker. Other errors (bad credentials, unknown database) fail at once.
    pub async fn connect_waiting(url: &str, kind: DatabaseKind, wait: Duration) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut announced = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options)).await {
                Ok(Ok(conn)) => {
                    let _ = sqlx::Connection::close(conn).await;
                    break;
                }
                Ok(Err(e)) if is_outage(&e) && tokio::time::Instant::now() < deadline => {
                    if !announced {
                        tracing::warn!(cause = %root_cause(&e), wait_secs = wait.as_secs(), "the database is not reachable yet; retrying");
                        announced = true;
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if tokio::time::Instant::now() < deadline => {}
                Err(_) => return Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s")).into()),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Self::connect(url, kind).await
    }

    pub async fn connect(url: &str, kind: DatabaseKind) -> Result<Self, StoreError> {
        Self::open(url, kind, false).await
    }

    /// Connects so that nothing can be written (`qetta audit verify`): SQLite opens the file
    /// read-only and leaves its journal mode alone; PostgreSQL sessions are read-only.
    pub async fn connect_read_only(url: &str, kind: DatabaseKind) -> Result<Self, StoreError> {
        let url = match kind {
            DatabaseKind::Sqlite => {
                let (path, _) = url.split_once('?').unwrap_or((url, ""));
                format!("{path}?mode=ro")
            }
            DatabaseKind::Postgres => url.to_string(),
        };
        Self::open(&url, kind, true).await
    }

    async fn open(url: &str, kind: DatabaseKind, read_only: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse()?;
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        let setup = match (kind, read_only) {
            (DatabaseKind::Sqlite, false) => "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
            (DatabaseKind::Sqlite, true) => "PRAGMA busy_timeout = 10000;",
            (DatabaseKind::Postgres, false) => "",
            (DatabaseKind::Postgres, true) => "SET default_transaction_read_only = on",
        };
        if !setup.is_empty() {
            pool = pool.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(setup).await?;
                    Ok(())
                })
            });
        }
        // Background work on PostgreSQL gets a pool of its own: a refresher draining thousands of
        // due connections runs a few short statements per refresh, 32 refreshes at once, and in
        // a shared pool the requests queued behind them (a user's status read waited 64 ms
        // instead of 0.5 ms). An in-memory SQLite database cannot be shared by a second pool,
        // and SQLite's writes are serialised in-process anyway, so it keeps one.
        let background = (kind == DatabaseKind::Postgres && !read_only)
            .then(|| (pool.clone().max_connections(POSTGRES_BACKGROUND_POOL).connect_lazy_with(options.clone()), Arc::default()));
        let pool = pool
            .max_connections(match kind {
                DatabaseKind::Sqlite => 8,
                DatabaseKind::Postgres => POSTGRES_POOL,
            })
            .connect_with(options)
            .await?;
        let inline = match kind {
            DatabaseKind::Sqlite => inline_sqlite::InlineReader::for_url(url).map(Arc::new),
            DatabaseKind::Postgres => None,
        };
        let audit_group = (kind == DatabaseKind::Postgres && !read_only).then(Arc::default);
        Ok(Self { pool, kind, local_write_lock: Arc::new(tokio::sync::Mutex::new(())), inline, audit_group, background })
    }

    /// The handle for background work (the refresher, the webhook worker): on PostgreSQL it uses
    /// a pool of its own, so that requests never wait for connections behind it; otherwise (and
    /// for a handle that is already one) it is this handle. Everything else (the process's write
    /// lock, the in-place reader) is shared.
    pub fn background(&self) -> Db {
        match &self.background {
            Some((pool, audit_group)) => Db {
                pool: pool.clone(),
                kind: self.kind,
                local_write_lock: self.local_write_lock.clone(),
                inline: self.inline.clone(),
                audit_group: Some(audit_group.clone()),
                background: None,
            },
            None => self.clone(),
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.kind {
            DatabaseKind::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            DatabaseKind::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// How many of this build's migrations the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let migrator = match self.kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Before the first migration the bookkeeping table does not exist: everything is pending.
        let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await.unwrap_or_default();
        Ok(migrator.iter().filter(|m| !applied.iter().any(|(v,)| *v == m.version)).count())
    }

    /// Writes one small row, to tell a database that answers but cannot write (read-only, full).
    pub async fn write_probe(&self, now: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('ready_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(now.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The in-place reader of an SQLite database on a file ([`inline_sqlite`]).
    pub(crate) fn inline(&self) -> Option<&inline_sqlite::InlineReader> {
        self.inline.as_deref()
    }

    /// PostgreSQL: the group commit of audit entries ([`audit_group_commit`]).
    pub(crate) fn audit_group_commit(&self) -> Option<&Arc<audit_group_commit::GroupCommit>> {
        self.audit_group.as_ref()
    }

    /// PostgreSQL: the pool of background work (for the metrics).
    pub fn background_pool(&self) -> Option<&AnyPool> {
        self.background.as_ref().map(|(pool, _)| pool)
    }

    /// The pool's size limit (for the metrics).
    pub fn max_connections(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some((background, _)) = &self.background {
            background.close().await;
        }
    }

    pub(crate) fn local_write_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.local_write_lock
    }

    /// A transaction for a change and the audit entry that records it, committed together. On
    /// SQLite (one process) it also holds the process's write lock, which serialises the audit
    /// chain, and starts with `BEGIN IMMEDIATE`.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let local = match self.kind {
            DatabaseKind::Sqlite => Some(self.local_write_lock.clone().lock_owned().await),
            DatabaseKind::Postgres => None,
        };
        let waited = std::time::Instant::now();
        let mut conn = self.pool.acquire().await?;
        crate::observability::db_acquired(waited.elapsed());
        let begin = match self.kind {
            DatabaseKind::Sqlite => "BEGIN IMMEDIATE",
            DatabaseKind::Postgres => "BEGIN",
        };
        if let Err(e) = conn.execute(begin).await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(WriteTx { tx: conn, kind: self.kind, open: true, _local: local })
    }
}

/// See [`Db::begin_write`]; run statements on `&mut *w.tx`. The transaction is ours rather than
/// sqlx's so that a failure never returns a connection with an open transaction to the pool:
/// SQLite may end a transaction on its own after a full disk (leaving sqlx's bookkeeping out of
/// step) or keep it open after a failed `COMMIT`. Whatever is uncertain, the connection is closed.
pub struct WriteTx {
    pub tx: sqlx::pool::PoolConnection<sqlx::Any>,
    pub kind: DatabaseKind,
    open: bool,
    _local: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        match self.tx.execute("COMMIT").await {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(e) => {
                self.rollback().await;
                Err(e.into())
            }
        }
    }

    async fn rollback(&mut self) {
        if let Err(e) = self.tx.execute("ROLLBACK").await {
            tracing::debug!(error = %e, "rollback after a failed write failed; closing the connection");
            self.tx.close_on_drop();
        }
        self.open = false;
    }

    /// Commits when `work` succeeded, rolls back at once otherwise.
    pub async fn finish<T>(mut self, work: Result<T, StoreError>) -> Result<T, StoreError> {
        match work {
            Ok(v) => {
                self.commit().await?;
                Ok(v)
            }
            Err(e) => {
                self.rollback().await;
                Err(e)
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Dropped mid-transaction (an early return or a cancelled request): closing the
            // connection ends the transaction.
            self.tx.close_on_drop();
        }
    }
}

/// Current time in Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
