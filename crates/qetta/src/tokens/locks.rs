//! The in-process half of the single-flight primitive (`super::single_flight`): one in-flight
//! refresh per key inside this process; the others wait for it and then re-read the row. The
//! cross-replica half is the row's lease in the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct LocalFlights {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalFlights {
    pub async fn acquire(&self, key: &str) -> LocalGuard<'_> {
        self.acquire_noting(key).await.0
    }

    /// [`Self::acquire`], and whether another caller held it first (then the row may have changed
    /// while this one waited).
    pub async fn acquire_noting(&self, key: &str) -> (LocalGuard<'_>, bool) {
        let lock = {
            let mut map = self.locks.lock().expect("flights map");
            map.entry(key.to_string()).or_default().clone()
        };
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (lock.clone().lock_owned().await, true),
        };
        (LocalGuard { flights: self, key: key.to_string(), lock, _guard: Some(guard) }, waited)
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
