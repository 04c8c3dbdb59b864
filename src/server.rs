//! Building and running a fletch server from a [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Supervisor};
use actix_web::{middleware::from_fn, web, App, HttpServer};

use crate::actors::parquet_index::ParquetIndex;
use crate::actors::pg_router::PgRouter;
use crate::executor::DedicatedExecutor;
use crate::sources::parquet::{open_store, ParquetSource};
use crate::config::Config;
use crate::error::QueryError;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::sources::postgres::{settings_from, PgSource};
use crate::sources::LogStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid setting: {0}")]
    Setting(#[from] QueryError),
    #[error("server stopped with an error: {0}")]
    Run(std::io::Error),
}

/// A started server: its bound addresses, and the future that runs it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub metrics: Arc<Metrics>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Start every component. Must be called inside an actix `System`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::default());
    let postgres: Option<Arc<dyn LogStore>> = if config.postgres.url.is_empty() {
        None
    } else {
        let settings = Arc::new(settings_from(&config.postgres)?);
        let router = PgRouter::new(settings, metrics.clone(), config.postgres.pool_size.max(1), config.admission.queue_depth)
            .start();
        Some(Arc::new(PgSource::new(
            router,
            Duration::from_millis(config.admission.queue_timeout_ms),
            Duration::from_millis(config.postgres.count_ttl_ms),
        )))
    };
    let hdfs: Option<Arc<dyn LogStore>> = if config.parquet.url.is_empty() {
        None
    } else {
        let (store, dir) = open_store(&config.parquet.url)?;
        let interval = Duration::from_millis(config.parquet.refresh_interval_ms.max(100));
        let index = {
            let (store, metrics) = (store.clone(), metrics.clone());
            Supervisor::start(move |_| ParquetIndex::new(store, dir, interval, metrics))
        };
        let partitions = if config.parquet.target_partitions == 0 { cores() } else { config.parquet.target_partitions };
        let executor = Arc::new(
            DedicatedExecutor::new("fletch-query", partitions)
                .map_err(|e| StartError::Setting(QueryError::Internal(format!("query runtime: {e}"))))?,
        );
        Some(Arc::new(ParquetSource::new(&config.parquet.url, store, index, executor, partitions, metrics.clone())?))
    };
    let state = web::Data::new(AppState { postgres, hdfs, metrics: metrics.clone() });
    let workers = if config.http.workers == 0 { cores() } else { config.http.workers };
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).wrap(from_fn(http::observe)).configure(http::routes)
    })
    .workers(workers)
    .backlog(4096)
    .max_connections(50_000)
    .shutdown_timeout(5)
    .bind(&config.http.listen)
    .map_err(|source| StartError::Bind { addr: config.http.listen.clone(), source })?;
    let http_addr = server.addrs()[0];
    let server = server.run();
    tracing::info!(%http_addr, "fletch HTTP listening");
    Ok(Running { http_addr, server, metrics })
}

/// Run until the process is told to stop (SIGINT/SIGTERM).
pub fn run_blocking(config: Config) -> Result<(), StartError> {
    actix_web::rt::System::new().block_on(async move {
        let running = start(config).await?;
        println!("fletch listening: http://{}", running.http_addr);
        running.server.await.map_err(StartError::Run)
    })
}
