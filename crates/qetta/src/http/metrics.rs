//! `GET /metrics`: Prometheus text format.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;

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
    out.push_str("# HELP qetta_upstream_circuit_open Whether calls to a provider are paused.\n# TYPE qetta_upstream_circuit_open gauge\n");
    let breakers = [("kftc", state.kftc_client.as_ref().map(|k| k.breaker().is_open())), ("toss", state.toss_service.as_ref().map(|t| t.breaker().is_open()))];
    for (provider, open) in breakers.into_iter().filter_map(|(p, o)| Some((p, o?))) {
        out.push_str(&format!("qetta_upstream_circuit_open{{provider=\"{provider}\"}} {}\n", u8::from(open)));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
