//! SQL over both sources in one catalog, for Flight SQL and `POST /api/sql`.
//!
//! Catalog `fletch`: `postgres.logs` ([`PgTable`], scans pushed down to PostgreSQL) and
//! `hdfs.logs` ([`ArchiveTable`](crate::archive::table::ArchiveTable), the Parquet directory), plus DataFusion's
//! `information_schema`. The default schema `public` is empty, so every table is named
//! with its source. Only queries are accepted (no DDL, DML or `SET`).
//!
//! Planning and execution run on the [`DedicatedExecutor`]; results come back batch by
//! batch over its bounded channel. Every result stream starts with an empty batch that
//! carries the schema (also for zero rows), like the sources' streams. Admission, the
//! time budget and cancellation are the service's ([`crate::service::Service::sql`]).
//!
//! - [`ballista`]: heavy statements as jobs on a Ballista cluster.
//! - [`limits`]: how long and how deep a statement may be, checked before planning.
//! - [`cancel`]: stopping a running plan between any two of its batches.
//! - [`wire`]: result types every client can read (no view types).
//! - [`text_budget`]: `lpad`, `rpad` and `repeat` bounded in what one call may allocate.
//! - The stores bring their own SQL pieces: [`crate::postgres::whole_query`] (queries over
//!   PostgreSQL alone run there whole) and [`crate::archive::sql_rollup`] (label
//!   aggregates over `hdfs.logs` from the rollups).

pub mod ballista;
pub mod cancel;
pub mod limits;
pub mod text_budget;
pub mod wire;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::{stream, StreamExt};

use crate::archive::{sql_rollup, Archive};
use crate::error::{causes, QueryError, RetryAfter};
use crate::executor::DedicatedExecutor;
use crate::metrics::Metrics;
use crate::postgres::table::PgTable;
use crate::postgres::{whole_query, PgSource};
use crate::query::Source;
use crate::stream::BatchStream;
use ballista::{Cluster, Placement};

/// The catalog every table lives in.
pub const CATALOG: &str = "fletch";
/// The (empty) default schema: unqualified names do not silently pick a source.
pub const DEFAULT_SCHEMA: &str = "public";

/// A table as listed by catalog calls.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// `TABLE`, `VIEW` or `LOCAL TEMPORARY`.
    pub table_type: &'static str,
    pub arrow_schema: SchemaRef,
}

/// What a prepared statement needs to know up front.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dataset_schema: SchemaRef,
    /// `$1`, `$2`, … in order; `Null` type where the engine cannot infer one.
    pub parameter_schema: SchemaRef,
}

#[derive(Clone)]
pub struct SqlEngine {
    ctx: SessionContext,
    executor: Arc<DedicatedExecutor>,
    /// Runs whole PostgreSQL-only queries (see [`whole_query`]).
    pg: Option<PgSource>,
    /// Answers archive aggregates from its rollups (see [`sql_rollup`]).
    hdfs: Option<Archive>,
    /// Counts queries PostgreSQL ran whole, archive aggregates answered from rollups and
    /// statements run on Ballista
    /// (`fletch_source_executions_total{kind="sql_pushdown"|"sql_rollup"|"ballista"}`).
    metrics: Arc<Metrics>,
    /// Runs heavy statements (see [`ballista`]).
    ballista: Option<Arc<Cluster>>,
}

/// A statement planned and ready to run: what it reads decides which permits it needs.
pub struct Planned {
    /// `None` for an archive aggregate the rollups may answer: planning its scan of every
    /// file costs more than the answer (about 50 ms at 10,000 files), so it is planned
    /// only if they cannot.
    plan: Option<Arc<dyn ExecutionPlan>>,
    /// The logical result schema, which the rollup answer must keep.
    logical_schema: SchemaRef,
    task: Arc<TaskContext>,
    logical: LogicalPlan,
    /// The sources it scans, in a fixed order (postgres, hdfs).
    pub sources: Vec<Source>,
    /// The result schema as clients receive it.
    pub schema: SchemaRef,
    /// Where the client wants it run.
    pub placement: Placement,
}

