//! `hdfs.logs`: the files the archive index lists, read as one DataFusion table.
//!
//! No listing happens at query time: the index already knows every committed file, its
//! layout, partition values and time statistics. A scan keeps the files whose partition
//! directory and statistics can hold rows of the query's time range, reads each layout's
//! files as one Parquet scan, projects it onto the table's columns (see `layout`) and
//! unions the layouts. Filters stay with DataFusion, which pushes them through the
//! projection into the Parquet reader (row-group and page pruning).

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::index::{FileInfo, IndexSnapshot};
use super::layout::{self, Strings};
use crate::archive::Archive;

/// Which files a table reads.
enum Files {
    /// The archive as the index lists it at each scan.
    Live(Box<Archive>),
    /// A fixed set (aggregates over the files their rollups cannot answer).
    Fixed(IndexSnapshot),
}

pub struct ArchiveTable {
    files: Files,
    strings: Strings,
    store_url: ObjectStoreUrl,
    map_to_json: Arc<ScalarUDF>,
}

impl std::fmt::Debug for ArchiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveTable")
    }
}

impl ArchiveTable {
    /// The whole archive, re-read from the index at every scan.
    pub fn live(archive: Archive, strings: Strings) -> Self {
        let store_url = archive.store_url();
        Self { files: Files::Live(Box::new(archive)), strings, store_url, map_to_json: super::map_json::udf() }
    }

    /// Just the files of `snapshot`.
    pub fn fixed(snapshot: IndexSnapshot, store_url: ObjectStoreUrl, strings: Strings) -> Self {
        Self { files: Files::Fixed(snapshot), strings, store_url, map_to_json: super::map_json::udf() }
    }

    /// The table's columns with strings as the table reads them. The live table only
    /// ever grows, so a plan made before a new column appeared still fits.
    fn columns(&self) -> SchemaRef {
        let table = match &self.files {
            Files::Live(a) => a.table_schema(),
            Files::Fixed(s) => s.table.clone(),
        };
        let fields: Vec<Field> = table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(layout::output_type(f.data_type(), self.strings)))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// One layout's files as a Parquet scan projected onto `wanted`.
    async fn scan_layout(
        &self,
        state: &dyn Session,
        snap: &IndexSnapshot,
        layout: usize,
        files: Vec<&FileInfo>,
        wanted: &[Field],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let file_schema = layout::scan_schema(&snap.layouts[layout], self.strings);
        let partition_fields: Vec<Arc<Field>> = snap.partitions.iter().map(|f| Arc::new(f.clone())).collect();
        let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
        let table_schema = TableSchema::builder(file_schema).with_table_partition_cols(partition_fields).build();
        let mut statistics = Statistics::new_unknown(table_schema.table_schema());
        let groups = state.config().target_partitions().max(1).min(files.len());
        let mut file_groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        let mut rows = 0;
        for (i, f) in files.iter().enumerate() {
            rows += f.rows as usize;
            let values = layout::partition_scalars(&snap.partitions, &f.partition);
            let pf = PartitionedFile::new_from_meta(f.meta.clone()).with_partition_values(values);
            file_groups[i % groups].push(pf);
        }
        statistics.num_rows = Precision::Exact(rows);
        let source = format.file_source(table_schema);
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
            .with_statistics(statistics)
            .with_limit(limit)
            .build();
        let scan = format.create_physical_plan(state, config).await?;
        let scanned = DFSchema::try_from(scan.schema().as_ref().clone())?;
        let exprs = layout::projection(&scanned, wanted, self.strings, &self.map_to_json)?;
        let physical = exprs
            .into_iter()
            .zip(wanted)
            .map(|(e, f)| Ok((state.create_physical_expr(e, &scanned)?, f.name().clone())))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(physical, scan)?))
    }
}

