//! [`ComputedExec`]: an execution plan whose rows are computed when it runs, not when it is
//! planned.
//!
//! A table function that answers with rows it computes (a value model, a profile) must not
//! compute them while the calling query is planned: the Flight SQL server plans a query once to
//! announce its schema (`GetFlightInfo`) and again to run it (`DoGet`), and a scan that computed
//! at planning did the work twice, or for a query that was never run.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt, stream};

/// What computes the rows, each time the plan runs.
pub(crate) type Compute =
    Arc<dyn Fn() -> BoxFuture<'static, DfResult<Vec<RecordBatch>>> + Send + Sync>;

/// `batch` with only the columns a scan asks for (all of them without a projection): for
/// computations that build whole rows.
pub(crate) fn projected(batch: RecordBatch, projection: Option<&[usize]>) -> DfResult<RecordBatch> {
    Ok(match projection {
        Some(columns) => batch.project(columns)?,
        None => batch,
    })
}

/// One partition of rows with `schema`, computed by `compute` when executed.
pub(crate) struct ComputedExec {
    name: &'static str,
    compute: Compute,
    properties: Arc<PlanProperties>,
}

impl ComputedExec {
    /// The plan of the rows `compute` answers, shown as `name` in `EXPLAIN`.
    pub(crate) fn new(name: &'static str, schema: SchemaRef, compute: Compute) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            name,
            compute,
            properties,
        }
    }
}

impl fmt::Debug for ComputedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComputedExec({})", self.name)
    }
}

impl DisplayAs for ComputedExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComputedExec: {}", self.name)
    }
}

impl ExecutionPlan for ComputedExec {
    fn name(&self) -> &str {
        "ComputedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _visit: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let rows = stream::once((self.compute)())
            .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }
}
