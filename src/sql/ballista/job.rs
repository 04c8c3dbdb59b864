//! One statement as a Ballista job: the physical plan made here is submitted to the
//! scheduler, its status polled, and its result partitions streamed from the executors.
//! The job is cancelled at the scheduler when its results are no longer wanted — the
//! client left or the time budget ran out — which stops its tasks on every executor.
//!
//! Ballista's own client (`execute_physical_plan`) keeps the job id to itself and never
//! cancels, hence this small one over the same gRPC calls.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use ballista_core::client::BallistaClient;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    execute_query_result, job_status, CancelJobParams, ExecuteQueryParams, GetJobStatusParams, KeyValuePair,
    PartitionLocation,
};
use datafusion::error::DataFusionError;
use futures::{stream, StreamExt, TryStreamExt};
use tonic::transport::{Channel, Endpoint};

use crate::error::{QueryError, RetryAfter};
use crate::metrics::Metrics;

type Scheduler = SchedulerGrpcClient<Channel>;

/// Largest gRPC message either side sends (plans of many files, result batches).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What one job needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// `http://host:port` of the scheduler.
    pub scheduler: String,
    pub poll: Duration,
}

/// Submit `plan` (encoded) and stream its result once the job has finished. Dropping the
/// stream at any point before the end cancels the job.
pub fn run(
    settings: JobSettings,
    plan: Vec<u8>,
    session: Vec<KeyValuePair>,
    metrics: Arc<Metrics>,
) -> impl futures::Stream<Item = Result<RecordBatch, QueryError>> + Send {
    stream::once(async move {
        let mut scheduler = connect(&settings.scheduler).await?;
        let job = submit(&mut scheduler, plan, session).await?;
        metrics.ballista_jobs.with_labels(&["submitted"]).inc();
        let mut guard = CancelOnDrop { scheduler: scheduler.clone(), job: job.clone(), metrics, ended: None };
        let locations = match wait(&mut scheduler, &job, settings.poll).await {
            Ok(locations) => locations,
            Err((e, ended)) => {
                guard.ended = ended.then_some("failed");
                return Err(e);
            }
        };
        guard.ended = Some("finished");
        tracing::debug!(job = %job, partitions = locations.len(), "ballista job finished");
        let partitions = stream::iter(locations).then(fetch).try_flatten();
        Ok::<_, QueryError>(partitions.map(move |b| {
            let _keeps_the_job = &guard;
            b
        }))
    })
    .try_flatten()
}

async fn connect(url: &str) -> Result<Scheduler, QueryError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        QueryError::unavailable(
            "ballista",
            format!("the Ballista scheduler at {url} did not answer: {e}"),
            RetryAfter::Outage,
        )
    };
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| QueryError::internal(format!("Ballista scheduler URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| unreachable(&e))?;
    Ok(SchedulerGrpcClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE))
}