#[async_trait]
impl TableProvider for ArchiveTable {
    fn schema(&self) -> SchemaRef {
        self.columns()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snap = match &self.files {
            Files::Live(a) => a.snapshot().await.map_err(|e| DataFusionError::External(Box::new(e)))?,
            Files::Fixed(s) => s.clone(),
        };
        let table = self.columns();
        let wanted: Vec<Field> = match projection {
            Some(p) => p.iter().map(|i| table.field(*i).clone()).collect(),
            None => table.fields().iter().map(|f| f.as_ref().clone()).collect(),
        };
        let (lo, hi) = time_bounds(filters);
        let mut by_layout: Vec<Vec<&FileInfo>> = vec![Vec::new(); snap.layouts.len()];
        for f in snap.files.iter().filter(|f| may_hold(f, lo, hi, snap.windows_agree)) {
            by_layout[f.layout].push(f);
        }
        // A limit without filters may stop each scan early; with filters it may not.
        let limit = limit.filter(|_| filters.is_empty());
        let mut inputs = Vec::new();
        for (layout, files) in by_layout.into_iter().enumerate().filter(|(_, f)| !f.is_empty()) {
            inputs.push(self.scan_layout(state, &snap, layout, files, &wanted, limit).await?);
        }
        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(Arc::new(Schema::new(wanted)))));
        }
        UnionExec::try_new(inputs)
    }
}

/// Whether a file can hold rows with `lo <= timestamp <= hi`: by its partition directory
/// first (when directories agree with statistics), then by its statistics.
fn may_hold(f: &FileInfo, lo: f64, hi: f64, trust_windows: bool) -> bool {
    if let (Some((start, end)), true) = (f.window, trust_windows) {
        if end <= lo || start > hi {
            return false;
        }
    }
    if f.row_groups.is_empty() {
        return true;
    }
    let (min, max) = f.time_range();
    !(max < lo || min > hi)
}

/// The tightest `[lo, hi]` (inclusive, widened where the filter is strict) that the
/// conjunction `filters` puts on `timestamp`; unbounded sides are infinite.
pub fn time_bounds(filters: &[Expr]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut conjuncts: Vec<&Expr> = filters.iter().collect();
    while let Some(e) = conjuncts.pop() {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                conjuncts.push(left);
                conjuncts.push(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (is_timestamp(left), number(right), is_timestamp(right), number(left)) {
                    (true, Some(v), ..) => (*op, v),
                    (_, _, true, Some(v)) => match op.swap() {
                        Some(op) => (op, v),
                        None => continue,
                    },
                    _ => continue,
                };
                match op {
                    Operator::Gt | Operator::GtEq => lo = lo.max(value),
                    Operator::Lt | Operator::LtEq => hi = hi.min(value),
                    Operator::Eq => {
                        lo = lo.max(value);
                        hi = hi.min(value);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_timestamp(&b.expr) => {
                if let (Some(l), Some(h)) = (number(&b.low), number(&b.high)) {
                    lo = lo.max(l);
                    hi = hi.min(h);
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

fn is_timestamp(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "timestamp",
        Expr::Cast(c) => is_timestamp(&c.expr),
        _ => false,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v.cast_to(&arrow::datatypes::DataType::Float64).ok()? {
            ScalarValue::Float64(Some(v)) if !v.is_nan() => Some(v),
            _ => None,
        },
        Expr::Cast(c) => number(&c.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn time_bounds_come_from_comparisons_on_timestamp_only() {
        let f =
            [col("timestamp").gt_eq(lit(10.0)).and(col("timestamp").lt(lit(20_i64))), col("level").eq(lit("ERROR"))];
        assert_eq!(time_bounds(&f), (10.0, 20.0));
        let reversed = [lit(5.0).lt(col("timestamp"))];
        assert_eq!(time_bounds(&reversed), (5.0, f64::INFINITY));
        let between = [col("timestamp").between(lit(1), lit(2))];
        assert_eq!(time_bounds(&between), (1.0, 2.0));
        assert_eq!(time_bounds(&[col("timestamp").not_eq(lit(1.0))]), (f64::NEG_INFINITY, f64::INFINITY));
    }
}
