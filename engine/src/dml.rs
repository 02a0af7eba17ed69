//! DataFusion's statements that change tables: DDL and DML run here, at once and to completion,
//! against Delta tables; everything else is a query that DataFusion plans and streams.
//!
//! `CREATE TABLE`, `DROP TABLE`, `DELETE`, `UPDATE` and `TRUNCATE` are carried out with the
//! catalog and deltalake's operations. `INSERT INTO` (append) takes the write path, like every
//! other load (see [`crate::Engine::execute_write`]); `INSERT OVERWRITE` and `CREATE TABLE AS`
//! run through DataFusion into the Delta table's sink. Each ends by refreshing the table so that
//! the next query sees the commit.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ResolvedTableReference, TableReference};
use datafusion::logical_expr::{
    DdlStatement, DmlStatement, Expr, LogicalPlan, WriteOp, utils::conjunction,
};
use datafusion::prelude::SessionContext;
use tributary_catalog::{Catalog, PUBLIC_SCHEMA, TenantSchema};

use crate::error::{Error, Result};

/// The schema of a write's answer: one `count` column, as DataFusion's DML gives.
pub fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// One row: how many rows the write changed.
pub fn count_batch(count: u64) -> RecordBatch {
    RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![count]))],
    )
    .expect("count batch matches its schema")
}

/// Runs a write plan to completion; returns the number of rows it changed (0 for DDL).
pub async fn execute_write(
    catalog: &Catalog,
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<u64> {
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
            let (tenant, table) = resolve(catalog, ctx, &create.name)?;
            if create.or_replace && tenant.has_table(&table) {
                tenant.drop_table(&table, true).await?;
            }
            let schema = create.input.schema().as_arrow().clone();
            if !tenant
                .create_table(&table, &schema, &[], create.if_not_exists)
                .await?
            {
                return Ok(0);
            }
            if has_rows(&create.input) {
                let written = insert_plan(ctx, &tenant, &table, &create.input).await;
                if written.is_err() {
                    // CREATE TABLE AS either creates a filled table or nothing.
                    tenant.drop_table(&table, true).await?;
                }
                return written;
            }
            Ok(0)
        }
        LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
            let (tenant, table) = resolve(catalog, ctx, &drop.name)?;
            tenant.drop_table(&table, drop.if_exists).await?;
            Ok(0)
        }
        LogicalPlan::Ddl(DdlStatement::CreateCatalog(create)) => {
            if catalog.tenant(&create.catalog_name).is_some() && !create.if_not_exists {
                return Err(Error::AlreadyExists(format!(
                    "tenant '{}' already exists",
                    create.catalog_name
                )));
            }
            catalog.create_tenant(&create.catalog_name).await?;
            Ok(0)
        }
        LogicalPlan::Ddl(other) => Err(Error::Unsupported(format!(
            "{} is not supported: Tributary keeps Delta tables in schema '{PUBLIC_SCHEMA}' of each tenant",
            other.name()
        ))),
        LogicalPlan::Dml(dml) => execute_dml(catalog, ctx, dml).await,
        LogicalPlan::Copy(_) => Err(Error::Unsupported(
            "COPY is not supported: query over Flight SQL, or import files with `tributary import`"
                .into(),
        )),
        other => Err(Error::Unsupported(format!(
            "not a write statement: {}",
            other.display()
        ))),
    }
}

async fn execute_dml(catalog: &Catalog, ctx: &SessionContext, dml: DmlStatement) -> Result<u64> {
    let (tenant, table) = resolve(catalog, ctx, &dml.table_name)?;
    // Another server on the same data root may have committed since this one last looked.
    tenant.refresh(&table).await?;
    let delta = tenant.delta_table(&table)?;
    let session = Arc::new(ctx.state());
    let count = match &dml.op {
        WriteOp::Insert(_) => {
            let batches = ctx
                .execute_logical_plan(LogicalPlan::Dml(dml))
                .await?
                .collect()
                .await?;
            sum_counts(&batches)
        }
        WriteOp::Delete | WriteOp::Truncate => {
            // deltalake leaves the count unset when it drops whole files without reading them.
            let matching = count_rows(ctx, &dml.input).await?;
            let mut delete = delta.delete().with_session_state(session);
            if let Some(predicate) = dml_predicate(&dml.input)? {
                delete = delete.with_predicate(predicate);
            }
            let (_, metrics) = conflict_named(&tenant, &table, delete.await).await?;
            metrics.num_deleted_rows.map_or(matching, |n| n as u64)
        }
        WriteOp::Update => {
            let mut update = delta.update().with_session_state(session);
            for (column, value) in update_assignments(&dml.input)? {
                update = update.with_update(column, value);
            }
            if let Some(predicate) = dml_predicate(&dml.input)? {
                update = update.with_predicate(predicate);
            }
            let (_, metrics) = conflict_named(&tenant, &table, update.await).await?;
            metrics.num_updated_rows as u64
        }
        other => {
            return Err(Error::Unsupported(format!(
                "{} is not supported on Tributary tables",
                other.name()
            )));
        }
    };
    tenant.refresh(&table).await?;
    Ok(count)
}

