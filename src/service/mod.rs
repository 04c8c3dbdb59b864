//! The one door every front end goes through: HTTP routes, plain Flight tickets and SQL
//! (HTTP and Flight SQL) reach the stores only through a [`Service`], so admission, time
//! budgets, single-flight, caching and metrics apply the same way to all of them.
//!
//! - [`admission`]: the actor that hands out permits per source and lane (or a 503).
//! - [`source`]: the per-store layer (pages, exports, aggregates, stats) with single-flight
//!   and the result cache.
//! - [`deadline`]: the time budget of a streamed result, and cancellation at the source
//!   when it runs out.
//! - [`sql`]: SQL statements through the same admission and time budget.

pub mod admission;
pub mod deadline;
pub mod source;
pub mod sql;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use self::admission::Admission;
pub use self::source::{CacheInfo, ServiceSettings, SourceService};
use crate::auth::Auth;
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::query::Source;
use crate::sql::SqlEngine;

/// Everything a front end reaches, shared by HTTP and Flight. Built from its [`Parts`],
/// which only the service itself reads afterwards.
pub struct Service(Parts);

/// What a [`Service`] is made of (see `server::start`).
pub struct Parts {
    pub postgres: Option<Arc<SourceService>>,
    pub hdfs: Option<Arc<SourceService>>,
    pub sql: Option<SqlEngine>,
    pub admission: Addr<Admission>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub query_timeout: Duration,
}

impl Service {
    pub fn new(parts: Parts) -> Self {
        Self(parts)
    }

    /// The service for `source`, or an error naming the setting that would enable it.
    pub fn source(&self, source: Source) -> Result<Arc<SourceService>, QueryError> {
        let (service, setting) = match source {
            Source::Postgres => (&self.0.postgres, "postgres.url"),
            Source::Hdfs => (&self.0.hdfs, "parquet.url"),
        };
        service.clone().ok_or_else(|| {
            QueryError::NotFound(format!("source `{}` is not configured on this server (set {setting})", source.name()))
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.0.auth
    }

    /// The SQL engine, for catalog listings (statements go through [`Service::sql`]).
    pub fn engine(&self) -> Result<&SqlEngine, QueryError> {
        self.0.sql.as_ref().ok_or_else(|| QueryError::NotFound("SQL is not enabled on this server".into()))
    }
}
