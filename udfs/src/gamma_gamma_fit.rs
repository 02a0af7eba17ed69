//! `gamma_gamma_fit(frequency, monetary_value [, penalizer])`: fits the Gamma-Gamma model of
//! spend per purchase (Fader & Hardie, "The Gamma-Gamma Model of Monetary Value", note 025) by
//! maximum likelihood, as the Python `lifetimes` package's `GammaGammaFitter` does, and answers
//! its parameters `{p, q, v}` — the input of `gamma_gamma_expected_value`.
//!
//! The model describes customers with repeat purchases: rows with frequency 0 are left out (as
//! `lifetimes` requires them to be), NULL rows skipped; a negative or fractional frequency, or a
//! monetary value that is not positive for a customer with repeat purchases, fails the query
//! with the row. Over no rows the answer is NULL; when no row has a repeat purchase, or the
//! optimiser does not converge, the query fails naming the model.

use std::sync::LazyLock;

use datafusion::common::Result;
use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate;
use crate::model_rows::{Model, ModelFit, PENALIZER_ARGUMENT, check_frequency};
use crate::value_models::fit_gamma_gamma;

/// SQL name.
pub const NAME: &str = "gamma_gamma_fit";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    aggregate::documentation(
        "Fits the Gamma-Gamma model of spend per purchase (Fader & Hardie) by maximum \
         likelihood, as the Python lifetimes package's GammaGammaFitter, and returns its \
         parameters as a struct {p, q, v}. One row per customer: repeat purchases and the mean \
         value of the repeat purchases; customers without repeat purchases are left out.",
        "gamma_gamma_fit(frequency, monetary_value [, penalizer])",
        "WITH params AS (SELECT gamma_gamma_fit(frequency, monetary_value) AS p \
         FROM clv_summary()) SELECT customer_id, \
         gamma_gamma_expected_value(p, frequency, monetary_value) AS expected_value \
         FROM clv_summary(), params",
        &[
            (
                "frequency",
                "number of repeat purchases (rows with 0 are left out)",
            ),
            (
                "monetary_value",
                "mean value of the repeat purchases (more than 0)",
            ),
            PENALIZER_ARGUMENT,
        ],
    )
});

/// The `gamma_gamma_fit` aggregate function.
pub fn gamma_gamma_fit() -> AggregateUDF {
    ModelFit::<GammaGammaModel>::udf()
}

/// The model, for [`ModelFit`].
pub(crate) struct GammaGammaModel;

impl Model for GammaGammaModel {
    const NAME: &'static str = NAME;
    const COLUMNS: &'static [&'static str] = &["frequency", "monetary_value"];
    const PARAMETERS: &'static [&'static str] = &["p", "q", "v"];

    fn documentation() -> &'static LazyLock<Documentation> {
        &DOCUMENTATION
    }

    fn check(row: &[f64]) -> Result<(), String> {
        let [frequency, monetary_value] = row else {
            unreachable!("two columns")
        };
        check_frequency(*frequency)?;
        if *frequency > 0.0 && *monetary_value <= 0.0 {
            return Err(
                "monetary_value must be more than 0 for a customer with repeat purchases".into(),
            );
        }
        Ok(())
    }

    fn fit(rows: &[&[f64]], penalizer: f64) -> Result<Vec<f64>, String> {
        let pairs: Vec<(f64, f64)> = rows.iter().map(|r| (r[0], r[1])).collect();
        let fitted = fit_gamma_gamma(&pairs, penalizer).map_err(|e| e.to_string())?;
        Ok(vec![fitted.p, fitted.q, fitted.v])
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

    #[test]
    fn every_path_fits_the_same_parameters() {
        let customers = crate::value_models::simulated_customers(1200, 11);
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                customers.iter().map(|(h, _)| h.frequency as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                customers.iter().map(|(_, m)| *m),
            )),
        ];
        let groups: Vec<usize> = (0..1200).map(|i| i % 2).collect();
        let fresh = ModelRows::<GammaGammaModel>::new(0.0);
        assert_paths_agree(&fresh, &values, &groups, 2);
    }

    #[test]
    fn a_free_purchase_of_a_repeat_customer_is_refused() {
        let mut state = ModelRows::<GammaGammaModel>::new(0.0);
        state.ensure_groups(1);
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![0, 2])),
            Arc::new(Float64Array::from(vec![0.0, 0.0])),
        ];
        let error = state
            .update(crate::grouped::Rows::new(&values, &[0, 0], None))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("gamma_gamma_fit: monetary_value must be more than 0"),
            "{error}"
        );
    }
}
