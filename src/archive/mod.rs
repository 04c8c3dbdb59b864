//! The `hdfs` source: DataFusion over a directory of Parquet files on HDFS (through
//! `hdfs-native-object-store`) or a local `file://` directory, running on the dedicated
//! executor.
//!
//! Rows ordered by `timestamp` are read in *time slices* planned from row-group
//! statistics: slice 1 covers the newest row groups that could hold the requested rows,
//! later slices step back in time until enough rows are found. Each slice is a range
//! filter, so DataFusion skips every other file and row group from statistics alone, and
//! slices are disjoint, so their sorted outputs simply concatenate. The same plan streams
//! exports of any size in order with memory bounded by one slice; an export's slices are
//! cut anywhere in time, about 4 Ki rows while its client reads slowly and up to 128 Ki
//! while it reads fast, since files written in parallel overlap in time and a slice cut at
//! row-group edges would hold all of them.
//!
//! The archive is read as its writers left it: `fletch load`'s flat files and the
//! pipeline's Spark output (hive partition directories, a commit log, `metadata` as a MAP)
//! alike, side by side if need be.
//!
//! - [`store`]: the object store (local or HDFS) and how its failures are classified.
//! - [`layout`]: file schemas, partition directories and how both become `logs` rows;
//!   [`map_json`]: a MAP `metadata` as JSON text; [`partition_time`]: the time a
//!   partition directory covers; [`commit_log`]: Spark's list of committed files.
//! - [`index`]: the actor that lists the directory and reads file footers.
//! - [`rollup`]: per-file counts by label, for aggregates without a scan;
//!   [`rollup_build`]: computing them in the background, many files per query.
//! - [`sorted_export`]: exports of time-ordered files streamed without a sort;
//!   [`deep_page`]: offsets that pass over row groups, files or runs of files by counting.
//! - [`newest`]: a copy of the newest rows in time order, which pages of newest rows are
//!   cut from.
//! - [`table`]: `hdfs.logs` as a DataFusion table; [`sql_rollup`]: SQL label aggregates
//!   answered from the rollups.

pub mod commit_log;
mod deep_page;
pub mod index;
pub mod layout;
pub mod map_json;
pub mod newest;
pub mod partition_time;
pub mod rollup;
mod rollup_build;
pub mod sorted_export;
pub mod sql_rollup;
pub mod store;
pub mod table;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::Addr;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{Float64Type, Int64Type};
use async_trait::async_trait;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::ObjectStore;
use tokio::sync::Semaphore;

use datafusion::physical_plan::ExecutionPlan;

use self::deep_page::{skip_counted_files, skip_whole_row_groups, take_rows, DEEP_OFFSET};
use self::index::{ArchiveIndex, FileInfo, IndexSnapshot, Refresh, Snapshot};
use self::layout::Strings;
use self::newest::NewestRows;
use self::rollup::Rollups;
pub use self::store::{map_df_error, open_store};
use self::table::ArchiveTable;
use crate::count_cache::CountCache;
use crate::error::{QueryError, RetryAfter};
use crate::executor::DedicatedExecutor;
use crate::metrics::Metrics;
use crate::query::{AggregateQuery, CountMode, Filters, OrderBy, OrderDir, RowsQuery, Source};
use crate::schema::logs_schema;
use crate::store::{CountAnswer, CountKind, GroupCounts, LogStore, Readiness, StoreStats};
use crate::stream::BatchStream;

/// Rows a slice of an export holds at first and while its client reads slowly. A slice is
/// collected and sorted before it is sent, so this is what each slowly read export of files
/// not in time order holds decoded (about 1 MB of `logs` rows).
const EXPORT_SLICE_ROWS: u64 = 4 * 1024;
/// Rows a slice of an export grows to while its client takes each slice at once: files
/// that overlap in time are read once per slice, so small slices cost a fast export about
/// four times the reading.
const FAST_EXPORT_SLICE_ROWS: u64 = 128 * 1024;
/// A client that takes a slice within this long reads fast; one that needs longer than
/// [`SLOW_READER`] reads slowly.
const FAST_READER: Duration = Duration::from_millis(250);
const SLOW_READER: Duration = Duration::from_secs(1);
/// Export slices sorted at once per core. Slicing is CPU work, so more gain nothing; a
/// burst of exports queues here for a turn instead of filling the memory pool with sorts
/// (200 exports starting at once got 503 when each sorted its first slice right away).
const EXPORT_SLICES_PER_CORE: usize = 2;
/// What a sort sets aside for merging what it spilled (see `Archive::new`).
const SORT_RESERVATION_BYTES: usize = 1024 * 1024;
/// Largest slice of a page: this bounds memory even for a page far into the table
/// (`offset=5000000`) or a very selective filter.
const MAX_SLICE_ROWS: u64 = 256 * 1024;
/// Pages up to this many rows (offset included) find their last timestamp first (see
/// `Archive::nth_timestamp`); deeper ones read their slices whole.
const TWO_PHASE_MAX_ROWS: u64 = 10_000;

#[derive(Clone)]
pub struct Archive {
    /// Rows and SQL: plain `Utf8` strings (what every client reads), filters pushed into
    /// the Parquet decoder (top-k slices skip most rows of a row group).
    ctx: SessionContext,
    /// Aggregates and counts: strings as `Utf8View` (decoding a dictionary page into views
    /// costs about half of building `Utf8` arrays) and filters applied after decoding,
    /// which is cheaper than pushdown when the scan reads one or two narrow columns.
    scan_ctx: SessionContext,
    /// Filtered counts; keys include the listing generation, so they never go stale.
    counts: Arc<CountCache>,
    /// Label counts per archive file, for aggregates and filtered counts.
    rollups: Arc<Rollups>,
    /// The newest rows in time order, for pages of newest rows (see `newest`).
    newest: Arc<NewestRows>,
    /// The archive's store, for reads outside DataFusion (sorted exports).
    store: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
    table_url: ListingTableUrl,
    index: Addr<ArchiveIndex>,
    /// `hdfs.logs`'s columns as of the latest snapshot (they only grow).
    columns: Arc<RwLock<SchemaRef>>,
    executor: Arc<DedicatedExecutor>,
    /// Turns at sorting an export's next slice (see [`EXPORT_SLICES_PER_CORE`]).
    export_slices: Arc<Semaphore>,
}

