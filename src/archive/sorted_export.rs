//! Exports in time order over time-sorted archive files, without a sort.
//!
//! When every file declares (Parquet `sorting_columns`) that its row groups are sorted by
//! `timestamp` ascending, and no two row groups overlap in time, a whole export in time
//! order is just the row groups one after another: as stored for ascending order, each
//! row group reversed for descending. Files written by `fletch load` qualify. Row groups
//! are read in slices of [`SLICE_ROWS`] rows (only the pages a slice needs, through the
//! offset index), last slice first for descending order; the next slice is decoded on the
//! query runtime while the current one is sent. So a stream holds two slices
//! whatever the export size — a slow reader costs a few megabytes, not row groups — and
//! the scan runs at the speed of the Parquet decoder. Other archives are read in bounded
//! time slices (`Archive::time_sliced` in `archive/mod.rs`).

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::common::DFSchema;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection, RowSelector};
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use super::store::{map_df_error, map_parquet_error};
use crate::archive::index::FileInfo;
use crate::error::QueryError;
use crate::executor::DedicatedExecutor;
use crate::metrics::Metrics;
use crate::query::{Filters, OrderDir};
use crate::schema::logs_schema;
use crate::stream::BatchStream;

/// A row predicate compiled once per export.
type Predicate = Arc<dyn PhysicalExpr>;

/// Slices decoded ahead of the one being sent. One keeps the decoder and the encoder
/// busy at once; each more costs a slow reader a slice of memory and gains nothing on
/// two cores.
const READ_AHEAD: usize = 1;
/// Rows of a row group decoded at once (and held, reversed, for descending order).
pub const SLICE_ROWS: u64 = 16 * 1024;
/// Rows per batch handed to encoders.
const BATCH_ROWS: usize = 8192;

/// One row group of one file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    pub file: usize,
    pub row_group: usize,
}

impl Unit {
    /// Rows in this row group, from the footer statistics the index keeps.
    pub fn rows(&self, files: &[FileInfo]) -> u64 {
        files[self.file].row_groups.get(self.row_group).map_or(0, |g| g.rows)
    }
}

/// There are files, and every one declares its rows sorted by time (see `FileInfo`).
pub fn all_declared_sorted(files: &[FileInfo]) -> bool {
    !files.is_empty() && files.iter().all(|f| f.sorted_by_time)
}

/// The row groups to read, in output order, when `files` allow a sort-free export;
/// `None` when they don't. Row groups wholly outside the time filter are left out.
pub fn plan(files: &[FileInfo], filters: &Filters, dir: OrderDir) -> Option<Vec<Unit>> {
    if !all_declared_sorted(files) {
        return None;
    }
    let mut groups: Vec<(Unit, f64, f64)> = files
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| {
            f.row_groups.iter().enumerate().map(move |(ri, g)| (Unit { file: fi, row_group: ri }, g.ts_min, g.ts_max))
        })
        .collect();
    groups.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
    // Overlapping row groups would interleave: only a sort can order those.
    if groups.windows(2).any(|w| w[0].2 > w[1].1) {
        return None;
    }
    let (start, end) = filters.time_bounds();
    let mut units: Vec<Unit> =
        groups.into_iter().filter(|(_, lo, hi)| *hi >= start && *lo <= end).map(|(u, _, _)| u).collect();
    if dir == OrderDir::Desc {
        units.reverse();
    }
    Some(units)
}

/// Stream the planned row groups in order, keeping the rows that match `filter` (the
/// same expression the DataFusion paths use). Starts with an empty batch that carries
/// the schema.
pub fn stream(
    store: Arc<dyn ObjectStore>,
    files: Arc<Vec<FileInfo>>,
    units: Vec<Unit>,
    filter: Option<Expr>,
    dir: OrderDir,
    executor: Arc<DedicatedExecutor>,
    metrics: Arc<Metrics>,
) -> Result<BatchStream, QueryError> {
    let predicate = match filter {
        Some(e) => {
            let schema = DFSchema::try_from(logs_schema().as_ref().clone()).map_err(map_df_error)?;
            Some(
                create_physical_expr(&e, &schema, &ExecutionProps::new(), &PhysicalPlanningContext::default())
                    .map_err(map_df_error)?,
            )
        }
        None => None,
    };
    let slices: Vec<(Unit, u64, u64)> = units
        .into_iter()
        .flat_map(|u| {
            let rows = u.rows(&files);
            let mut starts: Vec<u64> = (0..rows).step_by(SLICE_ROWS as usize).collect();
            if dir == OrderDir::Desc {
                starts.reverse();
            }
            starts.into_iter().map(move |start| (u, start, SLICE_ROWS.min(rows - start)))
        })
        .collect();
    let reads = stream::iter(slices)
        .map(move |(u, start, len)| {
            let (store, file, predicate, executor) =
                (store.clone(), files[u.file].clone(), predicate.clone(), executor.clone());
            let slice = RowSlice { row_group: u.row_group, start, len };
            metrics.hdfs_rows_scanned.add(len);
            async move { executor.run(read_slice(store, file, slice, predicate, dir)).await }
        })
        .buffered(READ_AHEAD)
        .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
        .try_flatten();
    let first = stream::once(async { Ok(RecordBatch::new_empty(logs_schema())) });
    Ok(Box::pin(first.chain(reads)))
}

