//! Shaping input to a table: batches are matched to the table's columns by name and cast to its
//! types before anything is written, so bad input is refused whole. Used by the write path
//! (this module's parent).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use tributary_catalog::{TenantSchema, storage_schema};

use crate::error::{Error, Result};

/// What to do when the target table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfTableMissing {
    /// Create it with the batches' schema.
    Create,
    /// Refuse.
    Fail,
}

/// Creates the target table from the first batch's columns when it is missing and that is
/// allowed; returns whether it did.
pub(crate) async fn ensure_table(
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

/// Casts each column of `batch` whose type differs from `schema`'s to that type (the names and
/// order already match). A batch of no columns keeps its row count.
pub fn cast_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
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
