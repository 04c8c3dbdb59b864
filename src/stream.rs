//! The one internal currency: a stream of Arrow record batches, whatever the source.

use std::pin::Pin;

use arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::QueryError;

/// Rows on their way from a store (or the SQL engine) to an encoder.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, QueryError>> + Send>>;

/// A bounded channel's receiving end as a stream.
pub fn receiver_stream<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> Pin<Box<dyn Stream<Item = T> + Send>> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
