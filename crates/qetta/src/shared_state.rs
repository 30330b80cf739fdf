//! State that replicas share but that is not the system of record: OAuth `state` values and
//! rate-limit counters. With `REDIS_URL` they live in Redis (TTL, atomic consume); without it
//! OAuth states live in the database and counters in this process.

use std::collections::HashMap;
use std::sync::Mutex;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::store::oauth_states::{self, OAuthState};
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<SharedError> for crate::error::ApiError {
    fn from(e: SharedError) -> Self {
        match e {
            SharedError::Store(s) => s.into(),
            other => crate::error::ApiError::internal(other),
        }
    }
}

/// What consuming a state found.
#[derive(Debug)]
pub enum Consumed {
    Fresh(OAuthState),
    /// It existed and was consumed before.
    Replayed,
    Unknown,
}

pub struct SharedState {
    db: Db,
    redis: Option<ConnectionManager>,
    /// Namespace of every Redis key (`QETTA_REDIS_PREFIX`).
    prefix: String,
    counters: Mutex<HashMap<String, (i64, i64)>>,
}

impl SharedState {
    pub fn new(db: Db, redis: Option<ConnectionManager>, prefix: &str) -> Self {
        Self { db, redis, prefix: prefix.to_string(), counters: Mutex::new(HashMap::new()) }
    }

    fn state_key(&self, state: &str) -> String {
        format!("{}:oauth_state:{state}", self.prefix)
    }

