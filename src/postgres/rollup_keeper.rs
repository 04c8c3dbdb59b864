//! Keeps the [`LabelRollup`] of the PostgreSQL log table current, in the background.
//!
//! - **Build** once at start: the table read in `id` ranges of [`CHUNK_IDS`] through its
//!   primary key, one `GROUP BY` per range, so no statement runs long and the pool keeps
//!   serving. Until it is done, aggregates and counts are answered by PostgreSQL as before.
//! - **Advance** every `postgres.rollup_refresh_ms`: only rows with `id` above the
//!   watermark are read. Ids that are missing below it (a transaction that took its ids
//!   and has not committed yet) are remembered as gaps and looked up again on every tick
//!   for [`GAP_TTL`]; after that they are taken to be rolled back.
//! - **Repair**: PostgreSQL's cumulative `n_tup_del` / `n_tup_upd` for the table are read
//!   on every tick; when they move (a retention `DELETE`, an `UPDATE` of a label) or the
//!   largest `id` goes down (`TRUNCATE`), the rollup is rebuilt. Until the new one is
//!   ready, answers come from the old one marked inexact. Every
//!   `postgres.rollup_verify_interval_ms` the row count up to the watermark is checked
//!   against PostgreSQL's `count(*)` as a last line of defence.
//!
//! Nothing is written to the user's database.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use serde_json::json;

use super::params::PgParam;
use super::rollup::{bucket_sql, width_for_span, LabelRollup, Labels, Partial, BUCKETED_SPAN};
use super::PgSource;
use crate::error::QueryError;
use crate::query::Filters;

/// Ids per build or advance query: about a second of work on a large table.
pub const CHUNK_IDS: i64 = 2_000_000;
/// How long a missing id is looked for before it counts as rolled back.
pub const GAP_TTL: Duration = Duration::from_secs(600);
/// Ids below the first build's top that are checked for transactions still in flight.
const BUILD_TAIL_IDS: i64 = 10_000;
/// Ids per advance query, which also lists the missing ids (so sorts them).
const ADVANCE_CHUNK_IDS: i64 = 200_000;
/// Extra wait after PostgreSQL refused a rollup query (missing table or column).
const SQL_ERROR_PAUSE: Duration = Duration::from_secs(30);
/// Gaps remembered at most (the newest are kept).
const MAX_GAPS: usize = 1_000;
/// The label columns as every rollup query reads them.
const LABELS: &str = "level::text AS level, service::text AS service, host::text AS host";

#[derive(Debug, Clone)]
pub struct RollupSettings {
    pub enabled: bool,
    pub refresh: Duration,
    /// 0: never verify.
    pub verify_every: Duration,
}

/// A question the rollup can answer, and the state it answers from.
pub struct Answer {
    pub partial: Partial,
    /// Edges must count rows with `id <= watermark` only, as the rollup did.
    pub watermark: i64,
    pub as_of: SystemTime,
    pub exact: bool,
}

#[derive(Default)]
struct Shared {
    rollup: Option<LabelRollup>,
    watermark: i64,
    as_of: Option<SystemTime>,
    exact: bool,
    state: &'static str,
    reason: Option<String>,
    build_ms: Option<u64>,
    builds: u64,
    gaps: usize,
}

/// The rollup and its state, shared by the keeper (writer) and every request (readers).
#[derive(Default)]
pub struct PgRollup {
    shared: RwLock<Shared>,
}

impl PgRollup {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { shared: RwLock::new(Shared { state: "starting", ..Shared::default() }) })
    }

    /// Counts for `f`, or `None` when PostgreSQL must answer.
    pub fn answer(&self, f: &Filters) -> Option<Answer> {
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let partial = s.rollup.as_ref()?.partial(f)?;
        Some(Answer { partial, watermark: s.watermark, as_of: s.as_of?, exact: s.exact })
    }

    /// For `/ready`.
    pub fn status(&self) -> serde_json::Value {
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        let as_of = s.as_of.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64());
        json!({
            "state": s.state,
            "reason": s.reason,
            "exact": s.exact,
            "rows": s.rollup.as_ref().map(LabelRollup::rows),
            "buckets": s.rollup.as_ref().map(LabelRollup::buckets),
            "bucket_seconds": s.rollup.as_ref().map(LabelRollup::width),
            "watermark_id": s.watermark,
            "as_of": as_of,
            "open_gaps": s.gaps,
            "last_build_ms": s.build_ms,
            "builds": s.builds,
        })
    }

    fn set_state(&self, state: &'static str, reason: Option<String>) {
        let mut s = self.shared.write().unwrap_or_else(|e| e.into_inner());
        s.state = state;
        s.reason = reason;
        if state == "rebuilding" {
            s.exact = false;
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        f(&mut self.shared.write().unwrap_or_else(|e| e.into_inner()))
    }
}

