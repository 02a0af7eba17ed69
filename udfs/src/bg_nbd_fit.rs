//! `bg_nbd_fit(frequency, recency, t [, penalizer])`: fits the BG/NBD model of repeat purchases
//! (Fader, Hardie & Lee 2005) to one row per customer by maximum likelihood, as the Python
//! `lifetimes` package's `BetaGeoFitter` does (same likelihood, start, optimiser and penalty), and
//! answers its parameters `{r, alpha, a, b}` — the input of `bg_nbd_p_alive` and
//! `bg_nbd_expected_purchases`. Times are in any one unit (days, as `clv_summary` gives them);
//! `alpha` is in that unit.
//!
//! NULL rows are skipped; a negative or fractional frequency, a negative time, a recency after
//! the age `t`, or a recency without repeat purchases fails the query with the row, as
//! `lifetimes` refuses them. Over no rows the answer is NULL; when no customer has a repeat
//! purchase, or the optimiser does not converge, the query fails naming the model.

use std::sync::LazyLock;

use datafusion::common::Result;
use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate;
use crate::model_rows::{Model, ModelFit, PENALIZER_ARGUMENT, check_frequency};
use crate::value_models::{History, fit_bg_nbd};

/// SQL name.
pub const NAME: &str = "bg_nbd_fit";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate::documentation(
        "Fits the BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005) by maximum \
         likelihood, as the Python lifetimes package's BetaGeoFitter, and returns its parameters \
         as a struct {r, alpha, a, b}. One row per customer: repeat purchases, time from the \
         first to the last purchase, and time from the first purchase to the end of observation.",
        "bg_nbd_fit(frequency, recency, t [, penalizer])",
        "WITH params AS (SELECT bg_nbd_fit(frequency, recency, t) AS p FROM clv_summary()) \
         SELECT customer_id, bg_nbd_p_alive(p, frequency, recency, t) AS p_alive \
         FROM clv_summary(), params",
        &[
            (
                "frequency",
                "number of repeat purchases (an integer, 0 or more)",
            ),
            (
                "recency",
                "time from the first to the last purchase (0 when no repeat)",
            ),
            (
                "t",
                "time from the first purchase to the end of observation",
            ),
            PENALIZER_ARGUMENT,
        ],
    )
});

/// The `bg_nbd_fit` aggregate function.
pub fn bg_nbd_fit() -> AggregateUDF {
    ModelFit::<BgNbdModel>::udf()
}

/// The model, for [`ModelFit`].
pub(crate) struct BgNbdModel;

impl Model for BgNbdModel {
    const NAME: &'static str = NAME;
    const COLUMNS: &'static [&'static str] = &["frequency", "recency", "t"];
    const PARAMETERS: &'static [&'static str] = &["r", "alpha", "a", "b"];

    fn documentation() -> &'static LazyLock<Documentation> {
        &DOCUMENTATION
    }

    fn check(row: &[f64]) -> Result<(), String> {
        let [frequency, recency, t] = row else {
            unreachable!("three columns")
        };
        check_frequency(*frequency)?;
        if *recency < 0.0 || *t < 0.0 {
            return Err("recency and t must not be negative".into());
        }
        if recency > t {
            return Err("recency must not be after t".into());
        }
        if *frequency == 0.0 && *recency != 0.0 {
            return Err("recency must be 0 when frequency is 0".into());
        }
        Ok(())
    }

    fn fit(rows: &[&[f64]], penalizer: f64) -> Result<Vec<f64>, String> {
        let histories: Vec<History> = rows
            .iter()
            .map(|r| History {
                frequency: r[0],
                recency: r[1],
                t: r[2],
            })
            .collect();
        let fitted = fit_bg_nbd(&histories, penalizer).map_err(|e| e.to_string())?;
        Ok(vec![fitted.r, fitted.alpha, fitted.a, fitted.b])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};

    use super::*;
    use crate::grouped::GroupState;
    use crate::grouped::agreement::assert_paths_agree;
    use crate::model_rows::ModelRows;

    /// Customers of a simulated shop, as the aggregate's arguments.
    fn histories(rows: usize) -> Vec<ArrayRef> {
        let customers = crate::value_models::simulated_customers(rows, 7);
        let column = |f: fn(&History) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                customers.iter().map(|(h, _)| f(h)),
            ))
        };
        vec![
            Arc::new(Int64Array::from_iter_values(
                customers.iter().map(|(h, _)| h.frequency as i64),
            )),
            column(|h| h.recency),
            column(|h| h.t),
        ]
    }

    #[test]
    fn every_path_fits_the_same_parameters() {
        let values = histories(1500);
        let groups: Vec<usize> = (0..1500).map(|i| i % 3).collect();
        assert_paths_agree(&ModelRows::<BgNbdModel>::new(0.0), &values, &groups, 3);
    }

    #[test]
    fn bad_rows_are_named() {
        let mut state = ModelRows::<BgNbdModel>::new(0.0);
        state.ensure_groups(1);
        let error = state.add(0, &[1.5, 1.0, 2.0]).unwrap_err().to_string();
        assert!(
            error.contains("bg_nbd_fit: frequency must be a whole number"),
            "{error}"
        );
        let error = state.add(0, &[1.0, 3.0, 2.0]).unwrap_err().to_string();
        assert!(error.contains("recency must not be after t"), "{error}");
    }
}
