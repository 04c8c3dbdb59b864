//! What fletch adds to Ballista's plan codec, so a plan made here runs the same on an
//! executor: `postgres.logs` scans (their SQL, parameters and projection, rebuilt on the
//! executor's own connections) and fletch's scalar functions (the MAP → JSON projection
//! of Spark-written archives, the bounded `lpad`/`rpad`/`repeat`). Everything else —
//! Parquet scans, joins, aggregates, Ballista's shuffles — is DataFusion's and Ballista's.

use std::collections::HashMap;
use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::postgres::params::PgParam;
use crate::postgres::table::PgScanExec;
use crate::postgres::PgSource;

/// Marks an encoded [`PgScanExec`]; Ballista's own nodes are protobuf, which never starts
/// with this byte string.
const PG_SCAN: &[u8] = b"fletch.pg_scan:";
/// Marks a function fletch defines (looked up by name on the other side).
const FLETCH_UDF: &[u8] = b"fletch.udf";

#[derive(Serialize, Deserialize)]
struct PgScanMessage {
    sql: String,
    params: Vec<PgParam>,
    projection: Option<Vec<usize>>,
}

pub struct FletchCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// Where decoded PostgreSQL scans run; `None` in a process that only passes plans on.
    postgres: Option<PgSource>,
    udfs: HashMap<String, Arc<ScalarUDF>>,
}

impl std::fmt::Debug for FletchCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FletchCodec").field("postgres", &self.postgres.is_some()).finish_non_exhaustive()
    }
}

impl FletchCodec {
    pub fn new(postgres: Option<PgSource>) -> Self {
        let ctx = SessionContext::new();
        crate::sql::text_budget::register(&ctx);
        let mut udfs: HashMap<String, Arc<ScalarUDF>> = crate::sql::text_budget::NAMES
            .iter()
            .filter_map(|name| ctx.udf(name).ok().map(|f| (name.to_string(), f)))
            .collect();
        let map_to_json = crate::archive::map_json::udf();
        udfs.insert(map_to_json.name().to_string(), map_to_json);
        Self { ballista: BallistaPhysicalExtensionCodec::default(), postgres, udfs }
    }
}

impl PhysicalExtensionCodec for FletchCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(PG_SCAN) {
            Some(json) => {
                let m: PgScanMessage = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::Internal(format!("undecodable PostgreSQL scan: {e}")))?;
                Ok(Arc::new(PgScanExec::new(self.postgres.clone(), m.sql, m.params, m.projection)))
            }
            None => self.ballista.try_decode(buf, inputs, ctx, converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(scan) = node.downcast_ref::<PgScanExec>() else {
            return self.ballista.try_encode(node, buf, converter);
        };
        let m =
            PgScanMessage { sql: scan.sql.clone(), params: scan.params.clone(), projection: scan.projection.clone() };
        buf.extend_from_slice(PG_SCAN);
        serde_json::to_writer(buf, &m).map_err(|e| DataFusionError::Internal(format!("PostgreSQL scan: {e}")))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if self.udfs.contains_key(node.name()) {
            buf.extend_from_slice(FLETCH_UDF);
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        match (buf == FLETCH_UDF, self.udfs.get(name)) {
            (true, Some(f)) => Ok(f.clone()),
            _ => self.ballista.try_decode_udf(name, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;
    use prost::Message;

    #[test]
    fn postgres_scans_cross_the_wire_with_their_sql_parameters_and_projection() {
        let codec = FletchCodec::new(None);
        let sql = "SELECT \"level\", \"host\" FROM logs WHERE \"level\" = $1 LIMIT $2".to_string();
        let params = vec![PgParam::Text("ERROR".into()), PgParam::I64(10)];
        let scan: Arc<dyn ExecutionPlan> =
            Arc::new(PgScanExec::new(None, sql.clone(), params.clone(), Some(vec![2, 4])));
        let bytes = PhysicalPlanNode::try_from_physical_plan(scan.clone(), &codec).unwrap().encode_to_vec();
        let node = PhysicalPlanNode::decode(bytes.as_slice()).unwrap();
        let back = node.try_into_physical_plan(&SessionContext::new().task_ctx(), &codec).unwrap();
        let back = back.downcast_ref::<PgScanExec>().expect("a PostgreSQL scan");
        assert_eq!((&back.sql, &back.params, &back.projection), (&sql, &params, &Some(vec![2, 4])));
        assert_eq!(back.schema(), scan.schema());
    }

    #[test]
    fn fletchs_functions_are_marked_and_found_again_by_name() {
        let codec = FletchCodec::new(None);
        for name in ["lpad", "repeat", "fletch_map_to_json"] {
            let mut buf = Vec::new();
            codec.try_encode_udf(codec.udfs[name].as_ref(), &mut buf).unwrap();
            assert_eq!(buf, FLETCH_UDF);
            assert!(Arc::ptr_eq(&codec.try_decode_udf(name, &buf).unwrap(), &codec.udfs[name]));
        }
        // DataFusion's own functions travel by name alone.
        let upper = datafusion::functions::string::upper();
        let mut buf = Vec::new();
        codec.try_encode_udf(&upper, &mut buf).unwrap();
        assert!(buf.is_empty());
    }
}
