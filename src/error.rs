//! Errors at fletch's boundaries, and the one place that decides what a client sees.
//!
//! [`QueryError`] is the error of the query path (validation, admission, sources,
//! encoders). [`QueryError::class`] is the single mapping to a client-facing class;
//! HTTP status codes and `tonic::Status` codes are both derived from it, so the two
//! protocols can never disagree about what a failure means.

use std::sync::Arc;
use std::time::Duration;

/// How a failure is presented to a client, independent of protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong (400 / INVALID_ARGUMENT).
    BadRequest,
    /// The request is larger than fletch reads (413 / INVALID_ARGUMENT).
    TooLarge,
    /// Missing or wrong credentials (401 / UNAUTHENTICATED).
    Unauthenticated,
    /// The named thing does not exist (404 / NOT_FOUND).
    NotFound,
    /// fletch is healthy but cannot take the work now (503 / UNAVAILABLE), retry later.
    Overloaded,
    /// A backing store is down or unreachable (503 / UNAVAILABLE), retry later.
    StoreUnavailable,
    /// A backing store answered with an error (502 / INTERNAL).
    StoreFailed,
    /// The query ran past its time budget (504 / DEADLINE_EXCEEDED).
    Timeout,
    /// A bug or an unexpected state in fletch (500 / INTERNAL).
    Internal,
}

/// What caused a store or internal failure, kept for the log (clients see the message).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// The one Retry-After policy: every retryable error names why it is retryable, and the
/// hint a client gets follows from that alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// A queue was full: try again in a second.
    QueueFull,
    /// Capacity is expected to free up after about this long (≥ 1 s).
    Expected(Duration),
    /// A store is reconnecting with this backoff: wait for the next attempt (≥ 1 s).
    Backoff(Duration),
    /// A store did not answer: try again in a second.
    Outage,
}

impl RetryAfter {
    pub fn delay(self) -> Duration {
        let floor = Duration::from_secs(1);
        match self {
            RetryAfter::QueueFull | RetryAfter::Outage => floor,
            RetryAfter::Expected(d) | RetryAfter::Backoff(d) => d.max(floor),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("invalid value for parameter `{param}`: {message}")]
    InvalidParam { param: String, message: String, allowed: Option<Vec<String>> },
    #[error("unknown parameter `{param}`")]
    UnknownParam { param: String, allowed: Vec<String> },
    #[error("SQL error: {0}")]
    Sql(String),
    #[error("the {what} is larger than the {limit} bytes fletch reads")]
    TooLarge { what: &'static str, limit: usize },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("{source_name} is saturated: {reason}")]
    Overloaded { source_name: &'static str, reason: String, retry_after: RetryAfter },
    #[error("{source_name} is unavailable: {reason}")]
    Unavailable {
        source_name: &'static str,
        reason: String,
        retry_after: RetryAfter,
        #[source]
        cause: Option<Cause>,
    },
    #[error("{source_name} failed: {message}")]
    Store {
        source_name: &'static str,
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("query exceeded its time budget of {0:?}")]
    Timeout(Duration),
    #[error("{0} cancelled the query")]
    Cancelled(&'static str),
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl QueryError {
    pub fn invalid(param: &str, message: impl Into<String>, allowed: Option<&[&str]>) -> Self {
        QueryError::InvalidParam {
            param: param.to_string(),
            message: message.into(),
            allowed: allowed.map(|a| a.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        QueryError::Internal { message: message.into(), cause: None }
    }

    pub fn store(source_name: &'static str, message: impl Into<String>) -> Self {
        QueryError::Store { source_name, message: message.into(), cause: None }
    }

    pub fn unavailable(source_name: &'static str, reason: impl Into<String>, retry_after: RetryAfter) -> Self {
        QueryError::Unavailable { source_name, reason: reason.into(), retry_after, cause: None }
    }

    pub fn overloaded(source_name: &'static str, reason: impl Into<String>, retry_after: RetryAfter) -> Self {
        QueryError::Overloaded { source_name, reason: reason.into(), retry_after }
    }

    /// Keep what caused a store or internal failure (other kinds carry no cause).
    pub fn with_cause(mut self, e: Cause) -> Self {
        if let QueryError::Unavailable { cause, .. }
        | QueryError::Store { cause, .. }
        | QueryError::Internal { cause, .. } = &mut self
        {
            *cause = Some(e);
        }
        self
    }

    /// The message and every cause under it, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }

    /// The single mapping from an error to what a client is told.
    pub fn class(&self) -> ErrorClass {
        match self {
            QueryError::InvalidParam { .. } | QueryError::UnknownParam { .. } | QueryError::Sql(_) => {
                ErrorClass::BadRequest
            }
            QueryError::TooLarge { .. } => ErrorClass::TooLarge,
            QueryError::NotFound(_) => ErrorClass::NotFound,
            QueryError::Unauthenticated(_) => ErrorClass::Unauthenticated,
            QueryError::Overloaded { .. } => ErrorClass::Overloaded,
            QueryError::Unavailable { .. } => ErrorClass::StoreUnavailable,
            QueryError::Store { .. } => ErrorClass::StoreFailed,
            QueryError::Timeout(_) | QueryError::Cancelled(_) => ErrorClass::Timeout,
            QueryError::Internal { .. } => ErrorClass::Internal,
        }
    }

    /// Seconds a client should wait before retrying, for the retryable classes.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            QueryError::Overloaded { retry_after, .. } | QueryError::Unavailable { retry_after, .. } => {
                Some(retry_after.delay())
            }
            _ => None,
        }
    }

    /// Short machine-readable kind used in JSON bodies and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::InvalidParam { .. } => "invalid_parameter",
            QueryError::UnknownParam { .. } => "unknown_parameter",
            QueryError::Sql(_) => "sql_error",
            QueryError::TooLarge { .. } => "too_large",
            QueryError::NotFound(_) => "not_found",
            QueryError::Unauthenticated(_) => "unauthenticated",
            QueryError::Overloaded { .. } => "overloaded",
            QueryError::Unavailable { .. } => "source_unavailable",
            QueryError::Store { .. } => "source_error",
            QueryError::Timeout(_) => "timeout",
            QueryError::Cancelled(_) => "cancelled",
            QueryError::Internal { .. } => "internal",
        }
    }

    /// JSON body shared by every HTTP error response.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": self.kind(),
            "message": self.to_string(),
        });
        let obj = body.as_object_mut().expect("object literal");
        match self {
            QueryError::InvalidParam { param, allowed, .. } => {
                obj.insert("parameter".into(), param.clone().into());
                if let Some(a) = allowed {
                    obj.insert("allowed".into(), a.clone().into());
                }
            }
            QueryError::UnknownParam { param, allowed } => {
                obj.insert("parameter".into(), param.clone().into());
                obj.insert("allowed".into(), allowed.clone().into());
            }
            QueryError::Overloaded { source_name, .. }
            | QueryError::Unavailable { source_name, .. }
            | QueryError::Store { source_name, .. } => {
                obj.insert("source".into(), (*source_name).into());
            }
            _ => {}
        }
        if let Some(ra) = self.retry_after() {
            obj.insert("retry_after_s".into(), retry_after_secs(ra).into());
        }
        body
    }
}

