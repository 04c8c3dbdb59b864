//! The archive index actor: owns the store client for the archive directory, refreshes
//! the file listing on an interval (new files become visible without a restart), keeps
//! each file's schema, partition values and per-row-group time statistics from its
//! footer, honours Spark's commit log, and reports store health.
//!
//! Footers are read once per file (16 at a time), when the file first shows up; only
//! files that sorted exports read directly keep their whole footer in memory, the rest
//! keep their row-group statistics (a few dozen bytes per row group).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arrow::datatypes::{Field, Schema, SchemaRef};
use chrono_tz::Tz;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
#[allow(deprecated)]
use parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::statistics::Statistics;

use super::commit_log::{CommitLog, Committed};
use super::layout::{self, Layout};
use super::partition_time;
use crate::metrics::Metrics;
use crate::schema::logs_schema;

/// Footers read at once when new files show up.
const FOOTER_READS: usize = 16;
/// Skipped files named in `/ready` (the count is always complete).
pub const SKIPPED_SHOWN: usize = 20;

/// Time range and size of one row group (the unit of statistics pruning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowGroupStats {
    pub ts_min: f64,
    pub ts_max: f64,
    pub rows: u64,
}

#[derive(Debug, Clone)]
pub struct FileInfo {
    pub meta: ObjectMeta,
    pub rows: u64,
    pub row_groups: Vec<RowGroupStats>,
    /// The footer, kept only for files sorted exports read directly (`sorted_by_time`).
    pub footer: Option<Arc<ParquetMetaData>>,
    /// Every row group declares itself sorted by `timestamp` ascending, has no null
    /// timestamps, and the file is exactly the `logs` layout outside any partition
    /// directory: such files can be exported in time order without a sort (see
    /// `archive::sorted_export`).
    pub sorted_by_time: bool,
    /// Every row group's statistics say its `timestamp` has no NULLs. Rows with a NULL
    /// timestamp sort last in either direction, so only such files let a page count a
    /// stretch of time's rows as lying before it (see `archive::deep_page`).
    pub no_null_times: bool,
    /// The file's columns as Arrow reads them (one shared copy per distinct schema).
    pub schema: SchemaRef,
    /// `key=value` directories above the file.
    pub partition: layout::PartitionValues,
    /// The time its partition directory covers (see `partition_time`).
    pub window: Option<(f64, f64)>,
    /// Index into [`IndexSnapshot::layouts`].
    pub layout: usize,
}

impl FileInfo {
    /// A file known only by its time statistics (tests of planning logic).
    #[cfg(test)]
    pub fn with_row_groups(meta: ObjectMeta, row_groups: Vec<RowGroupStats>) -> Self {
        let rows = row_groups.iter().map(|g| g.rows).sum();
        Self {
            meta,
            rows,
            row_groups,
            footer: None,
            sorted_by_time: false,
            no_null_times: true,
            schema: logs_schema(),
            partition: Vec::new(),
            window: None,
            layout: 0,
        }
    }

    /// A file named `name` known only by its row groups (tests of planning logic).
    #[cfg(test)]
    pub fn named(name: &str, row_groups: Vec<RowGroupStats>) -> Self {
        let meta = ObjectMeta {
            location: name.into(),
            last_modified: Default::default(),
            size: 1,
            e_tag: None,
            version: None,
        };
        Self::with_row_groups(meta, row_groups)
    }

    /// Earliest and latest `timestamp` in the file, from its statistics.
    pub fn time_range(&self) -> (f64, f64) {
        let lo = self.row_groups.iter().map(|g| g.ts_min).fold(f64::INFINITY, f64::min);
        let hi = self.row_groups.iter().map(|g| g.ts_max).fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }
}

/// A file left out of the table, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What the actor knows now. `generation` changes whenever the set of files changes.
#[derive(Debug, Clone)]
pub struct IndexSnapshot {
    pub files: Arc<Vec<FileInfo>>,
    pub generation: u64,
    pub healthy: bool,
    pub last_error: Option<String>,
    pub refreshed_at: Option<Instant>,
    /// Distinct file layouts, each read as one scan.
    pub layouts: Arc<Vec<Layout>>,
    /// Hive partition columns, in the order they nest.
    pub partitions: Arc<Vec<Field>>,
    /// `hdfs.logs`: the `logs` columns, every other file column, the partition columns.
    pub table: SchemaRef,
    /// Files that could not be read as `logs` (see `layout::check_file_schema`).
    pub skipped: Arc<Vec<SkippedFile>>,
    /// Files on disk that Spark's commit log does not list (failed micro-batches).
    pub orphans: usize,
    /// The newest batch of Spark's commit log, when there is one.
    pub commit_batch: Option<u64>,
    /// Directory names agree with file statistics in the configured zone, so time
    /// ranges may skip directories by name.
    pub windows_agree: bool,
    /// The zone partition directories are read in (`parquet.partition_time_zone`).
    pub zone: Tz,
}

