//! The stores behind fletch. Each implements [`LogStore`]: validated queries in,
//! streams of Arrow record batches (or small typed answers) out.

pub mod count;
pub mod parquet;
pub mod pg_arrow;
pub mod postgres;
pub mod rollup;
pub mod sorted_export;

use std::pin::Pin;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::QueryError;
use crate::query::{AggregateQuery, CountMode, Filters, RowsQuery, Source};

pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, QueryError>> + Send>>;

/// A bounded channel's receiving end as a stream.
pub fn receiver_stream<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> Pin<Box<dyn Stream<Item = T> + Send>> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A `total_count` with how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct CountAnswer {
    pub value: Option<i64>,
    /// "exact", "estimate" or "none".
    pub kind: &'static str,
    /// How old the value is, when it came from the shared cache.
    pub age: Option<Duration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub detail: serde_json::Value,
}

#[async_trait]
pub trait LogStore: Send + Sync {
    fn source(&self) -> Source;
    /// Rows in the `logs` column layout, filtered, ordered and limited.
    async fn rows(&self, q: &RowsQuery) -> Result<BatchStream, QueryError>;
    /// `(key, count)` pairs sorted by count descending.
    async fn aggregate(&self, q: &AggregateQuery) -> Result<Vec<(String, i64)>, QueryError>;
    async fn count(&self, filters: &Filters, mode: CountMode) -> Result<CountAnswer, QueryError>;
    /// Source-specific fields of the `/stats` response.
    async fn stats(&self) -> Result<serde_json::Map<String, serde_json::Value>, QueryError>;
    async fn readiness(&self) -> Readiness;
    /// Changes whenever cached answers of this store become stale for reasons other than
    /// time (for Parquet: the file listing changed).
    async fn cache_epoch(&self) -> u64 {
        0
    }
}

/// The `key` an aggregate gives rows whose label is NULL, the same on every source (the
/// JSON shape has a string key; PostgreSQL and Parquet must not differ in it).
pub const NULL_KEY: &str = "null";

/// Aggregate groups in the order the API returns them on every source: count
/// descending, then key (byte order, whatever the database's collation).
pub fn sort_groups(groups: &mut [(String, i64)]) {
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The Arrow schema of `logs`, identical for every source.
pub fn logs_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("timestamp", DataType::Float64, true),
        Field::new("level", DataType::Utf8, true),
        Field::new("service", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}
