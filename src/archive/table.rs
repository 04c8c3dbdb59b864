//! `hdfs.logs`: the Parquet directory as a DataFusion table, re-listed on every scan (like
//! the HTTP facade's queries) so files written since the last query are seen at once.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::archive::Archive;
use crate::schema::logs_schema;

pub struct ArchiveTable {
    source: Archive,
}

impl std::fmt::Debug for ArchiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveTable")
    }
}

impl ArchiveTable {
    pub fn new(source: Archive) -> Self {
        Self { source }
    }

    fn listing(&self) -> DfResult<Arc<dyn TableProvider>> {
        let t = self.source.table().map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(t)
    }
}

#[async_trait]
impl TableProvider for ArchiveTable {
    fn schema(&self) -> SchemaRef {
        logs_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.listing()?.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.listing()?.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> DfResult<ScanResult> {
        self.listing()?.scan_with_args(state, args).await
    }
}
