//! One PostgreSQL connection, owned by one supervised actor.
//!
//! The actor connects on start, reports itself to the [`PgRouter`](super::pg_router::PgRouter),
//! runs one job at a time (`ctx.wait` keeps the mailbox closed while a query streams), and
//! stops itself when the connection is lost so that its `Supervisor` restarts it; reconnect
//! attempts back off exponentially. Rows are converted to Arrow batches here and pushed into
//! the job's bounded channel; a closed channel (the client went away) sends PostgreSQL a
//! cancel request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use super::pg_router::{ConnDown, ConnIdle, ConnReady, PgRouter};
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::sources::pg_arrow::{schema_for, BatchBuilder};

/// A bind parameter. Column names never travel as parameters: they come from whitelists.
#[derive(Debug, Clone, PartialEq)]
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

/// Sent by the connection's driver task when the socket closes.
#[derive(Message)]
#[rtype(result = "()")]
struct ConnectionLost(String);

/// Settings shared by every connection actor.
#[derive(Debug)]
pub struct PgSettings {
    pub pg: tokio_postgres::Config,
    pub batch_rows: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

const STATEMENT_CACHE_MAX: usize = 256;
const MAILBOX_CAPACITY: usize = 4;

pub struct PgConnection {
    id: usize,
    settings: Arc<PgSettings>,
    router: Addr<PgRouter>,
    metrics: Arc<Metrics>,
    client: Option<Arc<Client>>,
    statements: HashMap<Arc<str>, Statement>,
    backoff: Duration,
    /// Increments per connection so a stale driver task cannot kill a newer connection.
    generation: u64,
}

impl PgConnection {
    pub fn new(id: usize, settings: Arc<PgSettings>, router: Addr<PgRouter>, metrics: Arc<Metrics>) -> Self {
        let backoff = settings.backoff_min;
        Self { id, settings, router, metrics, client: None, statements: HashMap::new(), backoff, generation: 0 }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let fut = async move {
            match tokio::time::timeout(settings.connect_timeout, settings.pg.connect(NoTls)).await {
                Ok(Ok(pair)) => Ok(pair),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("connect timed out after {:?}", settings.connect_timeout)),
            }
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((client, connection)) => {
                act.generation += 1;
                let generation = act.generation;
                let me = ctx.address();
                actix::spawn(async move {
                    let reason = match connection.await {
                        Ok(()) => "connection closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    me.do_send(ConnectionLost(format!("{generation}:{reason}")));
                });
                act.client = Some(Arc::new(client));
                act.statements.clear();
                act.backoff = act.settings.backoff_min;
                tracing::info!(conn = act.id, "postgres connection established");
                act.router.do_send(ConnReady { id: act.id, addr: ctx.address() });
            }
            Err(reason) => {
                let retry_in = act.backoff;
                tracing::warn!(conn = act.id, %reason, ?retry_in, "postgres connect failed");
                act.router.do_send(ConnDown { id: act.id, reason, retry_in });
                act.backoff = (act.backoff * 2).min(act.settings.backoff_max);
                ctx.run_later(retry_in, |act, ctx| act.connect(ctx));
            }
        }));
    }
}

impl Actor for PgConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.connect(ctx);
    }
}

impl Supervised for PgConnection {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.client = None;
        self.statements.clear();
        self.metrics.actor_restarts.with("pg_connection").inc();
        tracing::warn!(conn = self.id, "postgres connection actor restarting");
    }
}

impl Handler<ConnectionLost> for PgConnection {
    type Result = ();
    fn handle(&mut self, msg: ConnectionLost, ctx: &mut Context<Self>) {
        let (generation, reason) = msg.0.split_once(':').unwrap_or(("0", &msg.0));
        if generation.parse::<u64>().ok() != Some(self.generation) {
            return;
        }
        tracing::warn!(conn = self.id, %reason, "postgres connection lost");
        self.router.do_send(ConnDown { id: self.id, reason: reason.to_string(), retry_in: self.backoff });
        // Let the supervisor restart us: a fresh start reconnects with backoff.
        ctx.stop();
    }
}

impl Handler<Run> for PgConnection {
    type Result = ();

