//! Time, injectable so that tests can move it instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    /// Unix time in seconds.
    fn now(&self) -> i64;

    /// Tells when this clock jumps (a test moved it), so that background work waiting for a time
    /// on it wakes at once instead of when the real time has passed. `None`: it never jumps.
    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        None
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// The real clock plus an offset that tests advance.
pub struct OffsetClock {
    offset: AtomicI64,
    jumped: tokio::sync::watch::Sender<i64>,
}

impl Default for OffsetClock {
    fn default() -> Self {
        Self { offset: AtomicI64::new(0), jumped: tokio::sync::watch::channel(0).0 }
    }
}

impl OffsetClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn advance(&self, secs: i64) {
        let offset = self.offset.fetch_add(secs, Ordering::SeqCst) + secs;
        self.jumped.send_replace(offset);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.offset.load(Ordering::SeqCst)
    }

    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        Some(self.jumped.subscribe())
    }
}

/// Waits until `clock` says `until` (Unix seconds) or `real` (the same wait in real time, whichever
/// comes first): a clock a test moves past `until` ends the wait at once.
pub async fn sleep_until(clock: &dyn Clock, until: i64, real: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + real;
    let mut jumps = clock.jumps();
    while clock.now() < until {
        let jumped = async {
            let alive = match jumps.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !alive {
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = jumped => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jump_past_the_end_wakes_a_sleeper() {
        let clock = OffsetClock::new();
        let until = clock.now() + 3600;
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { sleep_until(&*clock, until, std::time::Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(60);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "a jump short of the end keeps it waiting");
        clock.advance(3600);
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper).await.expect("woken by the jump").unwrap();
    }
}
