//! Result types every client can read: view and large string/binary types (which
//! DataFusion may produce internally) become plain `Utf8` / `Binary`, dictionaries are
//! unpacked. The Flight SQL JDBC driver and older pyarrow builds cannot read view types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::QueryError;

pub fn wire_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => wire_type(v),
        other => other.clone(),
    }
}

pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type()))).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Cast `batch` to `schema` (from [`wire_schema`] of the batch's schema).
pub fn to_wire(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type())
                }
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringViewArray};

    #[test]
    fn views_become_plain_strings() {
        let s = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        let b = RecordBatch::try_new(s.clone(), vec![Arc::new(StringViewArray::from(vec!["a", "b"]))]).unwrap();
        let w = wire_schema(&s);
        let out = to_wire(b, &w).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Utf8);
        assert_eq!(out.column(0).len(), 2);
    }
}
