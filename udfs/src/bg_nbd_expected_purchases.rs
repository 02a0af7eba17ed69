//! `bg_nbd_expected_purchases(params, horizon, frequency, recency, t)`: the number of purchases a
//! customer with this history is expected to make in the next `horizon` (same time unit as the
//! fit), under BG/NBD parameters from `bg_nbd_fit` — `lifetimes`'
//! `conditional_expected_number_of_purchases_up_to_time` (equation 10 of Fader, Hardie & Lee).

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use crate::model_scalar::{ModelFunction, model_documentation};
use crate::value_models::{BgNbd, History};

/// SQL name.
pub const NAME: &str = "bg_nbd_expected_purchases";

const ARGUMENTS: &[&str] = &["horizon", "frequency", "recency", "t"];

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    model_documentation(
        NAME,
        "bg_nbd_fit",
        "Returns the number of purchases a customer with this history is expected to make in \
         the next `horizon` under fitted BG/NBD parameters, as lifetimes' \
         conditional_expected_number_of_purchases_up_to_time.",
        "WITH f AS (SELECT bg_nbd_fit(frequency, recency, t) AS p FROM clv_summary()) \
         SELECT customer_id, bg_nbd_expected_purchases(f.p, 90, frequency, recency, t) \
         FROM clv_summary(), f",
        ARGUMENTS,
    )
});

fn expected_purchases(params: &[f64], values: &[f64]) -> f64 {
    let (horizon, history) = (values[0], History::from_slice(&values[1..]));
    BgNbd::from_slice(params).expected_purchases(horizon, history)
}

/// The `bg_nbd_expected_purchases` scalar function.
pub fn bg_nbd_expected_purchases() -> ScalarUDF {
    ModelFunction::udf(
        NAME,
        BgNbd::FIELDS,
        ARGUMENTS,
        expected_purchases,
        &DOCUMENTATION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_time_means_more_purchases() {
        let params = [0.243, 4.414, 0.793, 2.426];
        let week = expected_purchases(&params, &[7.0, 2.0, 30.0, 38.0]);
        let year = expected_purchases(&params, &[365.0, 2.0, 30.0, 38.0]);
        assert!(0.0 < week && week < year, "{week} {year}");
        assert_eq!(expected_purchases(&params, &[0.0, 2.0, 30.0, 38.0]), 0.0);
    }
}
