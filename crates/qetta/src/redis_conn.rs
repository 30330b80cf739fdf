//! The one Redis connection, with a bounded wait and a health flag.
//!
//! Redis holds only shared, rebuildable state (rate-limit counters, OAuth states, refresh locks),
//! so no request may wait on it for long: every call is cut after `QETTA_REDIS_TIMEOUT_MS`
//! (250 ms by default), and after a failure requests skip Redis and go straight to their
//! fallback, while a background probe pings it every [`PROBE_EVERY`] and ends the skipping when
//! it answers. The connection manager reconnects at most a second apart, so Redis is used again
//! within a second or two of coming back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult};

/// How often the probe pings Redis while it is being skipped.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The longest Redis is skipped after a failure even if the probe has not answered yet (a
/// safety net: requests then try Redis again, each bounded by the timeout).
pub const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Whether Redis answered lately. Shared by every clone of a [`Redis`].
pub struct RedisHealth {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last failure, plus one (0 = never failed).
    last_failure: AtomicU64,
    /// The last call failed.
    down: AtomicBool,
    failures: AtomicU64,
}

impl RedisHealth {
    fn new() -> Self {
        Self { epoch: Instant::now(), last_failure: AtomicU64::new(0), down: AtomicBool::new(false), failures: AtomicU64::new(0) }
    }

    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// True after a failure until the probe (or a call) succeeds, for at most
    /// [`SKIP_AFTER_FAILURE`] after the last failure.
    pub fn skipping(&self) -> bool {
        self.down.load(Ordering::Relaxed) && self.stamp().saturating_sub(self.last_failure.load(Ordering::Relaxed)) < SKIP_AFTER_FAILURE.as_millis() as u64
    }

    /// Redis answered its last call (or has not been called yet).
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn failed(&self, e: &RedisError) {
        self.last_failure.store(self.stamp(), Ordering::Relaxed);
        let was_up = !self.down.swap(true, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        if was_up {
            tracing::warn!(error = %e, "Redis failed: using the fallbacks (in-process rate limits, database OAuth states and locks) until it answers again");
        }
    }

    fn succeeded(&self) {
        let was_down = self.down.swap(false, Ordering::Relaxed);
        if was_down {
            tracing::info!("Redis answers again: shared state is back in Redis");
        }
    }
}

/// A Redis connection whose every call is bounded in time. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    health: Arc<RedisHealth>,
}

fn unavailable(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::IoError, what))
}

/// A connection error (reconnect, skip) rather than a verdict about the command.
fn is_connection_trouble(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() || e.kind() == ErrorKind::IoError
}

impl Redis {
    /// Connects, with connect and response time-outs of `timeout` and reconnect attempts at most
    /// a second apart. Fails if Redis does not answer within `startup_wait`.
    pub async fn connect(url: &str, timeout: Duration, startup_wait: Duration) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_factor(100)
            .set_exponent_base(2)
            .set_max_delay(1000)
            .set_number_of_retries(3);
        let conn =
            tokio::time::timeout(startup_wait, ConnectionManager::new_with_config(client, config)).await.map_err(|_| unavailable("connection timed out"))??;
        let redis = Self { conn, timeout, health: Arc::new(RedisHealth::new()) };
        redis.ping().await?;
        tokio::spawn(probe(redis.conn.clone(), timeout, Arc::downgrade(&redis.health)));
        Ok(redis)
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let _: String = self.call(|mut c| async move { redis::cmd("PING").query_async(&mut c).await }).await?;
        Ok(())
    }

    pub fn health(&self) -> &Arc<RedisHealth> {
        &self.health
    }

    /// Runs one call (a command, a pipeline, a script) on the connection, at most `timeout`
    /// long. While Redis is being skipped after a failure it fails at once.
    pub async fn call<T, F, Fut>(&self, f: F) -> RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.health.skipping() {
            return Err(unavailable("skipped: Redis failed less than a second ago"));
        }
        let result = match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(r) => r,
            Err(_) => Err(unavailable("timed out")),
        };
        match &result {
            Err(e) if is_connection_trouble(e) => self.health.failed(e),
            _ => self.health.succeeded(),
        }
        result
    }
}

/// While Redis is skipped, pings it every [`PROBE_EVERY`] (which also makes the connection
/// manager reconnect) and ends the skipping when it answers. Ends when the service drops its
/// Redis handle.
async fn probe(conn: ConnectionManager, timeout: Duration, health: std::sync::Weak<RedisHealth>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(health) = health.upgrade() else { return };
        if health.is_up() {
            continue;
        }
        let mut c = conn.clone();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut c).await };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => health.succeeded(),
            Ok(Err(e)) if is_connection_trouble(&e) => health.failed(&e),
            Ok(Err(_)) => health.succeeded(),
            Err(_) => health.failed(&unavailable("timed out")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_skips_redis_briefly_and_a_success_ends_it() {
        let h = RedisHealth::new();
        assert!(h.is_up());
        assert!(!h.skipping());
        h.failed(&unavailable("x"));
        assert!(!h.is_up());
        assert!(h.skipping());
        assert_eq!(h.failures_total(), 1);
        h.succeeded();
        assert!(h.is_up());
        assert!(!h.skipping());
    }
}
