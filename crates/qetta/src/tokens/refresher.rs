//! The background refresher: refreshes tokens before they expire, so users rarely wait on one.
//!
//! Every replica runs it; each pass claims a batch of due connections (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, so replicas never claim the same rows and need no leader), refreshes them with
//! bounded concurrency through the same single-flight path as on-demand refreshes, and sleeps a
//! jittered interval. A connection whose refresh fails is skipped until its backoff ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use rand::Rng;

use super::{TokenError, TokenManager};
use crate::store::connections;

/// Counters of what the refresher did (exported at `/metrics`).
#[derive(Default)]
pub struct RefresherStats {
    pub passes: AtomicU64,
    pub claimed: AtomicU64,
    pub refreshed: AtomicU64,
    pub failed: AtomicU64,
    pub needs_reauth: AtomicU64,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub claimed: usize,
    pub refreshed: usize,
    pub failed: usize,
    pub needs_reauth: usize,
}

/// One pass: claim due connections and refresh them. Tests call this directly.
pub async fn run_once(manager: &TokenManager, stats: &RefresherStats) -> Result<PassReport, TokenError> {
    let s = manager.settings();
    let now = manager.clock().now();
    let claim_for = (s.upstream_timeout.as_secs() as i64) * 3 + 30;
    let ids = connections::claim_due(manager.db(), now + s.refresher_lookahead_secs, now, now + claim_for, s.refresher_batch).await?;
    let mut report = PassReport { claimed: ids.len(), ..Default::default() };
    let results: Vec<Result<bool, TokenError>> = futures::stream::iter(ids.into_iter().map(|id| async move { manager.refresh_if_due_ahead(&id).await }))
        .buffer_unordered(s.refresher_concurrency)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(true) => report.refreshed += 1,
            Ok(false) => {}
            Err(TokenError::ReauthRequired) => report.needs_reauth += 1,
            Err(e) => {
                tracing::debug!(error = %e, "background refresh failed");
                report.failed += 1;
            }
        }
    }
    stats.passes.fetch_add(1, Ordering::Relaxed);
    stats.claimed.fetch_add(report.claimed as u64, Ordering::Relaxed);
    stats.refreshed.fetch_add(report.refreshed as u64, Ordering::Relaxed);
    stats.failed.fetch_add(report.failed as u64, Ordering::Relaxed);
    stats.needs_reauth.fetch_add(report.needs_reauth as u64, Ordering::Relaxed);
    if report.claimed > 0 {
        tracing::info!(claimed = report.claimed, refreshed = report.refreshed, failed = report.failed, needs_reauth = report.needs_reauth, "refresher pass");
    }
    Ok(report)
}

/// Runs passes until `shutdown` fires. Each pass also deletes OAuth states that expired a day
/// ago (they are kept that long so that a late callback is told "expired", not "unknown").
pub async fn run(manager: Arc<TokenManager>, stats: Arc<RefresherStats>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = run_once(&manager, &stats).await {
            tracing::warn!(error = %e, "refresher pass failed");
        }
        match crate::store::oauth_states::purge_expired(manager.db(), manager.clock().now()).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired OAuth states deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge expired OAuth states"),
        }
        let base = manager.settings().refresher_interval;
        let pause = base.mul_f64(rand::thread_rng().gen_range(0.75..1.25));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
