//! Heavy SQL on an Apache DataFusion Ballista cluster, whose scheduler and executors this
//! binary also hosts (see [`crate::roles`]), so one image deploys every role.
//!
//! A statement is planned here as always. When its Parquet scan reads at least
//! `[ballista] min_scan_bytes` of files (or the client asks, `"engine": "ballista"`), it
//! is planned again with `[ballista] target_partitions` and the physical plan is sent to
//! the scheduler: Ballista splits it into stages at its repartitions and runs them on the
//! executors, which read the archive through fletch's own object stores and PostgreSQL
//! scans on their own connections. Admission, the time budget and the result stream are
//! the same as for local SQL; dropping the stream cancels the job.
//!
//! - [`codec`]: how fletch's plan pieces cross the wire.
//! - [`job`]: submit, wait, stream the result, cancel when abandoned.

pub mod codec;
pub mod job;

use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::KeyValuePair;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;

use crate::config::BallistaConfig;
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::stream::BatchStream;

/// Where a client wants its statement to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// On Ballista when its scan is big enough and a scheduler is configured.
    #[default]
    Auto,
    /// Here, whatever its size.
    Local,
    /// On Ballista, whatever its size (an error when no scheduler is configured).
    Ballista,
}

impl Placement {
    pub fn parse(v: &str) -> Result<Self, QueryError> {
        match v {
            "auto" => Ok(Self::Auto),
            "local" => Ok(Self::Local),
            "ballista" => Ok(Self::Ballista),
            _ => Err(QueryError::invalid(
                "engine",
                format!("unknown engine `{v}`"),
                Some(&["auto", "local", "ballista"]),
            )),
        }
    }
}

/// The client side: which statements go to the cluster, and sending them.
#[derive(Debug)]
pub struct Cluster {
    job: job::JobSettings,
    min_scan_bytes: u64,
    pub target_partitions: usize,
    codec: codec::FletchCodec,
}

/// `df://host:port`, `http://host:port` or `host[:port]`, port 50050 when not given: how a
/// server (`[ballista] scheduler`) and an executor (`--scheduler`) name the scheduler.
pub fn scheduler_address(s: &str) -> Result<(String, u16), String> {
    let spelled = if s.contains("://") { s.to_string() } else { format!("df://{s}") };
    url::Url::parse(&spelled)
        .ok()
        .filter(|u| matches!(u.scheme(), "df" | "http") && u.path().trim_matches('/').is_empty())
        .and_then(|u| Some((u.host_str().filter(|h| !h.is_empty())?.to_string(), u.port().unwrap_or(50050))))
        .ok_or_else(|| format!("`{s}` is not a scheduler address; use df://host:port"))
}

impl Cluster {
    /// `None` when no scheduler is configured.
    pub fn from_config(c: &BallistaConfig, cores: usize) -> Result<Option<Self>, QueryError> {
        if c.scheduler.is_empty() {
            return Ok(None);
        }
        let (host, port) =
            scheduler_address(&c.scheduler).map_err(|msg| QueryError::invalid("ballista.scheduler", msg, None))?;
        let target_partitions = if c.target_partitions == 0 { 4 * cores.max(1) } else { c.target_partitions };
        Ok(Some(Self {
            job: job::JobSettings {
                scheduler: format!("http://{host}:{port}"),
                poll: Duration::from_millis(c.poll_interval_ms.max(1)),
            },
            min_scan_bytes: c.min_scan_bytes,
            target_partitions,
            codec: codec::FletchCodec::new(None),
        }))
    }

    /// Whether `plan` should run on the cluster: it reads archive files, and either the
    /// client asked or those files are big enough.
    pub fn wants(&self, plan: &Arc<dyn ExecutionPlan>, placement: Placement) -> bool {
        let bytes = scan_bytes(plan);
        match placement {
            Placement::Local => false,
            Placement::Ballista => bytes.is_some(),
            Placement::Auto => bytes.is_some_and(|b| b >= self.min_scan_bytes),
        }
    }

    /// The plan as Ballista receives it, or why it cannot be sent.
    pub fn encode(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>, QueryError> {
        let node = PhysicalPlanNode::try_from_physical_plan(plan, &self.codec)
            .map_err(|e| QueryError::Sql(format!("this statement cannot run on Ballista: {}", e.strip_backtrace())))?;
        Ok(node.encode_to_vec())
    }

    /// Run an encoded plan as a job; the stream is what it returns, batch by batch.
    pub fn run(&self, plan: Vec<u8>, config: &SessionConfig, metrics: Arc<Metrics>) -> BatchStream {
        let session = config
            .options()
            .entries()
            .into_iter()
            .map(|e| KeyValuePair { key: e.key, value: e.value })
            .chain([KeyValuePair { key: "ballista.job.name".into(), value: Some("fletch sql".into()) }])
            .collect();
        Box::pin(job::run(self.job.clone(), plan, session, metrics))
    }
}

/// Bytes of archive files the plan's Parquet scans read; `None` when it reads none.
pub fn scan_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut total: Option<u64> = None;
    let _ = plan.apply(|node| {
        let files =
            node.downcast_ref::<DataSourceExec>().and_then(|d| d.data_source().downcast_ref::<FileScanConfig>());
        if let Some(scan) = files {
            let bytes: u64 = scan.file_groups.iter().flat_map(|g| g.iter()).map(|f| f.object_meta.size).sum();
            *total.get_or_insert(0) += bytes;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_in_every_spelling() {
        assert_eq!(scheduler_address("df://10.0.0.1:50050").unwrap(), ("10.0.0.1".into(), 50050));
        assert_eq!(scheduler_address("http://sched:7/").unwrap(), ("sched".into(), 7));
        assert_eq!(scheduler_address("sched").unwrap(), ("sched".into(), 50050));
        assert_eq!(scheduler_address("df://sched").unwrap(), ("sched".into(), 50050));
        for bad in ["sched:x", "grpc://sched:1", "df://sched:1/jobs", "df://", ""] {
            assert!(scheduler_address(bad).is_err(), "{bad}");
        }
    }
}
