//! `postgres.logs` as a DataFusion table: scans run as one parameterized PostgreSQL query on
//! fletch's connection actors, with the projection, the translatable filters (see
//! [`super::pushdown`]) and the limit pushed into it. Batches stream through as they arrive;
//! dropping the stream drops the [`PgSource`] stream, which cancels the query in PostgreSQL.
//! A scan is a [`PgScanExec`], which a Ballista executor can rebuild from its SQL.

use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{stream, StreamExt};

use super::filters::{classify, conditions, projected_schema, PgColumn};
use super::tables::TableName;
use crate::error::QueryError;
use crate::postgres::params::PgParam;
use crate::postgres::PgSource;

/// The `logs` table of the postgres source.
#[derive(Debug)]
pub struct PgTable {
    source: PgSourceHandle,
    table: TableName,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
}

/// `PgSource` is not `Debug`; DataFusion wants its plan nodes to be.
#[derive(Clone)]
struct PgSourceHandle(PgSource);

impl std::fmt::Debug for PgSourceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSource")
    }
}

impl PgTable {
    /// `logs` with the column layout of [`crate::schema::logs_schema`].
    pub fn logs(source: PgSource) -> Self {
        let columns = logs_columns();
        let schema = Arc::new(projected_schema(&columns, None));
        let table = source.tables().logs.clone();
        Self { source: PgSourceHandle(source), table, columns, schema }
    }

    /// The SQL and parameters of one scan (public for tests and EXPLAIN-style logging).
    pub fn scan_sql(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> (String, Vec<PgParam>) {
        let picked: Vec<&PgColumn> = match projection {
            Some(p) => p.iter().filter_map(|i| self.columns.get(*i)).collect(),
            None => self.columns.iter().collect(),
        };
        let select = if picked.is_empty() {
            // Nothing needed but the row count (e.g. `count(*)`): one cheap column.
            "1::int8 AS one".to_string()
        } else {
            picked
                .iter()
                .map(|c| {
                    if c.sql == super::filters::quote_ident(&c.name) {
                        c.sql.clone()
                    } else {
                        format!("{} AS {}", c.sql, super::filters::quote_ident(&c.name))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut params = Vec::new();
        let mut sql = format!("SELECT {select} FROM {}", self.table.sql());
        let conds = conditions(filters, &self.columns, &mut params);
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if let Some(n) = limit {
            params.push(PgParam::I64(n as i64));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        (sql, params)
    }
}

/// The columns of `logs` as PostgreSQL stores them and as the table shows them.
fn logs_columns() -> Vec<PgColumn> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    vec![
        PgColumn::new("id", None, DataType::Int64),
        PgColumn::new("timestamp", None, DataType::Float64),
        PgColumn::new("level", None, DataType::Utf8),
        PgColumn::new("service", None, DataType::Utf8),
        PgColumn::new("host", None, DataType::Utf8),
        PgColumn::new("message", None, DataType::Utf8),
        PgColumn::new("metadata", Some("metadata::text"), DataType::Utf8),
        PgColumn::new("created_at", None, ts),
    ]
}

#[async_trait]
impl TableProvider for PgTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|f| classify(f, &self.columns)).collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (sql, params) = self.scan_sql(projection, filters, limit);
        tracing::debug!(%sql, params = params.len(), "postgres scan");
        Ok(Arc::new(PgScanExec::new(Some(self.source.0.clone()), sql, params, projection.cloned())))
    }
}

/// One scan's query, run when DataFusion pulls its one partition. Plain data (the SQL, its
/// parameters and the projection) plus the source to run it on, so a Ballista executor can
/// rebuild it with its own connections (see [`crate::sql::ballista::codec`]).
#[derive(Debug)]
pub struct PgScanExec {
    /// `None` where the plan is only passed on (a Ballista scheduler has no PostgreSQL).
    source: Option<PgSourceHandle>,
    pub sql: String,
    pub params: Vec<PgParam>,
    pub projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl PgScanExec {
    /// The scan of `projection` of `logs` that `sql` runs, on `source` when there is one.
    pub fn new(source: Option<PgSource>, sql: String, params: Vec<PgParam>, projection: Option<Vec<usize>>) -> Self {
        let schema: SchemaRef = Arc::new(projected_schema(&logs_columns(), projection.as_ref()));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { source: source.map(PgSourceHandle), sql, params, projection, schema, properties }
    }
}

impl DisplayAs for PgScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PgScanExec: {}", self.sql)
    }
}

#[allow(deprecated)] // `with_new_children` is still a required method in DataFusion 55
impl ExecutionPlan for PgScanExec {
    fn name(&self) -> &str {
        "PgScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, _partition: usize, _ctx: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let Some(source) = &self.source else {
            return Err(DataFusionError::External(Box::new(QueryError::unavailable(
                "postgres",
                "this process has no PostgreSQL configured ([postgres] url)",
                crate::error::RetryAfter::Outage,
            ))));
        };
        let (source, sql, params) = (source.0.clone(), self.sql.clone(), self.params.clone());
        let schema = self.schema.clone();
        let batches = stream::once(async move { source.query(sql, params).await })
            .flat_map(|opened| match opened {
                Ok(s) => s,
                Err(e) => stream::iter(vec![Err(e)]).boxed(),
            })
            .map(move |b| b.and_then(|b| conform(&schema, b)).map_err(|e| DataFusionError::External(Box::new(e))));
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// Re-label a PostgreSQL batch with the provider's schema (same types by construction; a
/// table whose column types differ from `logs` is reported, not silently misread).
fn conform(schema: &SchemaRef, b: RecordBatch) -> Result<RecordBatch, QueryError> {
    if schema.fields().is_empty() {
        let opts = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
        return Ok(RecordBatch::try_new_with_options(schema.clone(), vec![], &opts)?);
    }
    for (want, got) in schema.fields().iter().zip(b.schema().fields()) {
        if want.data_type() != got.data_type() {
            let message = format!(
                "column `{}` has type {} in PostgreSQL, expected {}",
                want.name(),
                got.data_type(),
                want.data_type()
            );
            return Err(QueryError::store("postgres", message));
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)
}
