//! `fletch scheduler` and `fletch executor`: Ballista's scheduler and executor hosted in
//! this binary. Both know the archive's object store for `[parquet] url` (the scheduler to
//! decode plans that name its files, executors to read them); executors also run
//! `postgres.logs` scans on their own connections to `[postgres] url` — the same config
//! file as the servers.

use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::archive::store::{object_store_base, open_store};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::postgres::PgSource;
use crate::sql::ballista::codec::FletchCodec;
use crate::sql::ballista::scheduler_address;

/// Where the scheduler listens (port 0: any free port, printed on stdout).
#[derive(Debug, Clone)]
pub struct SchedulerRole {
    pub bind: String,
}

/// `[parquet] url`'s object store, under the URL plans name it by (`None` for file://,
/// which every runtime has, and without an archive).
type ArchiveStore = Option<(url::Url, Arc<dyn object_store::ObjectStore>)>;

fn archive_store(config: &Config) -> Result<ArchiveStore, String> {
    match config.parquet.url.as_str() {
        "" => Ok(None),
        url => {
            let (store, _) = open_store(url).map_err(|e| e.to_string())?;
            Ok(object_store_base(url).map_err(|e| e.to_string())?.map(|base| (base, store)))
        }
    }
}

/// One executor: its ports, its scheduler, its task slots.
#[derive(Debug, Clone)]
pub struct ExecutorRole {
    pub scheduler: String,
    pub bind_host: String,
    /// Arrow Flight port other executors and fletch fetch results from.
    pub flight_port: u16,
    pub grpc_port: u16,
    /// Tasks run at once; 0 = one per core.
    pub slots: usize,
    pub work_dir: Option<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

pub fn run_scheduler(role: SchedulerRole, config: Config) -> Result<(), String> {
    // Submitted plans name the archive's files; decoding them wants their object store.
    let store = archive_store(&config)?;
    let sessions: ballista_scheduler::scheduler_server::SessionBuilder = Arc::new(move |session| {
        let state = ballista_core::utils::default_session_builder(session)?;
        if let Some((base, store)) = &store {
            state.runtime_env().register_object_store(base, store.clone());
        }
        Ok(state)
    });
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&role.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", role.bind))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let config = SchedulerConfig {
            bind_host: addr.ip().to_string(),
            bind_port: addr.port(),
            external_host: addr.ip().to_string(),
            override_physical_codec: Some(Arc::new(FletchCodec::new(None))),
            override_session_builder: Some(sessions),
            ..SchedulerConfig::default()
        };
        let config = Arc::new(config);
        let cluster = BallistaCluster::new_from_config(&config).await.map_err(|e| e.to_string())?;
        let scheduler =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config).await.map_err(|e| e.to_string())?;
        println!("fletch ballista scheduler: df://{addr}");
        tokio::select! {
            served = start_grpc_service_with_listener(listener, scheduler) => served.map_err(|e| e.to_string()),
            _ = crate::shutdown::signalled() => Ok(()),
        }
    })
}

pub fn run_executor(role: ExecutorRole, config: Config) -> Result<(), String> {
    let (scheduler_host, scheduler_port) = scheduler_address(&role.scheduler)?;
    let postgres = start_postgres(&config)?;
    let store = archive_store(&config)?;
    let held_work_dir = tempfile::Builder::new().prefix("fletch-executor-").tempdir().map_err(|e| e.to_string())?;
    let work_dir = role.work_dir.clone().unwrap_or_else(|| held_work_dir.path().display().to_string());
    let runtime_dir = work_dir.clone();
    let runtime_producer: ballista_core::RuntimeProducer = Arc::new(move |_| {
        let env = RuntimeEnvBuilder::new().with_temp_file_path(runtime_dir.clone()).build()?;
        if let Some((base, store)) = &store {
            env.register_object_store(base, store.clone());
        }
        Ok(Arc::new(env))
    });
    let slots = if role.slots == 0 { crate::server::cores() } else { role.slots };
    let options = ExecutorProcessConfig {
        bind_host: role.bind_host.clone(),
        external_host: Some(role.bind_host.clone()),
        port: role.flight_port,
        grpc_port: role.grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: slots,
        work_dir: Some(work_dir),
        executor_heartbeat_interval_seconds: 5,
        override_runtime_producer: Some(runtime_producer),
        override_physical_codec: Some(Arc::new(FletchCodec::new(postgres))),
        ..ExecutorProcessConfig::default()
    };
    println!(
        "fletch ballista executor: flight {}:{}, {} task slots, scheduler {}",
        role.bind_host, role.flight_port, slots, role.scheduler
    );
    runtime()?.block_on(start_executor_process(Arc::new(options))).map_err(|e| e.to_string())
}

/// The PostgreSQL connection actors, on an actix system of their own: executors run
/// DataFusion on a multi-threaded runtime, actors need a system, and an `Addr` may be
/// used from any thread.
fn start_postgres(config: &Config) -> Result<Option<PgSource>, String> {
    if config.postgres.url.is_empty() {
        return Ok(None);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let config = config.clone();
    std::thread::Builder::new()
        .name("fletch-postgres".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let started = crate::server::start_postgres(&config, &Arc::new(Metrics::default()));
                let _ = tx.send(started.map_err(|e| e.to_string()));
                std::future::pending::<()>().await
            })
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}
