//! `bg_nbd_p_alive(params, frequency, recency, t)`: the probability that a customer with this
//! history is still a customer (has not dropped out), under BG/NBD parameters from
//! `bg_nbd_fit` — `lifetimes`' `conditional_probability_alive`. 1 for a customer without repeat
//! purchases (the model lets customers drop out only after a purchase).

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use crate::model_scalar::{ModelFunction, model_documentation};
use crate::value_models::{BgNbd, History};

/// SQL name.
pub const NAME: &str = "bg_nbd_p_alive";

const ARGUMENTS: &[&str] = &["frequency", "recency", "t"];

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    model_documentation(
        NAME,
        "bg_nbd_fit",
        "Returns the probability that a customer with this purchase history is still active \
         under fitted BG/NBD parameters, as lifetimes' conditional_probability_alive.",
        "WITH f AS (SELECT bg_nbd_fit(frequency, recency, t) AS p FROM clv_summary()) \
         SELECT customer_id, bg_nbd_p_alive(f.p, frequency, recency, t) FROM clv_summary(), f",
        ARGUMENTS,
    )
});

fn p_alive(params: &[f64], history: &[f64]) -> f64 {
    BgNbd::from_slice(params).p_alive(History::from_slice(history))
}

/// The `bg_nbd_p_alive` scalar function.
pub fn bg_nbd_p_alive() -> ScalarUDF {
    ModelFunction::udf(NAME, BgNbd::FIELDS, ARGUMENTS, p_alive, &DOCUMENTATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_buyers_are_likelier_alive() {
        let params = [0.243, 4.414, 0.793, 2.426];
        let recent = p_alive(&params, &[3.0, 35.0, 38.0]);
        let lapsed = p_alive(&params, &[3.0, 5.0, 38.0]);
        assert!(
            recent > lapsed && recent < 1.0 && lapsed > 0.0,
            "{recent} {lapsed}"
        );
        assert_eq!(p_alive(&params, &[0.0, 0.0, 38.0]), 1.0);
    }
}
