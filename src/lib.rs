//! # fletch
//!
//! An actor-based streaming query server for a log pipeline's PostgreSQL tables and its
//! Parquet archive (local or HDFS), served over the old Query API's HTTP JSON shape and
//! Arrow Flight.
//!
//! # Layout
//!
//! In dependency order: each module uses only those listed above it.
//!
//! Ground floor — core types every layer shares:
//! - [`error`]: the query path's error type, the Retry-After policy, and the single
//!   mapping to HTTP status and gRPC status.
//! - [`query`]: the normalized, validated query description every front end produces.
//! - [`schema`]: the `logs` table as clients see it (Arrow schema, label columns).
//! - [`stream`]: the internal currency, a stream of Arrow record batches.
//! - [`metrics`]: Prometheus metrics.
//! - [`config`]: layered configuration (defaults → TOML → `FLETCH_*` env → flags).
//! - [`executor`]: the dedicated DataFusion runtime; results cross back over bounded channels.
//! - [`coalesce`]: single-flight execution and a short-lived result cache.
//! - [`store`]: what every store implements ([`store::LogStore`]).
//! - [`count_cache`]: exact counts shared by all requests and refreshed in the background.
//! - [`auth`]: optional static bearer tokens.
//! - [`encode`]: record batches → JSON / NDJSON / CSV / Arrow IPC bytes, batch by batch.
//! - [`drain`]: whether the process is stopping (read by `/ready`).
//!
//! The stores, one folder each:
//! - [`postgres`]: connection actors and their router, Arrow conversion, bind parameters,
//!   the `postgres.logs` SQL table and whole-query pushdown.
//! - [`archive`]: the Parquet archive (`hdfs` in the API): directory index actor, time
//!   slices, sorted exports, per-file rollups, the copy of the newest rows, the
//!   `hdfs.logs` SQL table.
//!
//! Above the stores:
//! - [`sql`]: SQL over both stores in one DataFusion catalog, with limits on statement size;
//!   heavy statements as jobs on a Ballista cluster ([`sql::ballista`]).
//! - [`service`]: the one door every front end goes through — admission, time budgets,
//!   single-flight, caching — for HTTP routes, Flight tickets and SQL alike.
//!
//! Front ends:
//! - [`http`]: the HTTP facade (routes, parameters, streaming responses, auth guard).
//! - [`flight`]: Arrow Flight / Flight SQL on one gRPC port.
//!
//! The process:
//! - [`server`]: builds every component from a config and runs it.
//! - [`shutdown`]: on SIGTERM, not-ready at once, no new connections, work under way
//!   finishes within a grace period, then exit.
//! - [`load`]: synthetic log generation and bulk loading (`fletch load`).
//! - [`roles`]: Ballista's scheduler and executor in this binary (`fletch scheduler`,
//!   `fletch executor`).
//! - [`demo`]: a private PostgreSQL + local Parquet + server in one command (`fletch demo`).
//! - [`cli`]: the `fletch` command (`serve`, `load`, `demo`) and its flags.

pub(crate) mod auth;
pub(crate) mod coalesce;
pub mod config;
pub(crate) mod count_cache;
pub mod drain;
pub(crate) mod encode;
pub(crate) mod error;
pub(crate) mod executor;
pub mod metrics;
pub(crate) mod query;
pub mod schema;
pub(crate) mod store;
pub(crate) mod stream;

pub(crate) mod archive;
pub(crate) mod postgres;

pub(crate) mod service;
pub(crate) mod sql;

pub(crate) mod flight;
pub(crate) mod http;

pub mod cli;
pub mod demo;
pub mod load;
pub mod roles;
pub mod server;
pub mod shutdown;
