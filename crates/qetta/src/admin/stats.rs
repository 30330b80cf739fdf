//! The figures of `GET /api/v1/admin/stats`: what the database knows (connections by state,
//! refresh outcomes from the audit log: shared by every replica) and what only this process knows
//! (upstream latency and errors, the background refresher's counters: per replica).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::recorder::{self, ErrorCount};
use crate::app::AppState;
use crate::http::rfc3339;
use crate::store::admin::{self as store, ConnectionCounts};
use crate::store::StoreError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AdminStats)]
pub struct Stats {
    pub generated_at: String,
    /// Where the per-replica figures come from: this process (`hostname:pid`, for telling
    /// replicas apart behind a load balancer).
    pub replica: String,
    pub providers: Vec<ProviderStats>,
    pub background: Background,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderStats {
    pub provider: String,
    /// Whether the provider is usable on this server (configured, or simulated by the sandbox).
    pub configured: bool,
    pub connections: Connections,
    pub refreshes: Refreshes,
    pub upstream: Upstream,
}

/// From the database (all replicas).
#[derive(Debug, Serialize, Default, utoipa::ToSchema)]
pub struct Connections {
    pub total: i64,
    pub active: i64,
    pub expired: i64,
    pub expiring_24h: i64,
    pub expiring_7d: i64,
    pub needs_reconsent: i64,
    pub revoked: i64,
}

/// Refresh outcomes from the audit log (all replicas).
#[derive(Debug, Serialize, Default, utoipa::ToSchema)]
pub struct Refreshes {
    pub last_24h: RefreshOutcomes,
    pub last_7d: RefreshOutcomes,
    /// Seven 24-hour windows, `days_ago` 0 (the last 24 hours) to 6.
    pub daily: Vec<DailyRefreshes>,
}

#[derive(Debug, Serialize, Default, Clone, Copy, utoipa::ToSchema)]
#[schema(as = AdminRefreshOutcomes)]
pub struct RefreshOutcomes {
    pub ok: i64,
    pub failed: i64,
    pub needs_reauth: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DailyRefreshes {
    pub days_ago: i64,
    #[serde(flatten)]
    pub outcomes: RefreshOutcomes,
}

/// Provider calls made by this replica within the recorder's window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Upstream {
    pub window_secs: u64,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub top_errors: Vec<ErrorCount>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Background {
    pub refresher: Refresher,
    /// Webhook delivery ([`WebhookStats`]).
    pub webhooks: Option<WebhookStats>,
}

/// This replica's background refresher, since the process started, and the queue of due
/// connections (from the database: all replicas share it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refresher {
    pub enabled: bool,
    pub interval_secs: u64,
    pub passes: u64,
    pub claimed: u64,
    pub refreshed: u64,
    pub failed: u64,
    pub needs_reauth: u64,
    /// Active connections with a refresh token expiring within the refresher's lookahead.
    pub due: i64,
}

/// Webhook delivery, from the outbox (shared by every replica): queued, the oldest pending's age,
/// delivered and failed over 24 hours.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookStats {
    pub queued: i64,
    pub oldest_age_secs: Option<i64>,
    pub delivered_24h: i64,
    pub failed_24h: i64,
}

fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("{host}:{}", std::process::id())
}

/// Gathers everything: two aggregated queries, the recorder and the refresher's counters.
pub async fn collect(state: &AppState) -> Result<Stats, StoreError> {
    let now = state.clock.now();
    let tokens = &state.config.tokens;
    let counts = store::connection_counts(&state.db, now, now + tokens.refresher_lookahead_secs).await?;
    let refreshes = store::refresh_counts(&state.db, now).await?;
    let upstream = recorder::global().summaries();
    let (queued, oldest) = crate::store::webhooks::queue_stats(&state.db).await?;
    let (delivered_24h, failed_24h) = crate::store::webhooks::outcomes_since(&state.db, now - 86_400).await?;
    let webhooks = WebhookStats { queued, oldest_age_secs: oldest.map(|o| (now - o).max(0)), delivered_24h, failed_24h };

    // Every known provider, then any other that shows up in the data.
    let mut names: Vec<String> = state.connections.catalogue().listing().iter().map(|p| p.name.clone()).collect();
    for p in counts.iter().map(|c| &c.provider).chain(refreshes.iter().map(|r| &r.provider)).chain(upstream.keys()) {
        if !p.is_empty() && !names.contains(p) {
            names.push(p.clone());
        }
    }
    let by_provider: BTreeMap<&str, &ConnectionCounts> = counts.iter().map(|c| (c.provider.as_str(), c)).collect();
    let due = counts.iter().map(|c| c.refresh_due).sum();

    let providers = names
        .iter()
        .map(|name| {
            let connections = by_provider
                .get(name.as_str())
                .map(|c| Connections {
                    total: c.total,
                    active: c.active,
                    expired: c.expired,
                    expiring_24h: c.expiring_24h,
                    expiring_7d: c.expiring_7d,
                    needs_reconsent: c.needs_reconsent,
                    revoked: c.revoked,
                })
                .unwrap_or_default();
            let mut r =
                Refreshes { daily: (0..7).map(|d| DailyRefreshes { days_ago: d, outcomes: RefreshOutcomes::default() }).collect(), ..Default::default() };
            for row in refreshes.iter().filter(|row| &row.provider == name) {
                let Some(day) = r.daily.get_mut(row.days_ago as usize) else { continue };
                for o in [&mut day.outcomes, &mut r.last_7d].into_iter().chain((row.days_ago == 0).then_some(&mut r.last_24h)) {
                    match row.outcome.as_str() {
                        "ok" => o.ok += row.count,
                        "failed" => o.failed += row.count,
                        "needs_reauth" => o.needs_reauth += row.count,
                        _ => {}
                    }
                }
            }
            let u = upstream.get(name);
            ProviderStats {
                provider: name.clone(),
                configured: state.provider_configured(name),
                connections,
                refreshes: r,
                upstream: Upstream {
                    window_secs: recorder::WINDOW.as_secs(),
                    calls: u.map_or(0, |u| u.calls),
                    errors: u.map_or(0, |u| u.errors),
                    p50_ms: u.and_then(|u| u.p50_ms),
                    p95_ms: u.and_then(|u| u.p95_ms),
                    top_errors: u.map(|u| u.top_errors.clone()).unwrap_or_default(),
                },
            }
        })
        .collect();

    let s = &state.refresher_stats;
    Ok(Stats {
        generated_at: rfc3339(now),
        replica: replica_name(),
        providers,
        background: Background {
            refresher: Refresher {
                enabled: tokens.refresher_enabled,
                interval_secs: tokens.refresher_interval.as_secs(),
                passes: s.passes.load(Ordering::Relaxed),
                claimed: s.claimed.load(Ordering::Relaxed),
                refreshed: s.refreshed.load(Ordering::Relaxed),
                failed: s.failed.load(Ordering::Relaxed),
                needs_reauth: s.needs_reauth.load(Ordering::Relaxed),
                due,
            },
            webhooks: Some(webhooks),
        },
    })
}
