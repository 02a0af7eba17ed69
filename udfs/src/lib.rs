//! Tributary's SQL functions for customer data: pure DataFusion functions with no I/O, one
//! function per module, so that any session (and any Ballista executor) can register them.
//!
//! Names follow ClickHouse where it has the function (snake_case, with the camelCase name as an
//! alias) and so do the semantics; docs/sql.md lists every function with examples.
//! [`register_all`] adds every function to a session.

mod aggregate;
mod args;
pub mod attribution;
pub mod bg_nbd_expected_purchases;
pub mod bg_nbd_fit;
pub mod bg_nbd_p_alive;
pub mod columnar;
mod doc_ref;
pub mod gamma_gamma_expected_value;
pub mod gamma_gamma_fit;
mod group_events;
mod grouped;
pub mod json_prefilter;
mod model_rows;
mod model_scalar;
pub mod retention;
pub mod sequence_count;
pub mod sequence_match;
pub mod sequence_match_events;
pub mod sequence_next_node;
pub mod sequence_pattern;
pub mod session_id;
pub mod session_start;
pub mod sessions;
pub mod value_models;
pub mod window_funnel;
pub mod window_funnel_steps;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};

/// Every aggregate function of this crate.
pub fn all_aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    [
        window_funnel::window_funnel(),
        window_funnel_steps::window_funnel_steps(),
        retention::retention(),
        attribution::attribution(),
        sequence_match::sequence_match(),
        sequence_count::sequence_count(),
        sequence_match_events::sequence_match_events(),
        sequence_next_node::sequence_next_node(),
        bg_nbd_fit::bg_nbd_fit(),
        gamma_gamma_fit::gamma_gamma_fit(),
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
}

/// Every scalar function of this crate.
pub fn all_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    [
        bg_nbd_p_alive::bg_nbd_p_alive(),
        bg_nbd_expected_purchases::bg_nbd_expected_purchases(),
        gamma_gamma_expected_value::gamma_gamma_expected_value(),
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
}

/// Every window function of this crate.
pub fn all_window_functions() -> Vec<Arc<WindowUDF>> {
    vec![
        Arc::new(WindowUDF::from(session_id::session_id())),
        Arc::new(WindowUDF::from(session_start::session_start())),
    ]
}

/// Registers every function of a Tributary session with `registry`: the JSON functions of
/// `datafusion-functions-json` (their getters behind [`json_prefilter`]) and this crate's own.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    json_prefilter::register(registry)?;
    for function in all_aggregate_functions() {
        registry.register_udaf(function)?;
    }
    for function in all_scalar_functions() {
        registry.register_udf(function)?;
    }
    for function in all_window_functions() {
        registry.register_udwf(function)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_functions_share_a_name_or_alias() {
        let mut seen = HashSet::new();
        for function in all_aggregate_functions() {
            for name in std::iter::once(function.name())
                .chain(function.aliases().iter().map(String::as_str))
            {
                assert!(seen.insert(name.to_lowercase()), "duplicate name {name}");
            }
            assert!(
                function.documentation().is_some(),
                "{} has no documentation",
                function.name()
            );
        }
    }
}
