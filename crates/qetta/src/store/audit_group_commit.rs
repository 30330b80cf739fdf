//! Group commit of audit entries on PostgreSQL.
//!
//! An entry of its own ([`super::audit::append`]) used to be one statement and one commit: on two
//! cores the database spent most of its time on per-statement work and commits, about 4,700
//! entries/s from three replicas (issue 16 asks for 5,000). Here the entries that arrive while
//! earlier ones are being written wait in a queue and go together: one statement, one commit, for
//! up to [`MAX_BATCH`] entries. Nothing waits on purpose: a lone entry is written at once, and a
//! batch forms only from what queued up behind a statement in flight.
//!
//! The chains' rules hold as for single appends: a batch holds at most one entry per chain (a
//! second entry of the same chain waits for the next batch), so each entry links to its chain's
//! head as it stands under the head row's lock (`FOR UPDATE`, taken in chain order, so two batches
//! — of this replica or another — never wait on each other in a cycle), and ids grow in chain
//! order. Every caller still learns its own outcome: a batch that fails (an outage, a deadlock
//! with another transaction, an entry the database refuses) is tried again entry by entry, so one
//! bad entry fails only itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sqlx::AnyPool;
use tokio::sync::oneshot;

use super::audit::{append_pg, batch_sql, chain_of, NewEntry};
use super::StoreError;

/// Batches in flight at once per process: each holds one pooled connection for one statement.
/// More hardly helps (each commit waits for the same WAL flush) and takes connections from
/// requests.
const FLUSHERS: usize = 4;

/// Entries per statement at most (12 parameters each; PostgreSQL allows 65,535).
pub(super) const MAX_BATCH: usize = 64;

type Outcome = Result<i64, StoreError>;

struct Pending {
    entry: NewEntry,
    now: i64,
    chain: i64,
    done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Tasks writing batches now (at most [`FLUSHERS`]).
    flushers: usize,
}

/// The queue of one database handle (one pool): shared by its clones.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl GroupCommit {
    /// Appends `entry` with the entries queued beside it; returns its id once committed.
    pub(super) async fn append(self: &Arc<Self>, pool: &AnyPool, entry: NewEntry, now: i64) -> Outcome {
        let (done, outcome) = oneshot::channel();
        let chain = chain_of(entry.user_id.as_deref());
        let start_flusher = {
            let mut q = self.queue.lock().expect("audit queue");
            q.pending.push_back(Pending { entry, now, chain, done });
            let start = q.flushers < FLUSHERS;
            if start {
                q.flushers += 1;
            }
            start
        };
        if start_flusher {
            // A task of its own, not the caller's future: a caller that goes away (a request
            // timed out) must not cancel the statement that carries other callers' entries.
            let me = Arc::clone(self);
            let pool = pool.clone();
            tokio::spawn(async move { me.flush(pool).await });
        }
        // The flusher always answers; a dropped sender means its task panicked.
        outcome.await.unwrap_or(Err(StoreError::Database(sqlx::Error::WorkerCrashed)))
    }

    /// Writes batches until the queue is empty.
    async fn flush(&self, pool: AnyPool) {
        let mut slot = FlusherSlot { commit: self, held: true };
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("audit queue");
                if q.pending.is_empty() {
                    // Under the same lock as the check: an entry queued after it starts a
                    // flusher of its own.
                    q.flushers -= 1;
                    slot.held = false;
                    return;
                }
                take_batch(&mut q.pending)
            };
            write(&pool, batch).await;
        }
    }
}

/// Frees a flusher's slot if its task ends other than by finding the queue empty (a panic), so
/// that the next append starts a new flusher for what is left.
struct FlusherSlot<'a> {
    commit: &'a GroupCommit,
    held: bool,
}

impl Drop for FlusherSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            let mut q = self.commit.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.flushers -= 1;
        }
    }
}

/// The oldest queued entries, at most one per chain and [`MAX_BATCH`] in all; the others keep
/// their place in the queue.
fn take_batch(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut rest = VecDeque::with_capacity(pending.len());
    for p in pending.drain(..) {
        if batch.len() < MAX_BATCH && !batch.iter().any(|b| b.chain == p.chain) {
            batch.push(p);
        } else {
            rest.push_back(p);
        }
    }
    *pending = rest;
    batch
}

async fn write(pool: &AnyPool, batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.into_iter().next().expect("one entry");
        let outcome = append_pg(pool, &p.entry, p.now, p.chain).await;
        let _ = p.done.send(outcome);
        return;
    }
    match insert_batch(pool, &batch).await {
        Ok(ids) => {
            for p in batch {
                let id = ids.iter().find(|(chain, _)| *chain == p.chain).map(|(_, id)| *id);
                let _ = p.done.send(id.ok_or(StoreError::NotFound));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, entries = batch.len(), "an audit batch failed; writing its entries one by one");
            let singles = batch.into_iter().map(|p| async move {
                let outcome = append_pg(pool, &p.entry, p.now, p.chain).await;
                let _ = p.done.send(outcome);
            });
            futures::future::join_all(singles).await;
        }
    }
}

/// One statement for the whole batch: (chain, id) of each entry written.
async fn insert_batch(pool: &AnyPool, batch: &[Pending]) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let sql = batch_sql(batch.len());
    let details: Vec<String> = batch.iter().map(|p| super::audit::detail_text(&p.entry)).collect();
    let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
    for (p, detail) in batch.iter().zip(&details) {
        q = super::audit::bind_fields(q, &p.entry, p.now, detail).bind(p.chain);
    }
    q.fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(chain: i64) -> (Pending, oneshot::Receiver<Outcome>) {
        let (done, rx) = oneshot::channel();
        (Pending { entry: NewEntry::default(), now: 0, chain, done }, rx)
    }

    #[test]
    fn a_batch_takes_one_entry_per_chain_and_keeps_the_rest_in_order() {
        let mut q: VecDeque<Pending> = [1, 2, 1, 3, 2, 1].into_iter().map(|c| pending(c).0).collect();
        let first = take_batch(&mut q);
        assert_eq!(first.iter().map(|p| p.chain).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(q.iter().map(|p| p.chain).collect::<Vec<_>>(), [1, 2, 1]);
        let second = take_batch(&mut q);
        assert_eq!(second.iter().map(|p| p.chain).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(q.iter().map(|p| p.chain).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_batch_has_at_most_max_batch_entries() {
        let mut q: VecDeque<Pending> = (0..(MAX_BATCH as i64 + 5)).map(|c| pending(c).0).collect();
        assert_eq!(take_batch(&mut q).len(), MAX_BATCH);
        assert_eq!(q.len(), 5);
        assert_eq!(q.front().map(|p| p.chain), Some(MAX_BATCH as i64));
    }
}
