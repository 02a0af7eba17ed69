//! `window_funnel_steps(window, [mode], timestamp, cond1, …)`: the time of each step of the
//! deepest funnel `window_funnel` finds (same arguments, same funnel), so time-to-convert between
//! steps can be computed. The funnel itself is [`crate::window_funnel`]'s.

use std::sync::LazyLock;

use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate::{Aggregate, Naming};
use crate::window_funnel::{FunnelOutput, WindowFunnel, funnel_documentation};

/// SQL name.
pub const NAME: &str = "window_funnel_steps";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    funnel_documentation(
        "Returns the time of each step of the deepest funnel reached (a list as long as \
             window_funnel's answer), with the same arguments and modes as window_funnel.",
        "window_funnel_steps(window, [mode], timestamp, cond1, cond2, ...)",
        "SELECT avg(s[3] - s[1]) AS view_to_purchase FROM (SELECT window_funnel_steps( \
             INTERVAL '1 day', timestamp, event = 'product_view', event = 'add_to_cart', \
             event = 'purchase') AS s FROM events GROUP BY anonymous_id) WHERE cardinality(s) = 3",
    )
});

/// The `window_funnel_steps` aggregate function.
pub fn window_funnel_steps() -> AggregateUDF {
    let naming = Naming::new(NAME, None, &DOCUMENTATION);
    Aggregate::udf(
        naming,
        WindowFunnel {
            output: FunnelOutput::StepTimes,
        },
    )
}
