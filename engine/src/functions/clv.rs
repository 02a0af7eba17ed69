//! `clv([horizon_days [, as_of]])`: each customer's lifetime value over the next `horizon_days`
//! (365 by default): BG/NBD and Gamma-Gamma are fitted on the tenant's `clv_summary(as_of)` and
//! every customer is scored — `p_alive`, `expected_purchases` in the horizon,
//! `expected_avg_value` per purchase, and `clv`, their product. No discounting is applied: `clv`
//! is the expected revenue of the horizon in the revenue's currency. The fitted parameters are
//! what `clv_params(as_of)` reports.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::args::count_literal;
use super::clv_summary::summary_fields;
use super::purchases::{Purchases, fits_sql};
use super::{Call, TableFunction, live};

/// `clv`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "clv",
    call: clv,
};

fn clv(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "clv([horizon_days [, as_of]])";
    let horizon = count_literal(call.name, "horizon_days", call.args.first(), 365)?;
    let purchases = Purchases::of(call, usage, 2, 1)?;
    let mut fields = summary_fields();
    for name in ["p_alive", "expected_purchases", "expected_avg_value", "clv"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    let sql = format!(
        "WITH s AS ({summary}), f AS ({fits}), \
         scored AS (SELECT s.*, \
           bg_nbd_p_alive(f.bg, s.frequency, s.recency, s.t) AS p_alive, \
           bg_nbd_expected_purchases(f.bg, {horizon}, s.frequency, s.recency, s.t) AS expected_purchases, \
           gamma_gamma_expected_value(f.gg, s.frequency, s.monetary_value) AS expected_avg_value \
           FROM s CROSS JOIN f) \
         SELECT *, expected_purchases * expected_avg_value AS clv FROM scored",
        summary = purchases.summary_sql(),
        fits = fits_sql("s"),
    );
    Ok(live(
        Arc::new(Schema::new(fields)),
        purchases.table(sql, false),
    ))
}