    fn handle(&mut self, Run(job): Run, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else {
            let _ = job.tx.try_send(Err(unavailable("connection is reconnecting", self.backoff)));
            return;
        };
        let cached = self.statements.get(&job.sql).cloned();
        let batch_rows = self.settings.batch_rows;
        let metrics = self.metrics.clone();
        metrics.pg_queue_wait.observe(job.enqueued_at.elapsed());
        let fut = run_job(client, cached, job, batch_rows, metrics);
        ctx.wait(fut.into_actor(self).map(|(prepared, lost), act, ctx| {
            if let Some((sql, stmt)) = prepared {
                if act.statements.len() >= STATEMENT_CACHE_MAX {
                    act.statements.clear();
                }
                act.statements.insert(sql, stmt);
            }
            if lost {
                ctx.stop();
            } else {
                act.router.do_send(ConnIdle { id: act.id });
            }
        }));
    }
}

fn unavailable(reason: &str, retry_after: Duration) -> QueryError {
    QueryError::Unavailable { source_name: "postgres", reason: reason.to_string(), retry_after }
}

/// Map a driver error to what the client should see.
pub fn map_pg_error(e: &tokio_postgres::Error) -> QueryError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match &code[..2] {
            // syntax error or access rule violation, data exception: the query is wrong
            "42" | "22" => QueryError::Sql(db.message().to_string()),
            "57" if code == "57014" => QueryError::Timeout(Duration::ZERO),
            "57" | "08" | "53" => unavailable(db.message(), Duration::from_secs(1)),
            _ => QueryError::Store { source_name: "postgres", message: db.message().to_string() },
        };
    }
    if e.is_closed() {
        return unavailable(&format!("connection lost: {e}"), Duration::from_secs(1));
    }
    QueryError::Store { source_name: "postgres", message: e.to_string() }
}

/// Runs one job to completion. Returns a newly prepared statement to cache, and whether
/// the connection is gone.
async fn run_job(
    client: Arc<Client>,
    cached: Option<Statement>,
    job: PgJob,
    batch_rows: usize,
    metrics: Arc<Metrics>,
) -> (Option<(Arc<str>, Statement)>, bool) {
    let started = Instant::now();
    let mut newly_prepared = None;
    let stmt = match cached {
        Some(s) => s,
        None => match client.prepare(&job.sql).await {
            Ok(s) => {
                newly_prepared = Some((job.sql.clone(), s.clone()));
                s
            }
            Err(e) => {
                let _ = job.tx.send(Err(map_pg_error(&e))).await;
                return (None, client.is_closed());
            }
        },
    };
    let schema = match schema_for(stmt.columns()) {
        Ok(s) => s,
        Err(e) => {
            let _ = job.tx.send(Err(e)).await;
            return (newly_prepared, false);
        }
    };
    let cancel = client.cancel_token();
    let rows = match client.query_raw(&stmt, job.params.iter().map(|p| p as &dyn ToSql)).await {
        Ok(r) => r,
        Err(e) => {
            let _ = job.tx.send(Err(map_pg_error(&e))).await;
            return (newly_prepared, client.is_closed());
        }
    };
    futures::pin_mut!(rows);
    let mut builder = BatchBuilder::new(schema, stmt.columns(), batch_rows);
    let mut sent_any = false;
    let mut cancelled = false;
    loop {
        tokio::select! {
            biased;
            _ = job.tx.closed() => { cancelled = true; break; }
            next = rows.next() => match next {
                Some(Ok(row)) => {
                    if let Err(e) = builder.push(&row) {
                        let _ = job.tx.send(Err(e)).await;
                        cancelled = true;
                        break;
                    }
                    if builder.len() >= batch_rows {
                        let batch = builder.finish();
                        sent_any = true;
                        if job.tx.send(batch).await.is_err() { cancelled = true; break; }
                    }
                }
                Some(Err(e)) => {
                    let _ = job.tx.send(Err(map_pg_error(&e))).await;
                    break;
                }
                None => {
                    // Always send at least one batch so consumers learn the schema.
                    if !builder.is_empty() || !sent_any {
                        let _ = job.tx.send(builder.finish()).await;
                    }
                    break;
                }
            }
        }
    }
    if cancelled {
        metrics.pg_cancels.inc();
        tracing::info!(elapsed = ?started.elapsed(), "client went away; cancelling postgres query");
        if let Err(e) = cancel.cancel_query(NoTls).await {
            tracing::warn!(error = %e, "postgres cancel request failed");
        }
        // Drain what the server already sent so the connection is clean for the next job.
        while let Some(r) = rows.next().await {
            if r.is_err() {
                break;
            }
        }
    }
    (newly_prepared, client.is_closed())
}
