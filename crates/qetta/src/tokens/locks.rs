//! Locks that make a refresh happen once.
//!
//! - [`LocalFlights`]: one in-flight refresh per connection inside this process; the others wait
//!   for it and then re-read the row.
//! - [`RedisLock`]: across replicas when `REDIS_URL` is set (`SET NX PX` with a random token,
//!   released by compare-and-delete). The row's `version` is the fencing token: a writer only
//!   commits if the row is still at the version it read under the lock, so a holder whose lock
//!   expired mid-refresh cannot overwrite a newer grant.
//! - Without Redis, PostgreSQL's row lock (`SELECT … FOR UPDATE`) plays the same role (see the
//!   manager), and SQLite is a single process, where [`LocalFlights`] is enough.
//! - When Redis fails, the callers fall back to that database path. On PostgreSQL the row lock
//!   is taken under the Redis lock as well, so that a replica holding the Redis lock and one that
//!   fell back to the database still exclude each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::redis_conn::Redis;
use rand::RngCore;

#[derive(Default)]
pub struct LocalFlights {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalFlights {
    pub async fn acquire(&self, key: &str) -> LocalGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().expect("flights map");
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        LocalGuard { flights: self, key: key.to_string(), lock, _guard: Some(guard) }
    }
}

pub struct LocalGuard<'a> {
    flights: &'a LocalFlights,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut map = self.flights.locks.lock().expect("flights map");
        // Two references left (the map's and ours): nobody else waits, forget the entry.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.key);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("timed out waiting for the refresh lock")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct RedisLock {
    conn: Redis,
    ttl: Duration,
    prefix: String,
}

pub struct RedisGuard {
    conn: Redis,
    key: String,
    token: String,
}

const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

impl RedisLock {
    pub fn new(conn: Redis, ttl: Duration, prefix: &str) -> Self {
        Self { conn, ttl, prefix: prefix.to_string() }
    }

    /// Waits up to `wait` for the lock on `key`.
    pub async fn acquire(&self, key: &str, wait: Duration) -> Result<RedisGuard, LockError> {
        let mut token = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let token = hex::encode(token);
        let key = format!("{}:lock:{key}", self.prefix);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        let ttl_ms = self.ttl.as_millis() as u64;
        loop {
            let got: Option<String> = self
                .conn
                .call(|mut c| {
                    let (key, token) = (&key, &token);
                    async move { redis::cmd("SET").arg(key).arg(token).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut c).await }
                })
                .await?;
            if got.is_some() {
                return Ok(RedisGuard { conn: self.conn.clone(), key, token });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LockError::Timeout);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl RedisGuard {
    pub async fn release(self) {
        let (key, token) = (&self.key, &self.token);
        let result: Result<i64, _> = self.conn.call(|mut c| async move { redis::Script::new(RELEASE).key(key).arg(token).invoke_async(&mut c).await }).await;
        if let Err(e) = result {
            // The lock expires on its own after its TTL.
            tracing::warn!(error = %e, "could not release a refresh lock");
        }
    }
}