impl Archive {
    /// Build the DataFusion session for `url`; `index` must list the same directory.
    pub fn new(
        url: &str,
        store: Arc<dyn ObjectStore>,
        index: Addr<ArchiveIndex>,
        executor: Arc<DedicatedExecutor>,
        partitions: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, QueryError> {
        let mut config = SessionConfig::new().with_target_partitions(partitions.max(1)).with_collect_statistics(true);
        let opts = config.options_mut();
        opts.execution.parquet.pushdown_filters = true;
        opts.execution.parquet.reorder_filters = true;
        // Uncompressed, plain Utf8 results: what every client can read.
        opts.execution.parquet.schema_force_view_types = false;
        // Every export of files not in time order sorts one slice at a time (about 4 MB);
        // DataFusion's default 10 MB set aside per sort for merging spills would admit
        // fewer than 30 of them into the 512 MB pool.
        opts.execution.sort_spill_reservation_bytes = SORT_RESERVATION_BYTES;
        let runtime =
            RuntimeEnvBuilder::new().with_memory_limit(512 * 1024 * 1024, 1.0).build_arc().map_err(map_df_error)?;
        // Two partitions per core: while one waits on a read the other decodes.
        let mut scan_config = config.clone().with_target_partitions(partitions.max(1) * 2);
        let scan_opts = scan_config.options_mut();
        scan_opts.execution.parquet.pushdown_filters = false;
        scan_opts.execution.parquet.schema_force_view_types = true;
        let ctx = SessionContext::new_with_config_rt(config, runtime.clone());
        let scan_ctx = SessionContext::new_with_config_rt(scan_config, runtime);
        let dir_url = if url.ends_with('/') { url.to_string() } else { format!("{url}/") };
        if let Some(base) = store::object_store_base(&dir_url)? {
            // One runtime, so registering once serves both contexts.
            ctx.register_object_store(&base, store.clone());
        }
        let table_url = ListingTableUrl::parse(&dir_url).map_err(map_df_error)?;
        Ok(Self {
            ctx,
            scan_ctx,
            counts: CountCache::new(Duration::from_secs(24 * 3600)),
            rollups: Arc::default(),
            newest: Arc::new(NewestRows::new(crate::config::ParquetConfig::default().newest_rows)),
            store,
            metrics,
            table_url,
            index,
            columns: Arc::new(RwLock::new(logs_schema())),
            executor,
            export_slices: Arc::new(Semaphore::new(partitions.max(1) * EXPORT_SLICES_PER_CORE)),
        })
    }

    /// Hold the newest `rows` rows for pages of newest rows (0: read every page from the
    /// files).
    pub fn with_newest_rows(mut self, rows: usize) -> Self {
        self.newest = Arc::new(NewestRows::new(rows));
        self
    }

    /// Read the newest rows of `snap` into `self.newest`, in the background: only the new
    /// files' when the listing merely added files to the one the held copy was read from.
    fn read_newest(&self, snap: IndexSnapshot) {
        let me = self.clone();
        let generation = snap.generation;
        tokio::spawn(async move {
            if let Some(base) = me.newest.base(&snap.files) {
                let files = snap.files.clone();
                let extended = match me.newer_rows(&snap, &base).await {
                    Ok(added) => me.newest.extended(generation, files, base, &added),
                    Err(e) => Err(e),
                };
                match extended {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "extending the copy of the newest rows failed; reading them again")
                    }
                }
            }
            let q = RowsQuery {
                filters: Filters::default(),
                limit: Some(me.newest.rows_to_read()),
                offset: 0,
                order_by: OrderBy::Timestamp,
                order_dir: OrderDir::Desc,
            };
            let (schema, files) = (logs_schema(), snap.files.clone());
            let read = me
                .time_sliced(&q, snap)
                .try_collect::<Vec<_>>()
                .await
                .and_then(|batches| arrow::compute::concat_batches(&schema, &batches).map_err(QueryError::from));
            me.newest.built(generation, files, read);
        });
    }

    /// The rows of `base`'s new files above its floor, newest first, as many as a copy
    /// reads.
    async fn newer_rows(&self, snap: &IndexSnapshot, base: &newest::Base) -> Result<RecordBatch, QueryError> {
        let schema = logs_schema();
        if base.added.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let added = IndexSnapshot { files: Arc::new(base.added.clone()), ..snap.clone() };
        let table = Arc::new(ArchiveTable::fixed(added, self.store_url(), Strings::Plain));
        let mut df = self.ctx.read_table(table).map_err(map_df_error)?;
        if let Some(floor) = base.floor {
            df = df.filter(col("timestamp").gt(lit(floor))).map_err(map_df_error)?;
        }
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        df = df
            .select_columns(&names)
            .and_then(|df| df.sort(vec![col("timestamp").sort(false, false)]))
            .and_then(|df| df.limit(0, Some(self.newest.rows_to_read() as usize)))
            .map_err(map_df_error)?;
        let metrics = self.metrics.clone();
        let batches = self.executor.run(async move { collect_counting_scan(df, &metrics).await }).await?;
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }

    /// `hdfs.logs`'s columns: `logs`, then whatever else the archive's files hold.
    pub fn table_schema(&self) -> SchemaRef {
        self.columns.read().expect("columns lock").clone()
    }

    /// Take `hdfs.logs`'s columns from the index's latest listing, healthy or not.
    pub async fn sync_columns(&self) {
        if let Ok(snap) = self.index.send(Snapshot).await {
            self.take_columns(&snap);
        }
    }

    fn take_columns(&self, snap: &IndexSnapshot) {
        *self.columns.write().expect("columns lock") = snap.table.clone();
    }

    /// The object store the archive's paths are relative to, as DataFusion names it.
    pub fn store_url(&self) -> ObjectStoreUrl {
        self.table_url.object_store()
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The dedicated runtime this source's DataFusion work runs on (shared with SQL).
    pub fn executor(&self) -> &Arc<DedicatedExecutor> {
        &self.executor
    }

    /// The whole archive as a table: the files the index lists at each scan.
    pub fn table(&self) -> Arc<ArchiveTable> {
        Arc::new(ArchiveTable::live(self.clone(), Strings::Plain))
    }

    /// The columns a rows query returns: pages keep the API's shape, exports carry every
    /// column of the table (`event_time`, partition columns, …). Fixed when the query
    /// starts, so every batch of a stream has the same schema.
    fn columns_for(&self, q: &RowsQuery) -> SchemaRef {
        if q.limit.is_some() {
            logs_schema()
        } else {
            self.table_schema()
        }
    }

    /// The archive as a frame of `columns`.
    fn frame(&self, columns: &SchemaRef) -> Result<DataFrame, QueryError> {
        let df = self.ctx.read_table(self.table()).map_err(map_df_error)?;
        let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
        df.select_columns(&names).map_err(map_df_error)
    }

    /// Some files of the archive as a table for aggregates and counts (see `scan_ctx`),
    /// with `filters` applied.
    fn files_frame(
        &self,
        snap: &IndexSnapshot,
        files: &[&FileInfo],
        filters: &Filters,
    ) -> Result<DataFrame, QueryError> {
        let subset = IndexSnapshot { files: Arc::new(files.iter().map(|f| (*f).clone()).collect()), ..snap.clone() };
        let table = Arc::new(ArchiveTable::fixed(subset, self.store_url(), Strings::View));
        let mut df = self.scan_ctx.read_table(table).map_err(map_df_error)?;
        if let Some(f) = filter_expr(filters, None, None) {
            df = df.filter(f).map_err(map_df_error)?;
        }
        Ok(df)
    }

    /// Row counts per value of `q.group_by` (NULL kept apart), from the rollups of files
    /// wholly inside the time range and a scan of the others. Exact: the HTTP aggregate
    /// and SQL's `GROUP BY … count(*)` over `hdfs.logs` are both answered from it.
    pub async fn group_counts(&self, q: &AggregateQuery) -> Result<Vec<(Option<String>, i64)>, QueryError> {
        let snap = self.snapshot().await?;
        let split = self.rollups.split(&snap.files, &q.filters, snap.generation);
        let mut totals = std::collections::HashMap::new();
        rollup::add_grouped(&mut totals, split.rows(&q.filters), q.group_by);
        if !split.scan.is_empty() {
            let key = q.group_by.column();
            let df = self
                .files_frame(&snap, &split.scan, &q.filters)?
                .aggregate(vec![col(key)], vec![count(lit(1)).alias("count")])
                .map_err(map_df_error)?;
            let batches = self.executor.run(async move { df.collect().await.map_err(map_df_error) }).await?;
            for b in batches {
                let keys = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
                let keys = keys.as_string::<i32>();
                let counts = b.column(1).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    let key = keys.is_valid(i).then(|| keys.value(i).to_string());
                    *totals.entry(key).or_default() += counts.value(i);
                }
            }
        }
        Ok(totals.into_iter().collect())
    }

    /// The index's latest listing; fails when the store did not answer it.
    pub(crate) async fn snapshot(&self) -> Result<IndexSnapshot, QueryError> {
        let snap = self.index.send(Snapshot).await.map_err(|e| QueryError::internal(e.to_string()))?;
        let snap = if snap.refreshed_at.is_none() {
            self.index
                .send(Refresh { max_age: Duration::from_secs(1) })
                .await
                .map_err(|e| QueryError::internal(e.to_string()))?
        } else {
            snap
        };
        self.take_columns(&snap);
        if !snap.healthy {
            let reason = format!("Parquet store unreachable: {}", snap.last_error.as_deref().unwrap_or("unknown"));
            return Err(QueryError::unavailable("hdfs", reason, RetryAfter::Outage));
        }
        Ok(snap)
    }

    /// Stream a DataFrame's result from the dedicated executor.
    fn stream_frame(&self, df: DataFrame) -> BatchStream {
        self.executor.stream(async move {
            let s = df.execute_stream().await.map_err(map_df_error)?;
            Ok(Box::pin(s.map_err(map_df_error)) as BatchStream)
        })
    }

    /// One time slice `[lo, hi)` (either bound open), sorted, at most `fetch` rows; only
    /// rows up to `last` in `dir` order (see [`Archive::nth_timestamp`]) when given.
    fn slice_frame(
        &self,
        filters: &Filters,
        dir: OrderDir,
        (lo, hi): (Option<f64>, Option<f64>),
        last: Option<f64>,
        fetch: Option<u64>,
        columns: &SchemaRef,
    ) -> Result<DataFrame, QueryError> {
        // Filtered before the columns are chosen: the filter may name others.
        let mut df = self.ctx.read_table(self.table()).map_err(map_df_error)?;
        if let Some(f) = filter_expr(filters, lo, hi) {
            df = df.filter(f).map_err(map_df_error)?;
        }
        let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
        df = df.select_columns(&names).map_err(map_df_error)?;
        if let Some(t) = last {
            let ts = col("timestamp");
            df = df
                .filter(if dir == OrderDir::Desc { ts.gt_eq(lit(t)) } else { ts.lt_eq(lit(t)) })
                .map_err(map_df_error)?;
        }
        df = df.sort(vec![col("timestamp").sort(dir == OrderDir::Asc, false)]).map_err(map_df_error)?;
        if let Some(n) = fetch {
            df = df.limit(0, Some(n as usize)).map_err(map_df_error)?;
        }
        Ok(df)
    }

    /// The `n`th matching timestamp of slice `[lo, hi)` in `dir` order, when the slice
    /// holds at least `n` matching rows: every row a page of `n` needs lies on this side of
    /// it. Found by reading `timestamp` (and the filter's columns) alone, so the read of
    /// the page decodes the wide columns (`message`, `metadata`) of about `n` rows. That
    /// matters where files are not in time order (Spark's): their statistics cannot narrow
    /// a slice, and a page of 100 rows decoded every column of several whole files.
    async fn nth_timestamp(
        &self,
        filters: &Filters,
        dir: OrderDir,
        (lo, hi): (Option<f64>, Option<f64>),
        n: u64,
    ) -> Result<Option<f64>, QueryError> {
        let logs = logs_schema();
        let timestamp = Arc::new(logs.project(&[logs.index_of("timestamp")?])?);
        let df = self.slice_frame(filters, dir, (lo, hi), None, Some(n), &timestamp)?;
        let metrics = self.metrics.clone();
        let batches = self.executor.run(async move { collect_counting_scan(df, &metrics).await }).await?;
        if batches.iter().map(|b| b.num_rows() as u64).sum::<u64>() < n {
            return Ok(None);
        }
        let Some(last) = batches.iter().rev().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let ts = last.column(0).as_primitive_opt::<Float64Type>();
        // A NULL `n`th row (nulls sort last) means fewer non-null rows than `n`: no bound.
        Ok(ts.filter(|a| a.is_valid(a.len() - 1)).map(|a| a.value(a.len() - 1)))
    }

    /// `units` of time-sorted files streamed in order, rows matching `filters` (see
    /// `sorted_export`).
    fn sorted_rows(
        &self,
        snap: &IndexSnapshot,
        units: Vec<sorted_export::Unit>,
        filters: &Filters,
        dir: OrderDir,
    ) -> Result<BatchStream, QueryError> {
        sorted_export::stream(
            self.store.clone(),
            snap.files.clone(),
            units,
            filter_expr(filters, None, None),
            dir,
            self.executor.clone(),
            self.metrics.clone(),
        )
    }

    /// `q`'s filters narrowed past the runs of files its offset covers, and the offset left
    /// (see [`deep_page`]). A deep page whose first run a time bound cuts counts that run.
    async fn pass_over_runs(&self, snap: &IndexSnapshot, q: &RowsQuery) -> Result<Option<(Filters, u64)>, QueryError> {
        let mut runs = deep_page::runs_in_order(&snap.files, &q.filters, q.order_dir, &self.rollups);
        if let Some(first) = runs.first_mut().filter(|r| r.cut && q.offset >= deep_page::COUNT_CUT_RUN_FROM) {
            if first.lo.is_finite() && first.hi.is_finite() {
                let counted = self.count(&deep_page::within(&q.filters, first), CountMode::Exact).await?;
                first.rows = counted.value.map(|n| n.max(0) as u64);
                first.cut = false;
            }
        }
        Ok(deep_page::pass_over(&runs, &q.filters, q.order_dir, q.offset))
    }

    /// Rows ordered by timestamp, read slice by slice (see module docs).
    fn time_sliced(&self, q: &RowsQuery, snap: IndexSnapshot) -> BatchStream {
        let me = self.clone();
        let columns = self.columns_for(q);
        let schema = columns.clone();
        let q = q.clone();
        let offset = q.offset;
        let want = q.limit.map(|l| l + q.offset);
        let planner = SlicePlanner::new(&snap, &q.filters, q.order_dir, want);
        // When the last slice was handed out: the next is asked for once the client took it.
        let state = (me, q, planner, 0u64, None::<Instant>);
        let s = stream::unfold(state, move |(me, q, mut planner, got, handed_out)| {
            let columns = columns.clone();
            async move {
                if want.is_some_and(|w| got >= w) {
                    return None;
                }
                if let Some(t) = handed_out {
                    planner.pace(t.elapsed());
                }
                let (lo, hi) = planner.next_slice(got)?;
                let fetch = want.map(|w| w - got);
                // Held until the slice is sorted and collected; never closed, so never an error.
                let _turn = match want {
                    None => me.export_slices.clone().acquire_owned().await.ok(),
                    Some(_) => None,
                };
                let df = async {
                    let last = match fetch.filter(|n| *n <= TWO_PHASE_MAX_ROWS) {
                        Some(n) => me.nth_timestamp(&q.filters, q.order_dir, (lo, hi), n).await?,
                        None => None,
                    };
                    me.slice_frame(&q.filters, q.order_dir, (lo, hi), last, fetch, &columns)
                };
                let df = match df.await {
                    Ok(df) => df,
                    Err(e) => return Some((stream::iter(vec![Err(e)]).boxed(), (me, q, planner, u64::MAX, None))),
                };
                let metrics = me.metrics.clone();
                let batches: Vec<Result<RecordBatch, QueryError>> = me
                    .executor
                    .run(async move { collect_counting_scan(df, &metrics).await })
                    .await
                    .map(|v| v.into_iter().map(Ok).collect())
                    .unwrap_or_else(|e| vec![Err(e)]);
                let n: u64 = batches.iter().map(|b| b.as_ref().map(|b| b.num_rows() as u64).unwrap_or(0)).sum();
                let failed = batches.iter().any(|b| b.is_err());
                let next_got = if failed { u64::MAX } else { got + n };
                Some((stream::iter(batches).boxed(), (me, q, planner, next_got, Some(Instant::now()))))
            }
        })
        .flatten();
        // Apply the offset across slices and make sure a schema-carrying batch comes first.
        Box::pin(skip_rows(Box::pin(s), offset, schema))
    }
}

