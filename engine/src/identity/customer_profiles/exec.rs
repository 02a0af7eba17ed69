//! [`CustomerProfilesExec`]: the scan of `customer_profiles`, which answers expressions over
//! the profile's columns itself, from values kept with the snapshot.
//!
//! DataFusion moves an expression such as `json_get_str(traits, 'city')` down to a projection
//! right above the scan (its "leaf expression" extraction), then offers that projection to the
//! scan ([`ExecutionPlan::try_swapping_with_projection`]). This scan takes it: its outputs
//! become those expressions, and executing it looks each one up among the values its snapshot
//! keeps, computing it over every kept row the first time. Plain columns are handed out as they
//! are; volatile expressions (`random()`) are computed every time.
//!
//! The scan declares as many partitions as the session runs (each a contiguous share of the
//! rows): a single partition would have DataFusion put a round-robin repartition between it
//! and the projection, which the projection does not cross.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path;

use super::{Profiles, keyed};
use crate::identity::TenantIdentity;

/// Expression values kept per snapshot at most; more are computed on every query.
pub(crate) const MAX_KEPT_VALUES: usize = 64;

/// What a scan reads: the tenant's profiles as the query sees them.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) identity: Arc<TenantIdentity>,
    /// The committed snapshot's files (which rows are kept is decided by them).
    pub(super) files: Vec<Path>,
    /// The Delta scan of that snapshot, run when its rows are not kept yet.
    pub(super) committed: Arc<dyn ExecutionPlan>,
    /// Acknowledged rows not in the snapshot.
    pub(super) buffered: Vec<RecordBatch>,
    /// `customer_profiles`' columns.
    pub(super) schema: SchemaRef,
    /// The number of rows, when the snapshot's are kept already (DataFusion chooses join
    /// strategies by it).
    pub(super) rows: Option<usize>,
}

/// The scan of `customer_profiles`: each output an expression over its columns.
#[derive(Clone)]
pub(super) struct CustomerProfilesExec {
    source: Arc<Source>,
    /// Over `source.schema`.
    outputs: Vec<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
}

impl CustomerProfilesExec {
    /// The scan of the columns `projection` (all without), in `partitions` partitions.
    pub(super) fn new(
        source: Arc<Source>,
        projection: Option<&[usize]>,
        partitions: usize,
    ) -> DfResult<Self> {
        let all: Vec<usize> = (0..source.schema.fields().len()).collect();
        let columns = projection.unwrap_or(&all);
        let outputs = columns
            .iter()
            .map(|&i| {
                Arc::new(Column::new(source.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let schema = Arc::new(source.schema.project(columns)?);
        Ok(Self::with_outputs(source, outputs, schema, partitions))
    }

    fn with_outputs(
        source: Arc<Source>,
        outputs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        partitions: usize,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            source,
            outputs,
            properties,
        }
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }
}

/// The values of `outputs` over `profiles`' kept rows, each computed at most once per snapshot.
async fn kept_values(
    profiles: &Profiles,
    outputs: &[Arc<dyn PhysicalExpr>],
) -> DfResult<Vec<ArrayRef>> {
    let rows = &profiles.rows;
    let mut values = Vec::with_capacity(outputs.len());
    for expr in outputs {
        if let Some(column) = expr.downcast_ref::<Column>() {
            values.push(Arc::clone(rows.column(column.index())));
            continue;
        }
        if is_volatile(expr) {
            values.push(value_over(expr, rows)?);
            continue;
        }
        let mut kept = profiles.values.lock().await;
        let value = match kept.get(expr) {
            Some(value) => Arc::clone(value),
            None => {
                let value = value_over(expr, rows)?;
                if kept.len() < MAX_KEPT_VALUES {
                    kept.insert(Arc::clone(expr), Arc::clone(&value));
                }
                value
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// The value of `expr` over `rows`, computed now.
fn value_over(expr: &Arc<dyn PhysicalExpr>, rows: &RecordBatch) -> DfResult<ArrayRef> {
    expr.evaluate(rows)?.into_array(rows.num_rows())
}

impl CustomerProfilesExec {
    /// The batches of `partition`: its share of the kept rows (and, for the first, the
    /// buffered rows), at most `batch_size` rows each.
    async fn batches(
        self: Arc<Self>,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<Vec<RecordBatch>> {
        let source = &self.source;
        let profiles = source
            .identity
            .profiles_index()
            .current(
                &source.identity,
                &source.files,
                &source.schema,
                &source.committed,
                Arc::clone(&context),
            )
            .await?;
        let schema = self.schema();
        let values = kept_values(&profiles, &self.outputs).await?;
        let rows = profiles.rows.num_rows();
        let (start, end) = (
            rows * partition / self.partitions(),
            rows * (partition + 1) / self.partitions(),
        );
        let size = context.session_config().batch_size().max(1);
        let mut batches = Vec::new();
        let mut at = start;
        while at < end {
            let len = size.min(end - at);
            let columns = values.iter().map(|v| v.slice(at, len)).collect();
            batches.push(batch(&schema, columns, len)?);
            at += len;
        }
        if partition == 0 && !source.buffered.is_empty() {
            let buffered = keyed(&source.identity, &source.schema, &source.buffered)?;
            let columns = self
                .outputs
                .iter()
                .map(|expr| value_over(expr, &buffered))
                .collect::<DfResult<_>>()?;
            batches.push(batch(&schema, columns, buffered.num_rows())?);
        }
        Ok(batches)
    }
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> DfResult<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

impl fmt::Debug for CustomerProfilesExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerProfilesExec({:?})", self.outputs)
    }
}

impl DisplayAs for CustomerProfilesExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outputs: Vec<String> = self.outputs.iter().map(|e| e.to_string()).collect();
        write!(f, "CustomerProfilesExec: outputs=[{}]", outputs.join(", "))
    }
}

impl ExecutionPlan for CustomerProfilesExec {
    fn name(&self) -> &str {
        "CustomerProfilesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        visit: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        let mut recursion = TreeNodeRecursion::Continue;
        for expr in &self.outputs {
            recursion = visit(expr)?;
            if recursion == TreeNodeRecursion::Stop {
                break;
            }
        }
        Ok(recursion)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let mut statistics = Statistics::new_unknown(&self.schema());
        if let Some(rows) = self.source.rows {
            let share = match partition {
                Some(_) => rows / self.partitions(),
                None => rows,
            };
            statistics.num_rows = Precision::Inexact(share);
        }
        Ok(Arc::new(statistics))
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

    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        // Each projected expression reads this scan's outputs: in terms of the table's columns,
        // it is the expression with every column replaced by the output it reads.
        let outputs = projection
            .expr()
            .iter()
            .map(|projected| {
                Arc::clone(&projected.expr)
                    .transform(|expr| match expr.downcast_ref::<Column>() {
                        Some(column) => {
                            Ok(Transformed::yes(Arc::clone(&self.outputs[column.index()])))
                        }
                        None => Ok(Transformed::no(expr)),
                    })
                    .map(|rewritten| rewritten.data)
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Some(Arc::new(Self::with_outputs(
            Arc::clone(&self.source),
            outputs,
            projection.schema(),
            self.partitions(),
        ))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let rows = stream::once(Arc::new(self.clone()).batches(partition, context))
            .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }
}
