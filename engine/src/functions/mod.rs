//! SQL functions that read the engine's state (the identity graphs, the tenant's tables), for
//! the tenant of the session that calls them. Pure functions, which need nothing but their
//! arguments, live in the `tributary_udfs` crate instead.
//!
//! One function per file. A table function is a [`TableFunction`] (its name and the `fn` that
//! answers a [`Call`]) listed in [`TABLE_FUNCTIONS`]; a scalar is a DataFusion `ScalarUDFImpl`
//! listed in [`register_all`], the one place both are registered (by
//! [`crate::build_session_state`]). Each holds the engine's
//! services weakly: the sessions they are registered in belong to those services.

mod args;
pub mod clv;
pub mod clv_params;
pub mod clv_summary;
pub mod customer_identities;
pub mod customer_journey;
pub mod customer_profile;
mod edges;
pub mod event_measures;
pub mod explain_identity;
pub mod explain_merge;
pub mod explain_segment;
pub mod lifecycle;
mod purchases;
pub mod resolve_customer;
pub mod rfm;
pub mod segment_preview;
pub mod segment_size;

use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::physical_plan::ExecutionPlan;

use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::{Expr, ScalarUDF, cast, col};
use datafusion::prelude::SessionContext;

pub(crate) use crate::computed::{Compute, ComputedExec, projected};

use crate::error::Result;
use crate::identity::IdentityService;

/// A table function of the engine.
#[derive(Debug, Clone, Copy)]
pub struct TableFunction {
    /// Its SQL name.
    pub name: &'static str,
    /// The table one call answers (computed now, or when scanned).
    pub call: fn(&Call<'_>) -> DfResult<Arc<dyn TableProvider>>,
}

/// What a table function is called with.
pub struct Call<'a> {
    /// The function's SQL name (for messages).
    pub name: &'static str,
    /// The calling session's tenant.
    pub tenant: &'a str,
    /// Identity resolution of every tenant.
    pub identity: &'a Arc<IdentityService>,
    /// The arguments, as planned expressions.
    pub args: &'a [Expr],
}

/// Every table function, in the order `docs/sql.md` lists them.
pub const TABLE_FUNCTIONS: &[TableFunction] = &[
    customer_identities::FUNCTION,
    explain_merge::FUNCTION,
    explain_identity::FUNCTION,
    customer_journey::FUNCTION,
    customer_profile::FUNCTION,
    event_measures::FUNCTION,
    clv_summary::FUNCTION,
    clv::FUNCTION,
    clv_params::FUNCTION,
    rfm::FUNCTION,
    lifecycle::FUNCTION,
    segment_preview::FUNCTION,
    explain_segment::FUNCTION,
];

/// Registers every function of this module in `state`, over `identity`.
pub fn register_all(state: &mut SessionState, identity: Weak<IdentityService>) -> Result<()> {
    for function in TABLE_FUNCTIONS {
        state.register_udtf(
            function.name,
            Arc::new(Registered {
                function: *function,
                identity: Weak::clone(&identity),
            }),
        );
    }
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(
        resolve_customer::ResolveCustomer::new(identity),
    )))?;
    Ok(())
}

/// A [`TableFunction`] as DataFusion calls it.
#[derive(Debug)]
struct Registered {
    function: TableFunction,
    identity: Weak<IdentityService>,
}

impl TableFunctionImpl for Registered {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let identity = upgrade(&self.identity)?;
        let tenant = args
            .session()
            .config_options()
            .catalog
            .default_catalog
            .clone();
        (self.function.call)(&Call {
            name: self.function.name,
            tenant: &tenant,
            identity: &identity,
            args: args.exprs(),
        })
    }
}

/// The session a scan is planned in, as DataFusion's `SessionState` (what every Tributary
/// session is).
pub(crate) fn session_state(session: &dyn Session) -> DfResult<&SessionState> {
    session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("a session state is needed".into()))
}

/// An engine error inside a DataFusion computation.
pub(crate) fn external(error: crate::error::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The service, while the engine that owns it is open.
pub(crate) fn upgrade(identity: &Weak<IdentityService>) -> DfResult<Arc<IdentityService>> {
    identity
        .upgrade()
        .ok_or_else(|| DataFusionError::Execution("the engine has shut down".into()))
}

/// A table a function answers that is computed when scanned (so it reads the data of that
/// moment, through the scanning session); its columns are declared up front (see [`live`]).
#[async_trait]
pub(crate) trait LiveTable: fmt::Debug + Send + Sync + 'static {
    /// The plan computing the rows a scan asks for.
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>>;
}

