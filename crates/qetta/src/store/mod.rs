//! Storage: one SQL dialect-neutral layer over SQLite (embedded default) and PostgreSQL.
//!
//! Queries are written once with `$N` placeholders (both databases accept them) and run through
//! sqlx's `Any` driver; the few statements that differ (row locks, `SKIP LOCKED`) branch on
//! [`Db::kind`]. Each backend has its own migrations folder. Times are Unix seconds.

pub mod audit;
pub mod connections;
pub mod meta;
pub mod oauth_states;
pub mod toss;
pub mod users;

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
            other => Self::internal(other),
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    kind: DatabaseKind,
    /// SQLite runs in one process: writes that must be serialised (the audit chain) take this lock.
    local_write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    pub async fn connect(url: &str, kind: DatabaseKind) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse()?;
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        pool = match kind {
            DatabaseKind::Sqlite => pool.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            }),
            DatabaseKind::Postgres => pool.max_connections(16),
        };
        let pool = pool.connect_with(options).await?;
        Ok(Self { pool, kind, local_write_lock: Arc::new(tokio::sync::Mutex::new(())) })
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

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn local_write_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.local_write_lock
    }
}

/// Current time in Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
