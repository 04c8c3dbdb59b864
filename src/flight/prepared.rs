//! Prepared statements: server-side handles holding the SQL and the last bound parameters.
//!
//! Bounded: beyond [`MAX_STATEMENTS`] open statements the least recently used is dropped
//! (a client that never closes its statements cannot exhaust memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::ScalarValue;

use crate::error::QueryError;

pub const MAX_STATEMENTS: usize = 10_000;

struct Entry {
    sql: String,
    params: Vec<ScalarValue>,
    used: Instant,
}

#[derive(Default)]
pub struct PreparedStatements {
    map: Mutex<HashMap<Bytes, Entry>>,
}

impl PreparedStatements {
    pub fn create(&self, sql: String) -> Bytes {
        let handle = Bytes::from(uuid::Uuid::new_v4().to_string());
        let mut map = self.map.lock().expect("prepared statements lock");
        if map.len() >= MAX_STATEMENTS {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(handle.clone(), Entry { sql, params: Vec::new(), used: Instant::now() });
        handle
    }

    /// The statement's SQL and bound parameters.
    pub fn get(&self, handle: &[u8]) -> Result<(String, Vec<ScalarValue>), QueryError> {
        let mut map = self.map.lock().expect("prepared statements lock");
        let e = map.get_mut(handle).ok_or_else(|| unknown(handle))?;
        e.used = Instant::now();
        Ok((e.sql.clone(), e.params.clone()))
    }

    /// Bind one row of parameter values (`$1` = column 0, …).
    pub fn bind(&self, handle: &[u8], batches: &[RecordBatch]) -> Result<(), QueryError> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let params = match batches.iter().find(|b| b.num_rows() > 0) {
            None => Vec::new(),
            Some(_) if rows > 1 => {
                return Err(QueryError::invalid(
                    "parameters",
                    format!("{rows} parameter rows were bound; a query takes exactly one"),
                    None,
                ))
            }
            Some(b) => b
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueryError::invalid("parameters", e.to_string(), None))?,
        };
        let mut map = self.map.lock().expect("prepared statements lock");
        let e = map.get_mut(handle).ok_or_else(|| unknown(handle))?;
        e.params = params;
        e.used = Instant::now();
        Ok(())
    }

    pub fn close(&self, handle: &[u8]) -> Result<(), QueryError> {
        let mut map = self.map.lock().expect("prepared statements lock");
        map.remove(handle).map(|_| ()).ok_or_else(|| unknown(handle))
    }
}

fn unknown(handle: &[u8]) -> QueryError {
    QueryError::NotFound(format!("no open prepared statement `{}`", String::from_utf8_lossy(handle)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn bind_get_close() {
        let p = PreparedStatements::default();
        let h = p.create("SELECT $1, $2".into());
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int64, true)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"])), Arc::new(Int64Array::from(vec![3]))]).unwrap();
        p.bind(&h, &[b.clone()]).unwrap();
        let (sql, params) = p.get(&h).unwrap();
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(params, vec![ScalarValue::Utf8(Some("x".into())), ScalarValue::Int64(Some(3))]);
        let two = arrow::compute::concat_batches(&b.schema(), &[b.clone(), b]).unwrap();
        assert!(p.bind(&h, &[two]).is_err());
        p.close(&h).unwrap();
        assert!(matches!(p.get(&h), Err(QueryError::NotFound(_))));
    }
}
