//! The Tributary database: SQL over the tenants' Delta tables.
//!
//! An [`Engine`] owns the [`Catalog`] and a template DataFusion session (built once by
//! [`build_session_state`]). Each request gets its own [`SessionContext`] for one tenant: the
//! tenant is the default catalog, so `SELECT * FROM events` reads that tenant's events.
//! Queries are planned by DataFusion and streamed; statements that change data ([`is_write`])
//! run to completion at once through [`statement`], and bulk loads go through [`ingest`].

mod error;
pub mod ingest;
pub mod session;
pub mod statement;
pub mod write;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use tributary_catalog::{Catalog, Storage};

pub use error::{Error, Result};
pub use ingest::IfTableMissing;
pub use session::build_session_state;
pub use statement::{count_schema, is_write};
pub use write::{WriteMode, WriteOptions, WriteReceipt, Writer};

/// The database: catalog, write path and session template.
#[derive(Debug, Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    writer: Arc<Writer>,
    template: Arc<SessionState>,
}

impl Engine {
    /// Opens (or initialises) the data root with the default write settings for it.
    pub async fn open(storage: Storage) -> Result<Self> {
        let options = WriteOptions::for_storage(&storage);
        Self::open_with(storage, options).await
    }

    /// Opens the data root; replays the write-ahead log.
    pub async fn open_with(storage: Storage, options: WriteOptions) -> Result<Self> {
        let catalog = Catalog::open(storage).await?;
        let writer = Writer::open(Arc::clone(&catalog), options).await?;
        let template = Arc::new(build_session_state(
            Arc::clone(&catalog),
            Arc::clone(writer.buffer()),
        )?);
        Ok(Self {
            catalog,
            writer,
            template,
        })
    }

    /// The write path.
    pub fn writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    /// The tenants and their tables.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A new session whose default catalog is `tenant`.
    pub fn session(&self, tenant: &str) -> Result<SessionContext> {
        self.catalog.require_tenant(tenant)?;
        let mut state = self.template.as_ref().clone();
        state.config_mut().options_mut().catalog.default_catalog = tenant.to_string();
        Ok(SessionContext::new_with_state(state))
    }

    /// Plans one SQL statement.
    pub async fn plan(&self, ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
        Ok(ctx.state().create_logical_plan(sql).await?)
    }

    /// Plans one SQL statement and binds positional parameters (`$1`, `$2`…) if any are given.
    pub async fn plan_with_params(
        &self,
        ctx: &SessionContext,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<LogicalPlan> {
        let plan = self.plan(ctx, sql).await?;
        match params {
            Some(values) => Ok(plan.with_param_values(values)?),
            None => Ok(plan),
        }
    }

    /// Runs a plan. Writes run to completion first and stream back their row count; queries
    /// stream their results.
    pub async fn execute(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream> {
        if is_write(&plan) {
            let count = self.execute_write(ctx, plan).await?;
            let batch = statement::count_batch(count);
            return Ok(Box::pin(MemoryStream::try_new(
                vec![batch],
                count_schema(),
                None,
            )?));
        }
        Ok(ctx
            .execute_logical_plan(plan)
            .await?
            .execute_stream()
            .await?)
    }

    /// Plans a query down to its physical plan without running it, so that errors found only
    /// then (a function's invalid constant argument) are reported before any result is asked for.
    pub async fn check_query(&self, ctx: &SessionContext, plan: &LogicalPlan) -> Result<()> {
        ctx.state().create_physical_plan(plan).await?;
        Ok(())
    }

    /// Runs a write plan and returns the number of rows it changed. Buffered rows of the table
    /// a DML statement changes are committed first, so that it sees them.
    pub async fn execute_write(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<u64> {
        let target = statement::target_table(&self.catalog, ctx, &plan)?;
        if let Some((tenant, table)) = &target
            && matches!(plan, LogicalPlan::Dml(_))
        {
            self.writer.flush_table(tenant, table).await?;
        }
        let replaces = matches!(plan, LogicalPlan::Ddl(_));
        let count = statement::execute_write(&self.catalog, ctx, plan).await?;
        if let Some((tenant, table)) = target
            && replaces
        {
            // The table was dropped or made anew: rows buffered for the old one are gone.
            self.writer.discard(&tenant, &table);
        }
        Ok(count)
    }

    /// Plans and runs one statement for `tenant`, collecting the result.
    pub async fn sql(&self, tenant: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.session(tenant)?;
        let plan = self.plan(&ctx, sql).await?;
        let stream = self.execute(&ctx, plan).await?;
        Ok(datafusion::physical_plan::common::collect(stream).await?)
    }

    /// Writes batches to a table through the durable write path (see [`write`]).
    pub async fn write(
        &self,
        tenant: &str,
        table: &str,
        batches: Vec<RecordBatch>,
        if_missing: IfTableMissing,
        mode: WriteMode,
    ) -> Result<WriteReceipt> {
        self.writer
            .write(tenant, table, batches, if_missing, mode)
            .await
    }

    /// Commits every buffered row (at shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.writer.flush_all().await
    }
}
