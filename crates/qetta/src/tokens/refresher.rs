//! The background refresher: refreshes tokens before they expire, so users rarely wait on one.
//!
//! Every replica runs it. A **pass** drains what is due: it claims due connections in batches
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never claim the same rows and need no
//! leader), claiming the next batch as soon as refresh slots free up, and refreshes them with at
//! most `QETTA_REFRESHER_CONCURRENCY` provider calls at once, through the same single-flight path
//! as on-demand refreshes (so a connection is refreshed once whoever asks). Passes run back to
//! back while they find work; only a pass that found nothing sleeps, for a jittered
//! `QETTA_REFRESHER_INTERVAL_SECS` measured on the service's clock (a test that moves the clock
//! wakes it). A connection whose refresh fails is skipped until its backoff ends.
//!
//! No refresh holds a pooled database connection while the provider answers (see
//! [`super::TokenManager`]), so the concurrency may exceed the pool size.

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
    /// Claims made (the last one found nothing, or fewer than a batch).
    pub batches: usize,
    /// The most connections one claim took (at most `QETTA_REFRESHER_BATCH`).
    pub largest_batch: usize,
}

/// One pass: claims due connections batch after batch and refreshes them, until a claim finds
/// fewer than a batch. Tests call this directly.
pub async fn run_once(manager: &TokenManager, stats: &RefresherStats) -> Result<PassReport, TokenError> {
    pass(manager, stats, None).await
}

/// A pass that claims nothing more once `stop` says so (what is in flight is finished: a refresh
/// cut off after the provider answered would lose the new grant).
async fn pass(manager: &TokenManager, stats: &RefresherStats, stop: Option<&tokio::sync::watch::Receiver<bool>>) -> Result<PassReport, TokenError> {
    use futures::future::BoxFuture;
    use futures::FutureExt;

    let s = manager.settings();
    let (batch, concurrency) = (s.refresher_batch, s.refresher_concurrency);
    let mut report = PassReport::default();
    let mut queue: std::collections::VecDeque<String> = Default::default();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    // The next batch is claimed as soon as the claimed ones are all in flight, while those go on.
    let mut claim: Option<BoxFuture<'_, Result<Vec<String>, crate::store::StoreError>>> = None;
    let mut nothing_more = false;
    let mut error = None;
    loop {
        while in_flight.len() < concurrency {
            let Some(id) = queue.pop_front() else { break };
            in_flight.push(async move { manager.refresh_if_due_ahead(&id).await }.boxed());
        }
        if queue.is_empty() && claim.is_none() && !nothing_more && !stop.is_some_and(|s| *s.borrow()) {
            let now = manager.clock().now();
            let claim_for = (s.upstream_timeout.as_secs() as i64) * 3 + 30;
            claim = Some(connections::claim_due(manager.db(), manager.due_ahead(now), now, now + claim_for, batch).boxed());
        }
        if in_flight.is_empty() && claim.is_none() {
            break;
        }
        tokio::select! {
            claimed = async { claim.as_mut().expect("a claim").await }, if claim.is_some() => {
                claim = None;
                match claimed {
                    Ok(ids) => {
                        report.claimed += ids.len();
                        report.batches += 1;
                        report.largest_batch = report.largest_batch.max(ids.len());
                        // Fewer than a batch: nothing else was due (or unclaimed) just now.
                        nothing_more = (ids.len() as i64) < batch;
                        queue.extend(ids);
                    }
                    Err(e) => {
                        // What was claimed before is still refreshed; the pass fails after it.
                        nothing_more = true;
                        error = Some(TokenError::from(e));
                    }
                }
            }
            Some(r) = in_flight.next(), if !in_flight.is_empty() => match r {
                Ok(true) => report.refreshed += 1,
                Ok(false) => {}
                Err(TokenError::ReauthRequired | TokenError::ConsentExpired) => report.needs_reauth += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "background refresh failed");
                    report.failed += 1;
                }
            },
        }
    }
    stats.passes.fetch_add(1, Ordering::Relaxed);
    stats.claimed.fetch_add(report.claimed as u64, Ordering::Relaxed);
    stats.refreshed.fetch_add(report.refreshed as u64, Ordering::Relaxed);
    stats.failed.fetch_add(report.failed as u64, Ordering::Relaxed);
    stats.needs_reauth.fetch_add(report.needs_reauth as u64, Ordering::Relaxed);
    if report.claimed > 0 {
        tracing::info!(
            claimed = report.claimed,
            batches = report.batches,
            refreshed = report.refreshed,
            failed = report.failed,
            needs_reauth = report.needs_reauth,
            "refresher pass"
        );
    }
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Runs passes until `shutdown` fires: back to back while they find work, a jittered interval
/// apart once one finds nothing (or fails). Each idle turn also deletes OAuth states that expired
/// a day ago (they are kept that long so that a late callback is told "expired", not "unknown").
pub async fn run(manager: Arc<TokenManager>, stats: Arc<RefresherStats>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let found = match pass(&manager, &stats, Some(&shutdown)).await {
            Ok(report) => report.claimed > 0,
            Err(e) => {
                tracing::warn!(error = %e, "refresher pass failed");
                false
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if found {
            continue;
        }
        match crate::store::oauth_states::purge_expired(manager.db(), manager.clock().now()).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired OAuth states deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge expired OAuth states"),
        }
        let base = manager.settings().refresher_interval;
        let pause = base.mul_f64(rand::thread_rng().gen_range(0.75..1.25));
        let until = manager.clock().now() + pause.as_secs().max(1) as i64;
        tokio::select! {
            _ = crate::clock::sleep_until(manager.clock().as_ref(), until, pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
