//! Arrow Flight and Flight SQL on one gRPC port (`[flight] listen`; empty disables it).
//!
//! - plain Flight (pyarrow): `list_flights` names `postgres.logs` / `hdfs.logs`;
//!   `get_flight_info` / `get_schema` take a path (`["postgres.logs"]`) or a JSON command;
//!   `do_get` takes the JSON ticket ([`tickets`]): the HTTP facade's queries, or `{"sql": …}`.
//! - Flight SQL (ADBC, JDBC, Spark): statements, prepared statements, `GetSqlInfo`,
//!   catalogs / schemas / tables / table types, through [`crate::service::Service::sql`].
//! - `Handshake`: Basic credentials (token as password) → bearer token, when `[auth]
//!   tokens` is set; every call is checked by an interceptor ([`crate::auth`]).
//!
//! The server runs on its own small tokio runtime, so gRPC never competes with the actix
//! workers; DataFusion work still runs on the dedicated executor.
//!
//! Files: [`service`] (routing), [`plain`], [`sql`], [`catalog`], [`prepared`],
//! [`tickets`], [`encode`], [`do_get`] (`DoGet` responses framed without copying).

pub mod catalog;
pub mod do_get;
pub mod encode;
pub mod plain;
pub mod prepared;
pub mod service;
pub mod sql;
pub mod tickets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::SqlInfoData;
use tonic::service::interceptor::InterceptedService;

use crate::config::FlightConfig;
use crate::error::QueryError;
use crate::executor::DedicatedExecutor;
use crate::query::Source;
use crate::service::{Service, SourceService};

/// Largest gRPC message accepted (prepared-statement parameters) or sent.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What the Flight handlers can reach: the same [`Service`] as HTTP, plus Flight's own
/// pieces.
pub struct FlightState {
    pub service: Arc<Service>,
    pub prepared: prepared::PreparedStatements,
    pub sql_info: SqlInfoData,
}

impl FlightState {
    pub fn store(&self, source: Source) -> Result<Arc<SourceService>, QueryError> {
        self.service.source(source)
    }
}

/// The Flight service (cheap to clone).
#[derive(Clone)]
pub struct FletchFlight {
    state: Arc<FlightState>,
}

impl FletchFlight {
    pub fn new(service: Arc<Service>) -> Result<Self, QueryError> {
        let sql_info = catalog::sql_info().map_err(|s| QueryError::internal(s.message().to_string()))?;
        Ok(Self {
            state: Arc::new(FlightState { service, prepared: prepared::PreparedStatements::default(), sql_info }),
        })
    }
}

/// A running Flight server. [`FlightServer::shutdown`] stops it gracefully; dropping it
/// does the same with [`DROP_GRACE`].
pub struct FlightServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<Duration>>,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// How long calls under way may go on after a [`FlightServer`] is dropped.
pub const DROP_GRACE: Duration = Duration::from_secs(5);

impl FlightServer {
    /// Stop accepting connections, tell clients to go elsewhere (HTTP/2 GOAWAY: calls
    /// started before it go on, new ones get a fresh connection), and resolve once every
    /// call has ended or `grace` has passed, whichever is first; calls still running then
    /// are cut.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for FlightServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(DROP_GRACE);
        }
    }
}

/// Bind `listen` now (so the address is known, port 0 works) and serve on a dedicated
/// runtime thread until [`FlightServer::shutdown`] (or its drop).
pub fn start(config: &FlightConfig, app: Arc<Service>, threads: usize) -> Result<FlightServer, std::io::Error> {
    let direct_do_get = config.direct_do_get;
    let auth = app.auth().clone();
    let service = FletchFlight::new(app).map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener = std::net::TcpListener::bind(&config.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<Duration>();
    let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
    // gRPC gets its own runtime, so it never competes with the actix workers; the task
    // owns it and ends it once the server has stopped.
    let runtime = Arc::new(DedicatedExecutor::new("fletch-grpc", threads)?);
    let owner = runtime.clone();
    runtime.spawn(async move {
        let _runtime = owner;
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "Flight listener"),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = FlightServiceServer::new(service.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // Auth first, then `DoGet` framed by `do_get`, then tonic for everything else.
        let routed = do_get::DoGetRoute::new(server, service, direct_do_get);
        let svc = InterceptedService::new(routed, move |req| auth.grpc(req));
        let server = tonic::transport::Server::builder().add_service(svc);
        // tonic waits for every call to end once told to stop; the grace period bounds
        // that wait, so the clock starts when the stop arrives.
        let (grace_tx, grace_rx) = tokio::sync::oneshot::channel::<Duration>();
        let stop = async move {
            let _ = grace_tx.send(stop_rx.await.unwrap_or(DROP_GRACE));
        };
        let serve = server.serve_with_incoming_shutdown(incoming, stop);
        let deadline = async move {
            match grace_rx.await {
                Ok(grace) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            result = serve => match result {
                Ok(()) => tracing::info!("Flight server stopped"),
                Err(e) => tracing::error!(error = %e, "Flight server stopped"),
            },
            () = deadline => tracing::warn!("Flight calls still running at the end of the grace period were cut"),
        }
        let _ = stopped_tx.send(());
    });
    tracing::info!(%addr, "fletch Flight listening");
    Ok(FlightServer { addr, stop: Some(stop), stopped: Some(stopped) })
}
