//! Recording audit entries from request handlers and background work.
//!
//! Two strengths: [`record`] for entries that follow an operation which has already happened
//! (a failure to write is retried in the background for a minute, then logged), and [`require`]
//! for sensitive operations that must not happen unaudited (a raw token handed out, a key
//! rotation): it returns an error the caller answers with 503 `audit_unavailable` instead of
//! going on. Changes that record themselves write their entry in the same transaction
//! ([`crate::store::audit::append_in`]).

use std::time::Duration;

use crate::error::ApiError;
use crate::store::audit::{self, NewEntry};
use crate::store::Db;

/// How long a failed ordinary entry is retried.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Stamps `entry` with the id of the request being served, when there is one.
pub(crate) fn stamp(mut entry: NewEntry) -> NewEntry {
    if entry.request_id.is_none() {
        entry.request_id = Some(crate::http::request_id::current()).filter(|r| !r.is_empty());
    }
    entry
}

/// Appends `entry`, stamped with the id of the request being served (when there is one). A
/// failure to write is retried in the background; the operation it records has already happened.
pub async fn record(db: &Db, entry: NewEntry, now: i64) {
    let entry = stamp(entry);
    if let Err(e) = audit::append(db, &entry, now).await {
        tracing::warn!(error = %e, action = %entry.action, "could not write an audit entry; retrying in the background");
        let db = db.clone();
        tokio::spawn(async move {
            let give_up = tokio::time::Instant::now() + RETRY_FOR;
            let mut attempt = 0;
            loop {
                attempt += 1;
                tokio::time::sleep(crate::providers::upstream::backoff(attempt).min(Duration::from_secs(2))).await;
                match audit::append(&db, &entry, now).await {
                    Ok(_) => return,
                    Err(e) if tokio::time::Instant::now() >= give_up => {
                        tracing::error!(error = %e, action = %entry.action, "an audit entry could not be written and is lost");
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// Appends `entry` or fails: for operations that must not happen unaudited. Call it before the
/// operation takes effect.
pub async fn require(db: &Db, entry: NewEntry, now: i64) -> Result<(), ApiError> {
    let entry = stamp(entry);
    audit::append(db, &entry, now).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, action = %entry.action, "audit log unavailable: refusing a sensitive operation");
        ApiError::AuditUnavailable
    })
}
