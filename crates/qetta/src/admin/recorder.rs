//! A small in-process rolling recorder of provider calls, for the dashboard's latency and error
//! figures: the last [`CAPACITY`] calls per provider within [`WINDOW`], in this process only.
//!
//! It is fed from the same place as the Prometheus histogram (`observability::upstream_call`), so
//! every call counted there is counted here. Per replica, like the metrics: a deployment of
//! several replicas shows each replica's own calls on the page it served (the page says so).
//! Prometheus (`qetta_upstream_request_duration_seconds`) is the cluster-wide view.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Calls kept per provider (older ones are dropped first).
pub const CAPACITY: usize = 2048;
/// Calls older than this are dropped.
pub const WINDOW: Duration = Duration::from_secs(3600);

struct Call {
    at: Instant,
    micros: u64,
    /// `ok`, or the error code (the provider's, e.g. KFTC `rsp_code`, or our error kind).
    outcome: String,
}

/// One provider's figures over the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// The most frequent non-`ok` outcomes, most frequent first (at most [`TOP_ERRORS`]).
    pub top_errors: Vec<ErrorCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorCount {
    pub code: String,
    pub count: u64,
}

pub const TOP_ERRORS: usize = 5;

#[derive(Default)]
pub struct Recorder {
    calls: Mutex<HashMap<&'static str, VecDeque<Call>>>,
}

/// The process's recorder.
pub fn global() -> &'static Recorder {
    static GLOBAL: LazyLock<Recorder> = LazyLock::new(Recorder::default);
    &GLOBAL
}

impl Recorder {
    pub fn record(&self, provider: &'static str, outcome: &str, took: Duration) {
        self.record_at(provider, outcome, took, Instant::now());
    }

    fn record_at(&self, provider: &'static str, outcome: &str, took: Duration, at: Instant) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let q = calls.entry(provider).or_default();
        if q.len() >= CAPACITY {
            q.pop_front();
        }
        // Outcomes are short codes; cap them anyway so that an odd provider answer cannot grow memory.
        let outcome: String = outcome.chars().take(40).collect();
        q.push_back(Call { at, micros: took.as_micros().min(u64::MAX as u128) as u64, outcome });
    }

    /// Every provider with calls in the window, as of `now`.
    pub fn summaries(&self) -> BTreeMap<String, Summary> {
        self.summaries_at(Instant::now())
    }

    fn summaries_at(&self, now: Instant) -> BTreeMap<String, Summary> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for (provider, q) in calls.iter_mut() {
            while q.front().is_some_and(|c| now.saturating_duration_since(c.at) > WINDOW) {
                q.pop_front();
            }
            if q.is_empty() {
                continue;
            }
            let mut micros: Vec<u64> = q.iter().map(|c| c.micros).collect();
            micros.sort_unstable();
            let mut errors: HashMap<&str, u64> = HashMap::new();
            for c in q.iter().filter(|c| c.outcome != "ok") {
                *errors.entry(c.outcome.as_str()).or_default() += 1;
            }
            let error_total = errors.values().sum();
            let mut top: Vec<ErrorCount> = errors.into_iter().map(|(code, count)| ErrorCount { code: code.to_string(), count }).collect();
            top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
            top.truncate(TOP_ERRORS);
            out.insert(
                provider.to_string(),
                Summary { calls: q.len() as u64, errors: error_total, p50_ms: percentile_ms(&micros, 50), p95_ms: percentile_ms(&micros, 95), top_errors: top },
            );
        }
        out
    }
}

/// The nearest-rank percentile of sorted `micros`, in milliseconds.
fn percentile_ms(sorted_micros: &[u64], p: usize) -> Option<f64> {
    if sorted_micros.is_empty() {
        return None;
    }
    let rank = (p * sorted_micros.len()).div_ceil(100).max(1);
    Some(sorted_micros[rank - 1] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_top_errors_over_the_window() {
        let r = Recorder::default();
        let t0 = Instant::now();
        for ms in 1..=100u64 {
            let outcome = match ms {
                1..=6 => "A0007",
                7..=9 => "timeout",
                10 => "network",
                _ => "ok",
            };
            r.record_at("kftc", outcome, Duration::from_millis(ms), t0);
        }
        let s = &r.summaries_at(t0)["kftc"];
        assert_eq!((s.calls, s.errors), (100, 10));
        assert_eq!((s.p50_ms, s.p95_ms), (Some(50.0), Some(95.0)));
        assert_eq!(
            s.top_errors,
            vec![
                ErrorCount { code: "A0007".into(), count: 6 },
                ErrorCount { code: "timeout".into(), count: 3 },
                ErrorCount { code: "network".into(), count: 1 }
            ]
        );
        // An hour and a bit later the calls have left the window.
        assert!(r.summaries_at(t0 + WINDOW + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn keeps_at_most_capacity_calls_per_provider() {
        let r = Recorder::default();
        let t0 = Instant::now();
        for _ in 0..CAPACITY + 10 {
            r.record_at("toss", "ok", Duration::from_millis(3), t0);
        }
        r.record_at("kftc", "ok", Duration::from_millis(1), t0);
        let all = r.summaries_at(t0);
        assert_eq!(all["toss"].calls, CAPACITY as u64);
        assert_eq!(all["kftc"].calls, 1);
        assert_eq!(all["kftc"].p95_ms, Some(1.0));
    }
}
