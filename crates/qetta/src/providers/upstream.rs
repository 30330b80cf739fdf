//! What every provider client shares: one HTTP client, retries with backoff and jitter where
//! they are safe, and a circuit breaker per provider.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// The one shared HTTP client: rustls, connection pool, timeouts, no redirects (a provider
/// redirecting an API call is an error, not something to follow with our credentials).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("qetta-connect/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is valid")
}

/// Delay before retry `attempt` (1-based): 100 ms doubling, ±50 % jitter, at most 2 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.saturating_sub(1).min(5)).min(2000);
    let jittered = (base as f64) * rand::thread_rng().gen_range(0.5..1.5);
    Duration::from_millis(jittered as u64)
}

/// Opens after `threshold` consecutive failures; while open, calls fail at once for `cool_down`;
/// then one trial call is let through (half-open) and its outcome closes or re-opens it.
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<std::time::Instant>,
    trial_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self { threshold, cool_down, state: Mutex::new(BreakerState::default()) }
    }

    /// `Err(remaining)` while open.
    pub fn check(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("breaker lock");
        match s.open_until {
            Some(until) => {
                let now = std::time::Instant::now();
                if now < until {
                    Err(until - now)
                } else if s.trial_in_flight {
                    Err(Duration::from_secs(1))
                } else {
                    s.trial_in_flight = true;
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    pub fn success(&self) {
        let mut s = self.state.lock().expect("breaker lock");
        *s = BreakerState::default();
    }

    pub fn failure(&self) {
        let mut s = self.state.lock().expect("breaker lock");
        s.failures += 1;
        s.trial_in_flight = false;
        if s.failures >= self.threshold {
            s.open_until = Some(std::time::Instant::now() + self.cool_down);
        }
    }

    pub fn is_open(&self) -> bool {
        self.state.lock().expect("breaker lock").open_until.is_some_and(|u| std::time::Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_lets_one_trial_through() {
        let b = CircuitBreaker::new(3, Duration::from_millis(0));
        b.failure();
        b.failure();
        assert!(b.check().is_ok());
        b.failure();
        // cool-down of zero: half-open at once, one trial only.
        assert!(b.check().is_ok());
        assert!(b.check().is_err());
        b.success();
        assert!(b.check().is_ok());
        let long = CircuitBreaker::new(1, Duration::from_secs(60));
        long.failure();
        assert!(long.is_open());
        assert!(long.check().is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..10 {
            let d = backoff(attempt).as_millis();
            assert!(d <= 3000, "{d}");
        }
        assert!(backoff(1).as_millis() <= 150);
    }
}
