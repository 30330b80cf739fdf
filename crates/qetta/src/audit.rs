//! Recording audit entries from request handlers and background work.

use crate::store::audit::{self, NewEntry};
use crate::store::Db;

/// Appends `entry`, stamped with the id of the request being served (when there is one). A
/// failure to write is logged, not returned: the operation it records has already happened.
pub async fn record(db: &Db, mut entry: NewEntry, now: i64) {
    if entry.request_id.is_none() {
        entry.request_id = Some(crate::http::request_id::current()).filter(|r| !r.is_empty());
    }
    if let Err(e) = audit::append(db, &entry, now).await {
        tracing::error!(error = %e, action = %entry.action, "could not write an audit entry");
    }
}
