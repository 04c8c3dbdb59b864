//! Building the per-file rollups (see [`super::rollup`]) in the background.
//!
//! Many files are counted in one query: each batch of files is read as one table with an
//! extra partition column holding the file's number in the batch, and grouped by that
//! number and the three labels. Streaming leaves thousands of small files; one query per
//! file spent most of its time planning, and kept 10,000 new files without rollups (so
//! scanned by every aggregate) for minutes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit};

use super::index::{FileInfo, IndexSnapshot, Snapshot};
use super::layout::Strings;
use super::rollup::Labels;
use super::table::ArchiveTable;
use super::{map_df_error, Archive};
use crate::error::QueryError;

/// The column that tells a batch's files apart. Partition values are per file, so the
/// Parquet scan adds it for free.
const FILE_COLUMN: &str = "__fletch_file_no";
/// Files counted by one query, and the rows they may hold together: enough that planning
/// is a small part of the work, few enough that the groups stay small.
const BATCH_FILES: usize = 500;
const BATCH_ROWS: u64 = 4_000_000;

impl Archive {
    /// Compute the rollups of listed files that have none yet. Only `keep_rollups_warm`'s
    /// one task calls this, so builds never overlap.
    async fn build_rollups(&self, snap: &IndexSnapshot) -> Result<(), QueryError> {
        self.rollups.retain(&snap.files);
        let missing = self.rollups.missing(&snap.files);
        for batch in batches(&missing) {
            match self.count_files(snap, batch).await {
                Ok(counts) => {
                    for (f, c) in batch.iter().zip(counts) {
                        self.rollups.insert(f.meta.clone(), c);
                    }
                }
                // One unreadable file fails its whole batch: count the others one by one,
                // so only that file is left to scans.
                Err(e) => {
                    tracing::debug!(error = %e, files = batch.len(), "batched rollup failed; counting its files singly");
                    for f in batch {
                        let mut counts = self.count_files(snap, std::slice::from_ref(f)).await?;
                        self.rollups.insert(f.meta.clone(), counts.pop().unwrap_or_default());
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows per label combination of each of `files` (in their order), in one query.
    async fn count_files(
        &self,
        snap: &IndexSnapshot,
        files: &[&FileInfo],
    ) -> Result<Vec<Vec<(Labels, i64)>>, QueryError> {
        let numbered = numbered_files(snap, files);
        let table = Arc::new(ArchiveTable::fixed(numbered, self.store_url(), Strings::View));
        let df = self
            .scan_ctx
            .read_table(table)
            .map_err(map_df_error)?
            .aggregate(
                vec![col(FILE_COLUMN), col("level"), col("service"), col("host")],
                vec![count(lit(1)).alias("count")],
            )
            .map_err(map_df_error)?;
        let batches = self.executor.run(async move { df.collect().await.map_err(map_df_error) }).await?;
        let mut counts = vec![Vec::new(); files.len()];
        for b in &batches {
            add_counts(b, &mut counts)?;
        }
        Ok(counts)
    }

    /// Build rollups in the background whenever the listing changes. Aggregates never
    /// wait for them: files without a rollup yet go into the one scan with the files that
    /// straddle a time bound, so a first aggregate over thousands of new files costs one
    /// query, not one per file. Runs until the actix system stops.
    pub fn keep_rollups_warm(&self, interval: Duration) {
        let me = self.clone();
        actix::spawn(async move {
            let (mut built_for, mut warned_for) = (0, 0);
            loop {
                if let Ok(snap) = me.index.send(Snapshot).await {
                    me.take_columns(&snap);
                    if snap.healthy && snap.generation != built_for {
                        let built = me.build_rollups(&snap).await;
                        let with_rollup = snap.files.iter().filter(|f| me.rollups.built(f)).count();
                        me.metrics.hdfs_rollup_files.store(with_rollup as i64, Ordering::Relaxed);
                        match built {
                            Ok(()) => built_for = snap.generation,
                            // Once per listing: a file that cannot be read would otherwise
                            // log on every retry. Queries still answer by scanning.
                            Err(e) if warned_for != snap.generation => {
                                warned_for = snap.generation;
                                tracing::warn!(error = %e, "building Parquet rollups failed; retrying quietly");
                            }
                            Err(e) => tracing::debug!(error = %e, "building Parquet rollups failed again"),
                        }
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
}

/// `files` cut into runs of at most [`BATCH_FILES`] files and about [`BATCH_ROWS`] rows.
fn batches<'a, 'b>(files: &'b [&'a FileInfo]) -> Vec<&'b [&'a FileInfo]> {
    let mut out = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, f) in files.iter().enumerate() {
        if i > start && (i - start == BATCH_FILES || rows + f.rows > BATCH_ROWS) {
            out.push(&files[start..i]);
            (start, rows) = (i, 0);
        }
        rows += f.rows;
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// `files` as a snapshot of their own whose table has [`FILE_COLUMN`], the file's
/// position in `files`, as its last partition column.
fn numbered_files(snap: &IndexSnapshot, files: &[&FileInfo]) -> IndexSnapshot {
    let number = Field::new(FILE_COLUMN, DataType::Int32, false);
    let mut partitions = snap.partitions.as_ref().clone();
    partitions.push(number.clone());
    let mut table: Vec<Field> = snap.table.fields().iter().map(|f| f.as_ref().clone()).collect();
    table.push(number);
    let files = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut f = (*f).clone();
            f.partition.push((FILE_COLUMN.to_string(), Some(i.to_string())));
            f
        })
        .collect();
    IndexSnapshot {
        files: Arc::new(files),
        partitions: Arc::new(partitions),
        table: Arc::new(Schema::new(table)),
        ..snap.clone()
    }
}

/// Add one result batch of `(file number, level, service, host, count)` to `counts`.
fn add_counts(b: &RecordBatch, counts: &mut [Vec<(Labels, i64)>]) -> Result<(), QueryError> {
    let file = b.column(0).as_primitive::<Int32Type>();
    let labels: Vec<_> =
        (1..4).map(|i| arrow::compute::cast(b.column(i), &DataType::Utf8)).collect::<Result<_, _>>()?;
    let labels: Vec<_> = labels.iter().map(|a| a.as_string::<i32>()).collect();
    let n = b.column(4).as_primitive::<Int64Type>();
    for row in 0..b.num_rows() {
        let get = |c: usize| labels[c].is_valid(row).then(|| labels[c].value(row).to_string());
        let slot = counts
            .get_mut(file.value(row) as usize)
            .ok_or_else(|| QueryError::internal("rollup query returned an unknown file number"))?;
        slot.push(([get(0), get(1), get(2)], n.value(row)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::RowGroupStats;
    use object_store::path::Path as StorePath;
    use object_store::ObjectMeta;

    fn file(rows: u64) -> FileInfo {
        let meta = ObjectMeta {
            location: StorePath::from("f"),
            last_modified: Default::default(),
            size: 1,
            e_tag: None,
            version: None,
        };
        FileInfo::with_row_groups(meta, vec![RowGroupStats { ts_min: 0.0, ts_max: 1.0, rows }])
    }

    #[test]
    fn batches_stop_at_the_file_or_row_budget_and_keep_every_file() {
        let small: Vec<FileInfo> = (0..1_200).map(|_| file(100)).collect();
        let refs: Vec<&FileInfo> = small.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![500, 500, 200]);

        let big: Vec<FileInfo> = (0..5).map(|_| file(BATCH_ROWS / 2)).chain([file(BATCH_ROWS * 3)]).collect();
        let refs: Vec<&FileInfo> = big.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1, 1], "a file over the budget goes alone");
        assert!(batches(&[]).is_empty());
    }
}
