//! Whether this process is draining: set once when it is told to stop (by
//! [`crate::shutdown`]), read by `/ready`, so a load balancer sends new work to other
//! replicas.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Drain {
    since: Arc<OnceLock<Instant>>,
}

impl Drain {
    /// Start draining; `/ready` answers 503 from now on. Later calls change nothing.
    pub fn begin(&self) {
        let _ = self.since.set(Instant::now());
    }

    /// How long ago draining began, if it has.
    pub fn elapsed(&self) -> Option<Duration> {
        self.since.get().map(Instant::elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begins_once_and_every_clone_sees_it() {
        let d = Drain::default();
        let seen_by_http = d.clone();
        assert!(seen_by_http.elapsed().is_none());
        d.begin();
        std::thread::sleep(Duration::from_millis(20));
        d.begin();
        assert!(seen_by_http.elapsed().unwrap() >= Duration::from_millis(20));
    }
}
