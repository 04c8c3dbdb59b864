//! The Parquet reader actor: owns the store client for the archive directory, refreshes
//! the file listing on an interval (new files become visible without a restart), keeps
//! per-row-group time statistics from the footers, and reports store health.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
#[allow(deprecated)]
use parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::statistics::Statistics;

use crate::metrics::Metrics;

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
    /// The footer, kept so readers need not fetch it again (`None` only in tests).
    pub footer: Option<Arc<ParquetMetaData>>,
    /// Every row group declares itself sorted by `timestamp` ascending, has no null
    /// timestamps, and the columns are exactly the `logs` layout: such files can be
    /// exported in time order without a sort (see `archive::sorted_export`).
    pub sorted_by_time: bool,
}

/// What the actor knows now. `generation` changes whenever the set of files changes.
#[derive(Debug, Clone, Default)]
pub struct IndexSnapshot {
    pub files: Arc<Vec<FileInfo>>,
    pub generation: u64,
    pub healthy: bool,
    pub last_error: Option<String>,
    pub refreshed_at: Option<Instant>,
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

pub struct ArchiveIndex {
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
    interval: Duration,
    metrics: Arc<Metrics>,
    state: IndexSnapshot,
}

impl ArchiveIndex {
    pub fn new(store: Arc<dyn ObjectStore>, dir: StorePath, interval: Duration, metrics: Arc<Metrics>) -> Self {
        Self { store, dir, interval, metrics, state: IndexSnapshot::default() }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let (store, dir) = (self.store.clone(), self.dir.clone());
        let known: HashMap<StorePath, FileInfo> =
            self.state.files.iter().map(|f| (f.meta.location.clone(), f.clone())).collect();
        let fut = async move { scan(store, dir, known).await };
        ctx.wait(fut.into_actor(self).map(|res, act, _| {
            act.state.refreshed_at = Some(Instant::now());
            match res {
                Ok(files) => {
                    let changed = files.len() != act.state.files.len()
                        || files.iter().zip(act.state.files.iter()).any(|(a, b)| a.meta != b.meta);
                    if changed || act.state.generation == 0 {
                        act.state.generation += 1;
                        tracing::info!(
                            files = files.len(),
                            generation = act.state.generation,
                            "parquet listing changed"
                        );
                    }
                    act.state.files = Arc::new(files);
                    act.state.healthy = true;
                    act.state.last_error = None;
                    act.metrics.hdfs_up.store(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if act.state.healthy || act.state.last_error.is_none() {
                        tracing::warn!(error = %e, "parquet listing failed");
                    }
                    act.state.healthy = false;
                    act.state.last_error = Some(e);
                    act.metrics.hdfs_up.store(0, Ordering::Relaxed);
                }
            }
        }));
    }
}

/// List `*.parquet` under `dir` (sorted by name) and read footers of files not seen before.
async fn scan(
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
    known: HashMap<StorePath, FileInfo>,
) -> Result<Vec<FileInfo>, String> {
    let listing =
        tokio::time::timeout(Duration::from_secs(10), store.list(Some(&dir)).try_collect::<Vec<ObjectMeta>>())
            .await
            .map_err(|_| "listing timed out after 10 s".to_string())?
            .map_err(|e| e.to_string())?;
    let mut metas: Vec<ObjectMeta> =
        listing.into_iter().filter(|m| m.location.as_ref().ends_with(".parquet") && m.size > 0).collect();
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::with_capacity(metas.len());
    for meta in metas {
        if let Some(f) = known.get(&meta.location).filter(|f| f.meta == meta) {
            out.push(f.clone());
            continue;
        }
        match footer_stats(store.clone(), &meta).await {
            Ok(f) => out.push(f),
            // A file still being written has no footer yet: skip it until the next refresh.
            Err(e) => tracing::warn!(file = %meta.location, error = %e, "skipping unreadable parquet file"),
        }
    }
    Ok(out)
}

// ParquetObjectReader is deprecated in parquet 59 in favour of hand-written readers;
// it still does exactly what is needed here (ranged reads of the footer).
#[allow(deprecated)]
async fn footer_stats(store: Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<FileInfo, String> {
    let mut reader = ParquetObjectReader::new(store, meta.location.clone()).with_file_size(meta.size);
    // The offset index lets a sorted export read a row group in slices, fetching only the
    // pages each slice needs (see `sorted_export`).
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let md = reader.get_metadata(Some(&options)).await.map_err(|e| e.to_string())?;
    let ts_idx = md
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == "timestamp")
        .ok_or("no `timestamp` column")?;
    let mut row_groups = Vec::with_capacity(md.num_row_groups());
    let mut sorted_by_time = md.num_row_groups() > 0 && has_logs_layout(&md);
    for rg in md.row_groups() {
        let stats = rg.column(ts_idx).statistics();
        let (lo, hi) = match stats {
            Some(Statistics::Double(s)) => (s.min_opt().copied(), s.max_opt().copied()),
            _ => (None, None),
        };
        let declared = rg
            .sorting_columns()
            .and_then(|c| c.first())
            .is_some_and(|c| c.column_idx as usize == ts_idx && !c.descending);
        let no_nulls = stats.and_then(|s| s.null_count_opt()) == Some(0);
        sorted_by_time &= declared && no_nulls && lo.is_some() && hi.is_some();
        row_groups.push(RowGroupStats {
            // Without statistics a row group must be assumed to span everything.
            ts_min: lo.unwrap_or(f64::NEG_INFINITY),
            ts_max: hi.unwrap_or(f64::INFINITY),
            rows: rg.num_rows() as u64,
        });
    }
    Ok(FileInfo {
        meta: meta.clone(),
        rows: md.file_metadata().num_rows() as u64,
        row_groups,
        footer: Some(md),
        sorted_by_time,
    })
}

/// The file's columns, read as Arrow, have exactly the names and types of `logs`.
fn has_logs_layout(md: &Arc<ParquetMetaData>) -> bool {
    let Ok(arrow) = parquet::arrow::arrow_reader::ArrowReaderMetadata::try_new(md.clone(), Default::default()) else {
        return false;
    };
    let want = crate::schema::logs_schema();
    let have = arrow.schema();
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
