//! The `postgres` store: SQL built from whitelisted columns and bind parameters, run on the
//! connection actors through the router, streamed back as Arrow batches.
//!
//! - [`router`]: the pool actor that hands jobs to idle connections; [`connection`]: one
//!   actor per connection; [`messages`]: what they say to each other.
//! - [`params`]: bind parameters; [`errors`]: driver errors classified by SQLSTATE.
//! - [`batches`]: rows → Arrow batches.
//! - [`filters`]: SQL filter expressions → PostgreSQL conditions (for the SQL table);
//!   [`table`]: `postgres.logs` as a DataFusion table; [`whole_query`]: queries over
//!   PostgreSQL alone unparsed and run there whole.
//! - [`rollup`]: counts per (time bucket, labels) kept in fletch; [`rollup_keeper`]: builds
//!   them once and advances them by the rows above an `id` watermark, so aggregates,
//!   `total_count` and `/stats` cost what the new rows cost.

pub mod batches;
pub mod connection;
pub mod errors;
pub mod filters;
pub mod messages;
pub mod params;
pub mod rollup;
pub mod rollup_keeper;
pub mod router;
pub mod table;
pub mod tables;
pub mod whole_query;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use self::messages::{GetStatus, PgJob, PgSettings, Submit};
use self::params::PgParam;
use self::rollup::TimeEdge;
use self::rollup_keeper::{Answer, PgRollup, RollupSettings};
use self::router::PgRouter;
use self::tables::{TableName, Tables};
use crate::count_cache::CountCache;
use crate::error::QueryError;
use crate::query::{AggregateQuery, CountMode, Filters, GroupBy, RowsQuery, Source};
use crate::store::{CountAnswer, CountKind, GroupCounts, LogStore, Readiness, StoreStats};
use crate::stream::{receiver_stream, BatchStream};

/// Columns of `logs` in the order every source returns them.
pub const LOG_COLUMNS_SQL: &str =
    r#"id, "timestamp", level, service, host, message, metadata::text AS metadata, created_at"#;

/// Batches buffered between a connection actor and the consumer: small, so a slow client
/// slows the query instead of filling memory.
const CHANNEL_BATCHES: usize = 2;

#[derive(Clone)]
pub struct PgSource {
    router: Addr<PgRouter>,
    tables: Arc<Tables>,
    queue_timeout: Duration,
    counts: Arc<CountCache>,
    /// Counts older than this are not served (the rollup's too).
    count_ttl: Duration,
    rollup: Arc<PgRollup>,
}

