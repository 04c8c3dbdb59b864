//! PostgreSQL rows → Arrow record batches, typed by the prepared statement's columns.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::{Column, Row};

use crate::error::QueryError;

/// Arrow type for a PostgreSQL column type, or `None` when fletch cannot carry it
/// (the caller reports which column to cast).
pub fn arrow_type(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 | Type::FLOAT8 => DataType::Float64,
        Type::BOOL => DataType::Boolean,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON | Type::JSONB => {
            DataType::Utf8
        }
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::DATE => DataType::Date32,
        _ => return None,
    })
}

pub fn schema_for(columns: &[Column]) -> Result<SchemaRef, QueryError> {
    let fields = columns
        .iter()
        .map(|c| {
            arrow_type(c.type_()).map(|dt| Field::new(c.name(), dt, true)).ok_or_else(|| {
                QueryError::Sql(format!(
                    "column `{}` has PostgreSQL type {} which fletch cannot stream; cast it (e.g. `{}::text`)",
                    c.name(),
                    c.type_(),
                    c.name()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

enum Col {
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Ts(TimestampMicrosecondBuilder),
    TsTz(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

/// Accumulates rows into one batch at a time.
pub struct BatchBuilder {
    schema: SchemaRef,
    types: Vec<Type>,
    cols: Vec<Col>,
    rows: usize,
    capacity: usize,
}

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl BatchBuilder {
    pub fn new(schema: SchemaRef, columns: &[Column], capacity: usize) -> Self {
        let types: Vec<Type> = columns.iter().map(|c| c.type_().clone()).collect();
        let mut me = Self { schema, types, cols: Vec::new(), rows: 0, capacity };
        me.cols = me.fresh_cols();
        me
    }

    fn fresh_cols(&self) -> Vec<Col> {
        let n = self.capacity;
        self.types
            .iter()
            .map(|t| match *t {
                Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Col::I64(Int64Builder::with_capacity(n)),
                Type::FLOAT4 | Type::FLOAT8 => Col::F64(Float64Builder::with_capacity(n)),
                Type::BOOL => Col::Bool(BooleanBuilder::with_capacity(n)),
                Type::TIMESTAMP => Col::Ts(TimestampMicrosecondBuilder::with_capacity(n)),
                Type::TIMESTAMPTZ => Col::TsTz(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC")),
                Type::DATE => Col::Date(Date32Builder::with_capacity(n)),
                _ => Col::Str(StringBuilder::with_capacity(n, n * 32)),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(&mut self, row: &Row) -> Result<(), QueryError> {
        for (i, col) in self.cols.iter_mut().enumerate() {
            let ty = &self.types[i];
            let bad = |e: tokio_postgres::Error| QueryError::internal(format!("decoding column {i} ({ty}): {e}"));
            match col {
                Col::I64(b) => match *ty {
                    Type::INT2 => b.append_option(row.try_get::<_, Option<i16>>(i).map_err(bad)?.map(i64::from)),
                    Type::INT4 => b.append_option(row.try_get::<_, Option<i32>>(i).map_err(bad)?.map(i64::from)),
                    Type::OID => b.append_option(row.try_get::<_, Option<u32>>(i).map_err(bad)?.map(i64::from)),
                    _ => b.append_option(row.try_get::<_, Option<i64>>(i).map_err(bad)?),
                },
                Col::F64(b) => match *ty {
                    Type::FLOAT4 => b.append_option(row.try_get::<_, Option<f32>>(i).map_err(bad)?.map(f64::from)),
                    _ => b.append_option(row.try_get::<_, Option<f64>>(i).map_err(bad)?),
                },
                Col::Bool(b) => b.append_option(row.try_get::<_, Option<bool>>(i).map_err(bad)?),
                Col::Str(b) => match *ty {
                    Type::JSON | Type::JSONB => {
                        let v = row.try_get::<_, Option<serde_json::Value>>(i).map_err(bad)?;
                        b.append_option(v.map(|v| v.to_string()))
                    }
                    _ => b.append_option(row.try_get::<_, Option<&str>>(i).map_err(bad)?),
                },
                Col::Ts(b) => b.append_option(
                    row.try_get::<_, Option<NaiveDateTime>>(i).map_err(bad)?.map(|t| t.and_utc().timestamp_micros()),
                ),
                Col::TsTz(b) => b.append_option(
                    row.try_get::<_, Option<DateTime<Utc>>>(i).map_err(bad)?.map(|t| t.timestamp_micros()),
                ),
                Col::Date(b) => b.append_option(
                    row.try_get::<_, Option<NaiveDate>>(i)
                        .map_err(bad)?
                        .map(|d| chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_FROM_CE),
                ),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Take the rows gathered so far as a batch (possibly empty) and start over.
    pub fn finish(&mut self) -> Result<RecordBatch, QueryError> {
        let fresh = self.fresh_cols();
        let cols = std::mem::replace(&mut self.cols, fresh);
        self.rows = 0;
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| -> ArrayRef {
                match c {
                    Col::I64(mut b) => Arc::new(b.finish()),
                    Col::F64(mut b) => Arc::new(b.finish()),
                    Col::Bool(mut b) => Arc::new(b.finish()),
                    Col::Str(mut b) => Arc::new(b.finish()),
                    Col::Ts(mut b) | Col::TsTz(mut b) => Arc::new(b.finish()),
                    Col::Date(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}
