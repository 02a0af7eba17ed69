//! Appending Arrow batches to a table in one Delta commit: the path of bulk loads (Flight SQL
//! ingest, `tributary import`). Batches are matched to the table's columns by name and cast to
//! its types first, so bad input is refused whole, before anything is written.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use deltalake::protocol::SaveMode;
use tributary_catalog::{Catalog, TenantSchema, storage_schema};

use crate::error::{Error, Result};

/// What to do when the target table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfTableMissing {
    /// Create it with the batches' schema.
    Create,
    /// Refuse.
    Fail,
}

/// Appends `batches` to `tenant.public.table` in one commit; returns the rows written.
pub async fn append_batches(
    catalog: &Catalog,
    tenant: &str,
    table: &str,
    batches: Vec<RecordBatch>,
    if_missing: IfTableMissing,
) -> Result<u64> {
    let tenant = catalog.require_tenant(tenant)?;
    let created = ensure_table(&tenant, table, &batches, if_missing).await?;
    let result = write_batches(&tenant, table, batches).await;
    if result.is_err() && created {
        // The load either lands whole, with its new table, or leaves nothing behind.
        tenant.drop_table(table, true).await?;
    }
    result
}

async fn ensure_table(
    tenant: &TenantSchema,
    table: &str,
    batches: &[RecordBatch],
    if_missing: IfTableMissing,
) -> Result<bool> {
    if tenant.has_table(table) {
        return Ok(false);
    }
    match (if_missing, batches.first()) {
        (IfTableMissing::Fail, _) => Err(tributary_catalog::Error::TableNotFound {
            tenant: tenant.tenant().to_string(),
            table: table.to_string(),
        }
        .into()),
        (IfTableMissing::Create, None) => Err(Error::InvalidInput(format!(
            "cannot create table '{table}' from no data: send at least one batch"
        ))),
        (IfTableMissing::Create, Some(first)) => {
            let schema = storage_schema(&first.schema());
            Ok(tenant.create_table(table, &schema, &[], false).await?)
        }
    }
}

async fn write_batches(
    tenant: &TenantSchema,
    table: &str,
    batches: Vec<RecordBatch>,
) -> Result<u64> {
    let delta = tenant.delta_table(table)?;
    let target = delta.snapshot()?.snapshot().arrow_schema();
    let conformed = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| conform_batch(b, &target, table))
        .collect::<Result<Vec<_>>>()?;
    let rows: usize = conformed.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(0);
    }
    delta
        .write(conformed)
        .with_save_mode(SaveMode::Append)
        .await?;
    tenant.refresh(table).await?;
    Ok(rows as u64)
}

/// Matches a batch's columns to the table's by name and casts them to the table's types.
/// Columns the batch lacks become NULL if the table allows it; unknown columns are refused.
pub fn conform_batch(batch: &RecordBatch, target: &SchemaRef, table: &str) -> Result<RecordBatch> {
    let source = batch.schema();
    if let Some(extra) = source
        .fields()
        .iter()
        .find(|f| target.field_with_name(f.name()).is_err())
    {
        return Err(Error::InvalidInput(format!(
            "column '{}' is not in table '{table}' (its columns: {})",
            extra.name(),
            column_list(target)
        )));
    }
    let cast_options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match source.index_of(field.name()) {
            Ok(index) => {
                let array = batch.column(index);
                cast_with_options(array, field.data_type(), &cast_options).map_err(|e| {
                    Error::InvalidInput(format!(
                        "column '{}' of table '{table}': cannot convert {} to {}: {e}",
                        field.name(),
                        array.data_type(),
                        field.data_type()
                    ))
                })?
            }
            Err(_) if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            Err(_) => {
                return Err(Error::InvalidInput(format!(
                    "column '{}' of table '{table}' is required (NOT NULL) but missing from the input",
                    field.name()
                )));
            }
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::InvalidInput(format!(
                "column '{}' of table '{table}' is required (NOT NULL) but the input has {} NULL value(s)",
                field.name(),
                column.null_count()
            )));
        }
        columns.push(column);
    }
    let schema = Arc::new(Schema::new(target.fields().clone()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The table's column names, for error messages.
pub fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
