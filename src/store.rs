//! What every store implements ([`LogStore`]): validated queries in, streams of Arrow
//! record batches (or small typed answers) out.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::QueryError;
use crate::query::{AggregateQuery, CountMode, Filters, RowsQuery, Source};
use crate::stream::BatchStream;

/// How a `total_count` was obtained (`total_count_kind` in responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKind {
    Exact,
    Estimate,
    None,
}

impl CountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CountKind::Exact => "exact",
            CountKind::Estimate => "estimate",
            CountKind::None => "none",
        }
    }
}

/// A `total_count` with how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct CountAnswer {
    pub value: Option<i64>,
    pub kind: CountKind,
    /// How old the value is, when it came from the shared cache.
    pub age: Option<Duration>,
}

/// Aggregate groups, `(key, count)` sorted by count descending, and how current they are.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCounts {
    pub groups: Vec<(String, i64)>,
    /// The moment the counts describe, when it is not "now" (the PostgreSQL rollup).
    pub as_of: Option<SystemTime>,
    /// `false` while the counts are known to miss a change (deleted or updated rows the
    /// PostgreSQL rollup is being rebuilt for).
    pub exact: bool,
}

impl GroupCounts {
    /// Counts computed now by the store itself.
    pub fn current(groups: Vec<(String, i64)>) -> Self {
        Self { groups, as_of: None, exact: true }
    }
}

/// The source-specific fields of `/stats` (and of the Flight `stats` ticket's row).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StoreStats {
    /// Rows of `logs` (`null` when not known).
    pub logs_count: Option<i64>,
    /// Rows of the `events` table (postgres; 0 when it does not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_count: Option<i64>,
    /// Age of the shared exact count behind `logs_count` (postgres).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_age_ms: Option<i64>,
    /// Parquet files in the archive (hdfs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<i64>,
}

impl StoreStats {
    /// An integer field by its JSON name (Flight builds its row from these).
    pub fn field(&self, name: &str) -> Option<i64> {
        match name {
            "logs_count" => self.logs_count,
            "events_count" => self.events_count,
            "count_age_ms" => self.count_age_ms,
            "files" => self.files,
            _ => None,
        }
    }
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
    async fn aggregate(&self, q: &AggregateQuery) -> Result<GroupCounts, QueryError>;
    async fn count(&self, filters: &Filters, mode: CountMode) -> Result<CountAnswer, QueryError>;
    /// Source-specific fields of the `/stats` response.
    async fn stats(&self) -> Result<StoreStats, QueryError>;
    async fn readiness(&self) -> Readiness;
    /// Changes whenever cached answers of this store become stale for reasons other than
    /// time (for Parquet: the file listing changed).
    async fn cache_epoch(&self) -> u64 {
        0
    }
    /// The columns a whole export returns: `logs`, plus whatever else the store's rows
    /// carry (the archive's `event_time` and partition columns).
    async fn export_schema(&self) -> Result<arrow::datatypes::SchemaRef, QueryError> {
        Ok(crate::schema::logs_schema())
    }
}
