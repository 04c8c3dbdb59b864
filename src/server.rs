//! Building and running a fletch server from a [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Supervisor};
use actix_web::{middleware::from_fn, web, App, HttpServer};

use crate::archive::index::ArchiveIndex;
use crate::archive::{open_store, partition_time, Archive};
use crate::auth::Auth;
use crate::config::Config;
use crate::drain::Drain;
use crate::error::QueryError;
use crate::executor::DedicatedExecutor;
use crate::http;
use crate::metrics::Metrics;
use crate::postgres::rollup_keeper::RollupSettings;
use crate::postgres::router::PgRouter;
use crate::postgres::tables::{TableName, Tables};
use crate::postgres::{settings_from, PgSource};
use crate::query::Source;
use crate::service::admission::{Admission, Lane, LaneLimits};
use crate::service::{Parts, Service, ServiceSettings, SourceService};
use crate::sql::SqlEngine;
use crate::store::LogStore;

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
    /// The Arrow Flight / Flight SQL port, when `[flight] listen` is set.
    pub flight_addr: Option<SocketAddr>,
    /// Set when the process begins to stop; `/ready` reads it.
    pub drain: Drain,
    /// How long work under way may take once draining began (`http.shutdown_grace_ms`).
    pub grace: Duration,
    /// How long a draining process keeps accepting first (`http.shutdown_delay_ms`).
    pub delay: Duration,
    /// Stops Flight when the server is dropped ([`crate::shutdown`] stops it first).
    pub(crate) flight: Option<crate::flight::FlightServer>,
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Start every component. Must be called inside an actix `System`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::default());
    let pg_source = start_postgres(&config, &metrics)?;
    if let Some(pg) = &pg_source {
        pg.keep_rollup(RollupSettings {
            enabled: config.postgres.rollup,
            refresh: Duration::from_millis(config.postgres.rollup_refresh_ms.max(10)),
            verify_every: Duration::from_millis(config.postgres.rollup_verify_interval_ms),
        });
    }
    let archive_source = start_archive(&config, &metrics)?;
    let admission =
        Admission::new(lane_limits(&config), Duration::from_millis(config.admission.queue_timeout_ms), metrics.clone())
            .start();
    let settings = ServiceSettings {
        query_timeout: Duration::from_millis(config.admission.query_timeout_ms),
        max_stale: Duration::from_millis(config.cache.max_stale_ms),
        cache_ttl: Duration::from_millis(config.cache.ttl_ms),
        cache_max_rows: config.cache.max_rows,
        cache_max_entries: config.cache.max_entries,
    };
    let serve = |store: Option<Arc<dyn LogStore>>| {
        store.map(|s| Arc::new(SourceService::new(s, admission.clone(), metrics.clone(), &settings)))
    };
    let service = Arc::new(Service::new(Parts {
        postgres: serve(pg_source.clone().map(|s| Arc::new(s) as Arc<dyn LogStore>)),
        hdfs: serve(archive_source.clone().map(|s| Arc::new(s) as Arc<dyn LogStore>)),
        sql: Some(
            SqlEngine::new(pg_source, archive_source, partitions(&config), metrics.clone())?
                .with_ballista(crate::sql::ballista::Cluster::from_config(&config.ballista, cores())?),
        ),
        admission,
        metrics: metrics.clone(),
        auth: Arc::new(Auth::new(&config.auth.tokens)),
        query_timeout: settings.query_timeout,
    }));
    let flight = start_flight(&config, &service)?;
    let flight_addr = flight.as_ref().map(|f| f.addr);
    let state = web::Data::from(service);
    let drain = Drain::default();
    let drain_state = web::Data::new(drain.clone());
    let grace = Duration::from_millis(config.http.shutdown_grace_ms);
    let workers = if config.http.workers == 0 { cores() } else { config.http.workers };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(drain_state.clone())
            .wrap(from_fn(http::guard))
            .wrap(from_fn(http::observe))
            .configure(http::routes)
    })
    // Streamed bodies go out in several writes; without TCP_NODELAY, Nagle's algorithm and
    // the client's delayed ACK add ~40 ms to every response.
    .on_connect(|conn, ext| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
        http::peer::remember(conn, ext);
    })
    .workers(workers)
    .backlog(4096)
    .max_connections(50_000)
    // Stopping is `crate::shutdown`'s: it marks the process not-ready before the listener
    // closes. actix counts its grace in whole seconds and checks once a second.
    .disable_signals()
    .shutdown_timeout(grace.as_millis().div_ceil(1000) as u64)
    .bind(&config.http.listen)
    .map_err(|source| StartError::Bind { addr: config.http.listen.clone(), source })?;
    let http_addr = server.addrs()[0];
    let server = server.run();
    tracing::info!(%http_addr, "fletch HTTP listening");
    let delay = Duration::from_millis(config.http.shutdown_delay_ms);
    Ok(Running { http_addr, server, metrics, flight_addr, drain, grace, delay, flight })
}

