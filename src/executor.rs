//! A dedicated tokio runtime for DataFusion's CPU-heavy work, so that scans and
//! aggregations never run on the HTTP workers or actor threads. Results cross back over
//! a bounded channel; dropping the receiving stream stops the plan.

use std::future::Future;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::QueryError;
use crate::sources::{receiver_stream, BatchStream};

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

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
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
        task.await.map_err(|e| QueryError::Internal(format!("query task failed: {e}")))?
    }

    /// Build and drive a batch stream on the dedicated runtime; the returned stream
    /// receives its batches through a small bounded channel.
    pub fn stream<F>(&self, make: F) -> BatchStream
    where
        F: Future<Output = Result<BatchStream, QueryError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(2);
        self.handle.spawn(async move {
            let mut inner = match make.await {
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
        });
        receiver_stream(rx)
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
