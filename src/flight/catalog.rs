//! Flight SQL metadata: `GetSqlInfo`, `GetCatalogs`, `GetDbSchemas`, `GetTables`,
//! `GetTableTypes`, answered from the SQL engine's catalog (filters are applied by
//! arrow-flight's builders, which implement the `%` / `_` pattern rules).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, SqlInfo,
    SqlNullOrdering, SqlSupportedTransaction,
};
use tonic::Status;

use crate::error::QueryError;
use crate::sql::SqlEngine;

pub const TABLE_TYPES: &[&str] = &["TABLE", "VIEW", "LOCAL TEMPORARY"];

fn arrow_err(e: impl std::fmt::Display) -> Status {
    QueryError::internal(format!("building Flight SQL metadata: {e}")).into()
}

/// What `GetSqlInfo` reports: a read-only SQL server without transactions.
pub fn sql_info() -> Result<SqlInfoData, Status> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "fletch");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.build().map_err(arrow_err)
}

pub fn sql_info_batch(info: &SqlInfoData, cmd: CommandGetSqlInfo) -> Result<RecordBatch, Status> {
    cmd.into_builder(info).build().map_err(arrow_err)
}

pub fn sql_info_schema(info: &SqlInfoData) -> SchemaRef {
    info.schema()
}

pub fn catalogs_schema(cmd: &CommandGetCatalogs) -> SchemaRef {
    (*cmd).into_builder().schema()
}

pub fn catalogs_batch(engine: &SqlEngine, cmd: CommandGetCatalogs) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    let mut names: Vec<String> = engine.context().catalog_names();
    names.sort();
    for c in names {
        b.append(c);
    }
    b.build().map_err(arrow_err)
}

pub fn schemas_schema(cmd: &CommandGetDbSchemas) -> SchemaRef {
    cmd.clone().into_builder().schema()
}

pub fn schemas_batch(engine: &SqlEngine, cmd: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    for (c, s) in engine.schemas() {
        b.append(c, s);
    }
    b.build().map_err(arrow_err)
}

pub fn tables_schema(cmd: &CommandGetTables) -> SchemaRef {
    cmd.clone().into_builder().schema()
}

pub async fn tables_batch(engine: &SqlEngine, cmd: CommandGetTables) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    for t in engine.tables().await? {
        b.append(&t.catalog, &t.schema, &t.name, t.table_type, &t.arrow_schema).map_err(arrow_err)?;
    }
    b.build().map_err(arrow_err)
}

pub fn table_types_schema(cmd: &CommandGetTableTypes) -> SchemaRef {
    (*cmd).into_builder().schema()
}

pub fn table_types_batch(cmd: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    for t in TABLE_TYPES {
        b.append(t);
    }
    b.build().map_err(arrow_err)
}