impl SqlEngine {
    /// Build the catalog over the configured sources. Shares the Parquet source's runtime
    /// (memory pool, object stores) and dedicated executor when there is one.
    pub fn new(
        pg: Option<PgSource>,
        parquet: Option<Archive>,
        partitions: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, QueryError> {
        let (config, runtime, executor) = match &parquet {
            Some(p) => (p.context().copied_config(), p.context().runtime_env(), p.executor().clone()),
            None => {
                let runtime = RuntimeEnvBuilder::new()
                    .with_memory_limit(512 * 1024 * 1024, 1.0)
                    .build_arc()
                    .map_err(|e| QueryError::internal(format!("SQL runtime: {e}")))?;
                let executor = DedicatedExecutor::new("fletch-sql", partitions)
                    .map_err(|e| QueryError::internal(format!("SQL runtime: {e}")))?;
                (SessionConfig::new().with_target_partitions(partitions.max(1)), runtime, Arc::new(executor))
            }
        };
        let mut config = config.with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA).with_information_schema(true);
        let opts = config.options_mut();
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.execution.parquet.schema_force_view_types = false;
        // The archive's export slices sort little and set little aside; SQL sorts big.
        opts.execution.sort_spill_reservation_bytes =
            SessionConfig::new().options().execution.sort_spill_reservation_bytes;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        text_budget::register(&ctx);
        let catalog = ctx.catalog(CATALOG).ok_or_else(|| QueryError::internal("default catalog missing"))?;
        let add = |schema: &str, table: Arc<dyn TableProvider>| -> Result<(), QueryError> {
            let provider = Arc::new(MemorySchemaProvider::new());
            provider.register_table("logs".into(), table).map_err(sql_error)?;
            catalog.register_schema(schema, provider).map_err(sql_error)?;
            Ok(())
        };
        if let Some(pg) = &pg {
            add("postgres", Arc::new(PgTable::logs(pg.clone())))?;
        }
        if let Some(p) = &parquet {
            add("hdfs", p.table())?;
        }
        Ok(Self { ctx, executor, pg, hdfs: parquet, metrics, ballista: None })
    }

    /// Send heavy statements to this Ballista cluster.
    pub fn with_ballista(mut self, cluster: Option<Cluster>) -> Self {
        self.ballista = cluster.map(Arc::new);
        self
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The result schema of `sql` (planned on the executor, nothing is run).
    pub async fn schema(&self, sql: &str, params: Vec<ScalarValue>) -> Result<SchemaRef, QueryError> {
        let (ctx, sql) = (self.ctx.clone(), sql.to_string());
        self.executor.run(async move { Ok(physical_plan(&ctx, &sql, params).await?.schema) }).await
    }

    /// Result and parameter schemas of a statement that may contain `$n` placeholders.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, QueryError> {
        let (ctx, sql) = (self.ctx.clone(), sql.to_string());
        self.executor
            .run(async move {
                let df = logical(&ctx, &sql).await?;
                let dataset_schema = wire::wire_schema(df.schema().as_arrow());
                let mut params: Vec<(usize, Option<DataType>)> = df
                    .logical_plan()
                    .get_parameter_types()
                    .map_err(plan_error)?
                    .into_iter()
                    .map(|(id, t)| placeholder_index(&id).map(|i| (i, t)))
                    .collect::<Result<_, _>>()?;
                params.sort_by_key(|(i, _)| *i);
                let fields: Vec<Field> = params
                    .into_iter()
                    .map(|(i, t)| {
                        Field::new(format!("${i}"), t.map(|t| wire::wire_type(&t)).unwrap_or(DataType::Null), true)
                    })
                    .collect();
                Ok(Prepared { dataset_schema, parameter_schema: Arc::new(Schema::new(fields)) })
            })
            .await
    }

    /// Plan `sql` with values for `$1`, `$2`, … (on the executor, nothing is run yet).
    pub async fn plan(&self, sql: String, params: Vec<ScalarValue>) -> Result<Planned, QueryError> {
        if let Some(hdfs) = &self.hdfs {
            // `hdfs.logs` gains columns when files with new ones appear.
            hdfs.sync_columns().await;
        }
        let ctx = self.ctx.clone();
        self.executor.run(async move { physical_plan(&ctx, &sql, params).await }).await
    }

