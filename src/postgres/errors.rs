//! PostgreSQL driver errors classified where they start: the SQLSTATE class decides
//! whether the query, the store or the connection is at fault.

use std::sync::Arc;

use crate::error::{QueryError, RetryAfter};

/// A PostgreSQL outage: 503 with the reconnect backoff as the retry hint.
pub fn unavailable(reason: &str, backoff: std::time::Duration) -> QueryError {
    QueryError::unavailable("postgres", reason, RetryAfter::Backoff(backoff))
}

/// Map a driver error to what the client should see; the driver error stays attached.
pub fn map_pg_error(e: &tokio_postgres::Error) -> QueryError {
    // tokio_postgres::Error is not Clone; its text and SQLSTATE are what a cause needs.
    let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(std::io::Error::other(e.to_string()));
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match &code[..2] {
            // syntax error or access rule violation, data exception: the query is wrong
            "42" | "22" => QueryError::Sql(db.message().to_string()),
            "57" if code == "57014" => QueryError::Cancelled("postgres"),
            "57" | "08" | "53" => {
                QueryError::unavailable("postgres", db.message(), RetryAfter::Outage).with_cause(cause)
            }
            _ => QueryError::store("postgres", db.message()).with_cause(cause),
        };
    }
    if e.is_closed() {
        return QueryError::unavailable("postgres", format!("connection lost: {e}"), RetryAfter::Outage);
    }
    QueryError::store("postgres", e.to_string()).with_cause(cause)
}
