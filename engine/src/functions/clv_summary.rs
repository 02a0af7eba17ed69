//! `clv_summary([as_of])`: one row per customer with at least one purchase up to `as_of` (now by
//! default): `customer_id, frequency, recency, t, monetary_value` in days, exactly as the Python
//! `lifetimes` package's `summary_data_from_transaction_data(..., freq='D',
//! monetary_value_col=...)` computes them from the same purchases — the input of `bg_nbd_fit`
//! and `gamma_gamma_fit`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::purchases::Purchases;
use super::{Call, TableFunction, live};

/// `clv_summary`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "clv_summary",
    call: clv_summary,
};

/// The columns of a purchase summary.
pub(super) fn summary_fields() -> Vec<Field> {
    vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("recency", DataType::Float64, false),
        Field::new("t", DataType::Float64, false),
        Field::new("monetary_value", DataType::Float64, false),
    ]
}

fn clv_summary(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "clv_summary([as_of])";
    let purchases = Purchases::of(call, usage, 1, 0)?;
    let schema: SchemaRef = Arc::new(Schema::new(summary_fields()));
    Ok(live(
        schema,
        purchases.table(purchases.summary_sql(), false),
    ))
}