/// PostgreSQL's view of the table on one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    deleted: i64,
    updated: i64,
    max_id: Option<i64>,
}

/// Start the keeper (a no-op when disabled).
pub fn keep(pg: PgSource, rollup: Arc<PgRollup>, settings: RollupSettings) {
    if !settings.enabled {
        rollup.set_state("disabled", Some("postgres.rollup = false".into()));
        return;
    }
    actix::spawn(async move {
        let mut k = Keeper { pg, rollup, settings, gaps: BTreeMap::new(), baseline: None, last_verify: Instant::now() };
        k.run().await;
    });
}

struct Keeper {
    pg: PgSource,
    rollup: Arc<PgRollup>,
    settings: RollupSettings,
    /// Missing ids below the watermark: first id → (last id, when first missed).
    gaps: BTreeMap<i64, (i64, Instant)>,
    /// The delete/update counters the current rollup agrees with.
    baseline: Option<Probe>,
    last_verify: Instant,
}

impl Keeper {
    async fn run(&mut self) {
        let mut warned = false;
        loop {
            let tick = Instant::now();
            let result = if self.baseline.is_none() { self.build().await } else { self.advance().await };
            match result {
                Ok(()) => warned = false,
                Err(KeepError::Unsupported(reason)) => {
                    tracing::warn!(%reason, "PostgreSQL rollup disabled; aggregates and counts run in PostgreSQL");
                    self.rollup.set_state("disabled", Some(reason));
                    return;
                }
                Err(KeepError::Query(e)) => {
                    // PostgreSQL down or busy: keep what we have, try again next tick. A
                    // table that does not fit (yet: the backend may create it later) is
                    // tried again less often.
                    if !warned {
                        tracing::warn!(error = %e, "PostgreSQL rollup could not advance; retrying");
                        warned = true;
                    }
                    if matches!(e, QueryError::Sql(_)) {
                        tokio::time::sleep(SQL_ERROR_PAUSE).await;
                    }
                    self.rollup.with(|s| s.reason = Some(e.to_string()));
                }
            }
            tokio::time::sleep(self.settings.refresh.saturating_sub(tick.elapsed())).await;
        }
    }

    fn table(&self) -> String {
        self.pg.tables().logs.sql()
    }

    async fn probe(&self) -> Result<Probe, KeepError> {
        let regclass = self.pg.tables().logs.literal();
        let sql = format!(
            "SELECT n_tup_del, n_tup_upd, (SELECT max(id) FROM {}) FROM pg_stat_user_tables \
             WHERE relid = to_regclass({regclass})",
            self.table()
        );
        let rows = self.pg.collect(sql, vec![]).await?;
        let b = rows.iter().find(|b| b.num_rows() > 0).ok_or_else(|| {
            KeepError::Unsupported(format!("{} has no table statistics (a view or a foreign table?)", self.table()))
        })?;
        Ok(Probe { deleted: int(b, 0, 0).unwrap_or(0), updated: int(b, 1, 0).unwrap_or(0), max_id: int(b, 2, 0) })
    }

    /// Build a new rollup from the whole table and swap it in.
    async fn build(&mut self) -> Result<(), KeepError> {
        let started = Instant::now();
        let rebuilding = self.rollup.with(|s| s.rollup.is_some());
        self.rollup.set_state(if rebuilding { "rebuilding" } else { "building" }, None);
        let settings = self.pg.collect("SHOW track_counts".into(), vec![]).await?;
        if settings.iter().find(|b| b.num_rows() > 0).and_then(|b| text(b, 0, 0)).as_deref() != Some("on") {
            return Err(KeepError::Unsupported("track_counts is off, so deletes and updates cannot be seen".into()));
        }
        // Counters first: a delete during the build moves them, and the next tick rebuilds.
        let probe = self.probe().await?;
        let as_of = SystemTime::now();
        let span = format!(
            r#"SELECT min("timestamp"), max("timestamp") FROM {} WHERE "timestamp" >= -{BUCKETED_SPAN:e} AND "timestamp" < {BUCKETED_SPAN:e}"#,
            self.table()
        );
        let span = self.pg.collect(span, vec![]).await?;
        let b = span.iter().find(|b| b.num_rows() > 0);
        let (lo, hi) = (b.and_then(|b| float(b, 0, 0)), b.and_then(|b| float(b, 1, 0)));
        let mut rollup = LabelRollup::new(width_for_span(hi.unwrap_or(0.0) - lo.unwrap_or(0.0)));
        let min_id = self.scalar(format!("SELECT min(id) FROM {}", self.table())).await?;
        let top = probe.max_id.unwrap_or(0);
        let mut from = min_id.map_or(top, |m| m.saturating_sub(1));
        // The newest ids may belong to transactions still in flight: that tail is read
        // with its gaps.
        let tail = top.saturating_sub(BUILD_TAIL_IDS).max(from);
        self.gaps.clear();
        while from < top {
            let to = from.saturating_add(CHUNK_IDS).min(if from < tail { tail } else { top });
            self.count_range(&mut rollup, from, to, to > tail).await?;
            from = to;
        }
        let build_ms = started.elapsed().as_millis() as u64;
        tracing::info!(rows = rollup.rows(), buckets = rollup.buckets(), build_ms, "PostgreSQL rollup built");
        self.rollup.with(|s| {
            s.rollup = Some(rollup);
            s.watermark = top;
            s.as_of = Some(as_of);
            s.exact = true;
            s.state = "ready";
            s.reason = None;
            s.build_ms = Some(build_ms);
            s.builds += 1;
            s.gaps = self.gaps.len();
        });
        self.baseline = Some(probe);
        self.last_verify = Instant::now();
        Ok(())
    }

