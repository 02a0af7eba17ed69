//! `gamma_gamma_expected_value(params, frequency, monetary_value)`: the value a customer's future
//! purchases are expected to have on average, under Gamma-Gamma parameters from
//! `gamma_gamma_fit` — `lifetimes`' `conditional_expected_average_profit`: the customer's own
//! mean, weighted by its frequency, shrunk towards the population's mean.

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use crate::model_scalar::{ModelFunction, model_documentation};
use crate::value_models::GammaGamma;

/// SQL name.
pub const NAME: &str = "gamma_gamma_expected_value";

const ARGUMENTS: &[&str] = &["frequency", "monetary_value"];

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    model_documentation(
        NAME,
        "gamma_gamma_fit",
        "Returns the expected mean value of a customer's future purchases under fitted \
         Gamma-Gamma parameters, as lifetimes' conditional_expected_average_profit (the \
         population mean for a customer without repeat purchases).",
        "WITH f AS (SELECT gamma_gamma_fit(frequency, monetary_value) AS p FROM clv_summary()) \
         SELECT customer_id, gamma_gamma_expected_value(f.p, frequency, monetary_value) \
         FROM clv_summary(), f",
        ARGUMENTS,
    )
});

fn expected_value(params: &[f64], values: &[f64]) -> f64 {
    GammaGamma::from_slice(params).expected_value(values[0], values[1])
}

/// The `gamma_gamma_expected_value` scalar function.
pub fn gamma_gamma_expected_value() -> ScalarUDF {
    ModelFunction::udf(
        NAME,
        GammaGamma::FIELDS,
        ARGUMENTS,
        expected_value,
        &DOCUMENTATION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_buyers_keep_closer_to_their_own_mean() {
        let params = [6.25, 3.74, 15.44];
        let population = expected_value(&params, &[0.0, 0.0]);
        let once = expected_value(&params, &[1.0, 100.0]);
        let often = expected_value(&params, &[20.0, 100.0]);
        assert!(population < once && once < often && often < 100.0);
    }
}
