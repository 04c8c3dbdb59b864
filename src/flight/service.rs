//! The `FlightService` implementation: routes every call either to plain Flight (JSON
//! tickets/commands, path descriptors) or to Flight SQL (protobuf `Any` commands).
//!
//! arrow-flight's blanket implementation for `FlightSqlService` cannot be used: it answers
//! `list_flights` / `get_schema` with Unimplemented and rejects non-protobuf tickets.

use std::pin::Pin;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any, Command, ProstMessageExt,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::encode::{flight_info, flight_stream, schema_result, Batches, FlightDataStream};
use super::{plain, sql, tickets, FletchFlight, FlightState};
use crate::auth::AuthToken;
use crate::sql::ballista::Placement;

/// Flight SQL action names (arrow-flight keeps its constants crate-private).
pub const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
pub const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Schema and ticket for any descriptor.
async fn describe(state: &FlightState, d: &FlightDescriptor) -> Result<(arrow::datatypes::SchemaRef, Bytes), Status> {
    match DescriptorType::try_from(d.r#type).unwrap_or(DescriptorType::Unknown) {
        DescriptorType::Path => plain::describe_path(state, &d.path).await,
        DescriptorType::Cmd if tickets::is_json(&d.cmd) => plain::describe_command(state, &d.cmd).await,
        DescriptorType::Cmd => sql::describe(state, sql::decode(&d.cmd)?).await,
        DescriptorType::Unknown => {
            Err(Status::invalid_argument("flight descriptor has no type (use a path or a command)"))
        }
    }
}

fn unpack<T: ProstMessageExt>(body: &[u8], what: &str) -> Result<T, Status> {
    let any = Any::decode(body).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
    any.unpack::<T>()
        .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?
        .ok_or_else(|| Status::invalid_argument(format!("{what}: wrong message type {}", any.type_url)))
}

/// The call header that says where a statement runs, as `"engine"` does for
/// `POST /api/sql`: `auto` (the default), `local` or `ballista`.
pub const ENGINE_HEADER: &str = "x-fletch-engine";

/// The placement an [`ENGINE_HEADER`] value (or its absence) asks for.
pub fn placement(value: Option<&[u8]>) -> Result<Placement, Status> {
    let Some(bytes) = value else { return Ok(Placement::Auto) };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Status::invalid_argument(format!("the {ENGINE_HEADER} header is not text")))?;
    Ok(Placement::parse(text.trim())?)
}

/// [`placement`] from a call's metadata.
fn engine_of(request: &tonic::metadata::MetadataMap) -> Result<Placement, Status> {
    placement(request.get(ENGINE_HEADER).map(|v| v.as_bytes()))
}

impl FletchFlight {
    /// What a `do_get` ticket asks for: a JSON ticket (plain Flight) or a Flight SQL command;
    /// SQL runs where `placement` says.
    pub async fn answer(&self, ticket: &[u8], placement: Placement) -> Result<Batches, Status> {
        if tickets::is_json(ticket) {
            plain::do_get(&self.state, ticket, placement).await
        } else {
            sql::do_get(&self.state, sql::decode(ticket)?, placement).await
        }
    }
}

#[tonic::async_trait]
impl FlightService for FletchFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = FlightDataStream;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = FlightDataStream;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    /// Credentials were checked by the interceptor; answer with the bearer token to use.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let token = request.extensions().get::<AuthToken>().map(|t| t.0.clone());
        let payload = Bytes::from(token.clone().unwrap_or_default());
        let reply = HandshakeResponse { protocol_version: 0, payload };
        let mut resp = Response::new(Box::pin(futures::stream::iter([Ok(reply)])) as Self::HandshakeStream);
        if let Some(t) = token {
            let v = format!("Bearer {t}").parse().map_err(|_| Status::internal("token is not a valid header value"))?;
            resp.metadata_mut().insert("authorization", v);
        }
        Ok(resp)
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos = plain::list(&self.state).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(infos.into_iter().map(Ok)))))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        // A bad engine is refused here, before a client goes on to DoGet.
        let engine = engine_of(request.metadata())?;
        if engine != Placement::Auto {
            self.state.service.engine()?.check_placement(engine)?;
        }
        let d = request.into_inner();
        let (schema, ticket) = describe(&self.state, &d).await?;
        Ok(Response::new(flight_info(&schema, ticket, d)?))
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info: queries start streaming at do_get; use get_flight_info"))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let (schema, _) = describe(&self.state, request.get_ref()).await?;
        Ok(Response::new(schema_result(&schema)?))
    }

    /// Only reached if `DoGet` is not routed to [`super::do_get`] (see [`super::start`]).
    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let engine = engine_of(request.metadata())?;
        Ok(Response::new(flight_stream(self.answer(&request.into_inner().ticket, engine).await?)))
    }

    /// Only binding prepared-statement parameters: fletch is read-only.
    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let mut input = request.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("do_put: empty stream"))?;
        let descriptor = first
            .flight_descriptor
            .clone()
            .ok_or_else(|| Status::invalid_argument("do_put: the first message has no flight descriptor"))?;
        let cmd = match sql::decode(&descriptor.cmd)? {
            Command::CommandPreparedStatementQuery(c) => c,
            other => {
                return Err(Status::unimplemented(format!(
                    "do_put: fletch is read-only ({} is not supported)",
                    other.type_url()
                )))
            }
        };
        let data = futures::stream::once(async move { Ok(first) }).chain(input).map_err(FlightError::from);
        let batches: Vec<_> = FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("do_put: cannot decode parameters: {e}")))?;
        let result = sql::bind(&self.state, cmd, &batches)?;
        let put = PutResult { app_metadata: result.encode_to_vec().into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(put)]))))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not supported; use do_get"))
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let body: Option<Bytes> = match action.r#type.as_str() {
            CREATE_PREPARED_STATEMENT => {
                let req: ActionCreatePreparedStatementRequest = unpack(&action.body, CREATE_PREPARED_STATEMENT)?;
                let result = sql::create_prepared(&self.state, req).await?;
                Some(result.as_any().encode_to_vec().into())
            }
            CLOSE_PREPARED_STATEMENT => {
                let req: ActionClosePreparedStatementRequest = unpack(&action.body, CLOSE_PREPARED_STATEMENT)?;
                sql::close_prepared(&self.state, req)?;
                None
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "action `{other}` is not supported; fletch supports {CREATE_PREPARED_STATEMENT} and {CLOSE_PREPARED_STATEMENT}"
                )))
            }
        };
        let results = body.map(|body| Ok(arrow_flight::Result { body }));
        Ok(Response::new(Box::pin(futures::stream::iter(results))))
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (CREATE_PREPARED_STATEMENT, "Flight SQL: prepare a query (ActionCreatePreparedStatementRequest)"),
            (CLOSE_PREPARED_STATEMENT, "Flight SQL: close a prepared statement (ActionClosePreparedStatementRequest)"),
        ]
        .map(|(t, d)| Ok(ActionType { r#type: t.into(), description: d.into() }));
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}