    /// One tick: detect changes, then read the rows above the watermark and in gaps.
    async fn advance(&mut self) -> Result<(), KeepError> {
        let as_of = SystemTime::now();
        let probe = self.probe().await?;
        let baseline = self.baseline.expect("advance runs after a build");
        let watermark = self.rollup.with(|s| s.watermark);
        let changed = if (probe.deleted, probe.updated) != (baseline.deleted, baseline.updated) {
            Some("rows were deleted or updated")
        } else if probe.max_id.unwrap_or(0) < watermark {
            Some("the largest id went down (truncated?)")
        } else {
            None
        };
        if let Some(reason) = changed {
            tracing::info!(reason, "PostgreSQL rollup is rebuilt");
            self.rollup.set_state("rebuilding", Some(reason.into()));
            self.baseline = None;
            return Ok(());
        }
        self.fill_gaps().await?;
        let top = probe.max_id.unwrap_or(0);
        let mut from = watermark;
        while from < top {
            let to = from.saturating_add(ADVANCE_CHUNK_IDS).min(top);
            let width = self.rollup.with(|s| s.rollup.as_ref().map_or(64.0, LabelRollup::width));
            let mut fresh = LabelRollup::new(width);
            self.count_range(&mut fresh, from, to, true).await?;
            self.rollup.with(|s| {
                if let Some(r) = s.rollup.as_mut() {
                    r.absorb(&fresh);
                }
                s.watermark = to;
            });
            from = to;
        }
        let gaps = self.gaps.len();
        self.rollup.with(|s| {
            s.as_of = Some(as_of);
            s.gaps = gaps;
        });
        if !self.settings.verify_every.is_zero() && self.last_verify.elapsed() >= self.settings.verify_every {
            self.verify().await?;
        }
        Ok(())
    }

    /// `count(*)` up to the watermark against the rollup; a difference means a change the
    /// counters did not show, and a rebuild.
    async fn verify(&mut self) -> Result<(), KeepError> {
        self.last_verify = Instant::now();
        if !self.gaps.is_empty() {
            return Ok(()); // rows may still appear in them: not comparable yet
        }
        let (watermark, rows) = self.rollup.with(|s| (s.watermark, s.rollup.as_ref().map_or(0, LabelRollup::rows)));
        let sql = format!("SELECT count(*) FROM {} WHERE id <= $1", self.table());
        let n = self.scalar_with(sql, vec![PgParam::I64(watermark)]).await?.unwrap_or(0);
        if n as u64 != rows {
            tracing::warn!(postgres = n, rollup = rows, "PostgreSQL rollup disagrees with count(*); rebuilding");
            self.rollup.set_state("rebuilding", Some(format!("count(*) is {n}, the rollup had {rows}")));
            self.baseline = None;
        }
        Ok(())
    }

