//! Encoders: turn a stream of Arrow record batches into bytes, one batch at a time, so
//! that no response is ever held whole in memory.

pub mod json_rows;
pub mod pieces;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamEncoder;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::error::QueryError;

/// Output formats of exports and SQL results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
    Arrow,
}

impl Format {
    pub const ALLOWED: &'static [&'static str] = &["ndjson", "csv", "arrow"];

    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s {
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "arrow" | "ipc" => Ok(Format::Arrow),
            other => Err(QueryError::invalid("format", format!("unknown format `{other}`"), Some(Self::ALLOWED))),
        }
    }

    /// Pick from an `Accept` header; `None` when it names none of ours.
    pub fn from_accept(accept: &str) -> Option<Self> {
        accept.split(',').map(|p| p.split(';').next().unwrap_or("").trim()).find_map(|m| match m {
            "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Some(Format::Ndjson),
            "text/csv" => Some(Format::Csv),
            "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
            _ => None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// CSV has no notation for nested values; this is checked against the schema so the answer
/// is a 400 before the first byte, not a body that breaks off after the status line.
fn csv_can_hold(schema: &SchemaRef) -> Result<(), QueryError> {
    match schema.fields().iter().find(|f| f.data_type().is_nested()) {
        None => Ok(()),
        Some(field) => Err(QueryError::invalid(
            "format",
            format!(
                "column '{}' has type {}, which CSV cannot hold; ask for ndjson or arrow, or select its \
                 parts as separate columns",
                field.name(),
                field.data_type()
            ),
            Some(Format::ALLOWED),
        )),
    }
}

/// Stateful encoder for one response body.
pub enum Encoder {
    /// Rows as JSON objects, one per line; `raw_json_columns` are embedded unquoted.
    Ndjson {
        raw_json_columns: Vec<String>,
    },
    Csv {
        header_written: bool,
    },
    /// `None` once finished.
    Arrow {
        writer: Option<Box<StreamEncoder>>,
    },
}

impl Encoder {
    pub fn new(format: Format, schema: &SchemaRef, raw_json_columns: &[&str]) -> Result<Self, QueryError> {
        Ok(match format {
            Format::Ndjson => {
                Encoder::Ndjson { raw_json_columns: raw_json_columns.iter().map(|s| s.to_string()).collect() }
            }
            Format::Csv => {
                csv_can_hold(schema)?;
                Encoder::Csv { header_written: false }
            }
            // Uncompressed IPC: every Arrow reader can decode it.
            Format::Arrow => Encoder::Arrow { writer: Some(Box::new(StreamEncoder::try_new(schema)?)) },
        })
    }

    /// Bytes for one batch (for Arrow, the schema message comes out with the first call;
    /// its large buffers are the batch's own, not copies).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>, QueryError> {
        match self {
            Encoder::Ndjson { raw_json_columns } => {
                let mut out = Vec::with_capacity(batch.num_rows() * 256);
                let raw: Vec<&str> = raw_json_columns.iter().map(String::as_str).collect();
                json_rows::write_rows(batch, &raw, &mut out, json_rows::Separator::Newline, &mut true)?;
                Ok(vec![out.into()])
            }
            Encoder::Csv { header_written } => {
                let mut out = Vec::with_capacity(batch.num_rows() * 200);
                {
                    let mut w = arrow::csv::WriterBuilder::new().with_header(!*header_written).build(&mut out);
                    w.write(batch)?;
                }
                *header_written = true;
                Ok(vec![out.into()])
            }
            Encoder::Arrow { writer } => {
                let writer = writer.as_mut().ok_or_else(|| QueryError::internal("Arrow encoder used after finish"))?;
                let mut out = pieces::Pieces::default();
                for buffer in writer.encode(batch)? {
                    out.push(pieces::buffer_bytes(buffer));
                }
                Ok(out.finish())
            }
        }
    }

    /// Trailing bytes (the IPC end-of-stream marker; CSV header when there were no batches).
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<Bytes, QueryError> {
        match self {
            Encoder::Ndjson { .. } => Ok(Bytes::new()),
            Encoder::Csv { header_written } => {
                if *header_written {
                    return Ok(Bytes::new());
                }
                let header = schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",");
                *header_written = true;
                Ok(format!("{header}\n").into())
            }
            Encoder::Arrow { writer } => match writer.take() {
                Some(w) => Ok(w.finish()?.iter().map(|b| b.as_slice()).collect::<Vec<_>>().concat().into()),
                None => Ok(Bytes::new()),
            },
        }
    }
}
