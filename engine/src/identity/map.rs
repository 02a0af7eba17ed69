//! `identity_map` (id_type, id_value, customer_id, updated_at): a virtual table of every tenant,
//! read from the live identity graph (its batch cached per graph version by
//! [`super::TenantIdentity::map_batch`]), so a join on it always sees the current resolution.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tributary_catalog::builtin::timestamp_type;
use tributary_identity::IdentityGraph;

use super::TenantIdentity;

/// Name of the live identity map table.
pub const IDENTITY_MAP: &str = "identity_map";

/// `identity_map`'s columns.
pub fn identity_map_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("updated_at", timestamp_type(), false),
    ]))
}

/// Every identifier of the graph with its customer (blocked identifiers have none).
pub fn identity_map_batch(graph: &IdentityGraph) -> datafusion::error::Result<RecordBatch> {
    let mut id_type = StringBuilder::new();
    let mut id_value = StringBuilder::new();
    let mut customer_id = StringBuilder::new();
    let mut updated_at = TimestampMicrosecondBuilder::new();
    for (customer, members, updated) in graph.customers() {
        let customer = customer.to_string();
        for (kind, value) in members {
            id_type.append_value(kind);
            id_value.append_value(value);
            customer_id.append_value(&customer);
            updated_at.append_value(updated);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id_type.finish()),
        Arc::new(id_value.finish()),
        Arc::new(customer_id.finish()),
        Arc::new(updated_at.finish().with_timezone("UTC")),
    ];
    Ok(RecordBatch::try_new(identity_map_schema(), columns)?)
}

/// `identity_map` of one tenant.
#[derive(Debug)]
pub struct IdentityMapTable {
    identity: Arc<TenantIdentity>,
}

impl IdentityMapTable {
    /// The table over a tenant's live graph.
    pub fn new(identity: Arc<TenantIdentity>) -> Self {
        Self { identity }
    }
}

#[async_trait]
impl TableProvider for IdentityMapTable {
    fn schema(&self) -> SchemaRef {
        identity_map_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self
            .identity
            .map_batch()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            identity_map_schema(),
            projection.cloned(),
        )?)
    }
}