/// Rows `start..start + len` of one row group.
struct RowSlice {
    row_group: usize,
    start: u64,
    len: u64,
}

/// One slice of a row group in batches, filtered, reversed for descending order.
async fn read_slice(
    store: Arc<dyn ObjectStore>,
    file: FileInfo,
    slice: RowSlice,
    predicate: Option<Predicate>,
    dir: OrderDir,
) -> Result<Vec<RecordBatch>, QueryError> {
    let footer = file.footer.clone().ok_or_else(|| QueryError::internal("sorted export without a footer"))?;
    let metadata = ArrowReaderMetadata::try_new(footer, Default::default()).map_err(map_parquet_error)?;
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store, file.meta.location.clone()).with_file_size(file.meta.size);
    let mut rows = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
        .with_row_groups(vec![slice.row_group])
        .with_row_selection(RowSelection::from(vec![
            RowSelector::skip(slice.start as usize),
            RowSelector::select(slice.len as usize),
        ]))
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(map_parquet_error)?;
    let schema = logs_schema();
    let mut out = Vec::new();
    while let Some(batch) = rows.next().await {
        // Same names and types as `logs` (checked by the index); adopt the canonical schema.
        let batch = RecordBatch::try_new(schema.clone(), batch.map_err(map_parquet_error)?.columns().to_vec())?;
        let batch = match &predicate {
            Some(p) => keep_matching(batch, p.as_ref())?,
            None => batch,
        };
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    if dir == OrderDir::Desc {
        out = reversed(out)?;
    }
    Ok(out)
}

/// The same rows in reverse order. Each batch is reversed and its original dropped at
/// once, so a row group is held about once, not twice.
fn reversed(mut batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, QueryError> {
    let mut out = Vec::with_capacity(batches.len());
    while let Some(b) = batches.pop() {
        let indices = UInt32Array::from_iter_values((0..b.num_rows() as u32).rev());
        let columns = b
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(b.schema(), columns)?);
    }
    Ok(out)
}

/// Rows of `batch` for which `predicate` is true (null counts as false, as in SQL).
fn keep_matching(batch: RecordBatch, predicate: &dyn PhysicalExpr) -> Result<RecordBatch, QueryError> {
    let mask = predicate.evaluate(&batch).and_then(|v| v.into_array(batch.num_rows())).map_err(map_df_error)?;
    Ok(arrow::compute::filter_record_batch(&batch, mask.as_boolean())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::RowGroupStats;
    use object_store::{path::Path as StorePath, ObjectMeta};

    fn file(groups: &[(f64, f64)], sorted: bool) -> FileInfo {
        let groups = groups.iter().map(|&(ts_min, ts_max)| RowGroupStats { ts_min, ts_max, rows: 10 }).collect();
        FileInfo {
            sorted_by_time: sorted,
            ..FileInfo::with_row_groups(
                ObjectMeta {
                    location: StorePath::from("f"),
                    last_modified: Default::default(),
                    size: 1,
                    e_tag: None,
                    version: None,
                },
                groups,
            )
        }
    }

    fn u(file: usize, row_group: usize) -> Unit {
        Unit { file, row_group }
    }

    #[test]
    fn row_groups_in_time_order_across_files() {
        // Files listed out of time order; row groups in order inside each.
        let files = vec![file(&[(20.0, 29.0), (30.0, 39.0)], true), file(&[(0.0, 9.0), (10.0, 19.0)], true)];
        let all = Filters::default();
        assert_eq!(plan(&files, &all, OrderDir::Asc), Some(vec![u(1, 0), u(1, 1), u(0, 0), u(0, 1)]));
        assert_eq!(plan(&files, &all, OrderDir::Desc), Some(vec![u(0, 1), u(0, 0), u(1, 1), u(1, 0)]));
        let range = Filters { start_time: Some(15.0), end_time: Some(25.0), ..Default::default() };
        assert_eq!(plan(&files, &range, OrderDir::Asc), Some(vec![u(1, 1), u(0, 0)]));
    }

    #[test]
    fn overlap_or_undeclared_order_needs_the_sort() {
        let overlapping = vec![file(&[(0.0, 10.0)], true), file(&[(5.0, 15.0)], true)];
        assert_eq!(plan(&overlapping, &Filters::default(), OrderDir::Asc), None);
        let undeclared = vec![file(&[(0.0, 10.0)], true), file(&[(20.0, 30.0)], false)];
        assert_eq!(plan(&undeclared, &Filters::default(), OrderDir::Asc), None);
    }
}
