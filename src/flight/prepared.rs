//! Prepared statements whose handle carries the statement: the SQL, and once parameters
//! are bound, their values (Arrow IPC of the one parameter row). Any fletch process with
//! the same configuration can execute a handle another one made, so replicas behind a
//! load balancer need not share anything.
//!
//! Binding (`DoPut`) answers with a new handle that includes the values, as the Flight SQL
//! protocol allows; clients that keep using the old handle still find their values on the
//! process that bound them (a bounded local map), which is the only state kept.
//!
//! Handle layout: `fletch-ps1` · SQL length (u32, big endian) · SQL (UTF-8) · parameter
//! row as an Arrow IPC stream (absent when nothing is bound).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::common::ScalarValue;

use crate::error::QueryError;
use crate::sql::limits::MAX_SQL_BYTES;

const MAGIC: &[u8] = b"fletch-ps1";
/// Handles whose values were bound here but that a client keeps using unchanged.
pub const MAX_LOCAL_BINDINGS: usize = 10_000;

struct Bound {
    params: Vec<ScalarValue>,
    used: Instant,
}

#[derive(Default)]
pub struct PreparedStatements {
    local: Mutex<HashMap<Bytes, Bound>>,
}

impl PreparedStatements {
    /// The handle of `sql` with nothing bound.
    pub fn create(&self, sql: &str) -> Result<Bytes, QueryError> {
        encode(sql, &[])
    }

    /// The statement's SQL and bound parameters.
    pub fn get(&self, handle: &[u8]) -> Result<(String, Vec<ScalarValue>), QueryError> {
        let (sql, params) = decode(handle)?;
        if !params.is_empty() {
            return Ok((sql, params));
        }
        let mut local = self.local.lock().expect("prepared statements lock");
        match local.get_mut(handle) {
            Some(b) => {
                b.used = Instant::now();
                Ok((sql, b.params.clone()))
            }
            None => Ok((sql, params)),
        }
    }

    /// Bind one row of parameter values (`$1` = column 0, …); returns the handle that
    /// carries them.
    pub fn bind(&self, handle: &[u8], batches: &[RecordBatch]) -> Result<Bytes, QueryError> {
        let (sql, _) = decode(handle)?;
        let params = parameter_row(batches)?;
        let bound = encode(&sql, &params)?;
        let mut local = self.local.lock().expect("prepared statements lock");
        if local.len() >= MAX_LOCAL_BINDINGS {
            if let Some(oldest) = local.iter().min_by_key(|(_, b)| b.used).map(|(k, _)| k.clone()) {
                local.remove(&oldest);
            }
        }
        local.insert(Bytes::copy_from_slice(handle), Bound { params, used: Instant::now() });
        Ok(bound)
    }

    /// Forget what was bound here; the handle itself cannot be revoked (it is the query).
    pub fn close(&self, handle: &[u8]) -> Result<(), QueryError> {
        decode(handle)?;
        self.local.lock().expect("prepared statements lock").remove(handle);
        Ok(())
    }
}

fn parameter_row(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>, QueryError> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    match batches.iter().find(|b| b.num_rows() > 0) {
        None => Ok(Vec::new()),
        Some(_) if rows > 1 => Err(QueryError::invalid(
            "parameters",
            format!("{rows} parameter rows were bound; a query takes exactly one"),
            None,
        )),
        Some(b) => b
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::invalid("parameters", e.to_string(), None)),
    }
}

fn encode(sql: &str, params: &[ScalarValue]) -> Result<Bytes, QueryError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryError::invalid("query", format!("is longer than {MAX_SQL_BYTES} bytes"), None));
    }
    let mut out = BytesMut::with_capacity(MAGIC.len() + 4 + sql.len());
    out.put_slice(MAGIC);
    out.put_u32(sql.len() as u32);
    out.put_slice(sql.as_bytes());
    if !params.is_empty() {
        let columns: Vec<ArrayRef> = params
            .iter()
            .map(|v| v.to_array_of_size(1))
            .collect::<Result<_, _>>()
            .map_err(|e| QueryError::invalid("parameters", e.to_string(), None))?;
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("${}", i + 1), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())?;
        w.write(&batch)?;
        out.put_slice(&w.into_inner()?);
    }
    Ok(out.freeze())
}

fn decode(handle: &[u8]) -> Result<(String, Vec<ScalarValue>), QueryError> {
    let bad = |why: &str| {
        QueryError::invalid("prepared_statement_handle", format!("not a fletch prepared statement: {why}"), None)
    };
    let rest = handle.strip_prefix(MAGIC).ok_or_else(|| bad("unknown format"))?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() || len > MAX_SQL_BYTES {
        return Err(bad("truncated"));
    }
    let (sql, ipc) = rest.split_at(len);
    let sql = std::str::from_utf8(sql).map_err(|_| bad("the query is not UTF-8"))?.to_string();
    if ipc.is_empty() {
        return Ok((sql, Vec::new()));
    }
    let mut reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(|e| bad(&e.to_string()))?;
    let batch = reader.next().ok_or_else(|| bad("no parameter row"))?.map_err(|e| bad(&e.to_string()))?;
    let params = (0..batch.num_columns())
        .map(|i| ScalarValue::try_from_array(batch.column(i), 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok((sql, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;

    fn row() -> RecordBatch {
        let schema =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"])), Arc::new(Int64Array::from(vec![3]))])
            .unwrap()
    }

    #[test]
    fn handles_carry_the_statement_and_its_values() {
        let here = PreparedStatements::default();
        let h = here.create("SELECT $1, $2").unwrap();
        let bound = here.bind(&h, &[row()]).unwrap();
        let want = vec![ScalarValue::Utf8(Some("x".into())), ScalarValue::Int64(Some(3))];
        // Another process knows nothing of this one: the bound handle is enough.
        let elsewhere = PreparedStatements::default();
        assert_eq!(elsewhere.get(&bound).unwrap(), ("SELECT $1, $2".to_string(), want.clone()));
        assert_eq!(elsewhere.get(&h).unwrap(), ("SELECT $1, $2".to_string(), vec![]));
        // A client that keeps the old handle finds its values where it bound them.
        assert_eq!(here.get(&h).unwrap().1, want);
        here.close(&h).unwrap();
        assert!(here.get(&h).unwrap().1.is_empty());
    }

    #[test]
    fn bad_handles_and_rows_are_invalid_arguments() {
        let p = PreparedStatements::default();
        for bad in [&b""[..], b"x", b"fletch-ps1\x00\x00\x00\x09SELECT"] {
            assert!(matches!(p.get(bad), Err(QueryError::InvalidParam { .. })), "{bad:?}");
        }
        let h = p.create("SELECT $1").unwrap();
        let two = arrow::compute::concat_batches(&row().schema(), &[row(), row()]).unwrap();
        assert!(p.bind(&h, &[two]).is_err());
    }
}