/// WHERE clause for the shared filters, appending bind parameters.
pub fn where_clause(f: &Filters, params: &mut Vec<PgParam>) -> String {
    let mut conds = Vec::new();
    for (col, val) in f.labels() {
        if let Some(v) = val {
            params.push(PgParam::Text(v.to_string()));
            conds.push(format!("{col} = ${}", params.len()));
        }
    }
    if let Some(t) = f.start_time {
        params.push(PgParam::F64(t));
        conds.push(format!("\"timestamp\" >= ${}", params.len()));
    }
    if let Some(t) = f.end_time {
        params.push(PgParam::F64(t));
        conds.push(format!("\"timestamp\" <= ${}", params.len()));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

pub fn rows_sql(logs: &TableName, q: &RowsQuery) -> (String, Vec<PgParam>) {
    let mut params = Vec::new();
    let mut sql = format!("SELECT {LOG_COLUMNS_SQL} FROM {}{}", logs.sql(), where_clause(&q.filters, &mut params));
    sql.push_str(&format!(" ORDER BY \"{}\" {}", q.order_by.column(), q.order_dir.sql()));
    if let Some(limit) = q.limit {
        params.push(PgParam::I64(limit as i64));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    if q.offset > 0 {
        params.push(PgParam::I64(q.offset as i64));
        sql.push_str(&format!(" OFFSET ${}", params.len()));
    }
    (sql, params)
}

/// Counts of the rows in `edges` (and `f`'s labels) with `id <= watermark`, by `by`.
fn edge_sql(
    logs: &TableName,
    f: &Filters,
    edges: &[TimeEdge],
    watermark: i64,
    by: Option<GroupBy>,
) -> (String, Vec<PgParam>) {
    let labels = Filters { start_time: None, end_time: None, ..f.clone() };
    let mut params = Vec::new();
    let mut conds = vec![where_clause(&labels, &mut params).trim_start_matches(" WHERE ").to_string()];
    conds.retain(|c| !c.is_empty());
    params.push(PgParam::I64(watermark));
    conds.push(format!("id <= ${}", params.len()));
    let mut ranges = Vec::new();
    for e in edges {
        let mut r = Vec::new();
        if let Some(lo) = e.lo {
            params.push(PgParam::F64(lo));
            r.push(format!("\"timestamp\" >= ${}", params.len()));
        }
        if let Some(hi) = e.hi {
            params.push(PgParam::F64(hi));
            r.push(format!("\"timestamp\" {} ${}", if e.hi_inclusive { "<=" } else { "<" }, params.len()));
        }
        ranges.push(if r.is_empty() { "true".to_string() } else { format!("({})", r.join(" AND ")) });
    }
    conds.push(format!("({})", ranges.join(" OR ")));
    let key = by.map_or("NULL::text".to_string(), |b| format!("{}::text", b.column()));
    let group = if by.is_some() { " GROUP BY 1" } else { "" };
    (format!("SELECT {key} AS key, count(*) AS count FROM {} WHERE {}{group}", logs.sql(), conds.join(" AND ")), params)
}

pub fn aggregate_sql(logs: &TableName, q: &AggregateQuery) -> (String, Vec<PgParam>) {
    let mut params = Vec::new();
    let col = q.group_by.column();
    let sql = format!(
        "SELECT {col}::text AS key, count(*) AS count FROM {}{} GROUP BY {col} ORDER BY count DESC, key",
        logs.sql(),
        where_clause(&q.filters, &mut params)
    );
    (sql, params)
}

impl PgSource {
    pub fn new(router: Addr<PgRouter>, tables: Tables, queue_timeout: Duration, count_ttl: Duration) -> Self {
        Self {
            router,
            tables: Arc::new(tables),
            queue_timeout,
            counts: CountCache::new(count_ttl),
            count_ttl,
            rollup: PgRollup::new(),
        }
    }

    /// Start keeping the label rollup current (see [`rollup_keeper`]).
    pub fn keep_rollup(&self, settings: RollupSettings) {
        rollup_keeper::keep(self.clone(), self.rollup.clone(), settings);
    }

    /// Counts by `by` (one `None` key when `by` is `None`): the rollup's `answer` to `f`
    /// plus its time edges read from PostgreSQL.
    async fn rollup_groups(
        &self,
        f: &Filters,
        by: Option<GroupBy>,
        answer: &Answer,
    ) -> Result<HashMap<Option<String>, i64>, QueryError> {
        let mut out: HashMap<Option<String>, i64> = HashMap::new();
        for (labels, n) in &answer.partial.counts {
            let key = by.and_then(|by| labels[by.label_index()].as_deref().map(str::to_string));
            *out.entry(key).or_default() += *n as i64;
        }
        if !answer.partial.edges.is_empty() {
            let (sql, params) = edge_sql(&self.tables.logs, f, &answer.partial.edges, answer.watermark, by);
            for b in self.collect(sql, params).await? {
                let keys = b.column(0).as_string::<i32>();
                let counts = b.column(1).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    let key = (!keys.is_null(i)).then(|| keys.value(i).to_string());
                    *out.entry(key).or_default() += counts.value(i);
                }
            }
        }
        Ok(out)
    }

    /// An exact `total_count` from the rollup, when it can answer, is exact (no rebuild
    /// under way) and is no older than counts may be (`postgres.count_ttl_ms`).
    async fn rollup_count(&self, f: &Filters) -> Result<Option<CountAnswer>, QueryError> {
        let age = |a: &Answer| a.as_of.elapsed().unwrap_or_default();
        let Some(answer) = self.rollup.answer(f).filter(|a| a.exact && age(a) <= self.count_ttl) else {
            return Ok(None);
        };
        let groups = self.rollup_groups(f, None, &answer).await?;
        Ok(Some(CountAnswer { value: Some(groups.values().sum()), kind: CountKind::Exact, age: Some(age(&answer)) }))
    }

    /// The tables this source reads.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Run any SQL on a pooled connection; the stream yields at least one batch (the schema).
    pub async fn query(&self, sql: String, params: Vec<PgParam>) -> Result<BatchStream, QueryError> {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let now = Instant::now();
        let job = PgJob { sql: sql.into(), params, tx, start_deadline: now + self.queue_timeout, enqueued_at: now };
        self.router
            .send(Submit(job))
            .await
            .map_err(|e| QueryError::internal(format!("postgres router unreachable: {e}")))??;
        Ok(receiver_stream(rx))
    }

    pub async fn collect(&self, sql: String, params: Vec<PgParam>) -> Result<Vec<RecordBatch>, QueryError> {
        let mut s = self.query(sql, params).await?;
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.push(b?);
        }
        Ok(out)
    }

    async fn scalar_i64(&self, sql: String, params: Vec<PgParam>) -> Result<i64, QueryError> {
        let batches = self.collect(sql, params).await?;
        batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().filter(|a| !a.is_null(0)).map(|a| a.value(0)))
            .ok_or_else(|| QueryError::internal("expected one integer from postgres"))
    }

    fn exact_count_job(
        &self,
        f: &Filters,
    ) -> impl std::future::Future<Output = Result<i64, QueryError>> + Send + 'static {
        let mut params = Vec::new();
        let sql = format!("SELECT count(*) AS count FROM {}{}", self.tables.logs.sql(), where_clause(f, &mut params));
        let me = self.clone();
        async move { me.scalar_i64(sql, params).await }
    }

    /// Planner estimate: pg_class for the whole table, EXPLAIN for a filtered one.
    async fn estimate(&self, f: &Filters) -> Result<i64, QueryError> {
        if f.is_empty() {
            let sql =
                format!("SELECT reltuples::int8 FROM pg_class WHERE oid = {}::regclass", self.tables.logs.literal());
            let n = self.scalar_i64(sql, vec![]).await?;
            if n >= 0 {
                return Ok(n);
            }
        }
        let mut params = Vec::new();
        let sql =
            format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}{}", self.tables.logs.sql(), where_clause(f, &mut params));
        let batches = self.collect(sql, params).await?;
        let text = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_string::<i32>().value(0).to_string())
            .ok_or_else(|| QueryError::internal("empty EXPLAIN output"))?;
        let plan: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| QueryError::internal(format!("EXPLAIN output: {e}")))?;
        plan[0]["Plan"]["Plan Rows"]
            .as_f64()
            .map(|r| r as i64)
            .ok_or_else(|| QueryError::internal("EXPLAIN output has no row estimate"))
    }
}

