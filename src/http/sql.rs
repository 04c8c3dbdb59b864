//! `POST /api/sql`: SQL over both sources (the engine Flight SQL uses), streamed as NDJSON,
//! CSV or Arrow IPC. Body: `{"sql": "...", "format": "ndjson|csv|arrow"}`; the format may
//! also come from `?format=` or `Accept`. SQL mistakes are 400 with the engine's message.
//! `"engine": "auto|local|ballista"` (or `?engine=`) says where it runs (see
//! [`crate::sql::ballista`]); `auto`, the default, sends only big archive scans to Ballista.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures::StreamExt;
use serde::Deserialize;

use super::logs::{negotiate_format, open_stream, stream_response};
use super::peer::unless_client_leaves;
use super::{query_params, ApiError};
use crate::error::QueryError;
use crate::query::check_params;
use crate::service::Service;
use crate::sql::ballista::Placement;
use crate::sql::limits::MAX_SQL_BYTES;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    engine: Option<String>,
}

/// Largest request body read: room for the longest statement the engine takes
/// ([`MAX_SQL_BYTES`]), JSON-escaped. actix-web's own limit (256 KiB) answered plain text.
const MAX_BODY_BYTES: usize = 4 * MAX_SQL_BYTES;

pub async fn sql(req: HttpRequest, payload: web::Payload, state: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let query = check_params(&query_params(&req), &["format", "engine"])?;
    let body = read_body(payload).await?;
    let parsed: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        QueryError::invalid(
            "body",
            format!(
                "expected a JSON object {{\"sql\": \"SELECT …\", \"format\": \"ndjson|csv|arrow\", \"engine\": \"auto|local|ballista\"}}: {e}"
            ),
            None,
        )
    })?;
    let format = negotiate_format(&req, parsed.format.as_ref().or(query.get("format")))?;
    let placement = match parsed.engine.as_ref().or(query.get("engine")) {
        Some(e) => Placement::parse(e)?,
        None => Placement::Auto,
    };
    let (first, rest) = unless_client_leaves(&req, open_stream(state.sql(parsed.sql, Vec::new(), placement))).await?;
    Ok(stream_response(format, first, rest)?)
}

/// The whole body, or a 413 naming the limit as soon as it is passed (the rest is not read).
async fn read_body(mut payload: web::Payload) -> Result<BytesMut, QueryError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| QueryError::invalid("body", format!("reading the request body: {e}"), None))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(QueryError::TooLarge { what: "request body", limit: MAX_BODY_BYTES });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