/// One scan of a [`LiveTable`].
pub(crate) struct Scan<'a> {
    /// A context over the scanning session.
    pub(crate) ctx: SessionContext,
    /// The declared columns.
    pub(crate) schema: &'a SchemaRef,
    /// Which of them the scan wants (all without).
    pub(crate) projection: Option<&'a Vec<usize>>,
}

impl Scan<'_> {
    /// The declared columns the scan wants.
    pub(crate) fn projected_schema(&self) -> DfResult<SchemaRef> {
        Ok(match self.projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => Arc::clone(self.schema),
        })
    }

    /// The columns the scan wants, each cast to its declared type.
    pub(crate) fn columns(&self) -> Vec<Expr> {
        self.schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.projection.is_none_or(|p| p.contains(i)))
            .map(|(_, f)| cast(col(f.name()), f.data_type().clone()).alias(f.name()))
            .collect()
    }
}

/// A table answered by a SQL query, run when scanned; its columns are cast to the declared
/// schema.
///
/// Without `inputs`, `sql` reads the tenant's tables. With them, each input is computed once
/// over the tenant's tables and held in memory under its name, and `sql` runs over those alone
/// (with every Tributary function): a relation the answer reads twice — per-customer purchase
/// days, which the value models join back to their own aggregates — is then scanned and stitched
/// to customers once, not once per reference.
///
/// The answer is computed when the scan runs (a [`ComputedExec`]) and handed on as batches: a
/// physical plan returned from here would be optimized a second time inside the calling query's
/// plan, and DataFusion 55 refuses to reorder a hash join whose dynamic filters the first
/// optimization built (an internal error seen at 100,000 customers). These answers are one row
/// per customer, so holding them is cheap.
#[derive(Debug, Clone)]
pub(crate) struct SqlTable {
    /// Named relations computed first, over the tenant's tables.
    pub(crate) inputs: Vec<(&'static str, String)>,
    /// The answer.
    pub(crate) sql: String,
}

impl SqlTable {
    /// The context `sql` runs in: the scanning session's, or one over the computed inputs.
    async fn context(&self, tenant: &SessionContext) -> DfResult<SessionContext> {
        if self.inputs.is_empty() {
            return Ok(tenant.clone());
        }
        let mut state = SessionStateBuilder::new()
            .with_config(
                tenant
                    .copied_config()
                    .with_create_default_catalog_and_schema(true),
            )
            .with_default_features()
            .build();
        tributary_udfs::register_all(&mut state)?;
        let local = SessionContext::new_with_state(state);
        for (name, sql) in &self.inputs {
            let frame = tenant.sql(sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            local.register_table(*name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
        }
        Ok(local)
    }
}

#[async_trait]
impl LiveTable for SqlTable {
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = scan.projected_schema()?;
        let columns = scan.columns();
        let (table, tenant) = (self.clone(), scan.ctx);
        let compute: Compute = Arc::new(move || {
            let (table, tenant, columns) = (table.clone(), tenant.clone(), columns.clone());
            Box::pin(async move {
                let ctx = table.context(&tenant).await?;
                ctx.sql(&table.sql).await?.select(columns)?.collect().await
            })
        });
        Ok(Arc::new(ComputedExec::new("sql", schema, compute)))
    }
}

/// `table` with the columns `schema`, as a DataFusion table (a view: nothing is stored).
pub(crate) fn live(schema: SchemaRef, table: impl LiveTable) -> Arc<dyn TableProvider> {
    Arc::new(Live { schema, table })
}

#[derive(Debug)]
struct Live<T> {
    schema: SchemaRef,
    table: T,
}

#[async_trait]
impl<T: LiveTable> TableProvider for Live<T> {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = session_state(session)?;
        let ctx = SessionContext::new_with_state(state.clone());
        let scan = Scan {
            ctx,
            schema: &self.schema,
            projection,
        };
        self.table.plan(scan).await
    }
}