    fn counter_key(&self, key: &str, window: i64) -> String {
        format!("{}:rl:{key}:{window}", self.prefix)
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    pub async fn ping(&self) -> Result<(), SharedError> {
        if let Some(r) = &self.redis {
            let mut c = r.clone();
            let _: String = redis::cmd("PING").query_async(&mut c).await?;
        }
        Ok(())
    }

    pub async fn put_state(&self, s: &OAuthState) -> Result<(), SharedError> {
        match &self.redis {
            None => Ok(oauth_states::insert(&self.db, s).await?),
            Some(r) => {
                let mut c = r.clone();
                let key = self.state_key(&s.state);
                let fields: Vec<(&str, String)> = vec![
                    ("user_id", s.user_id.clone()),
                    ("provider", s.provider.clone()),
                    ("redirect_to", s.redirect_to.clone().unwrap_or_default()),
                    ("initiator_hash", s.initiator_hash.clone().unwrap_or_default()),
                    ("created_at", s.created_at.to_string()),
                    ("expires_at", s.expires_at.to_string()),
                ];
                let _: () = c.hset_multiple(&key, &fields).await?;
                // Kept a day past expiry so that a late callback is told "expired", not "unknown".
                let _: () = c.expire(&key, (s.expires_at - s.created_at).max(1) + 86_400).await?;
                Ok(())
            }
        }
    }

    /// Records the browser binding of a state, once. Returns `false` if it was bound already
    /// (or does not exist).
    pub async fn bind_browser(&self, state: &str, binding: &str) -> Result<bool, SharedError> {
        match &self.redis {
            None => {
                let done = sqlx::query("UPDATE oauth_states SET browser_binding = $1 WHERE state = $2 AND browser_binding IS NULL AND consumed_at IS NULL")
                    .bind(binding)
                    .bind(state)
                    .execute(self.db.pool())
                    .await
                    .map_err(StoreError::from)?;
                Ok(done.rows_affected() == 1)
            }
            Some(r) => {
                let mut c = r.clone();
                let key = self.state_key(state);
                if !c.exists::<_, bool>(&key).await? {
                    return Ok(false);
                }
                Ok(c.hset_nx(&key, "binding", binding).await?)
            }
        }
    }

    /// Reads a state without consuming it.
    pub async fn peek_state(&self, state: &str) -> Result<Option<OAuthState>, SharedError> {
        match &self.redis {
            None => Ok(sqlx::query_as(
                "SELECT state, user_id, provider, redirect_to, browser_binding, initiator_hash, created_at, expires_at, consumed_at FROM oauth_states WHERE state = $1",
            )
            .bind(state)
            .fetch_optional(self.db.pool())
            .await
            .map_err(StoreError::from)?),
            Some(r) => {
                let mut c = r.clone();
                let map: HashMap<String, String> = c.hgetall(self.state_key(state)).await?;
                Ok(from_hash(state, &map))
            }
        }
    }

    /// Consumes a state exactly once: of many concurrent callers only one gets `Fresh`.
    pub async fn consume_state(&self, state: &str, now: i64) -> Result<Consumed, SharedError> {
        match &self.redis {
            None => match oauth_states::consume(&self.db, state, now).await? {
                Some(s) => Ok(Consumed::Fresh(s)),
                None if oauth_states::exists(&self.db, state).await? => Ok(Consumed::Replayed),
                None => Ok(Consumed::Unknown),
            },
            Some(r) => {
                let mut c = r.clone();
                let key = self.state_key(state);
                if !c.exists::<_, bool>(&key).await? {
                    return Ok(Consumed::Unknown);
                }
                let won: bool = c.hset_nx(&key, "consumed_at", now).await?;
                if !won {
                    return Ok(Consumed::Replayed);
                }
                let map: HashMap<String, String> = c.hgetall(&key).await?;
                Ok(from_hash(state, &map).map(Consumed::Fresh).unwrap_or(Consumed::Unknown))
            }
        }
    }

    /// Counts one hit of `key` in the current fixed window of `window_secs`; returns the count.
    pub async fn hit(&self, key: &str, window_secs: i64, now: i64) -> Result<(i64, i64), SharedError> {
        let window = now / window_secs;
        let reset_in = (window + 1) * window_secs - now;
        match &self.redis {
            None => {
                let mut map = self.counters.lock().expect("counters");
                if map.len() > 100_000 {
                    map.retain(|_, (w, _)| *w >= window - 1);
                }
                let e = map.entry(key.to_string()).or_insert((window, 0));
                if e.0 != window {
                    *e = (window, 0);
                }
                e.1 += 1;
                Ok((e.1, reset_in))
            }
            Some(r) => {
                let mut c = r.clone();
                let k = self.counter_key(key, window);
                let (n,): (i64,) = redis::pipe().atomic().incr(&k, 1).expire(&k, window_secs + 1).ignore().query_async(&mut c).await?;
                Ok((n, reset_in))
            }
        }
    }

    /// Takes back one hit of `key` counted at `now` (same window), e.g. an attempt that turned
    /// out not to count. Never goes below zero, never creates a key.
    pub async fn undo(&self, key: &str, window_secs: i64, now: i64) -> Result<(), SharedError> {
        let window = now / window_secs;
        match &self.redis {
            None => {
                let mut map = self.counters.lock().expect("counters");
                if let Some(e) = map.get_mut(key) {
                    if e.0 == window && e.1 > 0 {
                        e.1 -= 1;
                    }
                }
                Ok(())
            }
            Some(r) => {
                static UNDO: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
                let script = UNDO.get_or_init(|| {
                    redis::Script::new("local n = tonumber(redis.call('GET', KEYS[1]) or '0') if n > 0 then return redis.call('DECR', KEYS[1]) end return 0")
                });
                let mut c = r.clone();
                let _: i64 = script.key(self.counter_key(key, window)).invoke_async(&mut c).await?;
                Ok(())
            }
        }
    }

    /// The current count of `key` without counting.
    pub async fn count(&self, key: &str, window_secs: i64, now: i64) -> Result<(i64, i64), SharedError> {
        let window = now / window_secs;
        let reset_in = (window + 1) * window_secs - now;
        match &self.redis {
            None => {
                let map = self.counters.lock().expect("counters");
                Ok((map.get(key).filter(|(w, _)| *w == window).map(|(_, n)| *n).unwrap_or(0), reset_in))
            }
            Some(r) => {
                let mut c = r.clone();
                let n: Option<i64> = c.get(self.counter_key(key, window)).await?;
                Ok((n.unwrap_or(0), reset_in))
            }
        }
    }

    pub async fn clear(&self, key: &str, window_secs: i64, now: i64) -> Result<(), SharedError> {
        let window = now / window_secs;
        match &self.redis {
            None => {
                self.counters.lock().expect("counters").remove(key);
                Ok(())
            }
            Some(r) => {
                let mut c = r.clone();
                let _: () = c.del(self.counter_key(key, window)).await?;
                Ok(())
            }
        }
    }
}

fn from_hash(state: &str, map: &HashMap<String, String>) -> Option<OAuthState> {
    Some(OAuthState {
        state: state.to_string(),
        user_id: map.get("user_id")?.clone(),
        provider: map.get("provider")?.clone(),
        redirect_to: map.get("redirect_to").filter(|s| !s.is_empty()).cloned(),
        browser_binding: map.get("binding").cloned(),
        initiator_hash: map.get("initiator_hash").filter(|s| !s.is_empty()).cloned(),
        created_at: map.get("created_at")?.parse().ok()?,
        expires_at: map.get("expires_at")?.parse().ok()?,
        consumed_at: map.get("consumed_at").and_then(|v| v.parse().ok()),
    })
}
