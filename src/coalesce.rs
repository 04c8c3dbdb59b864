//! Doing identical work once: single-flight execution and a small TTL cache.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::error::QueryError;

/// One execution, awaited by everyone who joined it.
pub type Flight<V> = Shared<BoxFuture<'static, Result<V, QueryError>>>;

/// Concurrent callers with the same key share one execution of the work.
pub struct SingleFlight<V: Clone> {
    inflight: Mutex<HashMap<String, Flight<V>>>,
}

impl<V: Clone> Default for SingleFlight<V> {
    fn default() -> Self {
        Self { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone + Send + Sync + 'static> SingleFlight<V> {
    /// Runs `make()` unless an identical flight is under way; returns the result and
    /// whether this caller joined someone else's execution.
    pub async fn run<F>(&self, key: &str, make: impl FnOnce() -> F) -> (Result<V, QueryError>, bool)
    where
        F: Future<Output = Result<V, QueryError>> + Send + 'static,
    {
        let (flight, joined) = self.board(key, make);
        (self.land(key, flight).await, joined)
    }

    /// The flight for `key`, started with `make()` unless one is under way, and whether it
    /// was joined. The flight is registered at once, before anyone awaits it: a request
    /// that spawns its work (a background refresh) must keep the next one from starting
    /// the same work before that task first runs.
    pub fn board<F>(&self, key: &str, make: impl FnOnce() -> F) -> (Flight<V>, bool)
    where
        F: Future<Output = Result<V, QueryError>> + Send + 'static,
    {
        let mut map = self.inflight.lock().expect("single-flight lock poisoned");
        match map.get(key) {
            Some(f) => (f.clone(), true),
            None => {
                let f = make().boxed().shared();
                map.insert(key.to_string(), f.clone());
                (f, false)
            }
        }
    }

    /// Await a flight from [`Self::board`]; the first to see it end takes it off the board.
    pub async fn land(&self, key: &str, flight: Flight<V>) -> Result<V, QueryError> {
        let result = flight.clone().await;
        let mut map = self.inflight.lock().expect("single-flight lock poisoned");
        if map.get(key).is_some_and(|f| f.ptr_eq(&flight)) {
            map.remove(key);
        }
        result
    }
}

/// Small results kept for a short time, with their age reported to clients.
pub struct TtlCache<V: Clone> {
    ttl: Duration,
    max_entries: usize,
    entries: DashMap<String, (Instant, V)>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { ttl, max_entries, entries: DashMap::new() }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// An entry of any age (for stale-while-revalidate).
    pub fn get_any_age(&self, key: &str) -> Option<(V, Duration)> {
        self.entries.get(key).map(|e| (e.1.clone(), e.0.elapsed()))
    }

    pub fn put(&self, key: String, value: V) {
        if !self.enabled() {
            return;
        }
        if self.entries.len() >= self.max_entries {
            // Cheap bound: drop expired entries, then everything if still full.
            let ttl = self.ttl;
            self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if self.entries.len() >= self.max_entries {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn identical_concurrent_calls_execute_once() {
        let sf: Arc<SingleFlight<u64>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..10 {
            let (sf, runs) = (sf.clone(), runs.clone());
            handles.push(tokio::spawn(async move {
                sf.run("k", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(42)
                })
                .await
            }));
        }
        let mut joined = 0;
        for h in handles {
            let (v, j) = h.await.unwrap();
            assert_eq!(v.unwrap(), 42);
            joined += j as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 9);
        // Finished flights are forgotten: the next call runs again.
        let (_, j) = sf.run("k", || async { Ok(1) }).await;
        assert!(!j);
    }

    #[test]
    fn ttl_cache_expires() {
        let c = TtlCache::new(Duration::from_millis(20), 10);
        c.put("a".into(), 1);
        let (v, age) = c.get_any_age("a").unwrap();
        assert_eq!((v, age < c.ttl()), (1, true));
        std::thread::sleep(Duration::from_millis(30));
        let (_, age) = c.get_any_age("a").expect("kept for serve-stale");
        assert!(age >= c.ttl());
    }
}
