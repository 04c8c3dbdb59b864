//! Plain-Flight tickets and command descriptors: the HTTP facade's queries as JSON.
//!
//! ```json
//! {"source": "postgres", "kind": "logs", "params": {"level": "ERROR", "limit": 100}}
//! {"source": "hdfs", "kind": "aggregate", "params": {"group_by": "service"}}
//! {"source": "hdfs", "kind": "export", "params": {"start_time": "1735689600"}}
//! {"source": "postgres", "kind": "stats"}
//! {"sql": "SELECT level, count(*) FROM hdfs.logs GROUP BY level"}
//! ```
//!
//! `params` are the HTTP query parameters of the matching route (values may be strings,
//! numbers or booleans) and are validated by the same functions, so a bad ticket gets the
//! same message as a bad URL, as `INVALID_ARGUMENT`. `logs` is a page (limit 1..=10000,
//! default 100); `export` has no limit cap. `count` (logs) and `format` (export) are
//! validated but have no effect: Flight always returns Arrow and no total.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;

use crate::encode::Format;
use crate::error::QueryError;
use crate::query::{
    check_params, parse_aggregate, parse_count_mode, parse_rows, AggregateQuery, Params, RowsQuery, Source, AGG_PARAMS,
    EXPORT_PARAMS, LOGS_PARAMS,
};
use crate::schema::logs_schema;

pub const KINDS: &[&str] = &["logs", "export", "aggregate", "stats"];
/// Dataset names of `list_flights` and path descriptors.
pub const DATASETS: &[(&str, Source)] = &[("postgres.logs", Source::Postgres), ("hdfs.logs", Source::Hdfs)];

