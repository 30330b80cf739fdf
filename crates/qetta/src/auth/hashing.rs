//! The bound on password hashing. Every argon2 computation (register, login, the dummy verify
//! for unknown emails, account deletion) runs here: at most `QETTA_HASH_CONCURRENCY` at once
//! (default: the number of cores), each on a reused 19 MiB block buffer, so memory stays at
//! about `concurrency × 19 MiB` whatever the load. A caller waits at most
//! `QETTA_HASH_QUEUE_WAIT_MS` for its turn, then gets [`HashError::Busy`] (503 `busy` with
//! `Retry-After`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Block;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::password;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot stayed taken for the whole queue wait.
    #[error("the service is busy")]
    Busy,
    #[error(transparent)]
    Failed(#[from] password::HashFailure),
    #[error("hashing task: {0}")]
    Task(String),
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    /// Block buffers of finished hashes, reused: never more than `concurrency` of them.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// The default concurrency: the number of cores.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

impl Hasher {
    pub fn new(concurrency: usize, queue_wait: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.max(1))), queue_wait, memory: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Runs `f` on a blocking thread with a hashing slot and a block buffer.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static) -> Result<T, HashError> {
        let permit = match tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(HashError::Busy),
        };
        let memory = self.memory.clone();
        // The slot is released when the computation ends, even if the caller has gone away.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut blocks = memory.lock().expect("hash memory").pop().unwrap_or_else(password::new_memory);
            let out = f(&mut blocks);
            memory.lock().expect("hash memory").push(blocks);
            out
        })
        .await
        .map_err(|e| HashError::Task(e.to_string()))
    }

    /// A PHC string for a new password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let password = Zeroizing::new(password);
        Ok(self.run(move |m| password::hash_with(&password, m)).await??)
    }

    /// Whether `password` matches `stored` (`None`: unknown user, still costs one hash).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let password = Zeroizing::new(password);
        self.run(move |m| password::verify_with(&password, stored.as_deref(), m)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excess_callers_get_busy_after_the_queue_wait() {
        let h = Hasher::new(1, Duration::from_millis(1));
        // Hold the only slot: every caller times out in the queue.
        let held = h.permits.clone().acquire_owned().await.unwrap();
        assert!(matches!(h.verify("x".into(), None).await, Err(HashError::Busy)));
        drop(held);
        let stored = h.hash("correct horse 7".into()).await.unwrap();
        assert!(h.verify("correct horse 7".into(), Some(stored.clone())).await.unwrap());
        assert!(!h.verify("wrong horse 7".into(), Some(stored)).await.unwrap());
        assert!(h.memory.lock().unwrap().len() <= 1, "buffers are reused, one per slot");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_is_bounded_and_buffers_reused() {
        let h = Hasher::new(2, Duration::from_secs(60));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("pw".into(), None).await })
            })
            .collect();
        for t in tasks {
            assert!(!t.await.unwrap().unwrap());
        }
        assert!(h.memory.lock().unwrap().len() <= 2, "at most one buffer per slot");
    }
}