    /// Rows with `from < id <= to`, counted into `rollup`; with `gaps`, the ids in that
    /// range no row has are remembered, from the same statement (so from the same snapshot:
    /// a row committed in between is either counted or a gap, never both or neither).
    async fn count_range(&mut self, rollup: &mut LabelRollup, from: i64, to: i64, gaps: bool) -> Result<(), KeepError> {
        let (table, bucket) = (self.table(), bucket_sql(rollup.width()));
        let sql = if gaps {
            format!(
                "WITH r AS MATERIALIZED (SELECT id, {bucket} AS bucket, {LABELS} FROM {table} WHERE id > $1 AND id <= $2) \
                 SELECT bucket, level, service, host, count(*), NULL::int8, NULL::int8 FROM r GROUP BY 1, 2, 3, 4 \
                 UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, id + 1, next - 1 FROM \
                 (SELECT id, lead(id) OVER (ORDER BY id) AS next FROM \
                  (SELECT $1::int8 AS id UNION ALL SELECT id FROM r UNION ALL SELECT $2::int8 + 1) ids) pairs \
                 WHERE next > id + 1"
            )
        } else {
            format!(
                "SELECT {bucket} AS bucket, {LABELS}, count(*) FROM {table} WHERE id > $1 AND id <= $2 GROUP BY 1, 2, 3, 4"
            )
        };
        let now = Instant::now();
        for b in self.pg.collect(sql, vec![PgParam::I64(from), PgParam::I64(to)]).await? {
            for r in 0..b.num_rows() {
                match int(&b, 4, r) {
                    Some(rows) => rollup.add(int(&b, 0, r), labels(&b, 1, r), rows as u64),
                    None => {
                        if let (Some(lo), Some(hi)) = (int(&b, 5, r), int(&b, 6, r)) {
                            self.gaps.insert(lo, (hi, now));
                        }
                    }
                }
            }
        }
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
        Ok(())
    }

    /// Count rows that appeared in gaps, and forget gaps older than [`GAP_TTL`].
    async fn fill_gaps(&mut self) -> Result<(), KeepError> {
        self.gaps.retain(|_, (_, seen)| seen.elapsed() < GAP_TTL);
        if self.gaps.is_empty() {
            return Ok(());
        }
        let width = self.rollup.with(|s| s.rollup.as_ref().map_or(64.0, LabelRollup::width));
        // Ids are numbers fletch produced, safe to write into the statement.
        let ranges: Vec<String> = self.gaps.iter().map(|(lo, (hi, _))| format!("id BETWEEN {lo} AND {hi}")).collect();
        let sql = format!(
            "SELECT id, {} AS bucket, {} FROM {} WHERE {}",
            bucket_sql(width),
            LABELS,
            self.table(),
            ranges.join(" OR ")
        );
        let batches = self.pg.collect(sql, vec![]).await?;
        let mut fresh = LabelRollup::new(width);
        for b in &batches {
            for r in 0..b.num_rows() {
                let Some(id) = int(b, 0, r) else { continue };
                fresh.add(int(b, 1, r), labels(b, 2, r), 1);
                self.close_gap_at(id);
            }
        }
        self.rollup.with(|s| {
            if let Some(r) = s.rollup.as_mut() {
                r.absorb(&fresh);
            }
        });
        Ok(())
    }

    fn close_gap_at(&mut self, id: i64) {
        let Some((&lo, &(hi, seen))) = self.gaps.range(..=id).next_back() else { return };
        if id > hi {
            return;
        }
        self.gaps.remove(&lo);
        if lo < id {
            self.gaps.insert(lo, (id - 1, seen));
        }
        if id < hi {
            self.gaps.insert(id + 1, (hi, seen));
        }
    }

    async fn scalar(&self, sql: String) -> Result<Option<i64>, KeepError> {
        self.scalar_with(sql, vec![]).await
    }

    async fn scalar_with(&self, sql: String, params: Vec<PgParam>) -> Result<Option<i64>, KeepError> {
        let batches = self.pg.collect(sql, params).await?;
        Ok(batches.iter().find(|b| b.num_rows() > 0).and_then(|b| int(b, 0, 0)))
    }
}

enum KeepError {
    /// The table cannot have a rollup (no statistics, `track_counts` off): stop for good.
    Unsupported(String),
    Query(QueryError),
}

impl From<QueryError> for KeepError {
    fn from(e: QueryError) -> Self {
        KeepError::Query(e)
    }
}

fn int(b: &RecordBatch, col: usize, row: usize) -> Option<i64> {
    let a = b.column(col).as_primitive_opt::<Int64Type>()?;
    (!a.is_null(row)).then(|| a.value(row))
}

fn float(b: &RecordBatch, col: usize, row: usize) -> Option<f64> {
    let a = b.column(col).as_primitive_opt::<arrow::datatypes::Float64Type>()?;
    (!a.is_null(row)).then(|| a.value(row))
}

fn text(b: &RecordBatch, col: usize, row: usize) -> Option<Arc<str>> {
    let a = b.column(col).as_string_opt::<i32>()?;
    (!a.is_null(row)).then(|| Arc::from(a.value(row)))
}

/// The three label columns starting at `col`.
fn labels(b: &RecordBatch, col: usize, row: usize) -> Labels {
    [text(b, col, row), text(b, col + 1, row), text(b, col + 2, row)]
}
