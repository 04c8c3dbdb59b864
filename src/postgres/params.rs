//! Bind parameters for PostgreSQL statements.

use tokio_postgres::types::{ToSql, Type};

/// A bind parameter. Column names never travel as parameters: they come from whitelists.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PgParam {
    Text(String),
    F64(f64),
    I64(i64),
}

impl ToSql for PgParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgParam::Text(s) => s.to_sql(ty, out),
            PgParam::F64(f) => f.to_sql(ty, out),
            PgParam::I64(i) => i.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    // Delegate the type check to the wrapped value so a mismatch is an error, not garbage.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgParam::Text(s) => s.to_sql_checked(ty, out),
            PgParam::F64(f) => f.to_sql_checked(ty, out),
            PgParam::I64(i) => i.to_sql_checked(ty, out),
        }
    }
}