impl Default for IndexSnapshot {
    fn default() -> Self {
        Self {
            files: Arc::default(),
            generation: 0,
            healthy: false,
            last_error: None,
            refreshed_at: None,
            layouts: Arc::new(vec![Layout { file_schema: logs_schema() }]),
            partitions: Arc::default(),
            table: logs_schema(),
            skipped: Arc::default(),
            orphans: 0,
            commit_batch: None,
            windows_agree: true,
            zone: Tz::UTC,
        }
    }
}

impl IndexSnapshot {
    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

#[derive(Message)]
#[rtype(result = "IndexSnapshot")]
pub struct Snapshot;

/// Refresh now (unless one finished within `max_age`) and answer with the result.
#[derive(Message)]
#[rtype(result = "IndexSnapshot")]
pub struct Refresh {
    pub max_age: Duration,
}

/// What a refresh carries from one run to the next.
#[derive(Default)]
struct Memory {
    known: HashMap<StorePath, FileInfo>,
    refused: HashMap<StorePath, (ObjectMeta, String)>,
    commit_log: CommitLog,
    schemas: HashMap<Schema, SchemaRef>,
}

pub struct ArchiveIndex {
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
    interval: Duration,
    zone: Tz,
    metrics: Arc<Metrics>,
    state: IndexSnapshot,
    /// Taken by a running refresh, put back when it ends.
    memory: Option<Memory>,
}

impl ArchiveIndex {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        dir: StorePath,
        interval: Duration,
        zone: Tz,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, dir, interval, zone, metrics, state: IndexSnapshot::default(), memory: Some(Memory::default()) }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(mut memory) = self.memory.take() else { return };
        let (store, dir, zone, table) = (self.store.clone(), self.dir.clone(), self.zone, self.state.table.clone());
        let fut = async move {
            let res = scan(&store, &dir, zone, &table, &mut memory).await;
            (res, memory)
        };
        ctx.wait(fut.into_actor(self).map(|(res, memory), act, _| {
            act.memory = Some(memory);
            act.state.refreshed_at = Some(Instant::now());
            match res {
                Ok(next) => act.publish(next),
                Err(e) => {
                    if act.state.healthy || act.state.last_error.is_none() {
                        tracing::warn!(error = %e, "archive listing failed");
                    }
                    act.state.healthy = false;
                    act.state.last_error = Some(e);
                    act.metrics.hdfs_up.store(0, Ordering::Relaxed);
                }
            }
        }));
    }

    fn publish(&mut self, next: IndexSnapshot) {
        let old = &self.state;
        let changed = next.files.len() != old.files.len()
            || next.files.iter().zip(old.files.iter()).any(|(a, b)| a.meta != b.meta);
        let generation = if changed || old.generation == 0 { old.generation + 1 } else { old.generation };
        if generation != old.generation {
            tracing::info!(
                files = next.files.len(),
                layouts = next.layouts.len(),
                skipped = next.skipped.len(),
                orphans = next.orphans,
                generation,
                "archive listing changed"
            );
        }
        if old.windows_agree && !next.windows_agree {
            tracing::warn!(
                "partition directories disagree with the files' timestamps in the configured \
                 parquet.partition_time_zone; time ranges no longer skip directories by name"
            );
        }
        self.metrics.hdfs_up.store(1, Ordering::Relaxed);
        self.metrics.hdfs_orphan_files.store(next.orphans as i64, Ordering::Relaxed);
        self.metrics.hdfs_skipped_files.store(next.skipped.len() as i64, Ordering::Relaxed);
        self.metrics.hdfs_files.store(next.files.len() as i64, Ordering::Relaxed);
        self.state = IndexSnapshot { generation, refreshed_at: self.state.refreshed_at, ..next };
    }
}

