//! State that replicas share but that is not the system of record: OAuth `state` values and
//! rate-limit counters. With `REDIS_URL` they live in Redis (TTL, atomic consume); without it
//! OAuth states live in the database and counters in this process.
//!
//! While Redis fails (every call is bounded by `QETTA_REDIS_TIMEOUT_MS`, see [`Redis`]) the
//! same fallbacks serve: counters count in this process (limits become per replica), new OAuth
//! states are written to the database, and states are looked up in Redis first, then in the
//! database. Consuming stays exactly-once across both: a consumer wins only if it wins in every
//! store that holds the state (the database row is claimed too whenever it exists).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;

use crate::redis_conn::{Redis, RedisHealth};
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

/// What Redis said about consuming a state.
enum RedisConsume {
    NotThere,
    Lost,
    Won(HashMap<String, String>),
}

pub struct SharedState {
    db: Db,
    redis: Option<Redis>,
    /// Namespace of every Redis key (`QETTA_REDIS_PREFIX`).
    prefix: String,
    counters: Mutex<HashMap<String, (i64, i64)>>,
}

impl SharedState {
    pub fn new(db: Db, redis: Option<Redis>, prefix: &str) -> Self {
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

    pub fn redis_health(&self) -> Option<&Arc<RedisHealth>> {
        self.redis.as_ref().map(Redis::health)
    }

    /// Whether Redis answers (for `/ready`; fails at once while Redis is skipped after a failure).
    pub async fn ping(&self) -> Result<(), SharedError> {
        if let Some(r) = &self.redis {
            r.ping().await?;
        }
        Ok(())
    }

    pub async fn put_state(&self, s: &OAuthState) -> Result<(), SharedError> {
        if let Some(r) = &self.redis {
            let key = self.state_key(&s.state);
            let fields: Vec<(&str, String)> = vec![
                ("user_id", s.user_id.clone()),
                ("provider", s.provider.clone()),
                ("flow_data", s.flow_data.clone().unwrap_or_default()),
                ("initiator_hash", s.initiator_hash.clone().unwrap_or_default()),
                ("created_at", s.created_at.to_string()),
                ("expires_at", s.expires_at.to_string()),
            ];
            // Kept a day past expiry so that a late callback is told "expired", not "unknown".
            let ttl = (s.expires_at - s.created_at).max(1) + 86_400;
            let written: Result<(), _> = r
                .call(|mut c| async move { redis::pipe().atomic().hset_multiple(&key, &fields).ignore().expire(&key, ttl).ignore().query_async(&mut c).await })
                .await;
            match written {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!(error = %e, "Redis unavailable: OAuth state kept in the database"),
            }
        }
        Ok(oauth_states::insert(&self.db, s).await?)
    }

    /// Records the browser binding of a state, once. Returns `false` if it was bound already
    /// (or does not exist).
    pub async fn bind_browser(&self, state: &str, binding: &str) -> Result<bool, SharedError> {
        if let Some(r) = &self.redis {
            let key = self.state_key(state);
            let bound: Result<Option<bool>, _> = r
                .call(|mut c| async move {
                    if !c.exists::<_, bool>(&key).await? {
                        return Ok(None);
                    }
                    Ok(Some(c.hset_nx(&key, "binding", binding).await?))
                })
                .await;
            if let Ok(Some(done)) = bound {
                return Ok(done);
            }
        }
        let done = sqlx::query("UPDATE oauth_states SET browser_binding = $1 WHERE state = $2 AND browser_binding IS NULL AND consumed_at IS NULL")
            .bind(binding)
            .bind(state)
            .execute(self.db.pool())
            .await
            .map_err(StoreError::from)?;
        Ok(done.rows_affected() == 1)
    }

    /// Reads a state without consuming it.
    pub async fn peek_state(&self, state: &str) -> Result<Option<OAuthState>, SharedError> {
        if let Some(r) = &self.redis {
            let key = self.state_key(state);
            let found: Result<HashMap<String, String>, _> = r.call(|mut c| async move { c.hgetall(&key).await }).await;
            if let Some(s) = found.ok().and_then(|map| from_hash(state, &map)) {
                return Ok(Some(s));
            }
        }
        Ok(sqlx::query_as(
            "SELECT state, user_id, provider, flow_data, browser_binding, initiator_hash, created_at, expires_at, consumed_at FROM oauth_states WHERE state = $1",
        )
        .bind(state)
        .fetch_optional(self.db.pool())
        .await
        .map_err(StoreError::from)?)
    }

    /// Consumes a state exactly once: of many concurrent callers only one gets `Fresh`, also
    /// while some replicas reach Redis and others do not.
    pub async fn consume_state(&self, state: &str, now: i64) -> Result<Consumed, SharedError> {
        if let Some(r) = &self.redis {
            let key = self.state_key(state);
            let outcome: Result<RedisConsume, _> = r
                .call(|mut c| async move {
                    if !c.exists::<_, bool>(&key).await? {
                        return Ok(RedisConsume::NotThere);
                    }
                    if !c.hset_nx::<_, _, _, bool>(&key, "consumed_at", now).await? {
                        return Ok(RedisConsume::Lost);
                    }
                    Ok(RedisConsume::Won(c.hgetall(&key).await?))
                })
                .await;
            match outcome {
                Ok(RedisConsume::Lost) => return Ok(Consumed::Replayed),
                Ok(RedisConsume::Won(map)) => {
                    // A state written to the database while Redis looked down may be in both
                    // (the Redis write can succeed after its time-out): claim that row too.
                    if oauth_states::consume(&self.db, state, now).await?.is_none() && oauth_states::exists(&self.db, state).await? {
                        return Ok(Consumed::Replayed);
                    }
                    return Ok(from_hash(state, &map).map(Consumed::Fresh).unwrap_or(Consumed::Unknown));
                }
                Ok(RedisConsume::NotThere) => {}
                Err(e) => tracing::debug!(error = %e, "Redis unavailable: consuming the OAuth state from the database"),
            }
        }
        match oauth_states::consume(&self.db, state, now).await? {
            Some(s) => Ok(Consumed::Fresh(s)),
            None if oauth_states::exists(&self.db, state).await? => Ok(Consumed::Replayed),
            None => Ok(Consumed::Unknown),
        }
    }

    fn local_hit(&self, key: &str, window: i64) -> i64 {
        let mut map = self.counters.lock().expect("counters");
        if map.len() > 100_000 {
            map.retain(|_, (w, _)| *w >= window - 1);
        }
        let e = map.entry(key.to_string()).or_insert((window, 0));
        if e.0 != window {
            *e = (window, 0);
        }
        e.1 += 1;
        e.1
    }

    fn local_count(&self, key: &str, window: i64) -> i64 {
        let map = self.counters.lock().expect("counters");
        map.get(key).filter(|(w, _)| *w == window).map(|(_, n)| *n).unwrap_or(0)
    }

    /// Counts one hit of `key` in the current fixed window of `window_secs`; returns the count.
    /// In Redis when it answers, else in this process.
    pub async fn hit(&self, key: &str, window_secs: i64, now: i64) -> Result<(i64, i64), SharedError> {
        let window = now / window_secs;
        let reset_in = (window + 1) * window_secs - now;
        if let Some(r) = &self.redis {
            let k = self.counter_key(key, window);
            let counted: Result<(i64,), _> =
                r.call(|mut c| async move { redis::pipe().atomic().incr(&k, 1).expire(&k, window_secs + 1).ignore().query_async(&mut c).await }).await;
            match counted {
                Ok((n,)) => return Ok((n, reset_in)),
                Err(e) => tracing::debug!(error = %e, "Redis unavailable: counting in this process"),
            }
        }
        Ok((self.local_hit(key, window), reset_in))
    }

    /// Takes back one hit of `key` counted at `now` (same window), e.g. an attempt that turned
    /// out not to count. Never goes below zero, never creates a key.
    pub async fn undo(&self, key: &str, window_secs: i64, now: i64) -> Result<(), SharedError> {
        let window = now / window_secs;
        {
            let mut map = self.counters.lock().expect("counters");
            if let Some(e) = map.get_mut(key) {
                if e.0 == window && e.1 > 0 {
                    e.1 -= 1;
                }
            }
        }
        if let Some(r) = &self.redis {
            static UNDO: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
            let script = UNDO.get_or_init(|| {
                redis::Script::new("local n = tonumber(redis.call('GET', KEYS[1]) or '0') if n > 0 then return redis.call('DECR', KEYS[1]) end return 0")
            });
            let k = self.counter_key(key, window);
            let undone: Result<i64, _> = r.call(|mut c| async move { script.key(&k).invoke_async(&mut c).await }).await;
            if let Err(e) = undone {
                tracing::debug!(error = %e, "Redis unavailable: counter not decremented there");
            }
        }
        Ok(())
    }

    /// The current count of `key` without counting (the larger of Redis's and this process's,
    /// so that hits counted while Redis was down still count).
    pub async fn count(&self, key: &str, window_secs: i64, now: i64) -> Result<(i64, i64), SharedError> {
        let window = now / window_secs;
        let reset_in = (window + 1) * window_secs - now;
        let local = self.local_count(key, window);
        if let Some(r) = &self.redis {
            let k = self.counter_key(key, window);
            let n: Result<Option<i64>, _> = r.call(|mut c| async move { c.get(&k).await }).await;
            if let Ok(n) = n {
                return Ok((n.unwrap_or(0).max(local), reset_in));
            }
        }
        Ok((local, reset_in))
    }

    pub async fn clear(&self, key: &str, window_secs: i64, now: i64) -> Result<(), SharedError> {
        let window = now / window_secs;
        self.counters.lock().expect("counters").remove(key);
        if let Some(r) = &self.redis {
            let k = self.counter_key(key, window);
            let cleared: Result<(), _> = r.call(|mut c| async move { c.del(&k).await }).await;
            if let Err(e) = cleared {
                // The key expires with its window.
                tracing::debug!(error = %e, "Redis unavailable: counter not cleared there");
            }
        }
        Ok(())
    }
}

fn from_hash(state: &str, map: &HashMap<String, String>) -> Option<OAuthState> {
    Some(OAuthState {
        state: state.to_string(),
        user_id: map.get("user_id")?.clone(),
        provider: map.get("provider")?.clone(),
        flow_data: map.get("flow_data").filter(|s| !s.is_empty()).cloned(),
        browser_binding: map.get("binding").cloned(),
        initiator_hash: map.get("initiator_hash").filter(|s| !s.is_empty()).cloned(),
        created_at: map.get("created_at")?.parse().ok()?,
        expires_at: map.get("expires_at")?.parse().ok()?,
        consumed_at: map.get("consumed_at").and_then(|v| v.parse().ok()),
    })
}
