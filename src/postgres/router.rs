//! The pool/router actor: owns the connection actors, hands each job to an idle one,
//! queues a bounded number of jobs when all are busy, and answers fast with 503 when
//! PostgreSQL is unreachable (no hang while connections back off and retry).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::connection::PgConnection;
use super::messages::{
    ConnDown, ConnIdle, ConnReady, GetStatus, PgJob, PgSettings, PoolStatus, RouterLink, Run, Submit,
};
use crate::error::{QueryError, RetryAfter};
use crate::metrics::Metrics;

#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Connecting,
    Idle,
    Busy,
    Down,
}

pub struct PgRouter {
    settings: Arc<PgSettings>,
    metrics: Arc<Metrics>,
    size: usize,
    max_waiting: usize,
    conns: Vec<Option<Recipient<Run>>>,
    slots: Vec<Slot>,
    idle: VecDeque<usize>,
    waiting: VecDeque<PgJob>,
    last_error: Option<String>,
    retry_in: Duration,
    /// Arbiters that host the connection actors, so row decoding spreads over cores.
    arbiters: Vec<Arbiter>,
}

impl PgRouter {
    pub fn new(settings: Arc<PgSettings>, metrics: Arc<Metrics>, size: usize, max_waiting: usize) -> Self {
        let retry_in = settings.backoff_min;
        Self {
            settings,
            metrics,
            size,
            max_waiting,
            conns: Vec::new(),
            slots: vec![Slot::Connecting; size],
            idle: VecDeque::new(),
            waiting: VecDeque::new(),
            last_error: None,
            retry_in,
            arbiters: Vec::new(),
        }
    }

    fn ready_count(&self) -> usize {
        self.slots.iter().filter(|s| matches!(s, Slot::Idle | Slot::Busy)).count()
    }

    fn publish(&self) {
        let busy = self.slots.iter().filter(|s| **s == Slot::Busy).count();
        self.metrics.pg_connections_ready.store(self.ready_count() as i64, Ordering::Relaxed);
        self.metrics.pg_connections_busy.store(busy as i64, Ordering::Relaxed);
        self.metrics.pg_queue_depth.store(self.waiting.len() as i64, Ordering::Relaxed);
    }

    fn unavailable(&self) -> QueryError {
        let reason = format!("no PostgreSQL connection is up ({})", self.last_error.as_deref().unwrap_or("connecting"));
        QueryError::unavailable("postgres", reason, RetryAfter::Backoff(self.retry_in))
    }

    fn dispatch(&mut self, id: usize, job: PgJob) {
        self.slots[id] = Slot::Busy;
        match &self.conns[id] {
            Some(addr) => addr.do_send(Run(job)),
            None => {
                let _ = job.tx.try_send(Err(self.unavailable()));
                self.slots[id] = Slot::Down;
            }
        }
    }

    /// Give a free connection the oldest job that still has a client and a chance.
    fn on_free(&mut self, id: usize) {
        while let Some(job) = self.waiting.pop_front() {
            if job.tx.is_closed() {
                continue;
            }
            if Instant::now() > job.start_deadline {
                self.reject_late(job);
                continue;
            }
            self.dispatch(id, job);
            self.publish();
            return;
        }
        self.slots[id] = Slot::Idle;
        self.idle.push_back(id);
        self.publish();
    }

    fn reject_late(&self, job: PgJob) {
        self.metrics.rejections.with("postgres").inc();
        let waited = job.enqueued_at.elapsed();
        let reason = format!("all {} connections stayed busy for {:?}", self.size, waited);
        let _ = job.tx.try_send(Err(QueryError::overloaded("postgres", reason, RetryAfter::Expected(waited))));
    }

    fn expire_waiting(&mut self) {
        let now = Instant::now();
        let (late, keep): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).partition(|j| now > j.start_deadline || j.tx.is_closed());
        self.waiting = keep.into();
        for job in late {
            if !job.tx.is_closed() {
                self.reject_late(job);
            }
        }
        self.publish();
    }
}

impl Actor for PgRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(self.size.max(1));
        self.arbiters = (0..threads).map(|_| Arbiter::new()).collect();
        let me = ctx.address();
        let link = RouterLink { ready: me.clone().recipient(), idle: me.clone().recipient(), down: me.recipient() };
        for id in 0..self.size {
            let (settings, metrics, router) = (self.settings.clone(), self.metrics.clone(), link.clone());
            let arbiter = self.arbiters[id % threads].handle();
            let addr =
                Supervisor::start_in_arbiter(&arbiter, move |_| PgConnection::new(id, settings, router, metrics));
            self.conns.push(Some(addr.recipient()));
        }
        ctx.run_interval(Duration::from_millis(50), |act, _| act.expire_waiting());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

impl Handler<Submit> for PgRouter {
    type Result = Result<(), QueryError>;

    fn handle(&mut self, Submit(job): Submit, _ctx: &mut Context<Self>) -> Self::Result {
        // Fail fast only when every connection is known to be down; while some are still
        // connecting (at start-up) the job waits in the queue like any other.
        if self.slots.iter().all(|s| *s == Slot::Down) {
            return Err(self.unavailable());
        }
        while let Some(id) = self.idle.pop_front() {
            if self.slots[id] == Slot::Idle {
                self.dispatch(id, job);
                self.publish();
                return Ok(());
            }
        }
        if self.waiting.len() >= self.max_waiting {
            self.metrics.rejections.with("postgres").inc();
            let reason = format!("{} queries already waiting for a connection", self.waiting.len());
            return Err(QueryError::overloaded("postgres", reason, RetryAfter::QueueFull));
        }
        self.waiting.push_back(job);
        self.publish();
        Ok(())
    }
}

impl Handler<ConnReady> for PgRouter {
    type Result = ();
    fn handle(&mut self, msg: ConnReady, _ctx: &mut Context<Self>) {
        self.conns[msg.id] = Some(msg.conn);
        self.last_error = None;
        self.retry_in = self.settings.backoff_min;
        self.on_free(msg.id);
    }
}

impl Handler<ConnIdle> for PgRouter {
    type Result = ();
    fn handle(&mut self, msg: ConnIdle, _ctx: &mut Context<Self>) {
        if self.slots[msg.id] == Slot::Busy {
            self.on_free(msg.id);
        }
    }
}

impl Handler<ConnDown> for PgRouter {
    type Result = ();
    fn handle(&mut self, msg: ConnDown, _ctx: &mut Context<Self>) {
        self.slots[msg.id] = Slot::Down;
        self.idle.retain(|i| *i != msg.id);
        self.last_error = Some(msg.reason);
        self.retry_in = msg.retry_in.max(self.settings.backoff_min);
        if self.slots.iter().all(|s| *s == Slot::Down) {
            // Nobody can serve the queue: answer it now rather than let it time out.
            let err = self.unavailable();
            for job in self.waiting.drain(..) {
                let _ = job.tx.try_send(Err(err.clone()));
            }
        }
        self.publish();
    }
}

impl Handler<GetStatus> for PgRouter {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(PoolStatus {
            size: self.size,
            ready: self.ready_count(),
            busy: self.slots.iter().filter(|s| **s == Slot::Busy).count(),
            waiting: self.waiting.len(),
            last_error: self.last_error.clone(),
        })
    }
}
