//! The time budget, applied one way everywhere: [`within`] for an answer computed whole
//! (a page, an aggregate, a plan), [`bounded`] for a streamed result. A stream of any
//! length cannot be bounded as a whole, so it is bounded by its waits: each batch (the
//! first rows, or the end) must come within the budget of the consumer asking for it.
//! Time the consumer spends elsewhere — a slow reader — does not count. A statement that
//! computes longer than that without producing rows — a runaway join, an aggregate over a
//! cross product — ends with a timeout error, and dropping it stops the work at its source
//! (DataFusion plan stopped, PostgreSQL sent a cancel request).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::{sleep, Instant, Sleep};

use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::stream::BatchStream;

/// `work` within `budget`: on expiry it is dropped (which cancels it) and the answer is
/// [`QueryError::Timeout`], counted in `fletch_query_timeouts_total`.
pub async fn within<T>(
    budget: Duration,
    metrics: &Metrics,
    work: impl Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::time::timeout(budget, work).await.unwrap_or_else(|_| {
        metrics.timeouts.inc();
        Err(QueryError::Timeout(budget))
    })
}

/// `inner` with each wait for a batch bounded by `budget`; on expiry the stream yields
/// [`QueryError::Timeout`] and ends, dropping `inner`. `hold` (permits) lives as long as
/// the stream.
pub fn bounded<H: Send + 'static>(inner: BatchStream, budget: Duration, hold: H, metrics: Arc<Metrics>) -> BatchStream {
    Box::pin(Bounded {
        inner: Some(inner),
        budget,
        timer: Box::pin(sleep(budget)),
        waiting: false,
        _hold: hold,
        metrics,
    })
}

struct Bounded<H> {
    inner: Option<BatchStream>,
    budget: Duration,
    timer: Pin<Box<Sleep>>,
    /// A batch has been asked for and not yet delivered (the timer runs for it).
    waiting: bool,
    _hold: H,
    metrics: Arc<Metrics>,
}

impl<H> Unpin for Bounded<H> {}

impl<H> Stream for Bounded<H> {
    type Item = Result<arrow::record_batch::RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        if !self.waiting {
            // The consumer asks for the next batch now: its budget starts here.
            self.waiting = true;
            let next = Instant::now() + self.budget;
            self.timer.as_mut().reset(next);
        }
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                self.waiting = false;
                if item.is_none() {
                    self.inner = None;
                }
                Poll::Ready(item)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.inner = None; // stops the work at its source
                    self.metrics.timeouts.inc();
                    tracing::info!(budget = ?self.budget, "statement produced no rows within its time budget; cancelled");
                    Poll::Ready(Some(Err(QueryError::Timeout(self.budget))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
