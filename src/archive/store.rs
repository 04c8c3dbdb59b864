//! The archive's object store (a local directory or HDFS) and how its failures are
//! classified: by the error's type where it starts, not by its text.

use std::sync::Arc;

use datafusion::error::DataFusionError;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;
use parquet::errors::ParquetError;

use crate::error::{causes, Cause, QueryError, RetryAfter};

/// Open the object store for a directory URL; returns the store and the directory in it.
pub fn open_store(url: &str) -> Result<(Arc<dyn ObjectStore>, StorePath), QueryError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        QueryError::invalid(
            "parquet.url",
            format!("`{url}` is not a URL ({e}); use file:///abs/dir or hdfs://host:port/dir"),
            None,
        )
    })?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| QueryError::invalid("parquet.url", "file URL needs an absolute path", None))?;
            std::fs::create_dir_all(&path).map_err(|e| {
                QueryError::invalid("parquet.url", format!("cannot create {}: {e}", path.display()), None)
            })?;
            let store = object_store::local::LocalFileSystem::new();
            let dir = StorePath::from_filesystem_path(&path)
                .map_err(|e| QueryError::invalid("parquet.url", e.to_string(), None))?;
            Ok((Arc::new(store), dir))
        }
        "hdfs" => {
            let authority = format!("hdfs://{}", &parsed[url::Position::BeforeHost..url::Position::AfterPort]);
            let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                .with_url(authority)
                .build()
                .map_err(|e| QueryError::invalid("parquet.url", format!("cannot set up HDFS client: {e}"), None))?;
            Ok((Arc::new(store), StorePath::from(parsed.path())))
        }
        other => {
            Err(QueryError::invalid("parquet.url", format!("unsupported scheme `{other}`"), Some(&["file", "hdfs"])))
        }
    }
}

/// The URL an archive's object store is registered under in a DataFusion runtime
/// (`hdfs://host:port`); `None` for `file://`, which every runtime already has.
pub fn object_store_base(url: &str) -> Result<Option<url::Url>, QueryError> {
    let parsed = url::Url::parse(url).map_err(|e| QueryError::invalid("parquet.url", e.to_string(), None))?;
    if parsed.scheme() != "hdfs" {
        return Ok(None);
    }
    let base = format!("hdfs://{}", &parsed[url::Position::BeforeHost..url::Position::AfterPort]);
    url::Url::parse(&base).map(Some).map_err(|e| QueryError::invalid("parquet.url", e.to_string(), None))
}

/// Engine and store failures → what clients are told. A store that does not answer is a
/// 503; the query's own mistakes are 400; anything else the store said is a 502.
pub fn map_df_error(e: DataFusionError) -> QueryError {
    let text = e.strip_backtrace();
    if store_not_answering(&e) {
        return QueryError::unavailable(
            "hdfs",
            format!("the Parquet store did not answer: {text}"),
            RetryAfter::Outage,
        )
        .with_cause(Arc::new(e));
    }
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => QueryError::Sql(text),
        DataFusionError::ResourcesExhausted(_) => QueryError::overloaded("hdfs", text, RetryAfter::QueueFull),
        _ => QueryError::store("hdfs", text).with_cause(Arc::new(e)),
    }
}

/// A read failure from the Parquet reader: the store not answering is a 503, a damaged
/// file a store error.
pub fn map_parquet_error(e: ParquetError) -> QueryError {
    let down = store_not_answering(&e);
    let cause: Cause = Arc::new(e);
    if down {
        QueryError::unavailable("hdfs", format!("the Parquet store did not answer: {cause}"), RetryAfter::Outage)
            .with_cause(cause)
    } else {
        QueryError::store("hdfs", cause.to_string()).with_cause(cause)
    }
}

/// Whether anywhere in the error's chain the object store, HDFS or the network failed.
pub(crate) fn store_not_answering(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|err| {
        err.is::<object_store::Error>()
            || err.is::<hdfs_native::HdfsError>()
            || err.is::<std::io::Error>()
            || matches!(
                err.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::ObjectStore(_) | DataFusionError::IoError(_))
            )
    })
}