/// `result`, with a commit conflict (another writer committed to the table first: the Delta
/// log's optimistic concurrency) told as such, after loading the table's latest snapshot so
/// that running the statement again starts from the other writer's commit.
async fn conflict_named<T>(
    tenant: &TenantSchema,
    table: &str,
    result: std::result::Result<T, deltalake::DeltaTableError>,
) -> Result<T> {
    match result {
        Err(error) if crate::error::is_commit_conflict(&error) => {
            if let Err(e) = tenant.refresh(table).await {
                tracing::warn!(table, "cannot load the table after a commit conflict: {e}");
            }
            // delta-rs adds advice about isolation levels Tributary does not offer: keep the cause.
            let cause = error.to_string();
            let cause = cause.lines().next().unwrap_or_default();
            Err(Error::Conflict(format!(
                "table '{table}' was changed by another writer while this statement ran, so it \
                 changed nothing: run it again (Delta: {cause})"
            )))
        }
        other => Ok(other?),
    }
}

/// Appends the rows of `input` to an existing table through DataFusion's INSERT path.
async fn insert_plan(
    ctx: &SessionContext,
    tenant: &TenantSchema,
    table: &str,
    input: &LogicalPlan,
) -> Result<u64> {
    let reference = TableReference::full(tenant.tenant(), PUBLIC_SCHEMA, table);
    let insert = datafusion::logical_expr::LogicalPlanBuilder::insert_into(
        input.clone(),
        reference,
        ctx.table_provider(TableReference::full(tenant.tenant(), PUBLIC_SCHEMA, table))
            .await
            .map(datafusion::datasource::provider_as_source)?,
        datafusion::logical_expr::dml::InsertOp::Append,
    )?
    .build()?;
    let batches = ctx.execute_logical_plan(insert).await?.collect().await?;
    tenant.refresh(table).await?;
    Ok(sum_counts(&batches))
}

/// Counts the rows a DML input plan selects (the rows a DELETE will remove).
async fn count_rows(ctx: &SessionContext, input: &LogicalPlan) -> Result<u64> {
    use datafusion::arrow::array::{Array, Int64Array};
    let plan = datafusion::logical_expr::LogicalPlanBuilder::from(input.clone())
        .aggregate(
            Vec::<Expr>::new(),
            vec![datafusion::functions_aggregate::count::count_all()],
        )?
        .build()?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    Ok(batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
        .filter(|a| !a.is_empty())
        .map_or(0, |a| a.value(0) as u64))
}

/// The sum of the `count` column of a write's answer batches.
pub(crate) fn sum_counts(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .flat_map(|a| a.iter().flatten())
        .sum()
}

fn has_rows(plan: &LogicalPlan) -> bool {
    !matches!(plan, LogicalPlan::EmptyRelation(e) if !e.produce_one_row)
}

/// The (tenant, table) a write plan changes, when it names a table that exists or is made.
pub(crate) fn target_table(
    catalog: &Catalog,
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> Result<Option<(String, String)>> {
    let reference = match plan {
        LogicalPlan::Dml(dml) => &dml.table_name,
        LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => &drop.name,
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => &create.name,
        _ => return Ok(None),
    };
    match resolve(catalog, ctx, reference) {
        Ok((tenant, table)) => Ok(Some((tenant.tenant().to_string(), table))),
        // The statement itself reports the problem.
        Err(_) => Ok(None),
    }
}

/// Resolves a table reference against the session's tenant, to the tenant's tables and the
/// table's name.
fn resolve(
    catalog: &Catalog,
    ctx: &SessionContext,
    reference: &TableReference,
) -> Result<(Arc<TenantSchema>, String)> {
    let options = Arc::clone(ctx.state().config_options());
    let ResolvedTableReference {
        catalog: tenant,
        schema,
        table,
    } = reference.clone().resolve(
        &options.catalog.default_catalog,
        &options.catalog.default_schema,
    );
    if schema.as_ref() != PUBLIC_SCHEMA {
        return Err(tributary_catalog::Error::SchemaNotFound(schema.to_string()).into());
    }
    // A tenant the session may not see (its catalog list is restricted) is as missing as one
    // that does not exist.
    if ctx.state().catalog_list().catalog(&tenant).is_none() {
        return Err(tributary_catalog::Error::TenantNotFound(tenant.to_string()).into());
    }
    Ok((catalog.require_tenant(&tenant)?, table.to_string()))
}

/// The WHERE clause of a DELETE or UPDATE: the conjunction of the filters above the scan, with
/// column qualifiers removed (deltalake resolves names against the table alone).
fn dml_predicate(input: &LogicalPlan) -> Result<Option<Expr>> {
    let mut predicates = Vec::new();
    input.apply(|node| {
        if let LogicalPlan::Filter(filter) = node {
            predicates.push(filter.predicate.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    conjunction(
        predicates
            .into_iter()
            .map(unqualify)
            .collect::<Result<Vec<_>>>()?,
    )
    .map_or(Ok(None), |e| Ok(Some(e)))
}

/// `SET column = value` pairs of an UPDATE, read from the projection DataFusion plans for it:
/// every column of the table, either itself or the new value aliased to its name.
fn update_assignments(input: &LogicalPlan) -> Result<Vec<(String, Expr)>> {
    let LogicalPlan::Projection(projection) = input else {
        return Err(Error::Unsupported(format!(
            "unexpected UPDATE plan: {}",
            input.display()
        )));
    };
    let mut assignments = Vec::new();
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        let value = expr.clone().unalias();
        let unchanged = matches!(&value, Expr::Column(c) if c.name == *field.name());
        if !unchanged {
            assignments.push((field.name().clone(), unqualify(value)?));
        }
    }
    Ok(assignments)
}

fn unqualify(expr: Expr) -> Result<Expr> {
    Ok(expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                }
                other => Transformed::no(other),
            })
        })?
        .data)
}