/// Run a frame to completion and add the rows the Parquet scan actually decoded to
/// `fletch_hdfs_rows_scanned_total` (what statistics pruning saved is visible there).
async fn collect_counting_scan(df: DataFrame, metrics: &Metrics) -> Result<Vec<RecordBatch>, QueryError> {
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.map_err(map_df_error)?;
    let batches = datafusion::physical_plan::collect(plan.clone(), task_ctx).await.map_err(map_df_error)?;
    metrics.hdfs_rows_scanned.add(rows_scanned(plan.as_ref()) as u64);
    Ok(batches)
}

/// Rows decoded by Parquet scans in an executed plan: rows the pushed-down predicate
/// looked at when there was one, else rows the scan produced.
pub fn rows_scanned(plan: &dyn ExecutionPlan) -> usize {
    let own = match plan.metrics() {
        Some(m) if plan.name() == "DataSourceExec" => {
            let get = |n: &str| m.sum_by_name(n).map(|v| v.as_usize()).unwrap_or(0);
            let evaluated = get("pushdown_rows_pruned") + get("pushdown_rows_matched");
            if evaluated > 0 {
                evaluated
            } else {
                m.output_rows().unwrap_or(0)
            }
        }
        _ => 0,
    };
    own + plan.children().iter().map(|c| rows_scanned(c.as_ref())).sum::<usize>()
}