/// Whole seconds for a `Retry-After` header: never 0, so clients do back off.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl ErrorClass {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorClass::BadRequest => 400,
            ErrorClass::TooLarge => 413,
            ErrorClass::Unauthenticated => 401,
            ErrorClass::NotFound => 404,
            ErrorClass::Overloaded | ErrorClass::StoreUnavailable => 503,
            ErrorClass::StoreFailed => 502,
            ErrorClass::Timeout => 504,
            ErrorClass::Internal => 500,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorClass::BadRequest | ErrorClass::TooLarge => tonic::Code::InvalidArgument,
            ErrorClass::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorClass::NotFound => tonic::Code::NotFound,
            ErrorClass::Overloaded | ErrorClass::StoreUnavailable => tonic::Code::Unavailable,
            ErrorClass::StoreFailed | ErrorClass::Internal => tonic::Code::Internal,
            ErrorClass::Timeout => tonic::Code::DeadlineExceeded,
        }
    }
}

impl From<QueryError> for tonic::Status {
    fn from(e: QueryError) -> Self {
        let mut status = tonic::Status::new(e.class().grpc_code(), e.to_string());
        if let Some(ra) = e.retry_after() {
            // Same hint as HTTP's Retry-After, as gRPC metadata.
            if let Ok(v) = retry_after_secs(ra).to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
        }
        status
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Internal { message: format!("arrow: {e}"), cause: Some(Arc::new(e)) }
    }
}

/// An error and everything under it, outermost first, looking through the wrappers that
/// DataFusion and the Parquet reader put around a cause (`Shared`, `External`, `Context`,
/// `ArrowError`, Parquet's `External`) as well as plain `source()` links. Classifying by
/// type — which store failed, whether the user's values did — walks this one chain.
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    use datafusion::error::DataFusionError;
    use parquet::errors::ParquetError;
    std::iter::successors(Some(e), |err| match err.downcast_ref::<DataFusionError>() {
        Some(DataFusionError::Shared(inner)) => Some(inner.as_ref() as &(dyn std::error::Error + 'static)),
        Some(DataFusionError::External(inner)) => Some(inner.as_ref() as &(dyn std::error::Error + 'static)),
        Some(DataFusionError::ArrowError(inner, _)) => Some(inner.as_ref() as &(dyn std::error::Error + 'static)),
        Some(DataFusionError::Context(_, inner)) => Some(inner.as_ref() as &(dyn std::error::Error + 'static)),
        _ => match err.downcast_ref::<ParquetError>() {
            Some(ParquetError::External(inner)) => Some(inner.as_ref() as &(dyn std::error::Error + 'static)),
            _ => err.source(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_carry_a_positive_hint_on_both_protocols() {
        let e = QueryError::Overloaded {
            source_name: "postgres",
            reason: "queue full".into(),
            retry_after: RetryAfter::Expected(Duration::from_millis(200)),
        };
        assert_eq!(e.class().http_status(), 503);
        assert_eq!(e.to_json()["retry_after_s"], 1);
        let s: tonic::Status = e.into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
    }

    #[test]
    fn invalid_param_names_parameter_and_allowed_values() {
        let e = QueryError::invalid("group_by", "unknown column `x`", Some(&["level", "service", "host"]));
        let j = e.to_json();
        assert_eq!(e.class().http_status(), 400);
        assert_eq!(j["parameter"], "group_by");
        assert_eq!(j["allowed"][2], "host");
    }
}