/// List the archive, read footers of files not seen before, and build the next snapshot.
async fn scan(
    store: &Arc<dyn ObjectStore>,
    dir: &StorePath,
    zone: Tz,
    previous_table: &Schema,
    memory: &mut Memory,
) -> Result<IndexSnapshot, String> {
    let listing = tokio::time::timeout(Duration::from_secs(30), store.list(Some(dir)).try_collect::<Vec<ObjectMeta>>())
        .await
        .map_err(|_| "listing timed out after 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    let committed: Option<Committed> = memory.commit_log.committed(store, dir, &listing).await?;
    let mut orphans = 0;
    let mut candidates: Vec<(ObjectMeta, layout::PartitionValues)> = Vec::new();
    for meta in listing {
        let Some(rel) = layout::relative(dir, &meta.location) else { continue };
        if layout::is_hidden(&rel) || !meta.location.as_ref().ends_with(".parquet") || meta.size == 0 {
            continue;
        }
        if committed.as_ref().is_some_and(|c| !c.contains(&rel.join("/"))) {
            orphans += 1;
            continue;
        }
        let partition = layout::partition_values(&rel);
        candidates.push((meta, partition));
    }
    candidates.sort_by(|a, b| a.0.location.cmp(&b.0.location));

    let new: Vec<ObjectMeta> = candidates
        .iter()
        .map(|(m, _)| m)
        .filter(|m| !memory.known.get(&m.location).is_some_and(|f| f.meta == **m))
        .filter(|m| !memory.refused.get(&m.location).is_some_and(|(r, _)| r == *m))
        .cloned()
        .collect();
    let read: Vec<(ObjectMeta, Result<Footer, String>)> = futures::stream::iter(new)
        .map(|m| async move {
            let r = read_footer(store.clone(), &m).await;
            (m, r)
        })
        .buffer_unordered(FOOTER_READS)
        .collect()
        .await;
    for (meta, footer) in read {
        match footer.and_then(|f| layout::check_file_schema(&f.schema).map(|()| f)) {
            Ok(f) => {
                let schema = memory.schemas.entry((*f.schema).clone()).or_insert_with(|| f.schema.clone()).clone();
                let info = FileInfo { schema, ..f.into_info(meta.clone()) };
                memory.refused.remove(&meta.location);
                memory.known.insert(meta.location.clone(), info);
            }
            Err(reason) => {
                tracing::warn!(file = %meta.location, %reason, "skipping archive file");
                memory.refused.insert(meta.location.clone(), (meta, reason));
            }
        }
    }

    let listed: std::collections::HashSet<&StorePath> = candidates.iter().map(|(m, _)| &m.location).collect();
    memory.known.retain(|k, _| listed.contains(k));
    memory.refused.retain(|k, _| listed.contains(k));
    let mut files: Vec<FileInfo> = Vec::with_capacity(candidates.len());
    for (meta, partition) in candidates {
        if let Some(f) = memory.known.get(&meta.location) {
            files.push(FileInfo { partition, ..f.clone() });
        }
    }
    let partitions = layout::partition_columns(files.iter().map(|f| f.partition.as_slice()));
    let schemas: Vec<SchemaRef> = files.iter().map(|f| f.schema.clone()).collect();
    let (layouts, of) = layout::group_layouts(&schemas);
    let mut windows_agree = true;
    for (f, l) in files.iter_mut().zip(of) {
        f.layout = l;
        f.window = partition_time::window(&f.partition, zone);
        f.sorted_by_time &= f.partition.is_empty();
        if let (Some((start, end)), false) = (f.window, f.row_groups.is_empty()) {
            let (lo, hi) = f.time_range();
            windows_agree &= lo >= start && hi < end;
        }
    }
    let table = layout::table_schema(previous_table, &layouts, &partitions);
    let mut skipped: Vec<SkippedFile> = memory
        .refused
        .values()
        .map(|(m, reason)| SkippedFile { path: m.location.to_string(), reason: reason.clone() })
        .collect();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(IndexSnapshot {
        files: Arc::new(files),
        generation: 0,
        healthy: true,
        last_error: None,
        refreshed_at: None,
        layouts: Arc::new(layouts),
        partitions: Arc::new(partitions),
        table,
        skipped: Arc::new(skipped),
        orphans,
        commit_batch: committed.map(|c| c.batch),
        windows_agree,
        zone,
    })
}

/// What a footer tells about a file.
struct Footer {
    md: Arc<ParquetMetaData>,
    schema: SchemaRef,
    row_groups: Vec<RowGroupStats>,
    declared_sorted: bool,
    no_null_times: bool,
}

impl Footer {
    fn into_info(self, meta: ObjectMeta) -> FileInfo {
        let sorted_by_time = self.declared_sorted && has_logs_layout(&self.schema);
        FileInfo {
            meta,
            rows: self.md.file_metadata().num_rows() as u64,
            row_groups: self.row_groups,
            // Only sorted exports read footers themselves; DataFusion caches its own.
            footer: sorted_by_time.then_some(self.md),
            sorted_by_time,
            no_null_times: self.no_null_times,
            schema: self.schema,
            partition: Vec::new(),
            window: None,
            layout: 0,
        }
    }
}

// ParquetObjectReader is deprecated in parquet 59 in favour of hand-written readers;
// it still does exactly what is needed here (ranged reads of the footer).
#[allow(deprecated)]
async fn read_footer(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<Footer, String> {
    let mut reader = ParquetObjectReader::new(store, meta.location.clone()).with_file_size(meta.size);
    // The offset index lets a sorted export read a row group in slices, fetching only the
    // pages each slice needs (see `sorted_export`).
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let md = reader.get_metadata(Some(&options)).await.map_err(|e| format!("unreadable footer: {e}"))?;
    let schema = ArrowReaderMetadata::try_new(md.clone(), Default::default())
        .map_err(|e| format!("unreadable schema: {e}"))?
        .schema()
        .clone();
    let ts_idx = md.file_metadata().schema_descr().columns().iter().position(|c| c.path().string() == "timestamp");
    let mut row_groups = Vec::with_capacity(md.num_row_groups());
    let mut declared_sorted = md.num_row_groups() > 0 && ts_idx.is_some();
    let mut no_null_times = ts_idx.is_some();
    for rg in md.row_groups() {
        let stats = ts_idx.and_then(|i| rg.column(i).statistics());
        let (lo, hi) = match stats {
            Some(Statistics::Double(s)) => (s.min_opt().copied(), s.max_opt().copied()),
            Some(Statistics::Float(s)) => (s.min_opt().map(|v| *v as f64), s.max_opt().map(|v| *v as f64)),
            Some(Statistics::Int64(s)) => (s.min_opt().map(|v| *v as f64), s.max_opt().map(|v| *v as f64)),
            Some(Statistics::Int32(s)) => (s.min_opt().map(|v| *v as f64), s.max_opt().map(|v| *v as f64)),
            _ => (None, None),
        };
        let declared = rg
            .sorting_columns()
            .and_then(|c| c.first())
            .is_some_and(|c| Some(c.column_idx as usize) == ts_idx && !c.descending);
        let no_nulls = stats.and_then(|s| s.null_count_opt()) == Some(0);
        no_null_times &= no_nulls;
        declared_sorted &= declared && no_nulls && lo.is_some() && hi.is_some();
        row_groups.push(RowGroupStats {
            // Without statistics a row group must be assumed to span everything.
            ts_min: lo.filter(|v| !v.is_nan()).unwrap_or(f64::NEG_INFINITY),
            ts_max: hi.filter(|v| !v.is_nan()).unwrap_or(f64::INFINITY),
            rows: rg.num_rows() as u64,
        });
    }
    Ok(Footer { md, schema, row_groups, declared_sorted, no_null_times })
}

/// The file's columns, read as Arrow, have exactly the names and types of `logs`.
fn has_logs_layout(have: &Schema) -> bool {
    let want = logs_schema();
    have.fields().len() == want.fields().len()
        && have
            .fields()
            .iter()
            .zip(want.fields().iter())
            .all(|(h, w)| h.name() == w.name() && h.data_type() == w.data_type())
}

impl Actor for ArchiveIndex {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.refresh(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.refresh(ctx));
    }
}

impl Supervised for ArchiveIndex {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics.actor_restarts.with("parquet_index").inc();
    }
}

impl Handler<Snapshot> for ArchiveIndex {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.clone())
    }
}

impl Handler<Refresh> for ArchiveIndex {
    type Result = ResponseActFuture<Self, IndexSnapshot>;
    fn handle(&mut self, msg: Refresh, ctx: &mut Context<Self>) -> Self::Result {
        let fresh = self.state.refreshed_at.is_some_and(|t| t.elapsed() <= msg.max_age);
        if !fresh {
            self.refresh(ctx);
        }
        // Answered after any refresh queued by `ctx.wait` has finished.
        Box::pin(async {}.into_actor(self).map(|_, act, _| act.state.clone()))
    }
}
