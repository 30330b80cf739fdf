//! The background sync: every replica runs it. Each pass claims a batch of due connections
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite, like the token refresher),
//! syncs them with bounded concurrency, and sleeps a jittered interval. A connection that is not
//! active (needs re-consent, disconnected) is never claimed; a failed sync is tried again one
//! interval later.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use crate::app::AppState;
use crate::store::{connections, transactions};

/// Connections one pass claims; with [`CONCURRENCY`], what one replica asks of KFTC at once.
const BATCH: i64 = 20;
/// Connections synced at once by one replica (each pages through its accounts one call at a
/// time), so a pass never bursts into KFTC's usage-plan limits (SPEC A13).
const CONCURRENCY: usize = 2;
/// How often a pass looks for due connections (each is due once per `QETTA_SYNC_INTERVAL_SECS`).
const POLL: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub claimed: usize,
    pub synced: usize,
    pub failed: usize,
    pub added: i64,
}

/// One pass: claim due connections and sync them. Tests call this directly.
pub async fn run_once(state: &AppState) -> Result<PassReport, crate::store::StoreError> {
    let now = state.clock.now();
    // Long enough for a connection's pages (each call bounded by the upstream timeout).
    let claim_for = state.config.tokens.upstream_timeout.as_secs() as i64 * 40 + 60;
    let ids = transactions::claim_due(&state.db, now, now + claim_for, BATCH).await?;
    let mut report = PassReport { claimed: ids.len(), ..Default::default() };
    let results = futures::stream::iter(ids.into_iter().map(|id| async move {
        let conn = match connections::get_by_id(&state.db, &id).await {
            Ok(Some(c)) if c.is_active() => c,
            Ok(_) => return (id, None),
            Err(e) => return (id, Some(Err(crate::error::ApiError::from(e)))),
        };
        let r = super::sync_connection(state, &conn).await;
        (id, Some(r))
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    let interval = state.config.sync.interval.as_secs() as i64;
    for (id, r) in results {
        match r {
            Some(Ok(c)) => {
                report.synced += 1;
                report.added += c.added;
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::info!(connection_id = %id, error = %e, "transaction sync failed");
                    report.failed += 1;
                }
                if let Err(e) = transactions::release(&state.db, &id, state.clock.now() + interval, state.clock.now()).await {
                    tracing::warn!(error = %e, "could not release a sync claim");
                }
            }
        }
    }
    if report.claimed > 0 {
        tracing::info!(claimed = report.claimed, synced = report.synced, failed = report.failed, added = report.added, "transaction sync pass");
    }
    Ok(report)
}

/// Runs passes until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = run_once(&state).await {
            tracing::warn!(error = %e, "transaction sync pass failed");
        }
        let pause = POLL.min(state.config.sync.interval).mul_f64(rand::thread_rng().gen_range(0.75..1.25));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
