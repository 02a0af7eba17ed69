//! Tributary's SQL functions for customer data: pure DataFusion functions with no I/O, one
//! function per module, so that any session (and any Ballista executor) can register them.
//!
//! Names follow ClickHouse where it has the function (snake_case, with the camelCase name as an
//! alias) and so do the semantics; docs/sql.md lists every function with examples.
//! [`register_all`] adds every function to a session.

mod aggregate;
mod args;
pub mod attribution;
mod doc_ref;
mod group_events;
mod grouped;
pub mod retention;
pub mod sequence_count;
pub mod sequence_match;
pub mod sequence_match_events;
pub mod sequence_next_node;
pub mod sequence_pattern;
pub mod session_id;
pub mod session_start;
pub mod sessions;
pub mod window_funnel;
pub mod window_funnel_steps;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, WindowUDF};

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

/// Registers every Tributary function with `registry`.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for function in all_aggregate_functions() {
        registry.register_udaf(function)?;
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
