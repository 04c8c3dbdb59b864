//! # fletch
//!
//! An actor-based streaming query server for a log pipeline's PostgreSQL tables and its
//! Parquet archive (local or HDFS), served over the old Query API's HTTP JSON shape and
//! Arrow Flight.
//!
//! # Layout
//!
//! - [`cli`]: the `fletch` command (`serve`, `load`, `demo`) and its flags.
//! - [`config`]: layered configuration (defaults → TOML → `FLETCH_*` env → flags).
//! - [`server`]: builds every component from a config and runs it.
//! - [`query`]: the normalized, validated query description every front end produces.
//! - [`error`]: the query-path error type and its single mapping to HTTP and gRPC status.
//! - [`actors`]: actors that own resources: PostgreSQL connections and their router, the
//!   Parquet directory index, admission control.
//! - [`sources`]: the stores behind fletch ([`sources::LogStore`]): `postgres`, `hdfs` (Parquet,
//!   with per-file label rollups and sort-free exports of time-ordered files).
//! - [`encode`]: record batches → JSON / NDJSON / CSV / Arrow IPC bytes, batch by batch.
//! - [`http`]: the HTTP facade (routes, parameters, streaming responses).
//! - [`flight`]: Arrow Flight / Flight SQL on one gRPC port (plain Flight tickets + Flight SQL).
//! - [`sql`]: SQL over both sources in one DataFusion catalog (`postgres.logs`, `hdfs.logs`).
//! - [`auth`]: optional static bearer tokens for HTTP and Flight.
//! - [`executor`]: the dedicated DataFusion runtime; results cross back over bounded channels.
//! - [`service`]: admission, single-flight and caching in front of each store.
//! - [`coalesce`]: single-flight execution and the short-lived result cache.
//! - [`metrics`]: Prometheus metrics.
//! - [`load`]: synthetic log generation and bulk loading (`fletch load`).
//! - [`demo`]: a private PostgreSQL + local Parquet + server in one command (`fletch demo`).

pub mod actors;
pub mod auth;
pub mod cli;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod encode;
pub mod error;
pub mod executor;
pub mod flight;
pub mod http;
pub mod load;
pub mod metrics;
pub mod query;
pub mod server;
pub mod service;
pub mod sources;
pub mod sql;
