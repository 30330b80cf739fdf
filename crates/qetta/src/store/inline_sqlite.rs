//! Hot reads of the embedded SQLite database, run in place on the calling task.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its own and passes the
//! command and each row over channels: a primary-key lookup costs a few microseconds in SQLite
//! and tens of microseconds in thread wake-ups, which on a small machine was most of a request's
//! CPU time (profile in `docs/BENCHMARKS.md`). The reads on the path of every API request (the
//! caller's account, their connections, the Toss rows of the status page) therefore run here, on
//! a small pool of read-only `rusqlite` connections to the same file, without leaving the thread.
//!
//! Consistency is the database's: in WAL mode every statement outside a transaction reads the
//! latest committed state, so a read here sees every write the service committed before it,
//! whichever connection made it. Readers never wait for the writer in WAL mode, so a statement
//! blocks the thread only for its own few microseconds. Writes, transactions, and row locks stay
//! on sqlx.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{OpenFlags, OptionalExtension, Params, Row};

use super::StoreError;

/// Connections kept open for reuse (a reader takes one for one statement).
const KEEP: usize = 8;

pub struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// A row type read here as well as through sqlx (the same columns, in the statement's order).
pub trait FromInline: Sized {
    fn from_inline(row: &Row<'_>) -> rusqlite::Result<Self>;
}

impl InlineReader {
    /// For the SQLite database at `url` (`None` for an in-memory database, which another
    /// connection cannot see).
    pub fn for_url(url: &str) -> Option<Self> {
        Some(Self { path: super::sqlite_file(url)?, idle: Mutex::new(Vec::new()) })
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let c = rusqlite::Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // Only a checkpoint that restarts the log can make a reader wait, briefly.
        c.busy_timeout(std::time::Duration::from_secs(2))?;
        c.set_prepared_statement_cache_capacity(32);
        Ok(c)
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not reused.
    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let taken = self.idle.lock().expect("inline reader pool").pop();
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        if out.is_ok() {
            let mut idle = self.idle.lock().expect("inline reader pool");
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
        Ok(out?)
    }

    /// At most one row of `sql` (written with `$N` placeholders in order, as for sqlx).
    pub fn optional<T: FromInline>(&self, sql: &str, params: impl Params) -> Result<Option<T>, StoreError> {
        self.with(|c| c.prepare_cached(sql)?.query_row(params, |r| T::from_inline(r)).optional())
    }

    /// Every row of `sql`.
    pub fn all<T: FromInline>(&self, sql: &str, params: impl Params) -> Result<Vec<T>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params, |r| T::from_inline(r))?;
            rows.collect()
        })
    }
}

impl<A: rusqlite::types::FromSql> FromInline for (A,) {
    fn from_inline(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?,))
    }
}

/// Whether a failed inline read means the database cannot be read right now (an outage: the
/// file is gone or unreadable, the disk failed), as [`super::is_outage`] says for sqlx.
pub fn is_outage(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            DatabaseBusy
                | DatabaseLocked
                | SystemIoFailure
                | CannotOpen
                | DiskFull
                | DatabaseCorrupt
                | NotADatabase
                | PermissionDenied
                | ReadOnly
                | OutOfMemory
        ),
        _ => false,
    }
}
