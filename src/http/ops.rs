//! Operational endpoints: liveness, readiness, metrics, API description.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::drain::Drain;
use crate::query::Source;
use crate::service::Service;
use crate::store::LogStore;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// 200 when every configured source can serve queries now, else 503 with the reasons.
/// A draining process (see [`crate::shutdown`]) is not ready, whatever its sources say.
pub async fn ready(state: web::Data<Service>, drain: web::Data<Drain>) -> HttpResponse {
    if let Some(since) = drain.elapsed() {
        return HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "1")).json(json!({
            "status": "DRAINING",
            "detail": "this process is stopping: requests under way finish, new ones belong to another replica",
            "draining_ms": since.as_millis() as u64,
        }));
    }
    let mut sources = serde_json::Map::new();
    let mut all_ready = true;
    for source in [Source::Postgres, Source::Hdfs] {
        if let Ok(store) = state.source(source) {
            let name = source.name();
            let r = store.readiness().await;
            all_ready &= r.ready;
            sources.insert(name.into(), json!({"ready": r.ready, "detail": r.detail}));
        }
    }
    let body = json!({"status": if all_ready { "READY" } else { "NOT_READY" }, "sources": sources});
    if all_ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "1")).json(body)
    }
}

pub async fn metrics(state: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics().render())
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": "not_found",
        "message": format!("no route for {} {}", req.method(), req.path()),
        "see": "/openapi.json",
    }))
}
