//! `GET /api/query/{source}/logs` (a page in the old API's JSON shape, at most 10 000 rows,
//! rendered once per cached page) and
//! `GET /api/query/{source}/logs/export` (any size, NDJSON / CSV / Arrow IPC).

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::{stream, StreamExt};

use super::peer::unless_client_leaves;
use super::{add_cache_info, elapsed_ms, query_params, ApiError};
use crate::encode::json_rows::{write_rows, Separator};
use crate::encode::{Encoder, Format};
use crate::error::QueryError;
use crate::query::{check_params, parse_count_mode, parse_rows, Source, EXPORT_PARAMS, LOGS_PARAMS};
use crate::service::sql::first_rows;
use crate::service::{CacheInfo, Service};
use crate::store::{CountAnswer, LogStore};
use crate::stream::BatchStream;

/// Columns holding JSON text that the API returns as JSON objects.
pub const RAW_JSON_COLUMNS: &[&str] = &["metadata"];

/// Open a row stream and wait for its first rows (or its end), so failures before any
/// data (overload, store down, bad SQL, `1/0`) still become a proper status code.
pub async fn open_stream(
    make: impl std::future::Future<Output = Result<BatchStream, QueryError>>,
) -> Result<(arrow::record_batch::RecordBatch, BatchStream), QueryError> {
    first_rows(make.await?).await
}

pub async fn page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let source = Source::parse(&path)?;
    let map = check_params(&query_params(&req), LOGS_PARAMS)?;
    let q = parse_rows(&map, true)?;
    let count_mode = parse_count_mode(&map)?;
    let store = state.source(source)?;

    let (page, count) = futures::join!(store.page(&q), store.count(&q.filters, count_mode));
    let (page, cache) = page?;
    let count = count?;
    // Rendered once per page: a cached page costs a copy, not a JSON encoding.
    let rows = page.rendered(|batches| {
        let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum::<usize>() * 320);
        let mut first = true;
        for b in batches {
            write_rows(b, RAW_JSON_COLUMNS, &mut out, Separator::Comma, &mut first)?;
        }
        Ok(out.into())
    })?;
    let head = format!(
        "{{\"source\":\"{}\",\"limit\":{},\"offset\":{},\"data\":[",
        source.response_name(),
        q.limit.unwrap_or_default(),
        q.offset
    );
    let tail = tail_json(&count, cache, page.rows() as u64, started);
    let mut body = Vec::with_capacity(head.len() + rows.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(&rows);
    body.extend_from_slice(tail.as_bytes());
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

fn tail_json(count: &CountAnswer, cache: CacheInfo, returned: u64, started: Instant) -> String {
    let mut t = serde_json::Map::new();
    add_cache_info(&mut t, cache);
    t.insert("returned_count".into(), returned.into());
    t.insert("total_count".into(), count.value.into());
    t.insert("total_count_kind".into(), count.kind.as_str().into());
    if let Some(age) = count.age {
        t.insert("total_count_age_ms".into(), (age.as_millis() as u64).into());
    }
    t.insert("query_time_ms".into(), elapsed_ms(started).into());
    let obj = serde_json::Value::Object(t).to_string();
    // `obj` is `{...}`: splice its members after the data array.
    format!("],{}", &obj[1..])
}

/// Once the status line is out, an error can only cut the body short; say why in the log.
pub fn log_stream_error(item: Result<Bytes, QueryError>) -> Result<Bytes, QueryError> {
    if let Err(e) = &item {
        tracing::error!(error = %e, "response stream aborted after the status was sent");
    }
    item
}

/// Choose the export format: `format=` wins, then `Accept`, then NDJSON.
pub fn negotiate_format(req: &HttpRequest, param: Option<&String>) -> Result<Format, QueryError> {
    if let Some(f) = param {
        return Format::parse(f);
    }
    Ok(req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_accept)
        .unwrap_or(Format::Ndjson))
}

/// Encode a batch stream into an HTTP streaming body of the given format. Batches are
/// encoded a chunk at a time as the connection asks for more (see
/// [`CHUNK_BYTES`](crate::encode::CHUNK_BYTES)), so a slow reader holds one small chunk
/// in the write buffer, not a whole encoded batch.
pub fn stream_response(
    format: Format,
    first: arrow::record_batch::RecordBatch,
    rest: BatchStream,
) -> Result<HttpResponse, QueryError> {
    let schema = first.schema();
    let encoder = Arc::new(std::sync::Mutex::new(Encoder::new(format, &schema, RAW_JSON_COLUMNS)?));
    let enc = encoder.clone();
    let body = stream::once(async move { Ok(first) })
        .chain(rest)
        .flat_map(move |b| encode_lazily(enc.clone(), b))
        .chain(stream::once(async move { encoder.lock().expect("encoder lock").finish(&schema) }))
        .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
        .map(log_stream_error);
    Ok(HttpResponse::Ok().content_type(format.content_type()).streaming(body))
}

type Shared = Arc<std::sync::Mutex<Encoder>>;

/// The chunks of one batch, each encoded only when the body is polled for it.
fn encode_lazily(
    enc: Shared,
    batch: Result<arrow::record_batch::RecordBatch, QueryError>,
) -> stream::BoxStream<'static, Result<Bytes, QueryError>> {
    let batch = match batch {
        Ok(b) => b,
        Err(e) => return stream::once(async move { Err(e) }).boxed(),
    };
    stream::unfold(Some(0), move |from| {
        let next = from.map(|start| enc.lock().expect("encoder lock").chunk(&batch, start));
        async move {
            match next? {
                Ok((chunks, next)) => Some((Ok(chunks), next)),
                Err(e) => Some((Err(e), None)),
            }
        }
    })
    .flat_map(|chunks| stream::iter(split_results(chunks)))
    .boxed()
}

/// Each chunk as its own body item (an error stays one item).
fn split_results(chunks: Result<Vec<Bytes>, QueryError>) -> Vec<Result<Bytes, QueryError>> {
    match chunks {
        Ok(chunks) => chunks.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    }
}

pub async fn export(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let source = Source::parse(&path)?;
    let map = check_params(&query_params(&req), EXPORT_PARAMS)?;
    let format = negotiate_format(&req, map.get("format"))?;
    let q = parse_rows(&map, false)?;
    let store = state.source(source)?;
    let (first, rest) = unless_client_leaves(&req, open_stream(store.export(&q))).await?;
    Ok(stream_response(format, first, rest)?)
}
