//! `GET /api/query/{source}/logs/aggregate`, `/stats` and `/api/query/compare`.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::json;

use super::{add_cache_info, elapsed_ms, query_params, ApiError};
use crate::error::QueryError;
use crate::query::{
    check_params, parse_aggregate, parse_filters, CountMode, OrderBy, OrderDir, RowsQuery, Source, AGG_PARAMS,
    DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT,
};
use crate::service::Service;
use crate::store::LogStore;

pub async fn aggregate(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let source = Source::parse(&path)?;
    let map = check_params(&query_params(&req), AGG_PARAMS)?;
    let q = parse_aggregate(&map)?;
    let store = state.source(source)?;
    let (groups, info) = store.aggregate_info(&q).await?;
    let data: Vec<_> = groups.groups.iter().map(|(key, count)| json!({"key": key, "count": count})).collect();
    let mut body = serde_json::Map::new();
    body.insert("source".into(), source.response_name().into());
    body.insert("query_time_ms".into(), elapsed_ms(started).into());
    body.insert("group_by".into(), q.group_by.column().into());
    body.insert("data".into(), data.into());
    body.insert("exact".into(), groups.exact.into());
    if let Some(as_of) = groups.as_of.and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok()) {
        body.insert("as_of".into(), ((as_of.as_secs_f64() * 1e3).round() / 1e3).into());
    }
    add_cache_info(&mut body, info);
    Ok(HttpResponse::Ok().json(body))
}

pub async fn stats(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let source = Source::parse(&path)?;
    check_params(&query_params(&req), &[])?;
    let store = state.source(source)?;
    let (stats, info) = store.stats_info().await?;
    let mut body = match serde_json::to_value(&stats) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(QueryError::internal("stats did not serialize to an object").into()),
    };
    add_cache_info(&mut body, info);
    body.insert("source".into(), source.response_name().into());
    body.insert("query_time_ms".into(), elapsed_ms(started).into());
    Ok(HttpResponse::Ok().json(body))
}

/// Rows returned and exact total for one source, with the time it took.
async fn measure(store: &dyn LogStore, q: &RowsQuery) -> Result<(u64, i64, f64), QueryError> {
    let started = Instant::now();
    let (rows, total) = futures::join!(
        async {
            let mut s = store.rows(q).await?;
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                n += b?.num_rows() as u64;
            }
            Ok::<_, QueryError>(n)
        },
        store.count(&q.filters, CountMode::Exact)
    );
    Ok((rows?, total?.value.unwrap_or_default(), elapsed_ms(started)))
}

pub async fn compare(req: HttpRequest, state: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let map = check_params(&query_params(&req), &["level", "service", "host", "start_time", "end_time", "limit"])?;
    let limit = match map.get("limit") {
        None => DEFAULT_PAGE_LIMIT,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
            _ => {
                return Err(QueryError::invalid(
                    "limit",
                    format!("must be an integer between 1 and {MAX_PAGE_LIMIT} (got `{v}`)"),
                    None,
                )
                .into())
            }
        },
    };
    let q = RowsQuery {
        filters: parse_filters(&map)?,
        limit: Some(limit),
        offset: 0,
        order_by: OrderBy::Timestamp,
        order_dir: OrderDir::Desc,
    };
    let (pg, hdfs) = (state.source(Source::Postgres)?, state.source(Source::Hdfs)?);
    let (p, h) = futures::join!(measure(pg.as_ref(), &q), measure(hdfs.as_ref(), &q));
    let ((p_rows, p_total, p_ms), (h_rows, h_total, h_ms)) = (p?, h?);
    Ok(HttpResponse::Ok().json(json!({
        "comparison": {
            "postgresql_ms": p_ms,
            "hdfs_ms": h_ms,
            "faster": if p_ms <= h_ms { "postgresql" } else { "hdfs" },
            "difference_ms": ((p_ms - h_ms).abs() * 1000.0).round() / 1000.0,
        },
        "postgresql": {"count": p_rows, "total": p_total},
        "hdfs": {"count": h_rows, "total": h_total},
    })))
}
