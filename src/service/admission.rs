//! The admission actor: every query takes a permit for its source and lane before it runs.
//!
//! Lanes keep cheap queries (pages, point lookups) from waiting behind heavy ones
//! (aggregates, exports, scans): each (source, lane) has its own permits and its own bounded
//! queue. A request that cannot start within its budget — queue full, or an estimated wait
//! beyond the budget, or a wait that ran out — is refused with a `Retry-After` computed from
//! the lane's observed service time and queue length.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::error::{QueryError, RetryAfter};
use crate::metrics::Metrics;
use crate::query::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Pages and point queries: bounded, index- or statistics-driven.
    Light,
    /// Aggregates, stats of a filter, scans with a bounded answer.
    Heavy,
    /// Streams of any size: held for as long as the client reads.
    Export,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Light => "light",
            Lane::Heavy => "heavy",
            Lane::Export => "export",
        }
    }
}

/// Permits and queue size of one lane.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    pub permits: usize,
    pub queue: usize,
}

/// Held while a query runs; dropping it frees the permit (and records the service time).
pub struct Permit {
    addr: Addr<Admission>,
    key: (Source, Lane),
    acquired: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.addr.do_send(Release { key: self.key, held: self.acquired.elapsed() });
    }
}

#[derive(Message)]
#[rtype(result = "Result<Permit, QueryError>")]
pub struct Acquire {
    pub source: Source,
    pub lane: Lane,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    key: (Source, Lane),
    held: Duration,
}

struct Waiter {
    tx: oneshot::Sender<Result<Permit, QueryError>>,
    deadline: Instant,
    enqueued: Instant,
}

struct LaneState {
    limits: LaneLimits,
    in_use: usize,
    queue: VecDeque<Waiter>,
    /// Exponentially weighted mean time a permit is held, in seconds.
    service_s: f64,
}

impl LaneState {
    /// Expected wait for a newcomer behind the current queue.
    fn expected_wait(&self) -> Duration {
        let ahead = self.queue.len() + 1;
        Duration::from_secs_f64(self.service_s * ahead as f64 / self.limits.permits.max(1) as f64)
    }
}

pub struct Admission {
    lanes: HashMap<(Source, Lane), LaneState>,
    budget: Duration,
    metrics: Arc<Metrics>,
}

fn lane_label(key: (Source, Lane)) -> String {
    format!("{}/{}", key.0.name(), key.1.name())
}

impl Admission {
    /// `limits` per (source, lane); `budget` is the longest a request may wait.
    pub fn new(limits: Vec<((Source, Lane), LaneLimits)>, budget: Duration, metrics: Arc<Metrics>) -> Self {
        let lanes = limits
            .into_iter()
            .map(|(k, l)| {
                let label = lane_label(k);
                metrics.gauge(&metrics.permits_in_use, &label, 0);
                metrics.gauge(&metrics.queue_depth, &label, 0);
                (k, LaneState { limits: l, in_use: 0, queue: VecDeque::new(), service_s: 0.01 })
            })
            .collect();
        Self { lanes, budget, metrics }
    }

    fn overloaded(&self, key: (Source, Lane), reason: String, retry_after: RetryAfter) -> QueryError {
        self.metrics.rejections.with(key.0.name()).inc();
        QueryError::overloaded(key.0.name(), reason, retry_after)
    }

    fn grant(&mut self, key: (Source, Lane), addr: Addr<Self>) -> Permit {
        let lane = self.lanes.get_mut(&key).expect("lane exists");
        lane.in_use += 1;
        self.metrics.gauge(&self.metrics.permits_in_use, &lane_label(key), 1);
        Permit { addr, key, acquired: Instant::now() }
    }

    fn publish_queue(&self, key: (Source, Lane)) {
        if let Some(lane) = self.lanes.get(&key) {
            if let Some(g) = self.metrics.queue_depth.get(&lane_label(key)) {
                g.store(lane.queue.len() as i64, Ordering::Relaxed);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let keys: Vec<_> = self.lanes.keys().copied().collect();
        for key in keys {
            let lane = self.lanes.get_mut(&key).expect("lane exists");
            if !lane.queue.iter().any(|w| now >= w.deadline || w.tx.is_closed()) {
                continue;
            }
            let (late, keep): (Vec<_>, Vec<_>) =
                lane.queue.drain(..).partition(|w| now >= w.deadline || w.tx.is_closed());
            lane.queue = keep.into();
            let retry = lane.expected_wait();
            for w in late {
                if !w.tx.is_closed() {
                    let err = self.overloaded(
                        key,
                        format!("no {} permit within {:?}", key.1.name(), w.enqueued.elapsed()),
                        RetryAfter::Expected(retry),
                    );
                    let _ = w.tx.send(Err(err));
                }
            }
            self.publish_queue(key);
        }
    }
}

/// A permit for `lane` of `source`, or the 503 that says why not.
pub async fn acquire(admission: &Addr<Admission>, source: Source, lane: Lane) -> Result<Permit, QueryError> {
    admission
        .send(Acquire { source, lane })
        .await
        .map_err(|e| QueryError::internal(format!("admission actor unreachable: {e}")))?
}

impl Actor for Admission {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(10), |act, _| act.expire());
    }
}

impl Handler<Acquire> for Admission {
    type Result = ResponseFuture<Result<Permit, QueryError>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let key = (msg.source, msg.lane);
        let Some(lane) = self.lanes.get(&key) else {
            return Box::pin(async move { Err(QueryError::internal(format!("no admission lane {key:?}"))) });
        };
        if lane.in_use < lane.limits.permits && lane.queue.is_empty() {
            let permit = self.grant(key, ctx.address());
            return Box::pin(async move { Ok(permit) });
        }
        let expected = lane.expected_wait();
        let refusal = if lane.queue.len() >= lane.limits.queue {
            Some(format!("{} {} queries already waiting", lane.queue.len(), key.1.name()))
        } else if expected > self.budget {
            Some(format!("expected wait {expected:?} exceeds the {:?} budget", self.budget))
        } else {
            None
        };
        if let Some(reason) = refusal {
            let err = self.overloaded(key, reason, RetryAfter::Expected(expected));
            return Box::pin(async move { Err(err) });
        }
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        self.lanes.get_mut(&key).expect("lane exists").queue.push_back(Waiter {
            tx,
            deadline: now + self.budget,
            enqueued: now,
        });
        self.publish_queue(key);
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(QueryError::internal("admission actor stopped"))) })
    }
}

impl Handler<Release> for Admission {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) {
        let key = msg.key;
        let Some(lane) = self.lanes.get_mut(&key) else { return };
        lane.in_use = lane.in_use.saturating_sub(1);
        lane.service_s = 0.8 * lane.service_s + 0.2 * msg.held.as_secs_f64();
        self.metrics.gauge(&self.metrics.permits_in_use, &lane_label(key), -1);
        // Hand the freed permit to the oldest waiter that still wants it.
        loop {
            let lane = self.lanes.get_mut(&key).expect("lane exists");
            let Some(w) = lane.queue.pop_front() else { break };
            if w.tx.is_closed() {
                continue;
            }
            let permit = self.grant(key, ctx.address());
            if let Err(Ok(p)) = w.tx.send(Ok(permit)) {
                drop(p); // receiver vanished in between: the permit comes straight back
            }
            break;
        }
        self.publish_queue(key);
    }
}
