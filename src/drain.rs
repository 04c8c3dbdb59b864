//! Whether this process is draining: set once when it is told to stop, read by `/ready`
//! (a load balancer then sends new work to other replicas) and by the shutdown sequence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    since: std::sync::OnceLock<Instant>,
    began: Notify,
}

impl Drain {
    /// Start draining (idempotent). `/ready` answers 503 from now on.
    pub fn begin(&self) {
        let _ = self.inner.since.set(Instant::now());
        if !self.inner.draining.swap(true, Ordering::AcqRel) {
            self.inner.began.notify_waiters();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// How long ago draining began, if it has.
    pub fn elapsed(&self) -> Option<std::time::Duration> {
        self.inner.since.get().map(Instant::elapsed)
    }

    /// Resolves once draining has begun.
    pub async fn began(&self) {
        let notified = self.inner.began.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_draining_begins() {
        let d = Drain::default();
        assert!(!d.is_draining() && d.elapsed().is_none());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.began().await }
        });
        tokio::task::yield_now().await;
        d.begin();
        d.begin();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(d.is_draining() && d.elapsed().is_some());
        // Already draining: returns at once.
        d.began().await;
    }
}