#[derive(Debug, Clone, PartialEq)]
pub enum PlainQuery {
    Logs(Source, RowsQuery),
    Export(Source, RowsQuery),
    Aggregate(Source, AggregateQuery),
    Stats(Source),
    Sql(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketJson {
    source: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    sql: Option<String>,
}

/// Does this ticket/command look like ours (JSON) rather than a Flight SQL protobuf?
pub fn is_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

pub fn parse(bytes: &[u8]) -> Result<PlainQuery, QueryError> {
    let t: TicketJson = serde_json::from_slice(bytes).map_err(|e| {
        QueryError::invalid(
            "ticket",
            format!("not a fletch ticket ({e}); expected {{\"source\": \"postgres|hdfs\", \"kind\": \"logs|export|aggregate|stats\", \"params\": {{…}}}} or {{\"sql\": \"…\"}}"),
            None,
        )
    })?;
    if let Some(sql) = t.sql {
        if t.source.is_some() || t.kind.is_some() || !t.params.is_empty() {
            return Err(QueryError::invalid("sql", "a SQL ticket takes no source, kind or params", None));
        }
        return Ok(PlainQuery::Sql(sql));
    }
    let source = Source::parse(
        t.source.as_deref().ok_or_else(|| QueryError::invalid("source", "is required", Some(Source::ALLOWED)))?,
    )?;
    let kind = t.kind.as_deref().ok_or_else(|| QueryError::invalid("kind", "is required", Some(KINDS)))?;
    let params = params_of(&t.params)?;
    Ok(match kind {
        "logs" => {
            let map = check_params(&params, LOGS_PARAMS)?;
            parse_count_mode(&map)?;
            PlainQuery::Logs(source, parse_rows(&map, true)?)
        }
        "export" => {
            let map = check_params(&params, EXPORT_PARAMS)?;
            if let Some(f) = map.get("format") {
                Format::parse(f)?;
            }
            PlainQuery::Export(source, parse_rows(&map, false)?)
        }
        "aggregate" => PlainQuery::Aggregate(source, parse_aggregate(&check_params(&params, AGG_PARAMS)?)?),
        "stats" => {
            check_params(&params, &[])?;
            PlainQuery::Stats(source)
        }
        other => return Err(QueryError::invalid("kind", format!("unknown kind `{other}`"), Some(KINDS))),
    })
}

fn params_of(map: &serde_json::Map<String, serde_json::Value>) -> Result<Params, QueryError> {
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(QueryError::invalid(k, "must be a string or a number", None)),
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// The dataset a path descriptor names: `["postgres.logs"]` or `["postgres", "logs"]`.
pub fn dataset(path: &[String]) -> Result<Source, QueryError> {
    let name = path.join(".");
    DATASETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).ok_or_else(|| {
        QueryError::NotFound(format!(
            "no dataset `{name}`; available: {}",
            DATASETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The ticket that streams a whole dataset (what a path descriptor resolves to).
pub fn export_ticket(source: Source) -> String {
    serde_json::json!({"source": source.name(), "kind": "export"}).to_string()
}

pub fn aggregate_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false), Field::new("count", DataType::Int64, false)]))
}

/// Integer fields of each source's `/stats` answer, after `source`.
fn stats_fields(source: Source) -> &'static [&'static str] {
    match source {
        Source::Postgres => &["logs_count", "events_count", "count_age_ms"],
        Source::Hdfs => &["logs_count", "files"],
    }
}

pub fn stats_schema(source: Source) -> SchemaRef {
    let mut fields = vec![Field::new("source", DataType::Utf8, false)];
    fields.extend(stats_fields(source).iter().map(|f| Field::new(*f, DataType::Int64, true)));
    Arc::new(Schema::new(fields))
}

/// The schema a plain query returns, known without running it (SQL is planned by the
/// caller; an archive export asks the store, whose files may carry more columns).
pub fn schema_of(q: &PlainQuery) -> Option<SchemaRef> {
    match q {
        PlainQuery::Logs(..) | PlainQuery::Export(..) => Some(logs_schema()),
        PlainQuery::Aggregate(..) => Some(aggregate_schema()),
        PlainQuery::Stats(s) => Some(stats_schema(*s)),
        PlainQuery::Sql(_) => None,
    }
}

pub fn aggregate_batch(groups: Vec<(String, i64)>) -> Result<RecordBatch, QueryError> {
    let (keys, counts): (Vec<String>, Vec<i64>) = groups.into_iter().unzip();
    Ok(RecordBatch::try_new(
        aggregate_schema(),
        vec![Arc::new(StringArray::from(keys)) as ArrayRef, Arc::new(Int64Array::from(counts))],
    )?)
}

pub fn stats_batch(source: Source, stats: &crate::store::StoreStats) -> Result<RecordBatch, QueryError> {
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![source.response_name()]))];
    for f in stats_fields(source) {
        cols.push(Arc::new(Int64Array::from(vec![stats.field(f)])));
    }
    Ok(RecordBatch::try_new(stats_schema(source), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_validate_like_urls() {
        let q = parse(br#"{"source":"postgres","kind":"logs","params":{"level":"ERROR","limit":5}}"#).unwrap();
        match q {
            PlainQuery::Logs(Source::Postgres, r) => {
                assert_eq!(r.limit, Some(5));
                assert_eq!(r.filters.level.as_deref(), Some("ERROR"));
            }
            other => panic!("{other:?}"),
        }
        let e = parse(br#"{"source":"hdfs","kind":"aggregate","params":{"group_by":"color"}}"#).unwrap_err();
        assert!(matches!(&e, QueryError::InvalidParam { param, .. } if param == "group_by"), "{e}");
        let e = parse(br#"{"source":"hdfs","kind":"logs","params":{"levle":"ERROR"}}"#).unwrap_err();
        assert!(matches!(&e, QueryError::UnknownParam { param, .. } if param == "levle"), "{e}");
        let e = parse(br#"{"source":"hdfs","kind":"logs","params":{"limit":20000}}"#).unwrap_err();
        assert!(matches!(&e, QueryError::InvalidParam { param, .. } if param == "limit"), "{e}");
        let e = parse(br#"{"source":"mysql","kind":"logs"}"#).unwrap_err();
        assert!(matches!(&e, QueryError::InvalidParam { param, .. } if param == "source"), "{e}");
        assert!(parse(b"{\"kind\":\"stats\",\"source\":\"hdfs\",\"extra\":1}").is_err());
        assert_eq!(parse(br#"{"sql":"SELECT 1"}"#).unwrap(), PlainQuery::Sql("SELECT 1".into()));
    }

    #[test]
    fn datasets_by_path() {
        assert_eq!(dataset(&["postgres.logs".into()]).unwrap(), Source::Postgres);
        assert_eq!(dataset(&["hdfs".into(), "logs".into()]).unwrap(), Source::Hdfs);
        assert!(matches!(dataset(&["events".into()]), Err(QueryError::NotFound(_))));
    }
}
