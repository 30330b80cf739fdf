//! Controllable time for the simulators.
//!
//! Every expiry in the sandbox (authorization codes, access and refresh tokens, Toss requests,
//! Toss auto-complete) is computed from [`SandboxClock::now`], never from the system clock
//! directly, so tests can jump forward with [`SandboxClock::advance`] (or the
//! `POST <base>/_sandbox/clock` control call) instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// The clock never moves more than ~100 years ahead (keeps date arithmetic far from overflow).
const MAX_OFFSET_MS: i64 = 100 * 366 * 86_400 * 1000;

/// Korea Standard Time (UTC+9, no daylight saving). Both providers speak KST.
pub fn kst() -> FixedOffset {
    // 9 hours is always a valid offset.
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

/// The system clock plus an offset that only moves forward (or back to zero on reset).
/// Cheap to clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct SandboxClock {
    offset_ms: Arc<AtomicI64>,
}

impl SandboxClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Current sandbox time (UTC).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Current sandbox time in KST.
    pub fn now_kst(&self) -> DateTime<FixedOffset> {
        self.now().with_timezone(&kst())
    }

    /// Today's date in Korea, by the sandbox clock.
    pub fn today_kst(&self) -> NaiveDate {
        self.now_kst().date_naive()
    }

    /// Move the sandbox clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(MAX_OFFSET_MS);
        self.advance_ms(ms);
    }

    /// Move the clock by a (non-negative) number of milliseconds; saturates instead of overflowing.
    pub fn advance_ms(&self, ms: i64) {
        let ms = ms.max(0);
        let _ = self.offset_ms.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| Some(cur.saturating_add(ms).min(MAX_OFFSET_MS)));
    }

    /// The current offset from the system clock.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst).max(0) as u64)
    }

    /// Back to the system clock.
    pub fn reset(&self) {
        self.offset_ms.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let c = SandboxClock::new();
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        let after = c.now();
        assert!(after - before >= chrono::Duration::seconds(3600));
        assert_eq!(c.offset(), Duration::from_secs(3600));
        c.reset();
        assert_eq!(c.offset(), Duration::ZERO);
    }

    #[test]
    fn clones_share_offset_and_huge_values_saturate() {
        let c = SandboxClock::new();
        let d = c.clone();
        d.advance(Duration::from_secs(10));
        assert_eq!(c.offset(), Duration::from_secs(10));
        c.advance(Duration::MAX);
        let _ = c.now(); // must not panic
        c.advance_ms(-5); // ignored
    }
}
