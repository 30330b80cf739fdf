//! Call and token counters behind `GET <base>/_sandbox/stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::faults::lock;

#[derive(Default, Debug, Clone, Serialize)]
pub struct TokenCounts {
    pub issued: BTreeMap<String, u64>,
    pub refused: BTreeMap<String, u64>,
}

/// Calls of one path being answered now, and the most there ever were at once.
#[derive(Default, Debug, Clone, Copy, Serialize)]
pub struct InFlight {
    pub now: u64,
    pub max: u64,
}

/// Snapshot returned by the stats endpoint:
/// `{"calls": {"<path>": n}, "tokens": {"issued": {"<grant_type>": n}, "refused": {...}},
/// "in_flight": {"<path>": {"now": n, "max": m}}}`. `in_flight` lets a benchmark check that a
/// client keeps its concurrency to a provider bounded (latency faults included).
#[derive(Default, Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub calls: BTreeMap<String, u64>,
    pub tokens: TokenCounts,
    pub in_flight: BTreeMap<String, InFlight>,
}

#[derive(Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
}

impl Stats {
    /// Count one call of a provider path (relative to the simulator's base).
    pub fn call(&self, path: &str) {
        *lock(&self.inner).calls.entry(path.to_string()).or_default() += 1;
    }

    /// One call of `path` starts being answered; it counts as in flight until the guard drops.
    pub fn enter<'a>(&'a self, path: &str) -> InFlightGuard<'a> {
        let mut inner = lock(&self.inner);
        let f = inner.in_flight.entry(path.to_string()).or_default();
        f.now += 1;
        f.max = f.max.max(f.now);
        InFlightGuard { stats: self, path: path.to_string() }
    }

    pub fn issued(&self, grant_type: &str) {
        *lock(&self.inner).tokens.issued.entry(grant_type.to_string()).or_default() += 1;
    }

    pub fn refused(&self, grant_type: &str) {
        *lock(&self.inner).tokens.refused.entry(grant_type.to_string()).or_default() += 1;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        lock(&self.inner).clone()
    }

    pub fn reset(&self) {
        *lock(&self.inner) = StatsSnapshot::default();
    }
}

/// See [`Stats::enter`].
pub struct InFlightGuard<'a> {
    stats: &'a Stats,
    path: String,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = lock(&self.stats.inner).in_flight.get_mut(&self.path) {
            f.now = f.now.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let s = Stats::default();
        s.call("/v2.0/account/list");
        s.call("/v2.0/account/list");
        s.issued("authorization_code");
        s.refused("refresh_token");
        {
            let _a = s.enter("/oauth/2.0/token");
            let _b = s.enter("/oauth/2.0/token");
        }
        let _c = s.enter("/oauth/2.0/token");
        let snap = serde_json::to_value(s.snapshot()).unwrap();
        assert_eq!(snap["calls"]["/v2.0/account/list"], 2);
        assert_eq!(snap["tokens"]["issued"]["authorization_code"], 1);
        assert_eq!(snap["tokens"]["refused"]["refresh_token"], 1);
        assert_eq!((snap["in_flight"]["/oauth/2.0/token"]["now"].clone(), snap["in_flight"]["/oauth/2.0/token"]["max"].clone()), (1.into(), 2.into()));
        s.reset();
        assert!(s.snapshot().calls.is_empty());
    }
}
