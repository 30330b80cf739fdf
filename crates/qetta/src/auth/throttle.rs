//! Throttling of repeated login failures, per email and per client IP.
//!
//! In-process by default; the token-core work moves the counters to Redis when `REDIS_URL` is set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct LoginThrottle {
    /// Failures allowed per email within the window; a client IP gets four times as many, since
    /// many users can share one address.
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    /// Seconds until `key` may try again, or `None` when it may try now. Keys starting with
    /// `ip:` get the per-IP allowance.
    pub fn blocked_for(&self, key: &str, now: i64) -> Option<u64> {
        let map = self.failures.lock().expect("throttle lock");
        let (count, since) = *map.get(key)?;
        let until = since + self.window.as_secs() as i64;
        let limit = if key.starts_with("ip:") { self.max_failures.saturating_mul(4) } else { self.max_failures };
        (count >= limit && now < until).then(|| (until - now) as u64)
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        let mut map = self.failures.lock().expect("throttle lock");
        let window = self.window.as_secs() as i64;
        map.retain(|_, (_, since)| now - *since < window);
        let entry = map.entry(key.to_string()).or_insert((0, now));
        entry.0 += 1;
    }

    pub fn clear(&self, key: &str) {
        self.failures.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.record_failure("k", 1000);
        }
        assert_eq!(t.blocked_for("k", 1000), None);
        t.record_failure("k", 1000);
        assert_eq!(t.blocked_for("k", 1010), Some(50));
        assert_eq!(t.blocked_for("k", 1060), None);
        t.clear("k");
        assert_eq!(t.blocked_for("k", 1010), None);
        for _ in 0..3 {
            t.record_failure("ip:1.2.3.4", 1000);
        }
        assert_eq!(t.blocked_for("ip:1.2.3.4", 1000), None);
    }
}
