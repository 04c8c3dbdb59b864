//! Plain Flight (what `pyarrow.flight` uses): datasets by path, the HTTP facade's queries
//! as JSON commands/tickets (see [`super::tickets`]), served through the same query service
//! as HTTP (admission, single-flight, cache).

use arrow::datatypes::SchemaRef;
use arrow_flight::{FlightDescriptor, FlightInfo};
use bytes::Bytes;
use tonic::Status;

use super::encode::{flight_info, open, Batches};
use super::tickets::{self, PlainQuery, DATASETS};
use super::FlightState;
use crate::sql::ballista::Placement;
use crate::store::LogStore;

/// One entry per configured dataset.
pub async fn list(state: &FlightState) -> Result<Vec<FlightInfo>, Status> {
    let mut out = Vec::new();
    for (name, source) in DATASETS {
        if let Ok(store) = state.store(*source) {
            let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
            let schema = store.export_schema().await?;
            out.push(flight_info(&schema, tickets::export_ticket(*source), descriptor)?);
        }
    }
    Ok(out)
}

/// Schema and ticket for a path descriptor (`["postgres.logs"]`).
pub async fn describe_path(state: &FlightState, path: &[String]) -> Result<(SchemaRef, Bytes), Status> {
    let source = tickets::dataset(path)?;
    let schema = state.store(source)?.export_schema().await?;
    Ok((schema, Bytes::from(tickets::export_ticket(source))))
}

/// Schema and ticket for a JSON command (the command itself becomes the ticket).
pub async fn describe_command(state: &FlightState, cmd: &Bytes) -> Result<(SchemaRef, Bytes), Status> {
    let q = tickets::parse(cmd)?;
    let schema = match (&q, tickets::schema_of(&q)) {
        (PlainQuery::Sql(sql), _) => state.service.sql_schema(sql, Vec::new()).await?,
        (PlainQuery::Export(s, _), _) => state.store(*s)?.export_schema().await?,
        (PlainQuery::Logs(s, _) | PlainQuery::Aggregate(s, _) | PlainQuery::Stats(s), Some(schema)) => {
            state.store(*s)?;
            schema
        }
        (_, None) => unreachable!("every non-SQL query has a static schema"),
    };
    Ok((schema, cmd.clone()))
}

/// Answer a JSON ticket; an `sql` ticket runs where `placement` says.
pub async fn do_get(state: &FlightState, ticket: &[u8], placement: Placement) -> Result<Batches, Status> {
    match tickets::parse(ticket)? {
        PlainQuery::Logs(s, q) | PlainQuery::Export(s, q) => {
            let store = state.store(s)?;
            open(store.rows(&q).await).await
        }
        PlainQuery::Aggregate(s, q) => {
            let groups = state.store(s)?.aggregate(&q).await?;
            Ok(Batches::single(tickets::aggregate_batch(groups.groups)?))
        }
        PlainQuery::Stats(s) => {
            let stats = state.store(s)?.stats().await?;
            Ok(Batches::single(tickets::stats_batch(s, &stats)?))
        }
        PlainQuery::Sql(sql) => open(state.service.sql(sql, Vec::new(), placement).await).await,
    }
}
