//! A dedicated tokio runtime for DataFusion's CPU-heavy work, so that scans and
//! aggregations never run on the HTTP workers or actor threads. Results cross back over
//! a bounded channel; dropping the receiving stream stops the plan.

use std::future::Future;

use std::panic::AssertUnwindSafe;

use arrow::record_batch::RecordBatch;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use crate::error::QueryError;
use crate::stream::{receiver_stream, BatchStream};

/// Stack of each executor thread. Planning recurses over expression trees, which
/// [`crate::sql::limits`] caps in depth; this leaves a wide margin over what the cap lets
/// through (debug builds use several times the stack of release builds). Only the pages a
/// thread touches are ever committed.
pub const STACK_BYTES: usize = 64 << 20;

pub struct DedicatedExecutor {
    handle: tokio::runtime::Handle,
    /// Dropping this ends the runtime thread.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl DedicatedExecutor {
    pub fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .thread_stack_size(STACK_BYTES)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name(format!("{name}-main")).spawn(move || {
            runtime.block_on(async {
                let _ = rx.await;
            });
            runtime.shutdown_background();
        })?;
        Ok(Self { handle, _shutdown: tx })
    }

    /// Run a background task (a server) on the dedicated runtime.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(task);
    }

    /// Run a future on the dedicated runtime and wait for its result from anywhere.
    pub async fn run<T, F>(&self, f: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let task = self.handle.spawn(f);
        // A caller that goes away (client disconnect, timeout) stops the work too.
        let _abort = AbortOnDrop(task.abort_handle());
        task.await.map_err(task_failed)?
    }

    /// Build and drive a batch stream on the dedicated runtime; the returned stream
    /// receives its batches through a small bounded channel.
    pub fn stream<F>(&self, make: F) -> BatchStream
    where
        F: Future<Output = Result<BatchStream, QueryError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(2);
        let on_panic = tx.clone();
        self.handle.spawn(async move {
            // A panic must not look like the end of the results: the consumer gets an error.
            if let Err(payload) = AssertUnwindSafe(drive(make, tx)).catch_unwind().await {
                let _ = on_panic.send(Err(panic_error(payload))).await;
            }
        });
        receiver_stream(rx)
    }
}

/// Pull batches from the stream `make` builds into `tx` until either side ends.
async fn drive<F>(make: F, tx: mpsc::Sender<Result<RecordBatch, QueryError>>)
where
    F: Future<Output = Result<BatchStream, QueryError>>,
{
    // Building the stream may itself wait long (a query PostgreSQL runs whole answers
    // only when done): a consumer that leaves meanwhile drops it, which cancels it.
    let made = tokio::select! {
        biased;
        _ = tx.closed() => return,
        made = make => made,
    };
    let mut inner = match made {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => break, // consumer gone: dropping `inner` stops the scan
            next = inner.next() => match next {
                Some(item) => {
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop { break; }
                }
                None => break,
            }
        }
    }
}

fn task_failed(e: tokio::task::JoinError) -> QueryError {
    if e.is_panic() {
        panic_error(e.into_panic())
    } else {
        QueryError::internal("the query was cancelled")
    }
}

/// A panic in a query is that query's 500, with its cause in the log; the process goes on.
fn panic_error(payload: Box<dyn std::any::Any + Send>) -> QueryError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into());
    tracing::error!(panic = %message, "query panicked");
    QueryError::internal(format!("the query failed inside fletch: {message}"))
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
