//! Stopping a running plan from outside. Dropping a DataFusion stream stops it only at its
//! next await point, and an operator that computes without waiting — a nested-loop join
//! feeding an aggregate, say — may not reach one for minutes. So every edge of the
//! physical plan gets a [`GuardExec`] that checks a shared flag each time a batch is asked
//! for; the flag is set when the consumer's stream is dropped (client gone, time budget
//! spent), and the next batch request anywhere in the plan fails, which ends every
//! operator above it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

/// Set once the results are no longer wanted.
pub type CancelFlag = Arc<AtomicBool>;

/// Sets the flag when dropped: held by the consumer's end of the stream.
pub struct CancelOnDrop(pub CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `plan` with a guard above every node.
pub fn guard(plan: Arc<dyn ExecutionPlan>, flag: &CancelFlag) -> DfResult<Arc<dyn ExecutionPlan>> {
    let children = plan.children();
    let plan = if children.is_empty() {
        plan.clone()
    } else {
        let guarded = children.into_iter().map(|c| guard(c.clone(), flag)).collect::<DfResult<Vec<_>>>()?;
        plan.clone().replace_children(guarded, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))?
    };
    Ok(Arc::new(GuardExec { input: plan, flag: flag.clone() }))
}

#[derive(Debug)]
pub struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    flag: CancelFlag,
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "GuardExec")
    }
}

#[allow(deprecated)] // `with_new_children` is still a required method in DataFusion 55
impl ExecutionPlan for GuardExec {
    fn name(&self) -> &str {
        "GuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!("GuardExec takes one child, got {}", children.len())));
        }
        Ok(Arc::new(GuardExec { input: children.swap_remove(0), flag: self.flag.clone() }))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn with_new_children_and_same_properties(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(GuardStream { input, flag: self.flag.clone() }))
    }
}

struct GuardStream {
    input: SendableRecordBatchStream,
    flag: CancelFlag,
}

impl Stream for GuardStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.flag.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(DataFusionError::Execution("query cancelled".into()))));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for GuardStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
