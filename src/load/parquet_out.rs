//! Parquet files written for fast reads: time-ordered files, row groups with page
//! statistics (so top-k and time filters prune), dictionary-encoded low-cardinality columns.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::LoadError;
use crate::schema::logs_schema;

/// Rows per row group: small enough that statistics prune well, large enough to scan fast.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        // Unique per row: a dictionary would only be abandoned after costing memory.
        .set_column_dictionary_enabled("id".into(), false)
        .set_column_dictionary_enabled("timestamp".into(), false)
        .set_column_dictionary_enabled("metadata".into(), false)
        .set_column_dictionary_enabled("created_at".into(), false)
        // Rows arrive in time order: saying so lets readers export in order without a sort.
        .set_sorting_columns(Some(vec![SortingColumn { column_idx: 1, descending: false, nulls_first: false }]))
        .build()
}

/// Writes incoming batches into files of about `file_rows` rows under `dir`, named by
/// their first id so lexical order is time order. Returns the paths written.
pub async fn write_files(
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
    file_rows: u64,
    batches: async_channel::Receiver<RecordBatch>,
    on_rows: impl Fn(usize),
) -> Result<Vec<String>, LoadError> {
    let mut written = Vec::new();
    let mut current: Option<(AsyncArrowWriter<BufWriter>, StorePath, u64)> = None;
    while let Ok(mut batch) = batches.recv().await {
        // Split batches at file boundaries so every file holds exactly `file_rows` rows.
        while batch.num_rows() > 0 {
            if current.is_none() {
                let first_id =
                    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batch.column(0)).value(0);
                let path = dir.clone().join(format!("logs-{first_id:012}.parquet"));
                let sink = BufWriter::new(store.clone(), path.clone());
                let w = AsyncArrowWriter::try_new(sink, logs_schema(), Some(writer_properties()))?;
                current = Some((w, path, 0));
            }
            let (w, _, rows) = current.as_mut().expect("writer just opened");
            let take = (file_rows - *rows).min(batch.num_rows() as u64) as usize;
            w.write(&batch.slice(0, take)).await?;
            *rows += take as u64;
            on_rows(take);
            batch = batch.slice(take, batch.num_rows() - take);
            if *rows >= file_rows {
                let (w, path, _) = current.take().expect("writer open");
                w.close().await?;
                written.push(path.to_string());
            }
        }
    }
    if let Some((w, path, _)) = current.take() {
        w.close().await?;
        written.push(path.to_string());
    }
    Ok(written)
}
