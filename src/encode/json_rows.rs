//! Rows of a record batch as JSON objects, written straight into a byte buffer.
//!
//! Matches the old Query API: `metadata` is a JSON object (not a string holding JSON),
//! timestamps without a zone are ISO-8601 like Python's `isoformat()`, floats use the
//! shortest round-trip form.

use std::io::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::DateTime;

use crate::error::QueryError;

#[derive(Clone, Copy)]
pub enum Separator {
    /// `,` between objects (inside a JSON array).
    Comma,
    /// `\n` after each object (NDJSON).
    Newline,
}

/// Python `datetime.isoformat()` of a naive timestamp in microseconds.
pub fn iso_micros(us: i64) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(t) if us.rem_euclid(1_000_000) == 0 => t.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
        Some(t) => t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        None => us.to_string(),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), QueryError> {
    serde_json::to_writer(&mut *out, s).map_err(|e| QueryError::internal(format!("json: {e}")))
}

/// Append each row of `batch` as a JSON object. `first` tracks whether a comma is due
/// (only for [`Separator::Comma`]).
pub fn write_rows(
    batch: &RecordBatch,
    raw_json: &[&str],
    out: &mut Vec<u8>,
    sep: Separator,
    first: &mut bool,
) -> Result<(), QueryError> {
    let schema = batch.schema();
    // Pre-render `"name":` keys once per batch.
    let keys: Vec<Vec<u8>> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut k = serde_json::to_vec(f.name()).unwrap_or_default();
            k.push(b':');
            k
        })
        .collect();
    let raw: Vec<bool> = schema.fields().iter().map(|f| raw_json.contains(&f.name().as_str())).collect();
    for row in 0..batch.num_rows() {
        if let Separator::Comma = sep {
            if !*first {
                out.push(b',');
            }
        }
        *first = false;
        out.push(b'{');
        for (c, col) in batch.columns().iter().enumerate() {
            if c > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&keys[c]);
            if col.is_null(row) {
                out.extend_from_slice(b"null");
                continue;
            }
            match col.data_type() {
                DataType::Int64 => {
                    let _ = write!(out, "{}", col.as_primitive::<Int64Type>().value(row));
                }
                DataType::Float64 => {
                    let v = col.as_primitive::<Float64Type>().value(row);
                    if v.is_finite() {
                        serde_json::to_writer(&mut *out, &v).map_err(|e| QueryError::internal(e.to_string()))?;
                    } else {
                        out.extend_from_slice(b"null");
                    }
                }
                DataType::Utf8 => {
                    let s = col.as_string::<i32>().value(row);
                    // Embed JSON text as JSON only when it really is JSON.
                    if raw[c] && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                        out.extend_from_slice(s.as_bytes());
                    } else {
                        write_str(out, s)?;
                    }
                }
                DataType::Timestamp(TimeUnit::Microsecond, None) => {
                    let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
                    write_str(out, &iso_micros(us))?;
                }
                _ => {
                    // Anything else: Arrow's display form as a string.
                    let v = arrow::util::display::array_value_to_string(col, row)?;
                    match col.data_type() {
                        DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                        | DataType::Float32
                        | DataType::Boolean => out.extend_from_slice(v.as_bytes()),
                        _ => write_str(out, &v)?,
                    }
                }
            }
        }
        out.push(b'}');
        if let Separator::Newline = sep {
            out.push(b'\n');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn rows_match_the_old_api_shape() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("timestamp", DataType::Float64, true),
            Field::new("metadata", DataType::Utf8, true),
            Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![1700000000.25, 1.0])),
                Arc::new(StringArray::from(vec![Some("{\"a\": 1}"), Some("not json")])),
                Arc::new(TimestampMicrosecondArray::from(vec![Some(1_700_000_000_250_000), None])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_rows(&batch, &["metadata"], &mut out, Separator::Comma, &mut true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&format!("[{text}]")).unwrap();
        assert_eq!(v[0]["metadata"]["a"], 1);
        assert_eq!(v[1]["metadata"], "not json");
        assert_eq!(v[0]["created_at"], "2023-11-14T22:13:20.250000");
        assert_eq!(v[0]["timestamp"], 1700000000.25);
        assert!(v[1]["created_at"].is_null());
    }
}
