//! The Tributary database: SQL over the tenants' Delta tables.
//!
//! An [`Engine`] owns the [`Catalog`] and a template DataFusion session (built once by
//! [`build_session_state`]). Each request gets its own [`SessionContext`] for one tenant: the
//! tenant is the default catalog, so `SELECT * FROM events` reads that tenant's events.
//! Queries are planned by DataFusion and streamed; statements that change data ([`is_write`])
//! run to completion at once: DataFusion's DDL and DML through [`dml`], Tributary's own
//! statements (`CALL`, …) through [`statements`]; every load, `INSERT INTO` included, goes
//! through the write path ([`write`]). SQL functions that read engine state are in
//! [`functions`].

pub mod activation;
mod computed;
pub mod dml;
mod error;
pub mod functions;
pub mod identity;
pub mod remote;
pub mod segments;
pub mod session;
pub mod sql_text;
pub mod statements;
pub mod write;

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use tributary_auth::{Access, Directory};
use tributary_catalog::builtin::{EVENTS, IDENTITIES};
use tributary_catalog::{Catalog, DEFAULT_TENANT, Storage};

use identity::IdentityService;
use sql_text::identifier;

pub use dml::count_schema;
pub use error::{Error, ErrorClass, Result};
pub use session::build_session_state;
pub use statements::{StatementClass, class_of, is_write};
pub use write::{IfTableMissing, WriteMode, WriteOptions, WriteReceipt, Writer};

/// The database: catalog, write path and session template.
#[derive(Debug, Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    writer: Arc<Writer>,
    template: Arc<SessionState>,
    identity: Arc<IdentityService>,
    directory: Arc<Directory>,
    /// Memory one session (one query) may use; `None`: the template's unbounded pool.
    query_memory_bytes: Option<usize>,
    /// Where read queries run when not here (`serve --cluster`).
    remote: Option<Arc<dyn remote::RemotePlans>>,
}

/// The tenant a session made by [`Engine::session`] reads and writes: its default catalog.
pub fn tenant_of(ctx: &SessionContext) -> String {
    ctx.state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone()
}

/// The rights of the caller a session was made for by [`Engine::session_as`]; `None` for an
/// unrestricted session (no users configured, or the engine's own work).
pub fn access_of(ctx: &SessionContext) -> Option<Arc<Access>> {
    ctx.state().config().get_extension::<Access>()
}