async fn submit(scheduler: &mut Scheduler, plan: Vec<u8>, settings: Vec<KeyValuePair>) -> Result<String, QueryError> {
    let params = ExecuteQueryParams {
        query: Some(Query::PhysicalPlan(plan)),
        settings,
        session_id: uuid::Uuid::new_v4().to_string(),
        operation_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut request = tonic::Request::new(params);
    ballista_core::version::insert_version_header(request.metadata_mut());
    let answer = scheduler.execute_query(request).await.map_err(scheduler_error)?.into_inner();
    match answer.result {
        Some(execute_query_result::Result::Success(ok)) => Ok(ok.job_id),
        Some(execute_query_result::Result::Failure(f)) => {
            Err(QueryError::internal(format!("the Ballista scheduler refused the plan: {:?}", f.failure)))
        }
        None => Err(QueryError::internal("the Ballista scheduler answered a submission with nothing")),
    }
}

/// Poll until the job ends; its result partitions when it succeeded, else the error and
/// whether the job itself ended (failed) rather than the polling.
async fn wait(
    scheduler: &mut Scheduler,
    job: &str,
    poll: Duration,
) -> Result<Vec<PartitionLocation>, (QueryError, bool)> {
    loop {
        let status = scheduler
            .get_job_status(GetJobStatusParams { job_id: job.to_string() })
            .await
            .map_err(|e| (scheduler_error(e), false))?
            .into_inner()
            .status
            .and_then(|s| s.status);
        match status {
            Some(job_status::Status::Successful(done)) => return Ok(done.partition_location),
            Some(job_status::Status::Failed(failed)) => return Err((job_failed(job, &failed.error), true)),
            _ => tokio::time::sleep(poll).await,
        }
    }
}

/// A failed job's message is an executor's DataFusion error as text, so it is classified by
/// what it names: a store, an executor or the network failing is a 503; what the
/// statement's own values cause (`1/0`, a bad cast) the client's 400, as locally; anything
/// else a 502, an error the cluster answered with.
fn job_failed(job: &str, error: &str) -> QueryError {
    const DOWN: [&str; 9] = [
        "ObjectStore",
        "IoError",
        "HdfsError",
        "xecutor lost",
        "transport error",
        "onnection",
        "navailable",
        "overloaded",
        "did not answer",
    ];
    const STATEMENT: [&str; 8] = [
        "DivideByZero",
        "CastError",
        "ArithmeticOverflow",
        "InvalidArgumentError",
        "ComputeError",
        "ParseError",
        "regex",
        "Plan(",
    ];
    let message = format!("Ballista job {job} failed: {}", error.trim());
    if DOWN.iter().any(|w| error.contains(w)) {
        QueryError::unavailable("ballista", message, RetryAfter::Outage)
    } else if STATEMENT.iter().any(|w| error.contains(w)) {
        QueryError::Sql(message)
    } else {
        QueryError::store("ballista", message)
    }
}

fn scheduler_error(status: tonic::Status) -> QueryError {
    let message = format!("Ballista scheduler: {}", status.message());
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            QueryError::unavailable("ballista", message, RetryAfter::Outage)
        }
        tonic::Code::ResourceExhausted => QueryError::overloaded("ballista", message, RetryAfter::QueueFull),
        _ => QueryError::internal(message),
    }
}

/// One result partition, read from the executor that holds it.
async fn fetch(
    location: PartitionLocation,
) -> Result<impl futures::Stream<Item = Result<RecordBatch, QueryError>>, QueryError> {
    let layout = location.layout();
    let (Some(executor), Some(partition)) = (location.executor_meta, location.partition_id) else {
        return Err(QueryError::internal("a Ballista result partition without its executor or id"));
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        QueryError::unavailable(
            "ballista",
            format!("Ballista executor {}:{} did not answer: {e}", executor.host, executor.port),
            RetryAfter::Outage,
        )
    };
    let mut client =
        BallistaClient::try_new(&executor.host, executor.port as u16, MAX_MESSAGE, false, None, 3, 100, 0, 0)
            .await
            .map_err(|e| unreachable(&e))?;
    let batches = client
        .fetch_partition(&executor.id, &partition.into(), location.file_id, layout, true)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(batches.map_err(|e: DataFusionError| crate::sql::sql_error(e)))
}

/// Cancels the job at the scheduler unless it ended first.
struct CancelOnDrop {
    scheduler: Scheduler,
    job: String,
    metrics: Arc<Metrics>,
    /// How the job ended (`finished`, `failed`), once it has.
    ended: Option<&'static str>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(outcome) = self.ended {
            self.metrics.ballista_jobs.with_labels(&[outcome]).inc();
            return;
        }
        let (mut scheduler, job, metrics) = (self.scheduler.clone(), self.job.clone(), self.metrics.clone());
        let cancel = async move {
            match scheduler.cancel_job(CancelJobParams { job_id: job.clone() }).await {
                Ok(_) => {
                    metrics.ballista_jobs.with_labels(&["cancelled"]).inc();
                    tracing::info!(job = %job, "ballista job cancelled: its results are no longer wanted");
                }
                Err(e) => tracing::warn!(job = %job, error = %e, "cancelling a ballista job failed"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(cancel);
            }
            Err(_) => tracing::warn!(job = %self.job, "no runtime to cancel the ballista job on"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_failures_are_classified_by_what_they_name() {
        let user =
            "Task failed due to runtime execution error: DataFusionError(Shared(External(ArrowError(DivideByZero))))";
        assert!(matches!(job_failed("j", user), QueryError::Sql(_)));
        let down = "Task failed: External(HdfsError(IOError(Os { code: 111 })))";
        assert!(matches!(job_failed("j", down), QueryError::Unavailable { .. }));
        assert!(matches!(job_failed("j", "something else"), QueryError::Store { .. }));
    }
}
