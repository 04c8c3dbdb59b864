//! Batch streams → Flight data, and the small message builders every handler uses.

use std::pin::Pin;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, SchemaAsIpc, SchemaResult, Ticket};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::error::QueryError;
use crate::service::sql::first_rows;
use crate::stream::BatchStream;

pub type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A `do_get` answer before encoding: the (usually empty) batch that carries the schema,
/// then the rest. The schema goes out even when no rows follow.
pub struct Batches {
    pub first: RecordBatch,
    pub rest: BatchStream,
}

impl Batches {
    /// Exactly this batch (small metadata answers).
    pub fn single(batch: RecordBatch) -> Self {
        Self { first: RecordBatch::new_empty(batch.schema()), rest: Box::pin(futures::stream::iter([Ok(batch)])) }
    }

    /// Every batch that has rows, `first` included; encoders take the schema from `first`.
    pub fn non_empty(self) -> impl Stream<Item = Result<RecordBatch, QueryError>> + Send + 'static {
        futures::stream::once(async move { Ok(self.first) })
            .chain(self.rest)
            .try_filter(|b| futures::future::ready(b.num_rows() > 0))
    }
}

/// Encode through arrow-flight's encoder (the `FlightService` trait path; `DoGet` normally
/// takes [`super::do_get`]). IPC is uncompressed (every client reads it); dictionaries are
/// sent as plain values.
pub fn flight_stream(batches: Batches) -> FlightDataStream {
    let schema = batches.first.schema();
    let batches = batches.non_empty().map_err(|e: QueryError| FlightError::Tonic(Box::new(e.into())));
    let encoded = FlightDataEncoderBuilder::new()
        .with_options(IpcWriteOptions::default())
        .with_schema(schema)
        .build(batches)
        .map_err(flight_status);
    Box::pin(encoded)
}

/// Open a stream and wait for its first rows (or its end), so errors before any data are
/// a status rather than a stream cut short.
pub async fn open(stream: Result<BatchStream, QueryError>) -> Result<Batches, Status> {
    let (first, rest) = first_rows(stream?).await?;
    Ok(Batches { first, rest })
}

pub fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

/// A one-endpoint `FlightInfo` (the data is served by this same server).
pub fn flight_info(
    schema: &Schema,
    ticket: impl Into<bytes::Bytes>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1))
}

pub fn schema_result(schema: &Schema) -> Result<SchemaResult, Status> {
    SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding schema: {e}")))
}