/// Arrow Flight / Flight SQL (see [`crate::flight`]) on `[flight] listen`, unless empty.
fn start_flight(config: &Config, service: &Arc<Service>) -> Result<Option<crate::flight::FlightServer>, StartError> {
    if config.flight.listen.is_empty() {
        return Ok(None);
    }
    crate::flight::start(&config.flight, service.clone(), cores())
        .map(Some)
        .map_err(|source| StartError::Bind { addr: config.flight.listen.clone(), source })
}

/// The connection actors for `[postgres]`, without the label rollup (see [`start`]).
pub(crate) fn start_postgres(config: &Config, metrics: &Arc<Metrics>) -> Result<Option<PgSource>, StartError> {
    if config.postgres.url.is_empty() {
        return Ok(None);
    }
    let settings = Arc::new(settings_from(&config.postgres)?);
    let router =
        PgRouter::new(settings, metrics.clone(), config.postgres.pool_size.max(1), config.admission.queue_depth)
            .start();
    let tables = Tables {
        logs: TableName::parse("postgres.table", &config.postgres.table).map_err(StartError::Setting)?,
        events: TableName::parse("postgres.events_table", &config.postgres.events_table)
            .map_err(StartError::Setting)?,
    };
    let source = PgSource::new(
        router,
        tables,
        Duration::from_millis(config.admission.queue_timeout_ms),
        Duration::from_millis(config.postgres.count_ttl_ms),
    );
    Ok(Some(source))
}

fn start_archive(config: &Config, metrics: &Arc<Metrics>) -> Result<Option<Archive>, StartError> {
    if config.parquet.url.is_empty() {
        return Ok(None);
    }
    let (store, dir) = open_store(&config.parquet.url)?;
    let interval = Duration::from_millis(config.parquet.refresh_interval_ms.max(100));
    let zone = partition_time::parse_zone(&config.parquet.partition_time_zone)
        .map_err(|e| StartError::Setting(QueryError::invalid("parquet.partition_time_zone", e, None)))?;
    let index = {
        let (store, metrics) = (store.clone(), metrics.clone());
        Supervisor::start(move |_| ArchiveIndex::new(store, dir, interval, zone, metrics))
    };
    let executor = Arc::new(
        DedicatedExecutor::new("fletch-query", partitions(config))
            .map_err(|e| StartError::Setting(QueryError::internal(format!("query runtime: {e}"))))?,
    );
    let source = Archive::new(&config.parquet.url, store, index, executor, partitions(config), metrics.clone())?
        .with_newest_rows(config.parquet.newest_rows);
    source.keep_rollups_warm(interval);
    Ok(Some(source))
}

fn partitions(config: &Config) -> usize {
    if config.parquet.target_partitions == 0 {
        cores()
    } else {
        config.parquet.target_partitions
    }
}

/// Permits per source and lane. Defaults fit the machine: PostgreSQL heavy queries may use
/// a quarter of the pool so pages always find a free connection; Parquet scans get one
/// permit per core of the query runtime.
pub fn lane_limits(config: &Config) -> Vec<((Source, Lane), LaneLimits)> {
    let a = &config.admission;
    let or = |v: usize, d: usize| if v == 0 { d } else { v };
    let pool = config.postgres.pool_size.max(1);
    let pg_heavy = or(a.heavy_permits, (pool / 4).max(1));
    let pg_light = or(a.light_permits, pool.saturating_sub(pg_heavy).max(1));
    let cores = partitions(config);
    let queue = a.queue_depth.max(1);
    let l = |permits: usize| LaneLimits { permits, queue };
    vec![
        ((Source::Postgres, Lane::Light), l(pg_light)),
        ((Source::Postgres, Lane::Heavy), l(pg_heavy)),
        ((Source::Postgres, Lane::Export), l(a.export_permits.max(1))),
        ((Source::Hdfs, Lane::Light), l(or(a.light_permits, 2 * cores))),
        ((Source::Hdfs, Lane::Heavy), l(or(a.heavy_permits, cores))),
        ((Source::Hdfs, Lane::Export), l(a.export_permits.max(1))),
    ]
}

/// Run until the process is told to stop (SIGTERM/SIGINT), then drain (see
/// [`crate::shutdown`]).
pub fn run_blocking(config: Config) -> Result<(), StartError> {
    actix_web::rt::System::new().block_on(async move {
        let running = start(config).await?;
        println!("fletch listening: http://{}", running.http_addr);
        if let Some(addr) = running.flight_addr {
            println!("fletch Flight / Flight SQL: grpc://{addr}");
        }
        crate::shutdown::serve_until_signal(running).await
    })
}