/// Drop the first `n` rows of a stream; always yields at least one (possibly empty) batch.
fn skip_rows(
    inner: BatchStream,
    n: u64,
    schema: SchemaRef,
) -> impl futures::Stream<Item = Result<RecordBatch, QueryError>> + Send {
    let empty = RecordBatch::new_empty(schema);
    let skipped = stream::unfold((inner, n), |(mut inner, mut left)| async move {
        let item = inner.next().await?;
        let item = item.map(|b| {
            if left == 0 {
                return b;
            }
            let drop = left.min(b.num_rows() as u64) as usize;
            left -= drop as u64;
            if drop == b.num_rows() {
                // Not an empty slice: that would keep the skipped rows' buffers alive.
                return RecordBatch::new_empty(b.schema());
            }
            b.slice(drop, b.num_rows() - drop)
        });
        Some((item, (inner, left)))
    });
    stream::once(async move { Ok(empty) }).chain(skipped)
}

/// Plans time slices from row-group statistics, newest first for DESC, oldest first for ASC.
pub struct SlicePlanner {
    /// Row groups as (near edge, far edge, rows), sorted by near edge in scan direction.
    groups: Vec<(f64, f64, u64)>,
    dir: OrderDir,
    next: usize,
    /// Far edge of the last slice handed out (exclusive bound of the next slice).
    edge: Option<f64>,
    target: u64,
    /// Limited queries grow the slice when a filter turns out selective; exports don't.
    limited: bool,
    done: bool,
}

