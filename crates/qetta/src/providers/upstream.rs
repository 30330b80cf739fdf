//! What every provider client shares: one HTTP client, retries with backoff and jitter where
//! they are safe, a per-request deadline that retries must fit in, and a circuit breaker per
//! provider.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with a deadline that provider calls made inside it respect: an attempt gets at
/// most the time left, and a retry is only made if it can still finish. The HTTP layer sets it
/// a little before the request timeout, so that an upstream time-out answers 504 rather than the
/// request timing out as a whole.
pub async fn with_deadline<F: std::future::Future>(deadline: Instant, fut: F) -> F::Output {
    DEADLINE.scope(deadline, fut).await
}

/// Time left before the current request's deadline (`None` outside a request, e.g. in the
/// background refresher, where only the per-call time-out applies).
pub fn remaining() -> Option<Duration> {
    DEADLINE.try_with(|d| d.saturating_duration_since(Instant::now())).ok()
}

/// The time-out of the next attempt: the per-call time-out, or less if the deadline is nearer.
/// `None` when too little is left to try at all.
pub fn attempt_timeout(per_call: Duration) -> Option<Duration> {
    match remaining() {
        None => Some(per_call),
        Some(left) if left < MIN_ATTEMPT => None,
        Some(left) => Some(per_call.min(left)),
    }
}

/// Whether a retry after `pause` still leaves a useful attempt before the deadline.
pub fn retry_fits(pause: Duration) -> bool {
    remaining().is_none_or(|left| left > pause + MIN_ATTEMPT)
}

/// Shortest attempt worth making.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// When the breaker opens, and for how long.
///
/// The defaults: it opens when at least half of the calls of the last 30 s failed and there were
/// at least 20 of them; it stays open 10 s, then lets one trial call through (half-open), whose
/// outcome closes it or opens it again. A *call* is one logical request to the provider, counted
/// once after its retries, so a flaky provider whose retries succeed does not open it.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub window: Duration,
    pub min_calls: u32,
    pub failure_ratio: f64,
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { window: Duration::from_secs(30), min_calls: 20, failure_ratio: 0.5, open_for: Duration::from_secs(10) }
    }
}

/// What the breaker is doing, as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker over a sliding window of call outcomes (one-second buckets).
pub struct CircuitBreaker {
    name: &'static str,
    policy: BreakerPolicy,
    epoch: Instant,
    inner: Mutex<Inner>,
    rejected: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// (second since `epoch`, successes, failures), oldest first.
    buckets: VecDeque<(u64, u32, u32)>,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    /// Last time a refusal was logged, and refusals since.
    last_refusal_log: Option<Instant>,
    refused_since_log: u64,
}

/// Permission for one call. Report its outcome with [`success`](Self::success) or
/// [`failure`](Self::failure); dropped without either (the caller went away, or the call ended
/// in a way that says nothing about the provider), it counts as no result and, if it was the
/// half-open trial, lets the next call be the trial.
#[must_use = "report the call's outcome, or drop the permit to record none"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    done: bool,
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.done = true;
        self.breaker.record(self.trial, false, Instant::now());
    }

    pub fn failure(mut self) {
        self.done = true;
        self.breaker.record(self.trial, true, Instant::now());
    }

    /// `failure()` if `failed`, else `success()`.
    pub fn record(self, failed: bool) {
        if failed {
            self.failure()
        } else {
            self.success()
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.trial {
            let mut s = self.breaker.inner.lock().expect("breaker lock");
            s.trial_in_flight = false;
        }
    }
}

impl CircuitBreaker {
    pub fn new(name: &'static str, policy: BreakerPolicy) -> Self {
        Self { name, policy, epoch: Instant::now(), inner: Mutex::new(Inner::default()), rejected: AtomicU64::new(0) }
    }

