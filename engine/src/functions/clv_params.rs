//! `clv_params([as_of])`: the parameters `clv(…, as_of)` fits, in one row — BG/NBD's
//! `r, alpha, a, b` (alpha in days) and Gamma-Gamma's `p, q, v` — with the number of customers
//! they were fitted on. NULL parameters when the tenant has no purchases.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::purchases::{Purchases, fits_sql};
use super::{Call, TableFunction, live};

/// `clv_params`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "clv_params",
    call: clv_params,
};

const BG_NBD: [&str; 4] = ["r", "alpha", "a", "b"];
const GAMMA_GAMMA: [&str; 3] = ["p", "q", "v"];

fn clv_params(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "clv_params([as_of])";
    let purchases = Purchases::of(call, usage, 1, 0)?;
    let mut fields: Vec<Field> = BG_NBD
        .iter()
        .chain(&GAMMA_GAMMA)
        .map(|name| Field::new(*name, DataType::Float64, true))
        .collect();
    fields.push(Field::new("customers", DataType::Int64, false));
    let mut columns: Vec<String> = BG_NBD.iter().map(|n| format!("bg['{n}'] AS {n}")).collect();
    columns.extend(GAMMA_GAMMA.iter().map(|n| format!("gg['{n}'] AS {n}")));
    let sql = format!(
        "SELECT {columns}, customers FROM ({fits})",
        columns = columns.join(", "),
        fits = fits_sql(&format!("({})", purchases.summary_sql())),
    );
    Ok(live(
        Arc::new(Schema::new(fields)),
        purchases.table(sql, false),
    ))
}