    /// Whether statements can run where the client asks, checked before any planning.
    pub fn check_placement(&self, placement: Placement) -> Result<(), QueryError> {
        if placement == Placement::Ballista && self.ballista.is_none() {
            let why = "no Ballista scheduler is configured ([ballista] scheduler)";
            return Err(QueryError::invalid("engine", why, Some(&["auto", "local"])));
        }
        Ok(())
    }

    /// Run a planned statement. The first item is an empty batch with the result schema;
    /// dropping the stream stops the query (and cancels PostgreSQL scans).
    pub fn run(&self, planned: Planned) -> BatchStream {
        let (ctx, pg, hdfs, metrics) = (self.ctx.clone(), self.pg.clone(), self.hdfs.clone(), self.metrics.clone());
        let ballista = self.ballista.clone();
        let flag = cancel::CancelFlag::default();
        let on_drop = cancel::CancelOnDrop(flag.clone());
        let results = self.executor.stream(async move {
            let Planned { plan, task, logical, logical_schema, schema, placement, .. } = planned;
            let plan = match plan {
                Some(plan) => plan,
                None => match answer_from_rollups(&ctx, hdfs.as_ref(), &logical, &logical_schema).await {
                    Some(rolled) => {
                        metrics.executions.with_labels(&[Source::Hdfs.name(), "sql_rollup"]).inc();
                        rolled
                    }
                    None => ctx.state().create_physical_plan(&logical).await.map_err(plan_error)?,
                },
            };
            let results: BatchStream = match push_to_postgres(pg.as_ref(), &logical, schema.clone()).await? {
                Some(pushed) => {
                    metrics.executions.with_labels(&[Source::Postgres.name(), "sql_pushdown"]).inc();
                    pushed
                }
                None => match ballista.as_deref().filter(|c| c.wants(&plan, placement)) {
                    Some(cluster) => match on_ballista(&ctx, cluster, &logical, placement, metrics.clone()).await? {
                        Some(results) => {
                            metrics.executions.with_labels(&[Source::Hdfs.name(), "ballista"]).inc();
                            let schema = schema.clone();
                            Box::pin(results.map(move |b| b.and_then(|b| wire::to_wire(b, &schema))))
                        }
                        None => run_here(plan, task, &flag, schema.clone())?,
                    },
                    None => run_here(plan, task, &flag, schema.clone())?,
                },
            };
            let first = RecordBatch::new_empty(schema);
            Ok(Box::pin(stream::once(async move { Ok(first) }).chain(results)) as BatchStream)
        });
        Box::pin(results.map(move |b| {
            let _cancels_when_dropped = &on_drop;
            b
        }))
    }