/// Refuses a plan the session's caller may not run (nothing for unrestricted sessions).
fn authorize(ctx: &SessionContext, plan: &LogicalPlan) -> Result<()> {
    Engine::require(ctx, class_of(plan))
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
        let follow_interval = options.follow_interval;
        let catalog = Catalog::open(storage.clone()).await?;
        let directory = Arc::new(Directory::open(storage).await?);
        let writer = Writer::open(Arc::clone(&catalog), options).await?;
        let identity = IdentityService::new(Arc::clone(&catalog), &writer);
        let template = Arc::new(build_session_state(
            Arc::clone(&catalog),
            Arc::clone(writer.buffer()),
            Some(Arc::downgrade(&identity)),
        )?);
        writer.set_hook(Arc::clone(&identity) as Arc<dyn write::WriteHook>);
        identity.start(Arc::clone(&template)).await?;
        if !follow_interval.is_zero() {
            tokio::spawn(write::follow::run(Arc::downgrade(&writer), follow_interval));
        }
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
            directory,
            query_memory_bytes: None,
            remote: None,
        })
    }

    /// Sends the read queries `remote` takes there (a cluster) instead of running them here.
    pub fn with_remote(mut self, remote: Arc<dyn remote::RemotePlans>) -> Self {
        // A cluster's scheduler optimizes the plans it gets again (it may swap a join's
        // inputs), which dynamic filters built here do not survive; Ballista turns them off for
        // its own plans too. Set once on the template every query session is cloned from.
        let mut template = self.template.as_ref().clone();
        let optimizer = &mut template.config_mut().options_mut().optimizer;
        optimizer.enable_dynamic_filter_pushdown = false;
        optimizer.enable_join_dynamic_filter_pushdown = false;
        optimizer.enable_topk_dynamic_filter_pushdown = false;
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        self.template = Arc::new(template);
        self.remote = Some(remote);
        self
    }

    /// Bounds the memory of each query: operators that can spill (sorts, aggregations, joins)
    /// spill to disk past it, others fail with "Resources exhausted".
    pub fn with_query_memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.query_memory_bytes = bytes;
        self
    }

    /// The template state, with its own memory pool when queries have a memory limit, and
    /// with only the `visible` tenants when given.
    fn session_state(&self, visible: Option<BTreeSet<String>>) -> Result<SessionState> {
        let state = self.template.as_ref().clone();
        let runtime = match self.query_memory_bytes {
            Some(bytes) => {
                let pool = datafusion::execution::memory_pool::TrackConsumersPool::new(
                    datafusion::execution::memory_pool::FairSpillPool::new(bytes),
                    std::num::NonZeroUsize::new(5).expect("5 is not zero"),
                );
                Some(
                    datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
                        state.runtime_env(),
                    )
                    .with_memory_pool(Arc::new(pool))
                    .build_arc()?,
                )
            }
            None => None,
        };
        let catalogs = match visible {
            Some(visible) => Some(
                state
                    .catalog_list()
                    .downcast_ref::<write::overlay::BufferedCatalogList>()
                    .ok_or_else(|| {
                        Error::Internal("the session's catalog list is not Tributary's".into())
                    })?
                    .restricted_to(visible),
            ),
            None => None,
        };
        if runtime.is_none() && catalogs.is_none() {
            return Ok(state);
        }
        let mut builder = datafusion::execution::SessionStateBuilder::new_from_existing(state);
        if let Some(runtime) = runtime {
            builder = builder.with_runtime_env(runtime);
        }
        if let Some(catalogs) = catalogs {
            builder = builder.with_catalog_list(Arc::new(catalogs));
        }
        Ok(builder.build())
    }

    /// Starts refreshing the stored segments that have a schedule ([`segments::scheduler`]);
    /// abort the task to stop it.
    pub fn start_segment_scheduler(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(segments::scheduler::run(self.clone()))
    }

    /// Starts delivering activated segments to their destinations ([`activation::deliver`]);
    /// abort the task to stop it.
    pub fn start_deliverer(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(activation::deliver::run(self.clone()))
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

    /// The users, their grants and logins.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// A new session whose default catalog is `tenant`, with every right (the engine's own
    /// work, and every caller while no user is configured).
    pub fn session(&self, tenant: &str) -> Result<SessionContext> {
        self.catalog.require_tenant(tenant)?;
        let mut state = self.session_state(None)?;
        state.config_mut().options_mut().catalog.default_catalog = tenant.to_string();
        Ok(SessionContext::new_with_state(state))
    }

    /// A session for a caller: with `access`, in the tenant `asked` (or the caller's default
    /// one) if granted, seeing only the granted tenants, and every statement checked against
    /// the caller's role before it is planned; without, as [`Engine::session`] (`asked` or the
    /// default tenant).
    pub fn session_as(
        &self,
        access: Option<Access>,
        asked: Option<&str>,
    ) -> Result<SessionContext> {
        let Some(access) = access else {
            return self.session(asked.unwrap_or(DEFAULT_TENANT));
        };
        let tenant = access.tenant(asked)?;
        if self.catalog.tenant(&tenant).is_none() {
            return Err(Error::NotFound(format!(
                "tenant '{tenant}' does not exist (it was dropped?)"
            )));
        }
        let visible = (!access.is_superuser()).then(|| access.grants().keys().cloned().collect());
        let mut state = self.session_state(visible)?;
        let config = state.config_mut();
        config.options_mut().catalog.default_catalog = tenant;
        config.set_extension(Arc::new(access));
        Ok(SessionContext::new_with_state(state))
    }

    /// Plans one SQL statement: one of ours ([`statements`]) or DataFusion's.
    pub async fn plan(&self, ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        if let Some(statement) = statements::parse(sql, dialect.as_ref())? {
            let plan = statements::StatementNode::plan(statement)?;
            authorize(ctx, &plan)?;
            return Ok(plan);
        }
        let mut statement = state.sql_to_statement(sql, &dialect)?;
        let mut inner = &mut statement;
        while let DFStatement::Explain(explain) = inner {
            inner = explain.statement.as_mut();
        }
        if let DFStatement::Statement(inner) = inner {
            let dialect = dialect_from_str(dialect.as_ref()).ok_or_else(|| {
                Error::InvalidInput(format!("unsupported SQL dialect '{dialect}'"))
            })?;
            functions::segment_size::expand(inner, dialect.as_ref())
                .map_err(statements::sql_error)?;
            sql_text::number_placeholders(inner);
        }
        let plan = state.statement_to_plan(statement).await?;
        authorize(ctx, &plan)?;
        Ok(plan)
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
            let batch = dml::count_batch(count);
            return Ok(Box::pin(MemoryStream::try_new(
                vec![batch],
                count_schema(),
                None,
            )?));
        }
        if let Some(statement) = statements::statement_of(&plan) {
            let batches = statement.execute(self, ctx).await?;
            return Ok(Box::pin(MemoryStream::try_new(
                batches,
                statement.schema(),
                None,
            )?));
        }
        let plan = ctx
            .execute_logical_plan(plan)
            .await?
            .create_physical_plan()
            .await?;
        self.execute_physical(ctx, plan).await
    }

    /// Plans a query down to its physical plan without running it, so that errors found only
    /// then (a function's invalid constant argument) are reported before any result is asked
    /// for. The plan can be run later with [`Engine::execute_physical`] (`None` for our own
    /// reading statements, which run in [`Engine::execute`]).
    pub async fn prepare_query(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> Result<Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>> {
        if statements::statement_of(plan).is_some() {
            return Ok(None);
        }
        Ok(Some(ctx.state().create_physical_plan(plan).await?))
    }

    /// Runs a physical plan made by [`Engine::prepare_query`] in the session it was made in:
    /// on the cluster when the server has one that takes it, else here.
    pub async fn execute_physical(
        &self,
        ctx: &SessionContext,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    ) -> Result<SendableRecordBatchStream> {
        if let Some(remote) = self.remote.as_ref().filter(|r| r.takes(&plan)) {
            tracing::debug!("a query goes to the cluster");
            let state = ctx.state();
            return remote
                .execute(plan, state.config(), state.session_id().to_string())
                .await;
        }
        Ok(datafusion::physical_plan::execute_stream(
            plan,
            ctx.task_ctx(),
        )?)
    }

    /// Runs a write plan and returns the number of rows it changed. Buffered rows of the table
    /// a DML statement changes are committed first, so that it sees them.
    pub async fn execute_write(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<u64> {
        if let Some(statement) = statements::statement_of(&plan) {
            let batches = Box::pin(statement.execute(self, ctx)).await?;
            return Ok(dml::sum_counts(&batches));
        }
        let target = dml::target_table(&self.catalog, ctx, &plan)?;
        if let (Some((tenant, table)), LogicalPlan::Dml(dml)) = (&target, &plan)
            && matches!(
                dml.op,
                datafusion::logical_expr::WriteOp::Insert(InsertOp::Append)
            )
        {
            return self.insert(ctx, tenant, table, &dml.input).await;
        }
        if let Some((tenant, table)) = &target
            && matches!(plan, LogicalPlan::Dml(_))
        {
            self.writer.flush_table(tenant, table).await?;
        }
        let replaces = matches!(plan, LogicalPlan::Ddl(_));
        let count = dml::execute_write(&self.catalog, ctx, plan).await?;
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

    /// `INSERT INTO` takes the write path as every other load does: conformed, deduplicated
    /// (`events`), logged with group commit, seen by identity resolution, and acknowledged
    /// once durable. The answer counts the rows stored (retried events are not stored twice).
    async fn insert(
        &self,
        ctx: &SessionContext,
        tenant: &str,
        table: &str,
        input: &LogicalPlan,
    ) -> Result<u64> {
        let batches = ctx
            .execute_logical_plan(input.clone())
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
        if table == IDENTITIES || table == EVENTS {
            self.identity.flush_changes(tenant).await;
        }
        Ok(receipt.rows)
    }

    /// Deletes the rows of `tenant.table` matching a SQL condition; returns how many.
    pub async fn delete_rows(&self, tenant: &str, table: &str, condition: &str) -> Result<u64> {
        let ctx = self.session(tenant)?;
        let sql = format!("DELETE FROM {} WHERE {condition}", identifier(table));
        let plan = ctx.state().create_logical_plan(&sql).await?;
        self.execute_write(&ctx, plan).await
    }

    /// Plans and runs one statement for `tenant`, collecting the result.
    pub async fn sql(&self, tenant: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        self.sql_in(&self.session(tenant)?, sql).await
    }

    /// Plans and runs one statement in a session, collecting the result.
    pub async fn sql_in(&self, ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
        let plan = self.plan(ctx, sql).await?;
        let stream = self.execute(ctx, plan).await?;
        Ok(datafusion::physical_plan::common::collect(stream).await?)
    }

    /// Refuses what the session's caller may not do in the session's tenant (for work that is
    /// not a planned statement: ingest, bulk loads).
    pub fn require(ctx: &SessionContext, class: StatementClass) -> Result<()> {
        match access_of(ctx) {
            Some(access) => Ok(access.require(&tenant_of(ctx), class)?),
            None => Ok(()),
        }
    }

    /// Commits every buffered row (at shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.writer.flush_all().await
    }
}
