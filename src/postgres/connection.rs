//! One PostgreSQL connection, owned by one supervised actor.
//!
//! The actor connects on start, reports itself to the [`PgRouter`](super::router::PgRouter),
//! runs one job at a time (`ctx.wait` keeps the mailbox closed while a query streams), and
//! stops itself when the connection is lost so that its `Supervisor` restarts it; reconnect
//! attempts back off exponentially. Rows are converted to Arrow batches here and pushed into
//! the job's bounded channel; a closed channel (the client went away) sends PostgreSQL a
//! cancel request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::batches::{schema_for, BatchBuilder};
use super::errors::{map_pg_error, unavailable};
use super::messages::{ConnDown, ConnIdle, ConnReady, PgJob, PgSettings, RouterLink, Run};
use crate::metrics::Metrics;

/// Sent by the connection's driver task when the socket closes.
#[derive(Message)]
#[rtype(result = "()")]
struct ConnectionLost {
    /// The connection it was about: a stale driver task must not end a newer connection.
    generation: u64,
    reason: String,
}

const STATEMENT_CACHE_MAX: usize = 256;
const MAILBOX_CAPACITY: usize = 4;

pub struct PgConnection {
    id: usize,
    settings: Arc<PgSettings>,
    router: RouterLink,
    metrics: Arc<Metrics>,
    client: Option<Arc<Client>>,
    statements: HashMap<Arc<str>, Statement>,
    backoff: Duration,
    /// Increments per connection so a stale driver task cannot kill a newer connection.
    generation: u64,
}

impl PgConnection {
    pub fn new(id: usize, settings: Arc<PgSettings>, router: RouterLink, metrics: Arc<Metrics>) -> Self {
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
                    me.do_send(ConnectionLost { generation, reason });
                });
                act.client = Some(Arc::new(client));
                act.statements.clear();
                act.backoff = act.settings.backoff_min;
                tracing::info!(conn = act.id, "postgres connection established");
                act.router.ready.do_send(ConnReady { id: act.id, conn: ctx.address().recipient() });
            }
            Err(reason) => {
                let retry_in = act.backoff;
                tracing::warn!(conn = act.id, %reason, ?retry_in, "postgres connect failed");
                act.router.down.do_send(ConnDown { id: act.id, reason, retry_in });
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
        if msg.generation != self.generation {
            return;
        }
        tracing::warn!(conn = self.id, reason = %msg.reason, "postgres connection lost");
        self.router.down.do_send(ConnDown { id: self.id, reason: msg.reason, retry_in: self.backoff });
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
                act.router.idle.do_send(ConnIdle { id: act.id });
            }
        }));
    }
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
    // An aggregate or join sends its first row only when it is done: watch for the client
    // leaving while PostgreSQL computes, not only between rows.
    let started_query = client.query_raw(&stmt, job.params.iter().map(|p| p as &dyn ToSql));
    futures::pin_mut!(started_query);
    let first = tokio::select! {
        biased;
        r = &mut started_query => Some(r),
        _ = job.tx.closed() => None,
    };
    let rows = match first {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let _ = job.tx.send(Err(map_pg_error(&e))).await;
            return (newly_prepared, client.is_closed());
        }
        None => {
            cancel_until_done(&cancel, &metrics, started, started_query).await;
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
        send_cancel(&cancel, &metrics, started).await;
        // Drain what the server already sent so the connection is clean for the next job.
        while let Some(r) = rows.next().await {
            if r.is_err() {
                break;
            }
        }
    }
    (newly_prepared, client.is_closed())
}

async fn send_cancel(cancel: &tokio_postgres::CancelToken, metrics: &Metrics, started: Instant) {
    metrics.pg_cancels.inc();
    tracing::info!(elapsed = ?started.elapsed(), "client went away; cancelling postgres query");
    if let Err(e) = cancel.cancel_query(NoTls).await {
        tracing::warn!(error = %e, "postgres cancel request failed");
    }
}

/// Cancel a query that has not answered yet, and wait for it to end. PostgreSQL forgets a
/// cancel request that arrives between the messages of one query (while it parses or
/// binds), so the request is repeated until the query answers.
async fn cancel_until_done<F: std::future::Future + Unpin>(
    cancel: &tokio_postgres::CancelToken,
    metrics: &Metrics,
    started: Instant,
    mut query: F,
) {
    const ATTEMPTS: u32 = 100;
    for _ in 0..ATTEMPTS {
        send_cancel(cancel, metrics, started).await;
        if tokio::time::timeout(Duration::from_millis(100), &mut query).await.is_ok() {
            return;
        }
    }
    tracing::warn!(elapsed = ?started.elapsed(), "postgres query still running after {ATTEMPTS} cancel requests");
}