impl SlicePlanner {
    /// Slices of `snap`'s row groups that `filters`' time range does not rule out.
    pub fn new(snap: &IndexSnapshot, filters: &Filters, dir: OrderDir, want: Option<u64>) -> Self {
        let (start, end) = filters.time_bounds();
        let mut groups: Vec<(f64, f64, u64)> = snap
            .files
            .iter()
            .flat_map(|f| f.row_groups.iter())
            .filter(|g| g.ts_max >= start && g.ts_min <= end)
            .map(|g| match dir {
                OrderDir::Desc => (g.ts_max, g.ts_min, g.rows),
                OrderDir::Asc => (g.ts_min, g.ts_max, g.rows),
            })
            .collect();
        match dir {
            OrderDir::Desc => groups.sort_by(|a, b| b.0.total_cmp(&a.0)),
            OrderDir::Asc => groups.sort_by(|a, b| a.0.total_cmp(&b.0)),
        }
        let target = want.unwrap_or(EXPORT_SLICE_ROWS).clamp(1, MAX_SLICE_ROWS);
        Self { groups, dir, next: 0, edge: None, target, limited: want.is_some(), done: false }
    }

    /// `(lo, hi)` of the next slice, `None` when everything has been covered.
    pub fn next_slice(&mut self, rows_found: u64) -> Option<(Option<f64>, Option<f64>)> {
        if self.done {
            return None;
        }
        if !self.limited {
            return Some(self.next_cut_slice());
        }
        // Few matches so far means a selective filter: cover more rows next time.
        if self.next > 0 {
            let covered: u64 = self.groups[..self.next].iter().map(|g| g.2).sum();
            let ratio = if rows_found == 0 { 8.0 } else { (covered as f64 / rows_found as f64).min(8.0) };
            self.target = (((self.target as f64) * ratio.max(2.0)) as u64).min(MAX_SLICE_ROWS);
        }
        let mut rows = 0;
        let mut far = self.edge.unwrap_or(match self.dir {
            OrderDir::Desc => f64::INFINITY,
            OrderDir::Asc => f64::NEG_INFINITY,
        });
        while self.next < self.groups.len() && rows < self.target {
            let (_, g_far, g_rows) = self.groups[self.next];
            far = match self.dir {
                OrderDir::Desc => far.min(g_far),
                OrderDir::Asc => far.max(g_far),
            };
            rows += g_rows;
            self.next += 1;
        }
        let near = self.edge;
        self.edge = Some(far);
        if self.next >= self.groups.len() || !far.is_finite() {
            self.done = true;
            return Some(self.bounds(near, None));
        }
        Some(self.bounds(near, Some(far)))
    }

