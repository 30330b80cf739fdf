//! The one cross-replica single-flight primitive of every refresh, user tokens (the token
//! manager) and service tokens (Toss) alike:
//!
//! 1. callers in this process queue on a per-key [`LocalFlights`](super::locks::LocalFlights) lock;
//! 2. the winner takes the row's **lease** in the database ([`crate::store::leases`]: one short
//!    `UPDATE`, no pooled connection or row lock held while the provider is called) and renews it
//!    every third of its life ([`Heartbeat`]) while it works; another replica may take it over
//!    `grace` after it ended, so a crashed holder blocks the others for `lease + grace` at most;
//! 3. after taking it, the holder re-reads the row and calls the provider only if the row still
//!    needs it; the new token is written with the row's version as fencing token.
//!
//! It works the same on SQLite and PostgreSQL, with Redis or without (Redis is not needed: the
//! database is the one place every replica agrees on).

use std::time::Duration;

use crate::store::leases::{self, LeaseRow};
use crate::store::{Db, StoreError};

/// Wall-clock Unix milliseconds: leases measure real time between processes, whatever the
/// (test-movable) token clock says.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long a lease lives without renewal, and how long after its end another may take it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub lease: Duration,
    pub grace: Duration,
}

/// Takes the lease of `key` for `owner` if it is free (or ended `grace` ago).
pub async fn try_claim(db: &Db, row: LeaseRow, key: &str, owner: &str, t: LeaseTimes) -> Result<bool, StoreError> {
    let now = wall_ms();
    leases::claim(db, row, key, owner, now - t.grace.as_millis() as i64, now + t.lease.as_millis() as i64).await
}

/// Renews a lease every third of its life until dropped.
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Heartbeat {
    pub fn start(db: &Db, row: LeaseRow, key: &str, owner: &str, lease: Duration) -> Self {
        let (db, key, owner) = (db.clone(), key.to_string(), owner.to_string());
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match leases::renew(&db, row, &key, &owner, wall_ms() + lease.as_millis() as i64).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Only after an outage longer than the lease; the version fence keeps the
                        // row right whoever writes first.
                        tracing::warn!(table = row.table, key = %key, "lease lost while working");
                        return;
                    }
                    Err(e) => tracing::warn!(table = row.table, key = %key, error = %e, "could not renew a lease; retrying"),
                }
            }
        }))
    }
}
