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

/// Snapshot returned by the stats endpoint:
/// `{"calls": {"<path>": n}, "tokens": {"issued": {"<grant_type>": n}, "refused": {...}}}`.
#[derive(Default, Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub calls: BTreeMap<String, u64>,
    pub tokens: TokenCounts,
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
        let snap = serde_json::to_value(s.snapshot()).unwrap();
        assert_eq!(snap["calls"]["/v2.0/account/list"], 2);
        assert_eq!(snap["tokens"]["issued"]["authorization_code"], 1);
        assert_eq!(snap["tokens"]["refused"]["refresh_token"], 1);
        s.reset();
        assert!(s.snapshot().calls.is_empty());
    }
}
