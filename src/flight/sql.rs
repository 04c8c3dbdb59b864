//! Flight SQL commands (protobuf `Any` messages): statements, prepared statements and the
//! catalog calls, all on the [`crate::sql::SqlEngine`].
//!
//! Statement tickets carry the SQL text itself (`TicketStatementQuery.statement_handle`),
//! and prepared-statement handles carry their statement and bound values
//! ([`super::prepared`]), so any fletch instance behind a load balancer serves either.

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, Command, CommandPreparedStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{IpcMessage, SchemaAsIpc};
use bytes::Bytes;
use prost::Message;
use tonic::Status;

use super::catalog;
use super::encode::{open, Batches};
use super::FlightState;
use crate::sql::ballista::Placement;

/// Decode a Flight SQL command from descriptor / ticket bytes.
pub fn decode(bytes: &[u8]) -> Result<Command, Status> {
    if bytes.is_empty() {
        return Err(Status::invalid_argument("the ticket or command is empty; see docs/flight.md for what to send"));
    }
    let any = Any::decode(bytes).map_err(|e| {
        Status::invalid_argument(format!(
            "neither a fletch JSON ticket nor a Flight SQL command ({e}); see docs/flight.md"
        ))
    })?;
    match Command::try_from(any) {
        Ok(Command::Unknown(any)) => Err(Status::invalid_argument(format!(
            "`{}` is neither a fletch JSON ticket nor a Flight SQL command; see docs/flight.md",
            any.type_url.chars().take(200).collect::<String>()
        ))),
        Ok(cmd) => Ok(cmd),
        Err(e) => Err(Status::invalid_argument(format!("bad Flight SQL command: {e}"))),
    }
}

fn unsupported(cmd: &Command) -> Status {
    Status::unimplemented(format!(
        "fletch does not support the Flight SQL command {} (it is read-only)",
        cmd.type_url()
    ))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8")))
}

/// Result schema and the ticket that fetches it.
pub async fn describe(state: &FlightState, cmd: Command) -> Result<(SchemaRef, Bytes), Status> {
    let ticket = |c: &Command| -> Bytes { c.clone().into_any().encode_to_vec().into() };
    Ok(match &cmd {
        Command::CommandStatementQuery(q) => {
            let schema = state.service.sql_schema(&q.query, Vec::new()).await?;
            let t = TicketStatementQuery { statement_handle: q.query.clone().into_bytes().into() };
            (schema, t.as_any().encode_to_vec().into())
        }
        Command::CommandPreparedStatementQuery(p) => {
            let (sql, params) = state.prepared.get(&p.prepared_statement_handle)?;
            (state.service.sql_schema(&sql, params).await?, ticket(&cmd))
        }
        Command::CommandGetSqlInfo(_) => (catalog::sql_info_schema(&state.sql_info), ticket(&cmd)),
        Command::CommandGetCatalogs(c) => (catalog::catalogs_schema(c), ticket(&cmd)),
        Command::CommandGetDbSchemas(c) => (catalog::schemas_schema(c), ticket(&cmd)),
        Command::CommandGetTables(c) => (catalog::tables_schema(c), ticket(&cmd)),
        Command::CommandGetTableTypes(c) => (catalog::table_types_schema(c), ticket(&cmd)),
        other => return Err(unsupported(other)),
    })
}

/// Answer a command; statements run where `placement` says.
pub async fn do_get(state: &FlightState, cmd: Command, placement: Placement) -> Result<Batches, Status> {
    let service = &state.service;
    match cmd {
        Command::TicketStatementQuery(t) => {
            let sql = utf8(&t.statement_handle, "statement handle")?;
            open(service.sql(sql, Vec::new(), placement).await).await
        }
        Command::CommandStatementQuery(q) => open(service.sql(q.query, Vec::new(), placement).await).await,
        Command::CommandPreparedStatementQuery(p) => {
            let (sql, params) = state.prepared.get(&p.prepared_statement_handle)?;
            open(service.sql(sql, params, placement).await).await
        }
        Command::CommandGetSqlInfo(c) => Ok(Batches::single(catalog::sql_info_batch(&state.sql_info, c)?)),
        Command::CommandGetCatalogs(c) => Ok(Batches::single(catalog::catalogs_batch(state.service.engine()?, c)?)),
        Command::CommandGetDbSchemas(c) => Ok(Batches::single(catalog::schemas_batch(state.service.engine()?, c)?)),
        Command::CommandGetTables(c) => Ok(Batches::single(catalog::tables_batch(state.service.engine()?, c).await?)),
        Command::CommandGetTableTypes(c) => Ok(Batches::single(catalog::table_types_batch(c)?)),
        other => Err(unsupported(&other)),
    }
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding schema: {e}")))?;
    Ok(bytes)
}

/// `CreatePreparedStatement`: plan now (errors surface here); the handle is the SQL. The
/// dataset schema is always filled in: the JDBC driver takes an empty one to mean "an update".
pub async fn create_prepared(
    state: &FlightState,
    req: ActionCreatePreparedStatementRequest,
) -> Result<ActionCreatePreparedStatementResult, Status> {
    if req.transaction_id.is_some() {
        return Err(Status::invalid_argument("fletch does not support transactions"));
    }
    let prepared = state.service.sql_prepare(&req.query).await?;
    let handle = state.prepared.create(&req.query)?;
    Ok(ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle,
        dataset_schema: ipc_schema(&prepared.dataset_schema)?,
        parameter_schema: ipc_schema(&prepared.parameter_schema)?,
    })
}

pub fn close_prepared(state: &FlightState, req: ActionClosePreparedStatementRequest) -> Result<(), Status> {
    Ok(state.prepared.close(&req.prepared_statement_handle)?)
}

/// `DoPut` with `CommandPreparedStatementQuery`: bind the parameter row; the answer is the
/// handle that carries the values.
pub fn bind(
    state: &FlightState,
    cmd: CommandPreparedStatementQuery,
    batches: &[RecordBatch],
) -> Result<DoPutPreparedStatementResult, Status> {
    let bound = state.prepared.bind(&cmd.prepared_statement_handle, batches)?;
    Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(bound) })
}
