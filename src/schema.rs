//! The `logs` table as every front end sees it, whatever the store: its Arrow schema, the
//! label columns, and how aggregate groups are keyed and ordered.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The label columns that aggregates group by and rollups count, in this order.
pub const LABEL_COLUMNS: [&str; 3] = ["level", "service", "host"];

/// The `key` an aggregate gives rows whose label is NULL, the same on every source (the
/// JSON shape has a string key; PostgreSQL and Parquet must not differ in it).
pub const NULL_KEY: &str = "null";

/// Aggregate groups in the order the API returns them on every source: count
/// descending, then key (byte order, whatever the database's collation).
pub fn sort_groups(groups: &mut [(String, i64)]) {
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// The Arrow schema of `logs`, identical for every source.
pub fn logs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("timestamp", DataType::Float64, true),
        Field::new(LABEL_COLUMNS[0], DataType::Utf8, true),
        Field::new(LABEL_COLUMNS[1], DataType::Utf8, true),
        Field::new(LABEL_COLUMNS[2], DataType::Utf8, true),
        Field::new("message", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}
