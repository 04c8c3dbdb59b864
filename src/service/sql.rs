//! SQL statements through the door: planned (within the time budget), admitted with an
//! export-lane permit per source they read, counted in the same metrics as every other
//! query, and streamed under [`super::deadline`].

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use futures::{stream, StreamExt};

use super::admission::{acquire, Lane};
use super::{deadline, Service};
use crate::error::QueryError;
use crate::sql::ballista::Placement;
use crate::sql::Prepared;
use crate::stream::BatchStream;

impl Service {
    /// Run a statement where the client asked (see [`crate::sql::ballista`]). The first item
    /// is an empty batch with the result schema; dropping the stream stops the query at its
    /// source.
    pub async fn sql(
        &self,
        sql: String,
        params: Vec<ScalarValue>,
        placement: Placement,
    ) -> Result<BatchStream, QueryError> {
        let engine = self.engine()?;
        engine.check_placement(placement)?;
        let budget = self.0.query_timeout;
        let mut planned = deadline::within(budget, &self.0.metrics, engine.plan(sql, params)).await?;
        planned.placement = placement;
        // Always in the same order (postgres, hdfs), so two statements cannot deadlock.
        let mut permits = Vec::with_capacity(planned.sources.len());
        for source in &planned.sources {
            permits.push(acquire(&self.0.admission, *source, Lane::Export).await?);
            self.0.metrics.executions.with_labels(&[source.name(), "sql"]).inc();
        }
        let results = engine.run(planned);
        Ok(deadline::bounded(results, budget, permits, self.0.metrics.clone()))
    }

    /// The result schema of a statement (planned, nothing run).
    pub async fn sql_schema(&self, sql: &str, params: Vec<ScalarValue>) -> Result<SchemaRef, QueryError> {
        deadline::within(self.0.query_timeout, &self.0.metrics, self.engine()?.schema(sql, params)).await
    }

    /// Result and parameter schemas of a statement with `$n` placeholders.
    pub async fn sql_prepare(&self, sql: &str) -> Result<Prepared, QueryError> {
        deadline::within(self.0.query_timeout, &self.0.metrics, self.engine()?.prepare(sql)).await
    }
}

/// Hold back the response until the first batch with rows, the end, or an error: what can
/// go wrong early (`1/0`, a bad cast, an overloaded source, the time budget) is then a
/// status code rather than a broken stream after a success status. Returns the schema
/// batch and the rest (the rows already read first).
pub async fn first_rows(mut s: BatchStream) -> Result<(RecordBatch, BatchStream), QueryError> {
    let mut schema: Option<RecordBatch> = None;
    loop {
        match s.next().await {
            Some(Ok(b)) if b.num_rows() == 0 => {
                schema.get_or_insert(b);
            }
            Some(Ok(b)) => {
                let first = schema.unwrap_or_else(|| b.slice(0, 0));
                return Ok((first, Box::pin(stream::once(async move { Ok(b) }).chain(s))));
            }
            Some(Err(e)) => return Err(e),
            None => {
                let first = schema.ok_or_else(|| QueryError::internal("a result stream ended without its schema"))?;
                return Ok((first, Box::pin(stream::empty())));
            }
        }
    }
}
