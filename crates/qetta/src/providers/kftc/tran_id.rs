//! `bank_tran_id` = client_use_code (10) + `U` + 9 characters `[0-9A-Z]`, unique per day per
//! institution (SPEC A3). Uniqueness across replicas comes from a per-day counter in the
//! database (or Redis when configured): each process reserves a block of numbers at a time, so
//! most ids cost no round trip. The 9 characters are the counter in base 36.

use std::sync::Mutex;

use redis::aio::ConnectionManager;

use crate::store::{Db, StoreError};

const BLOCK: i64 = 100;
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

enum Counter {
    Database(Db),
    Redis(Box<ConnectionManager>, String),
}

pub struct TranIds {
    client_use_code: String,
    counter: Counter,
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
        Self { client_use_code, counter: Counter::Database(db), block: Mutex::new((String::new(), 0, 0)) }
    }

    pub fn with_redis(client_use_code: String, conn: ConnectionManager, prefix: &str) -> Self {
        Self { client_use_code, counter: Counter::Redis(Box::new(conn), prefix.to_string()), block: Mutex::new((String::new(), 0, 0)) }
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
        match &self.counter {
            Counter::Database(db) => {
                let (last,): (i64,) = sqlx::query_as(
                    "INSERT INTO kftc_tran_counters (day, last) VALUES ($1, $2) \
                     ON CONFLICT (day) DO UPDATE SET last = kftc_tran_counters.last + $2 RETURNING last",
                )
                .bind(day)
                .bind(BLOCK)
                .fetch_one(db.pool())
                .await
                .map_err(StoreError::from)?;
                Ok(last)
            }
            Counter::Redis(conn, prefix) => {
                let mut conn = ConnectionManager::clone(conn);
                let key = format!("{prefix}:kftc:tran_id:{day}");
                let last: i64 = redis::cmd("INCRBY").arg(&key).arg(BLOCK).query_async(&mut conn).await?;
                let _: () = redis::cmd("EXPIRE").arg(&key).arg(3 * 86400).query_async(&mut conn).await?;
                Ok(last)
            }
        }
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
