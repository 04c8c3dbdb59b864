//! Actors that own resources. One actor per file:
//!
//! - [`pg_connection`]: one PostgreSQL connection, supervised, reconnecting with backoff.
//! - [`pg_router`]: the pool; hands jobs to idle connections, bounded waiting queue.
//! - [`admission`]: permits per source and lane, bounded queues, 503 + Retry-After.
//! - [`parquet_index`]: the Parquet directory: listing, footer statistics, store health.

pub mod pg_connection;
pub mod pg_router;
pub mod parquet_index;
pub mod admission;
