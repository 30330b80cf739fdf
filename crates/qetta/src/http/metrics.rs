//! `GET /metrics`: Prometheus text format.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::providers::upstream::BreakerState;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let s = &state.refresher_stats;
    let mut out = String::new();
    for (name, help, v) in [
        ("qetta_refresher_passes_total", "Background refresher passes.", s.passes.load(Ordering::Relaxed)),
        ("qetta_refresher_claimed_total", "Connections claimed for refresh.", s.claimed.load(Ordering::Relaxed)),
        ("qetta_refresher_refreshed_total", "Connections refreshed by the background refresher.", s.refreshed.load(Ordering::Relaxed)),
        ("qetta_refresher_failed_total", "Background refreshes that failed.", s.failed.load(Ordering::Relaxed)),
        ("qetta_refresher_needs_reauth_total", "Connections found dead by the background refresher.", s.needs_reauth.load(Ordering::Relaxed)),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
    }
    // Disabled providers have no breaker.
    let breakers: Vec<(&str, &crate::providers::upstream::CircuitBreaker)> =
        [("kftc", state.kftc_client.as_ref().map(|k| k.breaker())), ("toss", state.toss_service.as_ref().map(|t| t.breaker()))]
            .into_iter()
            .filter_map(|(p, b)| Some((p, b?)))
            .collect();
    out.push_str("# HELP qetta_upstream_circuit_open Whether calls to a provider are paused (open or half-open).\n# TYPE qetta_upstream_circuit_open gauge\n");
    for (provider, b) in &breakers {
        out.push_str(&format!("qetta_upstream_circuit_open{{provider=\"{provider}\"}} {}\n", u8::from(b.is_open())));
    }
    out.push_str(
        "# HELP qetta_upstream_circuit_state The circuit breaker's state per provider (1 on the current one).\n# TYPE qetta_upstream_circuit_state gauge\n",
    );
    for (provider, b) in &breakers {
        let current = b.state();
        for st in [BreakerState::Closed, BreakerState::Open, BreakerState::HalfOpen] {
            out.push_str(&format!("qetta_upstream_circuit_state{{provider=\"{provider}\",state=\"{}\"}} {}\n", st.as_str(), u8::from(st == current)));
        }
    }
    out.push_str("# HELP qetta_upstream_circuit_rejected_total Provider calls refused by an open circuit breaker.\n# TYPE qetta_upstream_circuit_rejected_total counter\n");
    for (provider, b) in &breakers {
        out.push_str(&format!("qetta_upstream_circuit_rejected_total{{provider=\"{provider}\"}} {}\n", b.rejected_total()));
    }
    out.push_str(
        "# HELP qetta_redis_up Whether Redis answered its last call (1), failed recently (0); absent without REDIS_URL.\n# TYPE qetta_redis_up gauge\n",
    );
    if let Some(h) = state.shared.redis_health() {
        out.push_str(&format!("qetta_redis_up {}\n", u8::from(h.is_up())));
        out.push_str(&format!("# HELP qetta_redis_failures_total Redis calls that failed or timed out (each answered by a fallback).\n# TYPE qetta_redis_failures_total counter\nqetta_redis_failures_total {}\n", h.failures_total()));
    }
    // The database pool: connections open and idle, its limit, and how long this scrape waited
    // for a connection (the queue every query joins; write transactions' waits are a histogram).
    let pool = state.db.pool();
    let (size, idle) = (pool.size() as usize, pool.num_idle());
    let waited = std::time::Instant::now();
    let probe = tokio::time::timeout(std::time::Duration::from_secs(5), pool.acquire()).await;
    let wait_secs = waited.elapsed().as_secs_f64();
    let probe = probe.ok().and_then(Result::ok);
    out.push_str("# HELP qetta_db_pool_connections Database connections of this replica's pool, by state.\n# TYPE qetta_db_pool_connections gauge\n");
    out.push_str(&format!("qetta_db_pool_connections{{state=\"in_use\"}} {}\nqetta_db_pool_connections{{state=\"idle\"}} {idle}\n", size.saturating_sub(idle)));
    out.push_str(&format!(
        "# HELP qetta_db_pool_max_connections The pool's size limit.\n# TYPE qetta_db_pool_max_connections gauge\nqetta_db_pool_max_connections {}\n",
        state.db.max_connections()
    ));
    out.push_str(&format!(
        "# HELP qetta_db_pool_acquire_wait_seconds How long this scrape waited for a pooled connection (5 when none came within 5 s).\n# TYPE qetta_db_pool_acquire_wait_seconds gauge\nqetta_db_pool_acquire_wait_seconds {wait_secs}\n"
    ));
    drop(probe);
    if let Some(background) = state.db.background_pool() {
        let (size, idle) = (background.size() as usize, background.num_idle());
        out.push_str(&format!(
            "# HELP qetta_db_background_pool_connections Database connections of this replica's pool for background work (refresher, webhooks), by state; its limit is {}.\n# TYPE qetta_db_background_pool_connections gauge\n",
            background.options().get_max_connections()
        ));
        out.push_str(&format!(
            "qetta_db_background_pool_connections{{state=\"in_use\"}} {}\nqetta_db_background_pool_connections{{state=\"idle\"}} {idle}\n",
            size.saturating_sub(idle)
        ));
    }
    // Work waiting, read now with one cheap query each (a failed query leaves its series out).
    let tokens = state.tokens.settings();
    let now = state.clock.now();
    if let Ok(due) = crate::store::connections::count_due(&state.db, now + tokens.refresher_lookahead_secs, now).await {
        out.push_str(&format!(
            "# HELP qetta_refresher_due_connections Connections the refresher would claim now (expiring within the lookahead, not in backoff).\n# TYPE qetta_refresher_due_connections gauge\nqetta_refresher_due_connections {due}\n"
        ));
    }
    if let Ok((depth, oldest)) = crate::store::webhooks::queue_stats(&state.db).await {
        let age = oldest.map(|t| (now - t).max(0)).unwrap_or(0);
        out.push_str(&format!(
            "# HELP qetta_webhook_queue_depth Webhook deliveries waiting (pending, due or in backoff).\n# TYPE qetta_webhook_queue_depth gauge\nqetta_webhook_queue_depth {depth}\n\
             # HELP qetta_webhook_oldest_pending_age_seconds Age of the oldest pending webhook delivery (0 when none).\n# TYPE qetta_webhook_oldest_pending_age_seconds gauge\nqetta_webhook_oldest_pending_age_seconds {age}\n"
        ));
    }
    // Request and provider-call latencies, recorded as they happen.
    out.push_str(&crate::observability::handle().render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
