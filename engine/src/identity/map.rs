//! The tables every tenant has that are read from its live identity graph (their batches cached
//! per graph version by [`super::TenantIdentity::view_batch`]), so a query always sees the
//! current resolution: `identity_map` (id_type, id_value, customer_id, updated_at) and
//! `customer_ids` (customer_id, customer_key: one row per customer; the key is
//! [`super::keys`]').

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use datafusion::arrow::compute::take;
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
use super::keys::CustomerKeys;

/// Name of the live identity map table.
pub const IDENTITY_MAP: &str = "identity_map";

/// Name of the table of every customer (not `customers`: a name users give their own tables).
pub const CUSTOMER_IDS: &str = "customer_ids";

/// A table read from the live graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphView {
    /// `identity_map`.
    IdentityMap = 0,
    /// `customer_ids`.
    Customers = 1,
}

impl GraphView {
    /// Every view.
    pub const ALL: [GraphView; 2] = [GraphView::IdentityMap, GraphView::Customers];

    /// Its table name.
    pub fn name(self) -> &'static str {
        match self {
            GraphView::IdentityMap => IDENTITY_MAP,
            GraphView::Customers => CUSTOMER_IDS,
        }
    }

    /// The view named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|view| view.name() == name)
    }

    /// Its columns.
    pub fn schema(self) -> SchemaRef {
        match self {
            GraphView::IdentityMap => identity_map_schema(),
            GraphView::Customers => Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8View, false),
                Field::new("customer_key", DataType::UInt32, false),
            ])),
        }
    }

    /// Its rows under `graph` (of `generation`), with the customers' `keys`.
    pub fn batch(
        self,
        graph: &IdentityGraph,
        generation: u64,
        keys: &mut CustomerKeys,
    ) -> datafusion::error::Result<RecordBatch> {
        match self {
            GraphView::IdentityMap => identity_map_batch(graph),
            GraphView::Customers => {
                let numbers: UInt32Array = graph
                    .founders()
                    .map(|founder| Some(keys.founder_key(generation, graph, founder)))
                    .collect();
                let ids = take(keys.ids().as_ref(), &numbers, None)?;
                Ok(RecordBatch::try_new(
                    self.schema(),
                    vec![ids, Arc::new(numbers)],
                )?)
            }
        }
    }
}

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

/// One [`GraphView`] of one tenant.
#[derive(Debug)]
pub struct GraphTable {
    identity: Arc<TenantIdentity>,
    view: GraphView,
}

impl GraphTable {
    /// `view` over a tenant's live graph.
    pub fn new(identity: Arc<TenantIdentity>, view: GraphView) -> Self {
        Self { identity, view }
    }
}

#[async_trait]
impl TableProvider for GraphTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
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
            .view_batch(self.view)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.view.schema(),
            projection.cloned(),
        )?)
    }
}
