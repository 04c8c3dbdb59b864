//! The HTTP facade: the old Query API's routes and shapes, plus exports, health and metrics.
//!
//! - [`logs`]: `/api/query/{source}/logs` (streamed old-shape JSON) and `/logs/export`.
//! - [`aggregate`]: `/logs/aggregate`, `/stats`, `/compare`.
//! - [`ops`]: `/health`, `/ready`, `/metrics`, `/openapi.json`.
//! - [`sql`]: `POST /api/sql` (SQL over both sources, streamed).
//! - [`peer`]: noticing a client that leaves while its request is being worked on.

pub mod aggregate;
pub mod logs;
pub mod ops;
pub mod peer;
pub mod sql;

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::auth::OPEN_PATHS;
use crate::error::{retry_after_secs, QueryError};
use crate::query::Params;
use crate::service::{CacheInfo, Service};

/// A [`QueryError`] on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub QueryError);

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.class().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // Every 5xx leaves its cause (the whole chain) in the log.
            tracing::warn!(status = status.as_u16(), error = %self.0.chain(), "request failed");
        }
        let mut resp = HttpResponse::build(status);
        if let Some(ra) = self.0.retry_after() {
            resp.insert_header(("Retry-After", retry_after_secs(ra).to_string()));
        }
        resp.json(self.0.to_json())
    }
}

/// Query-string pairs in order, duplicates kept (validation rejects them with a message).
pub fn query_params(req: &HttpRequest) -> Params {
    url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect()
}

/// `cache_age_ms` for responses answered from the result cache.
pub fn add_cache_info(body: &mut serde_json::Map<String, serde_json::Value>, info: CacheInfo) {
    if let Some(age) = info.age {
        body.insert("cache_age_ms".into(), (age.as_millis() as u64).into());
    }
}

pub fn elapsed_ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Routes of the facade.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/openapi.json", web::get().to(ops::openapi))
        .route("/api/query/compare", web::get().to(aggregate::compare))
        .route("/api/query/{source}/logs", web::get().to(logs::page))
        .route("/api/query/{source}/logs/export", web::get().to(logs::export))
        .route("/api/query/{source}/logs/aggregate", web::get().to(aggregate::aggregate))
        .route("/api/query/{source}/stats", web::get().to(aggregate::stats))
        .route("/api/sql", web::post().to(sql::sql))
        .default_service(web::to(ops::not_found));
}

/// Request counting and latency (to response headers) by route pattern, source and status.
pub async fn observe(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let metrics = req.app_data::<web::Data<Service>>().map(|s| s.metrics().clone());
    // A request id ties together every log line of one request (and is echoed to the client).
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.path());
    let mut res = tracing::Instrument::instrument(next.call(req), span.clone()).await?;
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
    }
    span.in_scope(|| tracing::debug!(status = res.status().as_u16(), elapsed_ms = elapsed_ms(start), "request done"));
    if let Some(m) = metrics {
        // Path parameters are known only once the router has matched the request.
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        let source = res.request().match_info().get("source").unwrap_or("-").to_string();
        let route = route.trim_start_matches("/api/query/{source}").to_string();
        let status = res.status().as_u16().to_string();
        m.http_requests.with_labels(&[&route, &source, &status]).inc();
        m.http_latency.with_labels(&[&route, &source]).observe(start.elapsed());
    }
    Ok(res)
}

/// 401 with the JSON error body unless the request is authenticated (tokens configured in
/// `[auth]`; `/health`, `/ready` and `/metrics` stay open).
pub async fn guard(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let auth = req.app_data::<web::Data<Service>>().map(|s| s.auth().clone());
    if let Some(auth) = auth.filter(|a| a.enabled()) {
        if !OPEN_PATHS.contains(&req.path()) {
            let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if let Err(e) = auth.check(header) {
                let resp = HttpResponse::Unauthorized()
                    .insert_header(("WWW-Authenticate", "Bearer realm=\"fletch\""))
                    .json(e.to_json());
                return Ok(req.into_response(resp));
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
