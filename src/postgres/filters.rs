//! DataFusion filter expressions → PostgreSQL conditions with bind parameters.
//!
//! Only shapes whose PostgreSQL meaning is exactly DataFusion's are translated:
//! `column <op> literal` (either side) with `=`, `<>`, `<`, `<=`, `>`, `>=`, `IS [NOT] NULL`,
//! and `AND` / `OR` of translatable parts. Column names come from the table's schema (never
//! from the query text) and values always travel as bind parameters. Ordering comparisons
//! on text use `COLLATE "C"` so PostgreSQL orders strings bytewise, as Arrow does.

use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use crate::postgres::params::PgParam;

/// How one column of the provider's schema is read in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgColumn {
    /// The Arrow field name (also the SQL output alias).
    pub name: String,
    /// The SQL expression producing it, e.g. `"timestamp"` or `metadata::text`.
    pub sql: String,
    pub data_type: DataType,
}

impl PgColumn {
    pub fn new(name: &str, sql: Option<&str>, data_type: DataType) -> Self {
        let sql = sql.map(str::to_string).unwrap_or_else(|| quote_ident(name));
        Self { name: name.to_string(), sql, data_type }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether (and how exactly) the provider can apply `expr`.
pub fn classify(expr: &Expr, columns: &[PgColumn]) -> TableProviderFilterPushDown {
    if to_sql(expr, columns, &mut Vec::new()).is_some() {
        return TableProviderFilterPushDown::Exact;
    }
    let mut parts = Vec::new();
    split_and(expr, &mut parts);
    if parts.len() > 1 && parts.iter().any(|p| to_sql(p, columns, &mut Vec::new()).is_some()) {
        TableProviderFilterPushDown::Inexact
    } else {
        TableProviderFilterPushDown::Unsupported
    }
}

/// Conditions for a scan: whole filters when exact, else their translatable conjuncts
/// (DataFusion re-applies the filter above the scan in that case).
pub fn conditions(filters: &[Expr], columns: &[PgColumn], params: &mut Vec<PgParam>) -> Vec<String> {
    let mut out = Vec::new();
    for f in filters {
        if let Some(sql) = to_sql(f, columns, params) {
            out.push(sql);
            continue;
        }
        let mut parts = Vec::new();
        split_and(f, &mut parts);
        for p in parts {
            if let Some(sql) = to_sql(p, columns, params) {
                out.push(sql);
            }
        }
    }
    out
}

fn split_and<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// The condition for `expr`, or `None` (with `params` untouched) when it cannot be exact.
pub fn to_sql(expr: &Expr, columns: &[PgColumn], params: &mut Vec<PgParam>) -> Option<String> {
    let mark = params.len();
    let out = translate(expr, columns, params);
    if out.is_none() {
        params.truncate(mark);
    }
    out
}

fn translate(expr: &Expr, columns: &[PgColumn], params: &mut Vec<PgParam>) -> Option<String> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let l = translate(left, columns, params)?;
            let r = translate(right, columns, params)?;
            let word = if *op == Operator::And { "AND" } else { "OR" };
            Some(format!("({l} {word} {r})"))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (column(&c.name, columns)?, v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (column(&c.name, columns)?, v, op.swap()?),
                _ => return None,
            };
            let sym = match op {
                Operator::Eq => "=",
                Operator::NotEq => "<>",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                Operator::GtEq => ">=",
                _ => return None,
            };
            let (param, cast) = bind_value(&col.data_type, value)?;
            params.push(param);
            let placeholder = format!("${}{cast}", params.len());
            let ordering = !matches!(op, Operator::Eq | Operator::NotEq);
            let collate = if ordering && col.data_type == DataType::Utf8 { " COLLATE \"C\"" } else { "" };
            Some(format!("{}{collate} {sym} {placeholder}", col.sql))
        }
        Expr::IsNull(inner) => match inner.as_ref() {
            Expr::Column(c) => Some(format!("{} IS NULL", column(&c.name, columns)?.sql)),
            _ => None,
        },
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Column(c) => Some(format!("{} IS NOT NULL", column(&c.name, columns)?.sql)),
            _ => None,
        },
        _ => None,
    }
}

fn column<'a>(name: &str, columns: &'a [PgColumn]) -> Option<&'a PgColumn> {
    columns.iter().find(|c| c.name == name)
}