    /// Every table of every catalog, with its Arrow schema.
    pub async fn tables(&self) -> Result<Vec<TableInfo>, QueryError> {
        let mut out = Vec::new();
        for catalog_name in self.ctx.catalog_names() {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                for name in schema.table_names() {
                    let Some(t) = schema.table(&name).await.map_err(sql_error)? else { continue };
                    out.push(TableInfo {
                        catalog: catalog_name.clone(),
                        schema: schema_name.clone(),
                        name,
                        table_type: match t.table_type() {
                            TableType::Base => "TABLE",
                            TableType::View => "VIEW",
                            TableType::Temporary => "LOCAL TEMPORARY",
                        },
                        arrow_schema: wire::wire_schema(&t.schema()),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.catalog, &a.schema, &a.name).cmp(&(&b.catalog, &b.schema, &b.name)));
        Ok(out)
    }

    /// `(catalog, schema)` pairs, sorted.
    pub fn schemas(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in self.ctx.catalog_names() {
            if let Some(catalog) = self.ctx.catalog(&c) {
                out.extend(catalog.schema_names().into_iter().map(|s| (c.clone(), s)));
            }
        }
        out.sort();
        out
    }
}

/// Run a plan on the dedicated runtime, every edge guarded by `flag`.
fn run_here(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    flag: &cancel::CancelFlag,
    schema: SchemaRef,
) -> Result<BatchStream, QueryError> {
    let plan = cancel::guard(plan, flag).map_err(sql_error)?;
    let results = datafusion::physical_plan::execute_stream(plan, task).map_err(sql_error)?;
    Ok(Box::pin(results.map(move |b| b.map_err(sql_error).and_then(|b| wire::to_wire(b, &schema)))))
}

/// The statement planned again with the cluster's partitions and run there as a job;
/// `None` when a plan the client did not send there explicitly cannot be sent (it then
/// runs here).
async fn on_ballista(
    ctx: &SessionContext,
    cluster: &Cluster,
    logical: &LogicalPlan,
    placement: Placement,
    metrics: Arc<Metrics>,
) -> Result<Option<BatchStream>, QueryError> {
    let mut state = ctx.state();
    state.config_mut().options_mut().execution.target_partitions = cluster.target_partitions;
    let config = state.config().clone();
    let plan = state.create_physical_plan(logical).await.map_err(plan_error)?;
    match cluster.encode(plan) {
        Ok(encoded) => Ok(Some(cluster.run(encoded, &config, metrics))),
        Err(e) if placement == Placement::Auto => {
            tracing::warn!(error = %e, "running here what Ballista cannot run");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The plan with an archive aggregate answered from the rollups, when it has one they
/// answer exactly and the result keeps the schema already announced.
async fn answer_from_rollups(
    ctx: &SessionContext,
    hdfs: Option<&Archive>,
    plan: &LogicalPlan,
    announced: &SchemaRef,
) -> Option<Arc<dyn ExecutionPlan>> {
    let rewritten = sql_rollup::rewrite(hdfs?, plan).await?;
    match ctx.state().create_physical_plan(&rewritten).await {
        Ok(p) if same_types(&p.schema(), announced) => Some(p),
        Ok(p) => {
            tracing::warn!(got = ?p.schema(), want = ?announced, "rollup answer changed the result schema; running the SQL as planned");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "planning the rollup answer failed; running the SQL as planned");
            None
        }
    }
}

fn same_types(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| x.data_type() == y.data_type())
}

/// The whole query run by PostgreSQL, when it reads only PostgreSQL and is worth it.
async fn push_to_postgres(
    pg: Option<&PgSource>,
    plan: &LogicalPlan,
    want: SchemaRef,
) -> Result<Option<BatchStream>, QueryError> {
    let Some(pg) = pg else { return Ok(None) };
    if !whole_query::candidate(plan) {
        return Ok(None);
    }
    let Some(sql) = whole_query::to_postgres_sql(plan, &pg.tables().logs) else { return Ok(None) };
    whole_query::run(pg, sql, want).await
}

fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Parse, check against [`limits`], plan. Runs on the executor, whose threads have stacks
/// deep enough for anything the limits let through.
async fn logical(ctx: &SessionContext, sql: &str) -> Result<DataFrame, QueryError> {
    limits::check_text(sql)?;
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).map_err(plan_error)?;
    limits::check_statement(&statement)?;
    let plan = state.statement_to_plan(statement).await.map_err(plan_error)?;
    read_only().verify_plan(&plan).map_err(plan_error)?;
    ctx.execute_logical_plan(plan).await.map_err(plan_error)
}

/// The sources a plan scans, in a fixed order (postgres, hdfs).
fn sources_of(plan: &LogicalPlan) -> Result<Vec<Source>, QueryError> {
    let mut seen = (false, false);
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            match scan.table_name.schema() {
                Some("postgres") => seen.0 = true,
                Some("hdfs") => seen.1 = true,
                _ => {}
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(sql_error)?;
    Ok([(seen.0, Source::Postgres), (seen.1, Source::Hdfs)]
        .into_iter()
        .filter(|(s, _)| *s)
        .map(|(_, src)| src)
        .collect())
}

async fn physical_plan(ctx: &SessionContext, sql: &str, params: Vec<ScalarValue>) -> Result<Planned, QueryError> {
    let mut df = logical(ctx, sql).await?;
    let expected = df.logical_plan().get_parameter_types().map_err(plan_error)?;
    if !expected.is_empty() || !params.is_empty() {
        let mut wanted: Vec<(usize, Option<DataType>)> =
            expected.into_iter().map(|(id, t)| placeholder_index(&id).map(|i| (i, t))).collect::<Result<_, _>>()?;
        wanted.sort_by_key(|(i, _)| *i);
        if wanted.len() != params.len() {
            return Err(QueryError::Sql(format!(
                "the statement has {} parameter(s) ($1…) but {} value(s) were bound",
                wanted.len(),
                params.len()
            )));
        }
        let values = params
            .into_iter()
            .zip(wanted)
            .map(|(v, (i, t))| match t {
                Some(t) if v.data_type() != t => v
                    .cast_to(&t)
                    .map_err(|e| QueryError::Sql(format!("parameter ${i}: cannot use {} as {t}: {e}", v.data_type()))),
                _ => Ok(v),
            })
            .collect::<Result<Vec<_>, _>>()?;
        df = df.with_param_values(values).map_err(plan_error)?;
    }
    let sources = sources_of(df.logical_plan())?;
    let logical = df.logical_plan().clone();
    let task = Arc::new(df.task_ctx());
    let logical_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    if sql_rollup::candidate(&logical).is_some() {
        let schema = wire::wire_schema(&logical_schema);
        return Ok(Planned { plan: None, logical_schema, task, logical, sources, schema, placement: Placement::Auto });
    }
    let plan = df.create_physical_plan().await.map_err(plan_error)?;
    let schema = wire::wire_schema(&plan.schema());
    Ok(Planned { plan: Some(plan), logical_schema, task, logical, sources, schema, placement: Placement::Auto })
}

/// `$3` → 3.
fn placeholder_index(id: &str) -> Result<usize, QueryError> {
    id.strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| QueryError::Sql(format!("unsupported placeholder `{id}`: use $1, $2, …")))
}

/// Engine errors met while running → what clients are told. A [`QueryError`] raised inside
/// a table provider (PostgreSQL overloaded or down, …) keeps its meaning; a store that does
/// not answer is a 503; what the user's SQL and values cause — even at run time, even
/// wrapped by the Parquet reader (`1/0`, a failed cast, a bad regex, a scalar subquery
/// with two rows) — is a 400; anything else is fletch's or a store's fault.
pub fn sql_error(e: DataFusionError) -> QueryError {
    classify(e, false)
}

/// [`sql_error`] for planning: a statement that cannot be planned is the statement's
/// fault, whatever DataFusion calls the error (type coercion reports `Internal`).
pub fn plan_error(e: DataFusionError) -> QueryError {
    classify(e, true)
}

fn classify(e: DataFusionError, planning: bool) -> QueryError {
    let text = e.strip_backtrace();
    if let Some(q) = causes(&e).find_map(|err| err.downcast_ref::<QueryError>()) {
        return q.clone();
    }
    let user_values = causes(&e).any(|err| {
        err.is::<regex::Error>()
            || matches!(
                err.downcast_ref::<arrow::error::ArrowError>(),
                Some(
                    arrow::error::ArrowError::CastError(_)
                        | arrow::error::ArrowError::DivideByZero
                        | arrow::error::ArrowError::ArithmeticOverflow(_)
                        | arrow::error::ArrowError::InvalidArgumentError(_)
                        | arrow::error::ArrowError::ComputeError(_)
                        | arrow::error::ArrowError::ParseError(_)
                )
            )
    });
    if crate::archive::store::store_not_answering(&e) {
        return QueryError::unavailable("hdfs", text, RetryAfter::Outage).with_cause(Arc::new(e));
    }
    if user_values {
        return QueryError::Sql(text);
    }
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => QueryError::overloaded("sql", text, RetryAfter::QueueFull),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Diagnostic(..)
        | DataFusionError::Collection(_)
        | DataFusionError::Execution(_) => QueryError::Sql(text),
        _ if planning => QueryError::Sql(text),
        _ => QueryError::internal(text).with_cause(Arc::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_their_class() {
        let q = QueryError::overloaded("postgres", "busy", RetryAfter::QueueFull);
        let wrapped = DataFusionError::Context("scan".into(), Box::new(DataFusionError::External(Box::new(q))));
        assert!(matches!(sql_error(wrapped), QueryError::Overloaded { source_name: "postgres", .. }));
        assert!(matches!(sql_error(DataFusionError::Plan("no such table".into())), QueryError::Sql(_)));
    }
}
