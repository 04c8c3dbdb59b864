//! What the router and its connection actors say to each other, so that neither file
//! needs the other's type to talk: a connection knows its router only as recipients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::params::PgParam;
use crate::error::QueryError;

pub type BatchSender = mpsc::Sender<Result<RecordBatch, QueryError>>;

/// A query for a connection actor: SQL, parameters, and where the batches go.
#[derive(Debug)]
pub struct PgJob {
    pub sql: Arc<str>,
    pub params: Vec<PgParam>,
    pub tx: BatchSender,
    /// The job must have started by then, or it is answered with 503.
    pub start_deadline: Instant,
    pub enqueued_at: Instant,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Run(pub PgJob);

/// A job for the pool; answered at once with 503 when it cannot be queued.
#[derive(Message)]
#[rtype(result = "Result<(), QueryError>")]
pub struct Submit(pub PgJob);

/// A connection is up and idle; jobs for it go to `conn`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnReady {
    pub id: usize,
    pub conn: Recipient<Run>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnIdle {
    pub id: usize,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnDown {
    pub id: usize,
    pub reason: String,
    pub retry_in: Duration,
}

/// How a connection actor reaches its router.
#[derive(Clone)]
pub struct RouterLink {
    pub ready: Recipient<ConnReady>,
    pub idle: Recipient<ConnIdle>,
    pub down: Recipient<ConnDown>,
}

#[derive(Message)]
#[rtype(result = "PoolStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub size: usize,
    pub ready: usize,
    pub busy: usize,
    pub waiting: usize,
    pub last_error: Option<String>,
}

/// Settings shared by every connection actor.
#[derive(Debug)]
pub struct PgSettings {
    pub pg: tokio_postgres::Config,
    pub batch_rows: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}