/// A literal as a bind parameter of the column's type (plus a cast suffix for the
/// placeholder), or `None` if the types differ or the value is NULL.
fn bind_value(column_type: &DataType, v: &ScalarValue) -> Option<(PgParam, &'static str)> {
    match (column_type, v) {
        (DataType::Int64, ScalarValue::Int64(Some(n))) => Some((PgParam::I64(*n), "")),
        (DataType::Float64, ScalarValue::Float64(Some(x))) => Some((PgParam::F64(*x), "")),
        (
            DataType::Utf8,
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
        ) => Some((PgParam::Text(s.clone()), "")),
        (DataType::Timestamp(TimeUnit::Microsecond, None), ScalarValue::TimestampMicrosecond(Some(us), None)) => {
            let t = chrono::DateTime::from_timestamp_micros(*us)?.naive_utc();
            // Sent as text and cast in SQL: exact to the microsecond, no client-side tz logic.
            Some((PgParam::Text(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()), "::text::timestamp"))
        }
        _ => None,
    }
}

/// The projected columns' schema (all nullable, as PostgreSQL does not promise otherwise).
pub fn projected_schema(columns: &[PgColumn], projection: Option<&Vec<usize>>) -> Schema {
    let picked: Vec<&PgColumn> = match projection {
        Some(p) => p.iter().filter_map(|i| columns.get(*i)).collect(),
        None => columns.iter().collect(),
    };
    Schema::new(
        picked.iter().map(|c| arrow::datatypes::Field::new(&c.name, c.data_type.clone(), true)).collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn cols() -> Vec<PgColumn> {
        vec![
            PgColumn::new("id", None, DataType::Int64),
            PgColumn::new("timestamp", None, DataType::Float64),
            PgColumn::new("level", None, DataType::Utf8),
            PgColumn::new("created_at", None, DataType::Timestamp(TimeUnit::Microsecond, None)),
        ]
    }

    #[test]
    fn simple_comparisons_become_bound_conditions() {
        let mut p = Vec::new();
        let e = col("level").eq(lit("ERROR")).and(lit(5i64).lt(col("id")));
        assert_eq!(to_sql(&e, &cols(), &mut p).unwrap(), r#"("level" = $1 AND "id" > $2)"#);
        assert_eq!(p, vec![PgParam::Text("ERROR".into()), PgParam::I64(5)]);
        assert!(matches!(classify(&e, &cols()), TableProviderFilterPushDown::Exact));
    }

    #[test]
    fn text_ordering_is_bytewise_and_injection_stays_a_value() {
        let mut p = Vec::new();
        let e = col("level").gt_eq(lit("'; DROP TABLE logs; --"));
        assert_eq!(to_sql(&e, &cols(), &mut p).unwrap(), r#""level" COLLATE "C" >= $1"#);
        assert_eq!(p, vec![PgParam::Text("'; DROP TABLE logs; --".into())]);
    }

    #[test]
    fn mismatched_types_and_functions_are_not_pushed() {
        let mut p = Vec::new();
        // Float literal against an Int64 column: DataFusion would compare as floats.
        assert!(to_sql(&col("id").eq(lit(1.5f64)), &cols(), &mut p).is_none());
        let partly = col("id").eq(lit(1i64)).and(col("level").like(lit("E%")));
        assert!(to_sql(&partly, &cols(), &mut p).is_none());
        assert!(p.is_empty(), "params must be rolled back");
        assert!(matches!(classify(&partly, &cols()), TableProviderFilterPushDown::Inexact));
        assert_eq!(conditions(&[partly], &cols(), &mut p), vec![r#""id" = $1"#.to_string()]);
        assert!(matches!(classify(&col("nope").eq(lit(1i64)), &cols()), TableProviderFilterPushDown::Unsupported));
    }

    #[test]
    fn timestamps_without_zone_are_cast_in_sql() {
        let mut p = Vec::new();
        let e = col("created_at").lt(lit(ScalarValue::TimestampMicrosecond(Some(1_735_689_600_000_001), None)));
        assert_eq!(to_sql(&e, &cols(), &mut p).unwrap(), r#""created_at" < $1::text::timestamp"#);
        assert_eq!(p, vec![PgParam::Text("2025-01-01 00:00:00.000001".into())]);
    }
}
