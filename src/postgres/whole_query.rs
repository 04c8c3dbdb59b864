//! Whole queries over `postgres.*` tables, run by PostgreSQL.
//!
//! The `postgres.logs` provider receives filters, projections and limits, but an aggregate,
//! sort, join or DISTINCT above it would still pull every matching row out of PostgreSQL to
//! produce a few result rows (1.5 s for a filtered GROUP BY at 10 M rows). When a query
//! reads PostgreSQL tables only and does more than scan them, its logical plan is turned
//! back into SQL (DataFusion's unparser, PostgreSQL dialect), table names are mapped to
//! PostgreSQL's own, and PostgreSQL runs the whole query. Its result is renamed and cast to
//! the schema DataFusion planned, so clients see the same columns either way.
//!
//! This is an optimisation, never a different answer: when the plan cannot be written as
//! SQL, PostgreSQL rejects it (a function it lacks, `LIKE` on `jsonb`), or a result type
//! does not map (`numeric` from `sum`/`avg`), the query runs in DataFusion as before.

use std::ops::ControlFlow;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, visit_relations_mut, Expr as SqlExpr, Ident, ObjectNamePart,
};
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion::sql::unparser::Unparser;
use futures::{stream, StreamExt};

use crate::error::QueryError;
use crate::postgres::tables::TableName;
use crate::postgres::PgSource;
use crate::stream::BatchStream;

/// The fletch schema whose tables live in PostgreSQL (under their own names).
const PG_SCHEMA: &str = "postgres";

/// Worth sending whole: reads only PostgreSQL tables, and computes more than a scan does.
pub fn candidate(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return false;
    }
    let (mut scans, mut only_pg, mut heavy) = (0, true, false);
    let _ = plan.apply_with_subqueries(|p| {
        match p {
            LogicalPlan::TableScan(s) => {
                scans += 1;
                only_pg &= s.table_name.schema() == Some(PG_SCHEMA);
            }
            LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_) => heavy = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans > 0 && only_pg && heavy
}

/// The plan as PostgreSQL SQL with fletch's `[fletch.]postgres.` prefixes removed and
/// `logs` named as in PostgreSQL (`logs_table`), or `None` when the unparser cannot
/// express it.
pub fn to_postgres_sql(plan: &LogicalPlan, logs_table: &TableName) -> Option<String> {
    let dialect = PostgreSqlDialect {};
    let mut statement = Unparser::new(&dialect).plan_to_sql(plan).ok()?;
    let renamed: Vec<Ident> = logs_table.parts().iter().map(|p| Ident::with_quote('"', p)).collect();
    let _ = visit_relations_mut(&mut statement, |name| {
        strip_prefix_parts(&mut name.0, |p| matches!(p, ObjectNamePart::Identifier(i) if i.value == PG_SCHEMA), 1);
        if matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)] if i.value == "logs") {
            name.0 = renamed.iter().cloned().map(ObjectNamePart::Identifier).collect();
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(&mut statement, |e| {
        if let SqlExpr::CompoundIdentifier(parts) = e {
            // fletch.postgres.logs.level / postgres.logs.level → logs.level
            strip_prefix_parts(parts, |i| i.value == PG_SCHEMA, 2);
            // logs.level → "schema"."app_logs".level when the table is named so.
            if parts.len() == 2 && parts[0].value == "logs" {
                parts.splice(..1, renamed.iter().cloned());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(statement.to_string())
}

/// Drop everything up to and including the `postgres` part, if at least `keep` parts
/// follow it.
fn strip_prefix_parts<T>(parts: &mut Vec<T>, is_schema: impl Fn(&T) -> bool, keep: usize) {
    if let Some(i) = parts.iter().position(is_schema) {
        if parts.len() - i > keep {
            parts.drain(..=i);
        }
    }
}

/// Run `sql` on PostgreSQL and shape the result as `want`; `None` (after logging why) when
/// PostgreSQL rejects the text or its columns do not fit, so the caller can fall back.
/// PostgreSQL being down, saturated or cancelling the query is the answer, not a reason
/// to run the query a second time in DataFusion.
pub async fn run(pg: &PgSource, sql: String, want: SchemaRef) -> Result<Option<BatchStream>, QueryError> {
    let fallback = |e: QueryError, what: &str| -> Result<Option<BatchStream>, QueryError> {
        match e {
            QueryError::Sql(_) | QueryError::Store { .. } => {
                tracing::debug!(error = %e, %sql, "{what}; DataFusion runs the query");
                Ok(None)
            }
            other => Err(other),
        }
    };
    let mut rows = match pg.query(sql.clone(), Vec::new()).await {
        Ok(s) => s,
        Err(e) => return fallback(e, "postgres pushdown not possible"),
    };
    let first = match rows.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return fallback(e, "postgres rejected the pushed-down query"),
        None => return Ok(None),
    };
    let have = first.schema();
    let fits = have.fields().len() == want.fields().len()
        && have
            .fields()
            .iter()
            .zip(want.fields().iter())
            .all(|(h, w)| arrow::compute::can_cast_types(h.data_type(), w.data_type()));
    if !fits {
        tracing::debug!(%sql, have = ?have, "postgres result does not fit the planned schema; DataFusion runs the query");
        return Ok(None);
    }
    tracing::debug!(%sql, "query pushed down to postgres");
    let shape = move |b: RecordBatch| -> Result<RecordBatch, QueryError> {
        let columns = b
            .columns()
            .iter()
            .zip(want.fields().iter())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
        Ok(RecordBatch::try_new_with_options(want.clone(), columns, &options)?)
    };
    let first = shape(first);
    let rest = rows.map(move |b| b.and_then(&shape));
    Ok(Some(Box::pin(stream::once(async move { first }).chain(rest))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_only_when_a_name_remains() {
        let mut v = vec!["fletch", "postgres", "logs", "level"];
        strip_prefix_parts(&mut v, |p| *p == "postgres", 2);
        assert_eq!(v, ["logs", "level"]);
        // A column literally called `postgres` is left alone.
        let mut v = vec!["logs", "postgres"];
        strip_prefix_parts(&mut v, |p| *p == "postgres", 2);
        assert_eq!(v, ["logs", "postgres"]);
        let mut v = vec!["postgres", "logs"];
        strip_prefix_parts(&mut v, |p| *p == "postgres", 1);
        assert_eq!(v, ["logs"]);
    }
}
