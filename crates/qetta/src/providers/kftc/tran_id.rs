//! `bank_tran_id` = client_use_code (10) + `U` + 9 characters `[0-9A-Z]`, unique per day per
//! institution (SPEC A3). Uniqueness across replicas comes from a per-day counter in the
//! database: each process reserves a block of numbers at a time, so most ids cost no round trip.
//! The 9 characters are the counter in base 36.
//!
//! The counter is always in the database, even with Redis: a Redis restart (without
//! persistence) or failover would restart a Redis counter and reuse the day's ids (A0326).
//! Earlier versions counted in Redis; where that key still exists for the day, the first
//! reservation of the day in each process lifts the database counter above it, so no id given
//! out by the old scheme is given out again.

use std::sync::Mutex;

use crate::redis_conn::Redis;
use crate::store::{Db, StoreError};

const BLOCK: i64 = 1000;
const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Debug, thiserror::Error)]
pub enum TranIdError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the day's bank_tran_id space is exhausted")]
    Exhausted,
}

impl From<TranIdError> for crate::error::ApiError {
    fn from(e: TranIdError) -> Self {
        crate::error::ApiError::internal(e)
    }
}

pub struct TranIds {
    client_use_code: String,
    db: Db,
    /// The Redis of the old scheme and the key prefix, to read its high-water mark.
    legacy: Option<(Redis, String)>,
    /// Days whose legacy high-water mark has been carried over by this process.
    seeded: Mutex<Option<String>>,
    /// (day, next, end): numbers next..end of `day` are reserved for this process.
    block: Mutex<(String, i64, i64)>,
}

/// The 9-character suffix for `n` (base 36, zero-padded).
pub fn suffix(mut n: i64) -> Option<String> {
    if !(0..36i64.pow(9)).contains(&n) {
        return None;
    }
    let mut out = [b'0'; 9];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    Some(String::from_utf8(out.to_vec()).expect("ASCII"))
}

impl TranIds {
    pub fn with_database(client_use_code: String, db: Db) -> Self {
        Self { client_use_code, db, legacy: None, seeded: Mutex::new(None), block: Mutex::new((String::new(), 0, 0)) }
    }

    /// Counts in the database, and carries over the day's counter of the former Redis scheme.
    pub fn with_legacy_redis(client_use_code: String, db: Db, redis: Redis, prefix: &str) -> Self {
        Self { legacy: Some((redis, prefix.to_string())), ..Self::with_database(client_use_code, db) }
    }

    pub fn client_use_code(&self) -> &str {
        &self.client_use_code
    }

    /// A fresh id for `day` (`YYYYMMDD`, the bank business day in KST).
    pub async fn next(&self, day: &str) -> Result<String, TranIdError> {
        loop {
            {
                let mut b = self.block.lock().expect("tran id block");
                if b.0 == day && b.1 < b.2 {
                    let n = b.1;
                    b.1 += 1;
                    let s = suffix(n).ok_or(TranIdError::Exhausted)?;
                    return Ok(format!("{}U{s}", self.client_use_code));
                }
            }
            let end = self.reserve(day).await?;
            let mut b = self.block.lock().expect("tran id block");
            // Another task may have reserved meanwhile; a newer block simply replaces it (the
            // unused numbers are skipped, never reused).
            *b = (day.to_string(), end - BLOCK, end);
        }
    }

    /// Reserves the next block of the day and returns its end (exclusive).
    async fn reserve(&self, day: &str) -> Result<i64, TranIdError> {
        self.carry_over_legacy(day).await?;
        let (last,): (i64,) = sqlx::query_as(
            "INSERT INTO kftc_tran_counters (day, last) VALUES ($1, $2) \
             ON CONFLICT (day) DO UPDATE SET last = kftc_tran_counters.last + $2 RETURNING last",
        )
        .bind(day)
        .bind(BLOCK)
        .fetch_one(self.db.pool())
        .await
        .map_err(StoreError::from)?;
        Ok(last)
    }

    /// Once per day and process: lifts the database counter to the old Redis counter of the day,
    /// if there is one. Redis being unreachable is not an error (nothing to carry over then: the
    /// old scheme's counter is only read, never written).
    async fn carry_over_legacy(&self, day: &str) -> Result<(), TranIdError> {
        let Some((redis, prefix)) = &self.legacy else { return Ok(()) };
        if self.seeded.lock().expect("seeded").as_deref() == Some(day) {
            return Ok(());
        }
        let key = format!("{prefix}:kftc:tran_id:{day}");
        let old: Option<i64> = match redis.call(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the former Redis bank_tran_id counter; trying again at the next block");
                return Ok(());
            }
        };
        if let Some(old) = old {
            sqlx::query(
                "INSERT INTO kftc_tran_counters (day, last) VALUES ($1, $2) \
                 ON CONFLICT (day) DO UPDATE SET last = CASE WHEN kftc_tran_counters.last < $2 THEN $2 ELSE kftc_tran_counters.last END",
            )
            .bind(day)
            .bind(old)
            .execute(self.db.pool())
            .await
            .map_err(StoreError::from)?;
        }
        *self.seeded.lock().expect("seeded") = Some(day.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::suffix;

    #[test]
    fn suffixes_are_nine_base36_characters() {
        assert_eq!(suffix(0).unwrap(), "000000000");
        assert_eq!(suffix(35).unwrap(), "00000000Z");
        assert_eq!(suffix(36).unwrap(), "000000010");
        assert_eq!(suffix(36i64.pow(9) - 1).unwrap(), "ZZZZZZZZZ");
        assert!(suffix(36i64.pow(9)).is_none());
        assert!(suffix(-1).is_none());
    }
}