    /// A permit for one call, or `Err(retry after)` while open (or while the half-open trial is
    /// in flight).
    pub fn check(&self) -> Result<Permit<'_>, Duration> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<Permit<'_>, Duration> {
        let mut s = self.inner.lock().expect("breaker lock");
        let refusal = match s.open_until {
            None => return Ok(Permit { breaker: self, trial: false, done: false }),
            Some(until) if now < until => until - now,
            Some(_) if s.trial_in_flight => Duration::from_secs(1),
            Some(_) => {
                s.trial_in_flight = true;
                return Ok(Permit { breaker: self, trial: true, done: false });
            }
        };
        self.rejected.fetch_add(1, Ordering::Relaxed);
        s.refused_since_log += 1;
        if s.last_refusal_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::warn!(
                provider = self.name,
                refused = s.refused_since_log,
                retry_after_ms = refusal.as_millis() as u64,
                "circuit breaker open: refusing provider calls"
            );
            s.last_refusal_log = Some(now);
            s.refused_since_log = 0;
        }
        Err(refusal)
    }

    fn record(&self, trial: bool, failed: bool, now: Instant) {
        let mut s = self.inner.lock().expect("breaker lock");
        if trial {
            s.trial_in_flight = false;
            if failed {
                s.open_until = Some(now + self.policy.open_for);
                tracing::warn!(provider = self.name, open_for_secs = self.policy.open_for.as_secs(), "circuit breaker trial failed: open again");
            } else {
                s.open_until = None;
                s.buckets.clear();
                tracing::info!(provider = self.name, "circuit breaker closed");
            }
            return;
        }
        // Outcomes of calls let through before the breaker opened do not move it.
        if s.open_until.is_some() {
            return;
        }
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let oldest = second.saturating_sub(self.policy.window.as_secs().max(1) - 1);
        while s.buckets.front().is_some_and(|b| b.0 < oldest) {
            s.buckets.pop_front();
        }
        match s.buckets.back_mut() {
            Some(b) if b.0 == second => {
                if failed {
                    b.2 += 1
                } else {
                    b.1 += 1
                }
            }
            _ => s.buckets.push_back(if failed { (second, 0, 1) } else { (second, 1, 0) }),
        }
        if !failed {
            return;
        }
        let (ok, bad) = s.buckets.iter().fold((0u64, 0u64), |(o, f), b| (o + u64::from(b.1), f + u64::from(b.2)));
        let total = ok + bad;
        if total >= u64::from(self.policy.min_calls) && (bad as f64) >= self.policy.failure_ratio * (total as f64) {
            s.open_until = Some(now + self.policy.open_for);
            s.buckets.clear();
            tracing::warn!(provider = self.name, failures = bad, calls = total, open_for_secs = self.policy.open_for.as_secs(), "circuit breaker opened");
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> BreakerState {
        match self.inner.lock().expect("breaker lock").open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state() != BreakerState::Closed
    }

    /// Calls refused since the start.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy { window: Duration::from_secs(30), min_calls: 20, failure_ratio: 0.5, open_for: Duration::from_secs(10) }
    }

    fn call(b: &CircuitBreaker, now: Instant, failed: bool) {
        let p = b.check_at(now).expect("closed");
        assert!(!p.trial);
        let trial = p.trial;
        std::mem::forget(p);
        b.record(trial, failed, now);
    }

    #[test]
    fn below_the_minimum_volume_it_stays_closed_even_if_everything_fails() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        for i in 0..19 {
            call(&b, t0 + Duration::from_millis(i * 10), true);
        }
        assert_eq!(b.state_at(t0 + Duration::from_secs(1)), BreakerState::Closed);
        call(&b, t0 + Duration::from_secs(1), true);
        assert_eq!(b.state_at(t0 + Duration::from_secs(1)), BreakerState::Open);
    }

    #[test]
    fn it_opens_on_the_failure_ratio_not_on_a_run_of_failures() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        // 40 % failures over 100 calls, in runs of 5 failures in a row (which opened the old
        // breaker): stays closed.
        for i in 0..100u64 {
            let failed = i >= 20 && i % 10 < 5;
            call(&b, t0 + Duration::from_millis(i * 100), failed);
        }
        assert_eq!(b.state_at(t0 + Duration::from_secs(10)), BreakerState::Closed);
        // Now 60 % fail: it opens once the window's ratio reaches one half.
        let t1 = t0 + Duration::from_secs(10);
        let mut opened_after = None;
        for i in 0..200u64 {
            let now = t1 + Duration::from_millis(i * 100);
            if b.state_at(now) != BreakerState::Closed {
                opened_after = Some(i);
                break;
            }
            call(&b, now, i % 5 < 3);
        }
        let opened_after = opened_after.expect("opens at 60 % failures");
        assert!(opened_after > 20, "opened after {opened_after} calls: not on the first failures");
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        // 15 failures, then 31 s later 10 more: never 20 within 30 s.
        for _ in 0..15 {
            call(&b, t0, true);
        }
        for _ in 0..10 {
            call(&b, t0 + Duration::from_secs(31), true);
        }
        assert_eq!(b.state_at(t0 + Duration::from_secs(31)), BreakerState::Closed);
    }

    #[test]
    fn open_then_one_trial_then_closed_or_open_again() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        for _ in 0..20 {
            call(&b, t0, true);
        }
        assert_eq!(b.state_at(t0), BreakerState::Open);
        let refused = b.check_at(t0 + Duration::from_secs(3)).err().expect("open refuses");
        assert_eq!(refused, Duration::from_secs(7));
        assert_eq!(b.rejected_total(), 1);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
        let trial = b.check_at(t1).expect("one trial");
        assert!(b.check_at(t1).is_err(), "only one trial at a time");
        trial.failure();
        let now = Instant::now();
        assert_eq!(b.state_at(now), BreakerState::Open);
        // Open for another 10 s from the failed trial.
        let t2 = now + Duration::from_secs(10);
        let trial = b.check_at(t2).expect("next trial");
        trial.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.check().is_ok());
    }

    #[test]
    fn a_dropped_trial_does_not_keep_the_breaker_open() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        for _ in 0..20 {
            call(&b, t0, true);
        }
        let t1 = t0 + Duration::from_secs(10);
        let trial = b.check_at(t1).expect("trial");
        assert!(b.check_at(t1).is_err());
        // The request holding the trial is cancelled: the permit is dropped without an outcome.
        drop(trial);
        let next = b.check_at(t1).expect("the next call becomes the trial");
        next.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_trial_cancelled_inside_a_future_is_released() {
        let b = std::sync::Arc::new(CircuitBreaker::new("t", BreakerPolicy { open_for: Duration::ZERO, ..policy() }));
        for _ in 0..20 {
            call(&b, Instant::now(), true);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let b2 = b.clone();
            let call = async move {
                let _permit = b2.check().expect("trial");
                std::future::pending::<()>().await;
            };
            // The client goes away mid-call.
            assert!(tokio::time::timeout(Duration::from_millis(10), call).await.is_err());
        });
        assert!(b.check().is_ok(), "the cancelled trial must not block the next call");
    }

    #[test]
    fn successes_in_closed_state_do_not_open() {
        let b = CircuitBreaker::new("t", policy());
        let t0 = Instant::now();
        for i in 0..1000u64 {
            call(&b, t0 + Duration::from_millis(i * 30), false);
        }
        assert_eq!(b.state_at(t0 + Duration::from_secs(30)), BreakerState::Closed);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..10 {
            let d = backoff(attempt).as_millis();
            assert!(d <= 3000, "{d}");
        }
        assert!(backoff(1).as_millis() <= 150);
    }

    #[test]
    fn attempts_fit_the_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            assert_eq!(attempt_timeout(Duration::from_secs(10)), Some(Duration::from_secs(10)));
            assert!(retry_fits(Duration::from_secs(100)));
            with_deadline(Instant::now() + Duration::from_secs(3), async {
                let t = attempt_timeout(Duration::from_secs(10)).unwrap();
                assert!(t <= Duration::from_secs(3) && t > Duration::from_secs(2), "{t:?}");
                assert!(!retry_fits(Duration::from_secs(3)));
                assert!(retry_fits(Duration::from_millis(100)));
            })
            .await;
            with_deadline(Instant::now() + Duration::from_millis(100), async {
                assert_eq!(attempt_timeout(Duration::from_secs(10)), None);
            })
            .await;
        });
    }
}
