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