    /// Exports: the client took the last slice in `taken`. Slices grow while it reads fast
    /// (fewer reads of files that overlap in time) and shrink while it reads slowly (less
    /// held for it).
    pub fn pace(&mut self, taken: Duration) {
        if self.limited {
            return;
        }
        if taken <= FAST_READER {
            self.target = (self.target * 2).min(FAST_EXPORT_SLICE_ROWS);
        } else if taken >= SLOW_READER {
            self.target = (self.target / 2).max(EXPORT_SLICE_ROWS);
        }
    }

    /// An export's next slice, cut anywhere in time so that it holds about `target` rows,
    /// counting a row group's rows as spread evenly over its time range. Files written in
    /// parallel (Spark's writer tasks, one file each per hour) overlap in time: a slice cut
    /// at row-group edges would hold every overlapping group whole, hundreds of thousands
    /// of rows for each slow reader.
    fn next_cut_slice(&mut self) -> (Option<f64>, Option<f64>) {
        let near = self.edge;
        let target = self.target as f64;
        let (lowest, highest) = self
            .groups
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), g| (lo.min(g.0.min(g.1)), hi.max(g.0.max(g.1))));
        let far = match self.dir {
            OrderDir::Desc => {
                // The largest `far` whose [far, near) holds `target` rows.
                let hi_end = near.unwrap_or(f64::INFINITY);
                let rows = |far: f64| self.estimate(far, hi_end);
                let (lo, hi) = (lowest, highest.min(hi_end));
                if rows(lo) <= target || hi <= lo {
                    None
                } else if rows(hi) >= target {
                    Some(hi)
                } else {
                    Some(boundary(lo, hi, |t| rows(t) >= target).0)
                }
            }
            OrderDir::Asc => {
                // The smallest `far` whose [near, far) holds `target` rows.
                let lo_end = near.unwrap_or(f64::NEG_INFINITY);
                let rows = |far: f64| self.estimate(lo_end, far);
                let (lo, hi) = (lowest.max(lo_end), highest);
                if rows(f64::INFINITY) <= target || hi <= lo {
                    None
                } else if rows(hi) < target {
                    Some(hi)
                } else {
                    Some(boundary(lo, hi, |t| rows(t) < target).1)
                }
            }
        };
        // Every slice moves the edge; a cut that would not is the last slice.
        let far = far.filter(|f| near.is_none_or(|n| if self.dir == OrderDir::Desc { *f < n } else { *f > n }));
        self.edge = far;
        self.done = far.is_none();
        self.bounds(near, far)
    }

    /// Rows with `lo <= timestamp < hi` by the row groups' statistics, a group's rows taken
    /// as evenly spread over its time range.
    fn estimate(&self, lo: f64, hi: f64) -> f64 {
        self.groups
            .iter()
            .map(|&(x, y, rows)| {
                let (a, b) = (x.min(y), x.max(y));
                if b > a {
                    rows as f64 * ((hi.min(b) - lo.max(a)).max(0.0) / (b - a))
                } else if lo <= a && a < hi {
                    rows as f64
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// Convert near/far edges to `[lo, hi)` in timestamp terms.
    fn bounds(&self, near: Option<f64>, far: Option<f64>) -> (Option<f64>, Option<f64>) {
        match self.dir {
            // DESC: rows with far <= ts < near
            OrderDir::Desc => (far, near),
            // ASC: rows with near <= ts < far
            OrderDir::Asc => (near, far),
        }
    }
}

/// The two closest times around where `below` stops holding, between `lo` (where it holds)
/// and `hi` (where it does not), by halving.
fn boundary(mut lo: f64, mut hi: f64, below: impl Fn(f64) -> bool) -> (f64, f64) {
    loop {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            return (lo, hi);
        }
        if below(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
}

fn filter_expr(f: &Filters, lo: Option<f64>, hi: Option<f64>) -> Option<Expr> {
    let mut parts: Vec<Expr> = Vec::new();
    for (name, v) in f.labels() {
        if let Some(v) = v {
            parts.push(col(name).eq(lit(v)));
        }
    }
    if let Some(t) = f.start_time {
        parts.push(col("timestamp").gt_eq(lit(t)));
    }
    if let Some(t) = f.end_time {
        parts.push(col("timestamp").lt_eq(lit(t)));
    }
    if let Some(t) = lo {
        parts.push(col("timestamp").gt_eq(lit(t)));
    }
    if let Some(t) = hi {
        parts.push(col("timestamp").lt(lit(t)));
    }
    parts.into_iter().reduce(|a, b| a.and(b))
}

#[async_trait]
impl LogStore for Archive {
    fn source(&self) -> Source {
        Source::Hdfs
    }

    async fn rows(&self, q: &RowsQuery) -> Result<BatchStream, QueryError> {
        let snap = self.snapshot().await?;
        if q.order_by == OrderBy::Timestamp {
            // Whole exports of time-sorted files need no sort at all.
            if q.limit.is_none() {
                if let Some(units) = sorted_export::plan(&snap.files, &q.filters, q.order_dir) {
                    let s = self.sorted_rows(&snap, units, &q.filters, q.order_dir)?;
                    return Ok(Box::pin(skip_rows(s, q.offset, logs_schema())));
                }
            }
            // A page within the copy of the newest rows is cut from it.
            match self.newest.page(snap.generation, q)? {
                newest::Lookup::Page(page) => {
                    self.metrics.hdfs_newest_pages.inc();
                    return Ok(Box::pin(stream::iter([Ok(page)])));
                }
                newest::Lookup::Miss { build } => {
                    if build {
                        self.read_newest(snap.clone());
                    }
                }
            }
            // A deep page: skip whole row groups by their row counts, or with filters whole
            // files by their rollups' counts, instead of reading time slices up to the offset.
            if let (Some(limit), true) = (q.limit, q.offset >= DEEP_OFFSET) {
                if let Some(units) = sorted_export::plan(&snap.files, &q.filters, q.order_dir) {
                    let (units, offset) = if q.filters.is_empty() {
                        skip_whole_row_groups(&snap.files, units, q.offset)
                    } else {
                        skip_counted_files(&snap.files, units, &q.filters, q.offset, &self.rollups)
                    };
                    let s = self.sorted_rows(&snap, units, &q.filters, q.order_dir)?;
                    return Ok(Box::pin(take_rows(Box::pin(skip_rows(s, offset, logs_schema())), limit)));
                }
            }
            // Files not in time order: the offset passes over whole runs of overlapping files.
            if q.offset > 0 {
                if let Some((filters, offset)) = self.pass_over_runs(&snap, q).await? {
                    self.metrics.hdfs_run_skips.inc();
                    return Ok(self.time_sliced(&RowsQuery { filters, offset, ..q.clone() }, snap));
                }
            }
            return Ok(self.time_sliced(q, snap));
        }
        let columns = self.columns_for(q);
        let mut df = self.frame(&columns)?;
        if let Some(f) = filter_expr(&q.filters, None, None) {
            df = df.filter(f).map_err(map_df_error)?;
        }
        df = df.sort(vec![col(q.order_by.column()).sort(q.order_dir == OrderDir::Asc, false)]).map_err(map_df_error)?;
        if q.limit.is_some() || q.offset > 0 {
            df = df.limit(q.offset as usize, q.limit.map(|l| l as usize)).map_err(map_df_error)?;
        }
        Ok(Box::pin(skip_rows(self.stream_frame(df), 0, columns)))
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<GroupCounts, QueryError> {
        let mut totals = std::collections::HashMap::new();
        for (key, n) in self.group_counts(q).await? {
            *totals.entry(key.unwrap_or_else(|| crate::schema::NULL_KEY.to_string())).or_default() += n;
        }
        Ok(GroupCounts::current(rollup::sorted(totals)))
    }

    async fn count(&self, f: &Filters, mode: CountMode) -> Result<CountAnswer, QueryError> {
        if mode == CountMode::None {
            return Ok(CountAnswer { value: None, kind: CountKind::None, age: None });
        }
        let snap = self.snapshot().await?;
        if f.is_empty() {
            // Exact, from footers: no scan at all.
            return Ok(CountAnswer { value: Some(snap.total_rows() as i64), kind: CountKind::Exact, age: None });
        }
        // Exact: rollups for whole files, a scan for the rest; computed once per filter
        // and file listing, shared by concurrent requests.
        let key = format!("{}|{}", snap.generation, f.key());
        let me = self.clone();
        let f = f.clone();
        self.counts
            .exact(&key, move || async move {
                let split = me.rollups.split(&snap.files, &f, snap.generation);
                let mut n: i64 = split.rows(&f).map(|(_, c)| c).sum();
                if !split.scan.is_empty() {
                    let df = me.files_frame(&snap, &split.scan, &f)?;
                    n += me
                        .executor
                        .run(async move { df.count().await.map(|n| n as i64).map_err(map_df_error) })
                        .await?;
                }
                Ok(n)
            })
            .await
    }

    async fn stats(&self) -> Result<StoreStats, QueryError> {
        let snap = self.snapshot().await?;
        Ok(StoreStats {
            logs_count: Some(snap.total_rows() as i64),
            files: Some(snap.files.len() as i64),
            ..StoreStats::default()
        })
    }

    async fn export_schema(&self) -> Result<SchemaRef, QueryError> {
        self.snapshot().await?;
        Ok(self.table_schema())
    }

    async fn cache_epoch(&self) -> u64 {
        self.index.send(Snapshot).await.map(|s| s.generation).unwrap_or(0)
    }

    async fn readiness(&self) -> Readiness {
        match self.index.send(Snapshot).await {
            Ok(s) => Readiness {
                ready: s.healthy,
                detail: serde_json::json!({
                    "files": s.files.len(),
                    "rows": s.total_rows(),
                    "generation": s.generation,
                    // Whole exports in time order skip the sort (see `sorted_export`).
                    "sorted_by_time": sorted_export::all_declared_sorted(&s.files),
                    "layouts": self.describe_layouts(&s),
                    // Pages of newest rows cut from a copy (see `newest`).
                    "newest_rows": self.newest.describe(),
                    "partition_columns": s.partitions.iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
                    "partition_time_zone": s.zone.name(),
                    "partition_directories_agree": s.windows_agree,
                    "spark_commit_log": s.commit_batch.map(|b| serde_json::json!({"batch": b, "orphan_files": s.orphans})),
                    "skipped_files": {
                        "count": s.skipped.len(),
                        "first": s.skipped.iter().take(index::SKIPPED_SHOWN).collect::<Vec<_>>(),
                    },
                    "last_error": s.last_error,
                }),
            },
            Err(e) => Readiness { ready: false, detail: serde_json::json!({"error": e.to_string()}) },
        }
    }
}

impl Archive {
    /// Each layout's files, columns and which fast paths its files get.
    fn describe_layouts(&self, s: &IndexSnapshot) -> Vec<serde_json::Value> {
        s.layouts
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let files: Vec<&FileInfo> = s.files.iter().filter(|f| f.layout == i).collect();
                let count = |p: &dyn Fn(&FileInfo) -> bool| files.iter().filter(|f| p(f)).count();
                let metadata = match l.file_schema.field_with_name("metadata").map(|f| f.data_type()) {
                    Ok(t) if layout::is_string_map(t) => "map",
                    Ok(_) => "json_text",
                    Err(_) => "absent",
                };
                serde_json::json!({
                    "files": files.len(),
                    "rows": files.iter().map(|f| f.rows).sum::<u64>(),
                    "columns": l.file_schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
                    "metadata": metadata,
                    // Files each fast path applies to.
                    "fast_paths": {
                        "count_from_footers": files.len(),
                        "newest_rows_by_row_group_time_stats": count(&|f| f.row_groups.iter().all(|g| g.ts_min.is_finite() && g.ts_max.is_finite())),
                        "sorted_export_without_sort": count(&|f| f.sorted_by_time),
                        "label_rollups": count(&|f| self.rollups.built(f)),
                        "time_range_skips_directory": if s.windows_agree { count(&|f| f.window.is_some()) } else { 0 },
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::RowGroupStats;

    /// `n` row groups of 100 000 rows, one time unit each, in one file.
    fn snapshot(n: usize) -> IndexSnapshot {
        let row_groups =
            (0..n).map(|i| RowGroupStats { ts_min: i as f64, ts_max: i as f64 + 0.999, rows: 100_000 }).collect();
        let file = FileInfo::named("f", row_groups);
        IndexSnapshot { files: Arc::new(vec![file]), ..Default::default() }
    }

    /// `files` files that all span the same hour (Spark's writer tasks), `rows` each.
    fn overlapping(files: usize, rows: u64) -> IndexSnapshot {
        let files = (0..files)
            .map(|i| {
                let name = format!("f{i}");
                FileInfo::named(&name, vec![RowGroupStats { ts_min: 0.0, ts_max: 3600.0, rows }])
            })
            .collect();
        IndexSnapshot { files: Arc::new(files), ..Default::default() }
    }

    #[test]
    fn export_slices_of_overlapping_files_hold_about_their_target() {
        for dir in [OrderDir::Desc, OrderDir::Asc] {
            let snap = overlapping(4, 50_000);
            let mut p = SlicePlanner::new(&snap, &Filters::default(), dir, None);
            let mut slices = Vec::new();
            while let Some(s) = p.next_slice(0) {
                slices.push(s);
                assert!(slices.len() < 100, "{dir:?}: no end");
            }
            // 200,000 rows in slices of EXPORT_SLICE_ROWS, every one of them.
            assert_eq!(slices.len(), 200_000usize.div_ceil(EXPORT_SLICE_ROWS as usize), "{dir:?}: {slices:?}");
            for (lo, hi) in &slices[1..slices.len() - 1] {
                let rows = p.estimate(lo.unwrap(), hi.unwrap());
                assert!((rows - EXPORT_SLICE_ROWS as f64).abs() < 1.0, "{dir:?}: {rows} rows in {lo:?}..{hi:?}");
            }
            let (first, last) = (slices[0], slices[slices.len() - 1]);
            match dir {
                OrderDir::Desc => assert!(first.1.is_none() && last.0.is_none()),
                OrderDir::Asc => assert!(first.0.is_none() && last.1.is_none()),
            }
            let contiguous = |w: &[(Option<f64>, Option<f64>)]| match dir {
                OrderDir::Desc => w[0].0 == w[1].1,
                OrderDir::Asc => w[0].1 == w[1].0,
            };
            assert!(slices.windows(2).all(contiguous), "{dir:?}: {slices:?}");
        }
    }

    #[test]
    fn export_slices_grow_for_fast_readers_and_shrink_for_slow_ones() {
        let mut p = SlicePlanner::new(&overlapping(4, 500_000), &Filters::default(), OrderDir::Desc, None);
        let held = |p: &mut SlicePlanner| match p.next_slice(0) {
            Some((lo, hi)) => p.estimate(lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY)).round() as u64,
            None => panic!("no slice"),
        };
        assert_eq!(held(&mut p), EXPORT_SLICE_ROWS);
        for _ in 0..(FAST_EXPORT_SLICE_ROWS / EXPORT_SLICE_ROWS).ilog2() {
            p.pace(Duration::from_millis(10));
        }
        assert_eq!(held(&mut p), FAST_EXPORT_SLICE_ROWS);
        p.pace(Duration::from_millis(500));
        assert_eq!(held(&mut p), FAST_EXPORT_SLICE_ROWS, "between the two: unchanged");
        for _ in 0..5 {
            p.pace(Duration::from_secs(30));
        }
        assert_eq!(held(&mut p), EXPORT_SLICE_ROWS);
    }

    #[test]
    fn export_slices_move_past_rows_that_share_one_timestamp() {
        // 100,000 rows at one instant, then more later: no slice may be empty forever.
        let mut snap = overlapping(1, 100_000);
        Arc::make_mut(&mut snap.files)[0].row_groups[0] = RowGroupStats { ts_min: 5.0, ts_max: 5.0, rows: 100_000 };
        let mut p = SlicePlanner::new(&snap, &Filters::default(), OrderDir::Desc, None);
        let mut n = 0;
        while p.next_slice(0).is_some() {
            n += 1;
            assert!(n < 10);
        }
        assert_eq!(n, 1, "a single instant is one slice");
    }

    #[test]
    fn slices_cover_everything_newest_first_and_stay_bounded() {
        // A page 5 M rows deep must not be collected in one slice.
        let mut p = SlicePlanner::new(&snapshot(50), &Filters::default(), OrderDir::Desc, Some(5_000_001));
        let mut edges = Vec::new();
        let mut found = 0;
        while let Some((lo, hi)) = p.next_slice(found) {
            let (lo_t, hi_t) = (lo.unwrap_or(0.0), hi.unwrap_or(50.0));
            assert!(hi_t - lo_t <= 3.0, "slice {lo:?}..{hi:?} covers more than MAX_SLICE_ROWS");
            edges.push((lo, hi));
            found += 200_000;
        }
        assert_eq!(edges.first().unwrap().1, None, "first slice is open towards the newest rows");
        assert_eq!(edges.last().unwrap().0, None, "last slice is open towards the oldest rows");
        assert!(edges.windows(2).all(|w| w[0].0 == w[1].1), "slices are contiguous: {edges:?}");
    }
}
