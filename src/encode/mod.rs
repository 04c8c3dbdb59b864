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

/// Body chunks are kept near this size. The HTTP server copies each chunk into the
/// connection's write buffer, so a slow reader holds one chunk there, not a whole batch
/// (8,192 rows of NDJSON are about 3 MB).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Rows of the first text chunk, before the encoder has seen how wide rows are.
const FIRST_CHUNK_ROWS: usize = 64;

/// Stateful encoder for one response body.
pub struct Encoder {
    kind: Kind,
    /// Rows of the next NDJSON/CSV chunk, from the bytes per row seen so far.
    chunk_rows: usize,
}

enum Kind {
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
        let kind = match format {
            Format::Ndjson => {
                Kind::Ndjson { raw_json_columns: raw_json_columns.iter().map(|s| s.to_string()).collect() }
            }
            Format::Csv => {
                csv_can_hold(schema)?;
                Kind::Csv { header_written: false }
            }
            // Uncompressed IPC: every Arrow reader can decode it.
            Format::Arrow => Kind::Arrow { writer: Some(Box::new(StreamEncoder::try_new(schema)?)) },
        };
        Ok(Encoder { kind, chunk_rows: FIRST_CHUNK_ROWS })
    }

    /// The next piece of `batch` from row `from` on: text formats encode about
    /// [`CHUNK_BYTES`] worth of rows, Arrow encodes the whole batch and cuts its buffers
    /// into slices of at most [`CHUNK_BYTES`] (sharing their memory). Returns the bytes and
    /// the row to go on from, `None` when the batch is done. Always call it once per batch,
    /// even an empty one: Arrow's schema comes out with the first.
    pub fn chunk(&mut self, batch: &RecordBatch, from: usize) -> Result<(Vec<Bytes>, Option<usize>), QueryError> {
        let left = batch.num_rows().saturating_sub(from);
        let rows = left.min(self.chunk_rows.max(1));
        let next = (rows < left).then_some(from + rows);
        let text = match &mut self.kind {
            Kind::Ndjson { raw_json_columns } => {
                if rows == 0 {
                    return Ok((Vec::new(), None));
                }
                let mut out = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
                let raw: Vec<&str> = raw_json_columns.iter().map(String::as_str).collect();
                json_rows::write_rows(
                    &batch.slice(from, rows),
                    &raw,
                    &mut out,
                    json_rows::Separator::Newline,
                    &mut true,
                )?;
                out
            }
            Kind::Csv { header_written } => {
                if rows == 0 {
                    return Ok((Vec::new(), None));
                }
                let mut out = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
                {
                    let mut w = arrow::csv::WriterBuilder::new().with_header(!*header_written).build(&mut out);
                    w.write(&batch.slice(from, rows))?;
                }
                *header_written = true;
                out
            }
            Kind::Arrow { writer } => {
                let writer = writer.as_mut().ok_or_else(|| QueryError::internal("Arrow encoder used after finish"))?;
                let mut out = pieces::Pieces::default();
                for buffer in writer.encode(batch)? {
                    out.push(pieces::buffer_bytes(buffer));
                }
                return Ok((out.finish().into_iter().flat_map(cut).collect(), None));
            }
        };
        // Aim the next chunk at CHUNK_BYTES from this one's bytes per row.
        let per_row = (text.len() / rows).max(1);
        self.chunk_rows = (CHUNK_BYTES / per_row).clamp(1, 8192);
        Ok((vec![text.into()], next))
    }

    /// Trailing bytes (the IPC end-of-stream marker; CSV header when there were no batches).
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<Bytes, QueryError> {
        match &mut self.kind {
            Kind::Ndjson { .. } => Ok(Bytes::new()),
            Kind::Csv { header_written } => {
                if *header_written {
                    return Ok(Bytes::new());
                }
                let header = schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",");
                *header_written = true;
                Ok(format!("{header}\n").into())
            }
            Kind::Arrow { writer } => match writer.take() {
                Some(w) => Ok(w.finish()?.iter().map(|b| b.as_slice()).collect::<Vec<_>>().concat().into()),
                None => Ok(Bytes::new()),
            },
        }
    }
}

/// `bytes` as slices of at most [`CHUNK_BYTES`], sharing its memory.
fn cut(bytes: Bytes) -> Vec<Bytes> {
    (0..bytes.len()).step_by(CHUNK_BYTES).map(|at| bytes.slice(at..(at + CHUNK_BYTES).min(bytes.len()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// 20,000 rows of about 120 bytes each in NDJSON: about 2.4 MB in one batch.
    fn wide_batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("message", DataType::Utf8, false),
        ]));
        let ids = Int64Array::from_iter_values(0..20_000);
        let messages = StringArray::from_iter_values((0..20_000).map(|i| format!("{i:0>90}")));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(messages)]).unwrap()
    }

    /// Every chunk of `batch` as the HTTP body would pull them.
    fn chunks(enc: &mut Encoder, batch: &RecordBatch) -> Vec<Bytes> {
        let (mut out, mut from) = (Vec::new(), Some(0));
        while let Some(start) = from {
            let (c, next) = enc.chunk(batch, start).unwrap();
            out.extend(c);
            from = next;
        }
        out.push(enc.finish(&batch.schema()).unwrap());
        out
    }

    #[test]
    fn text_chunks_stay_near_the_chunk_size_and_add_up_to_the_whole() {
        let batch = wide_batch();
        for format in [Format::Ndjson, Format::Csv] {
            let mut enc = Encoder::new(format, &batch.schema(), &[]).unwrap();
            let parts = chunks(&mut enc, &batch);
            assert!(parts.len() > 20, "{format:?}: {} chunks", parts.len());
            let biggest = parts.iter().map(Bytes::len).max().unwrap();
            assert!(biggest <= CHUNK_BYTES + CHUNK_BYTES / 4, "{format:?}: a chunk of {biggest} bytes");
            let text = String::from_utf8(parts.concat()).unwrap();
            assert_eq!(text.lines().count(), 20_000 + usize::from(format == Format::Csv), "{format:?}");
            assert_eq!(text.matches("id").count(), if format == Format::Csv { 1 } else { 20_000 });
            let last = text.lines().last().unwrap();
            assert!(last.contains(&format!("{:0>90}", 19_999)), "{format:?}: rows out of order: {last}");
        }
    }

    #[test]
    fn arrow_chunks_are_slices_that_decode_to_the_same_rows() {
        let batch = wide_batch();
        let mut enc = Encoder::new(Format::Arrow, &batch.schema(), &[]).unwrap();
        let parts = chunks(&mut enc, &batch);
        assert!(parts.iter().all(|p| p.len() <= CHUNK_BYTES));
        let body = parts.concat();
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
        let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn an_empty_batch_still_gives_arrow_its_schema() {
        let batch = RecordBatch::new_empty(wide_batch().schema());
        let mut enc = Encoder::new(Format::Arrow, &batch.schema(), &[]).unwrap();
        let body = chunks(&mut enc, &batch).concat();
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
        assert_eq!(reader.schema(), batch.schema());
    }
}