#[async_trait]
impl LogStore for PgSource {
    fn source(&self) -> Source {
        Source::Postgres
    }

    async fn rows(&self, q: &RowsQuery) -> Result<BatchStream, QueryError> {
        let (sql, params) = rows_sql(&self.tables.logs, q);
        self.query(sql, params).await
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<GroupCounts, QueryError> {
        if let Some(answer) = self.rollup.answer(&q.filters) {
            let groups = self.rollup_groups(&q.filters, Some(q.group_by), &answer).await?;
            let mut groups: Vec<_> = groups
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.unwrap_or_else(|| crate::schema::NULL_KEY.to_string()), n))
                .collect();
            crate::schema::sort_groups(&mut groups);
            return Ok(GroupCounts { groups, as_of: Some(answer.as_of), exact: answer.exact });
        }
        let as_of = std::time::SystemTime::now();
        let (sql, params) = aggregate_sql(&self.tables.logs, q);
        let mut out = Vec::new();
        for b in self.collect(sql, params).await? {
            let keys = b.column(0).as_string::<i32>();
            let counts = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let key = if keys.is_null(i) { crate::schema::NULL_KEY } else { keys.value(i) }.to_string();
                out.push((key, counts.value(i)));
            }
        }
        // PostgreSQL sorted already, but ties follow its collation and NULLs go last.
        crate::schema::sort_groups(&mut out);
        Ok(GroupCounts { groups: out, as_of: Some(as_of), exact: true })
    }

    async fn count(&self, f: &Filters, mode: CountMode) -> Result<CountAnswer, QueryError> {
        let key = f.key();
        if matches!(mode, CountMode::Exact | CountMode::Auto) {
            if let Some(answer) = self.rollup_count(f).await? {
                return Ok(answer);
            }
        }
        match mode {
            CountMode::None => Ok(CountAnswer { value: None, kind: CountKind::None, age: None }),
            CountMode::Estimate => {
                Ok(CountAnswer { value: Some(self.estimate(f).await?), kind: CountKind::Estimate, age: None })
            }
            CountMode::Exact => self.counts.exact(&key, || self.exact_count_job(f)).await,
            CountMode::Auto => {
                let job = self.exact_count_job(f);
                match self.counts.cached_or_start(&key, move || job) {
                    Some(hit) => Ok(hit),
                    None => {
                        Ok(CountAnswer { value: Some(self.estimate(f).await?), kind: CountKind::Estimate, age: None })
                    }
                }
            }
        }
    }

    async fn stats(&self) -> Result<StoreStats, QueryError> {
        let from_rollup = self.rollup_count(&Filters::default()).await?;
        let logs = if let Some(answer) = from_rollup {
            answer
        } else {
            let key = Filters::default().key();
            let job = self.exact_count_job(&Filters::default());
            match self.counts.cached_or_start(&key, move || job) {
                Some(hit) => hit,
                None => self.counts.exact(&key, || self.exact_count_job(&Filters::default())).await?,
            }
        };
        let events_table = &self.tables.events;
        let exists = format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass({})", events_table.literal());
        let has_events = self.scalar_i64(exists, vec![]).await? == 1;
        let events = if has_events {
            let (me, sql) = (self.clone(), format!("SELECT count(*) FROM {}", events_table.sql()));
            self.counts
                .exact("events", move || async move { me.scalar_i64(sql, vec![]).await })
                .await?
                .value
                .unwrap_or(0)
        } else {
            0
        };
        Ok(StoreStats {
            logs_count: logs.value,
            events_count: Some(events),
            count_age_ms: logs.age.map(|a| a.as_millis() as i64),
            files: None,
        })
    }

    async fn readiness(&self) -> Readiness {
        match self.router.send(GetStatus).await {
            Ok(s) => {
                let mut detail = serde_json::to_value(&s).unwrap_or_default();
                detail["rollup"] = self.rollup.status();
                Readiness { ready: s.ready > 0, detail }
            }
            Err(e) => Readiness { ready: false, detail: serde_json::json!({"error": e.to_string()}) },
        }
    }
}

/// Connection settings from the config section.
pub fn settings_from(cfg: &crate::config::PostgresConfig) -> Result<PgSettings, QueryError> {
    let mut pg: tokio_postgres::Config =
        cfg.url.parse().map_err(|e| QueryError::invalid("postgres.url", format!("not a PostgreSQL URL: {e}"), None))?;
    pg.connect_timeout(cfg.connect_timeout());
    pg.application_name("fletch");
    pg.options(format!("-c statement_timeout={}", cfg.statement_timeout_ms));
    Ok(PgSettings {
        pg,
        batch_rows: cfg.batch_rows.max(1),
        connect_timeout: cfg.connect_timeout(),
        backoff_min: Duration::from_millis(cfg.backoff_min_ms.max(10)),
        backoff_max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_min_ms.max(10))),
    })
}
