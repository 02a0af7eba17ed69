//! The Tributary database: SQL over the tenants' Delta tables.
//!
//! An [`Engine`] owns the [`Catalog`] and a template DataFusion session (built once by
//! [`build_session_state`]). Each request gets its own [`SessionContext`] for one tenant: the
//! tenant is the default catalog, so `SELECT * FROM events` reads that tenant's events.
//! Queries are planned by DataFusion and streamed; statements that change data ([`is_write`])
//! run to completion at once through [`statement`], and bulk loads go through [`ingest`].

mod error;
pub mod identity;
pub mod ingest;
pub mod procedure;
pub mod session;
pub mod statement;
pub mod write;

use std::sync::{Arc, Weak};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use tributary_catalog::builtin::{EVENTS, IDENTITIES};
use tributary_catalog::{Catalog, Storage};

use identity::IdentityService;
use procedure::Procedure;

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
    identity: Arc<IdentityService>,
}

impl Engine {
    /// Opens (or initialises) the data root with the default write settings for it.
    pub async fn open(storage: Storage) -> Result<Self> {
        let options = WriteOptions::for_storage(&storage);
        Self::open_with(storage, options).await
    }

    /// Opens the data root; replays the write-ahead log and resolves every tenant's identities.
    pub async fn open_with(storage: Storage, options: WriteOptions) -> Result<Self> {
        let profile_refresh = options.profile_refresh;
        let catalog = Catalog::open(storage).await?;
        let writer = Writer::open(Arc::clone(&catalog), options).await?;
        let identity = IdentityService::new(Arc::clone(&catalog), &writer);
        let template = Arc::new(build_session_state(
            Arc::clone(&catalog),
            Arc::clone(writer.buffer()),
            Some(Arc::clone(&identity)),
        )?);
        writer.set_hook(Arc::clone(&identity) as Arc<dyn write::WriteHook>);
        identity.start(Arc::clone(&template)).await?;
        if !profile_refresh.is_zero() {
            tokio::spawn(identity::profiles::run_refresher(
                Arc::downgrade(&identity),
                profile_refresh,
            ));
        }
        Ok(Self {
            catalog,
            writer,
            template,
            identity,
        })
    }

    /// Identity resolution.
    pub fn identity(&self) -> &Arc<IdentityService> {
        &self.identity
    }

    /// A weak handle to identity resolution (for background tasks).
    pub fn identity_weak(&self) -> Weak<IdentityService> {
        Arc::downgrade(&self.identity)
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

    /// Plans one SQL statement (a `CALL` plans to a [`procedure`]).
    pub async fn plan(&self, ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        if let Some(plan) = procedure::plan_call(&statement)? {
            return Ok(plan);
        }
        Ok(state.statement_to_plan(statement).await?)
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
        if let Some(procedure) = procedure::procedure_of(&plan) {
            let tenant = ctx
                .state()
                .config()
                .options()
                .catalog
                .default_catalog
                .clone();
            return Box::pin(self.call(&tenant, procedure.clone())).await;
        }
        let target = statement::target_table(&self.catalog, ctx, &plan)?;
        if let (Some((tenant, table)), LogicalPlan::Dml(dml)) = (&target, &plan)
            && table == IDENTITIES
            && matches!(dml.op, datafusion::logical_expr::WriteOp::Insert(_))
        {
            // Edges go through the write path: checked, logged, resolved at once.
            let batches = ctx
                .execute_logical_plan(dml.input.as_ref().clone())
                .await?
                .collect()
                .await?;
            let receipt = self
                .writer
                .write(
                    tenant,
                    table,
                    batches,
                    IfTableMissing::Fail,
                    WriteMode::Append,
                )
                .await?;
            self.identity.flush_changes(tenant).await;
            return Ok(receipt.rows);
        }
        if let Some((tenant, table)) = &target
            && matches!(plan, LogicalPlan::Dml(_))
        {
            self.writer.flush_table(tenant, table).await?;
        }
        let replaces = matches!(plan, LogicalPlan::Ddl(_));
        let count = statement::execute_write(&self.catalog, ctx, plan).await?;
        if let Some((tenant, table)) = target {
            if replaces {
                // The table was dropped or made anew: rows buffered for the old one are gone.
                self.writer.discard(&tenant, &table);
            }
            if table == IDENTITIES || table == EVENTS {
                // Statements bypass the write hook: resolve this tenant again from its tables.
                self.identity.rebuild(&tenant).await?;
            }
        }
        Ok(count)
    }

    /// Runs a procedure for `tenant`; returns its row count.
    pub async fn call(&self, tenant: &str, procedure: Procedure) -> Result<u64> {
        self.catalog.require_tenant(tenant)?;
        match procedure {
            Procedure::Forget { id_type, value } => {
                let report = identity::forget::forget(self, tenant, &id_type, &value).await?;
                Ok(report.rows())
            }
            Procedure::RefreshProfiles => {
                identity::profiles::refresh_profiles(&self.identity, tenant).await
            }
            Procedure::RebuildIdentity => {
                self.identity.rebuild(tenant).await?;
                Ok(self.identity.tenant(tenant).read(|g| g.customer_count()) as u64)
            }
        }
    }

    /// Deletes the rows of `tenant.table` matching a SQL condition; returns how many.
    pub async fn delete_rows(&self, tenant: &str, table: &str, condition: &str) -> Result<u64> {
        let ctx = self.session(tenant)?;
        let sql = format!(
            "DELETE FROM \"{}\" WHERE {condition}",
            table.replace('"', "\"\"")
        );
        let plan = self.plan(&ctx, &sql).await?;
        self.execute_write(&ctx, plan).await
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
