//! `window_funnel_steps(window, [mode], timestamp, cond1, …)`: the time of each step of the
//! deepest funnel `window_funnel` finds (same arguments, same funnel), so time-to-convert between
//! steps can be computed. Implemented by [`crate::window_funnel`].

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, aggregate_doc_sections::DOC_SECTION_GENERAL};

use crate::window_funnel::WindowFunnel;

/// SQL name.
pub const NAME: &str = "window_funnel_steps";

pub(crate) static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_GENERAL,
        "Returns the time of each step of the deepest funnel reached (a list as long as \
         window_funnel's answer), with the same arguments and modes as window_funnel.",
        "window_funnel_steps(window, [mode], timestamp, cond1, cond2, ...)",
    )
    .with_sql_example(
        "SELECT avg(s[3] - s[1]) AS view_to_purchase FROM (SELECT window_funnel_steps( \
         INTERVAL '1 day', timestamp, event = 'product_view', event = 'add_to_cart', \
         event = 'purchase') AS s FROM events GROUP BY anonymous_id) WHERE cardinality(s) = 3",
    )
    .with_argument(
        "window",
        "INTERVAL, or integer seconds (integer or date times: their own unit)",
    )
    .with_argument("mode", "optional constant string of comma-separated modes")
    .with_argument("timestamp", "TIMESTAMP, DATE or integer time of the event")
    .with_argument("condN", "boolean condition of step N (1 to 32 steps)")
    .build()
});

/// The `window_funnel_steps` aggregate function.
pub fn window_funnel_steps() -> WindowFunnel {
    WindowFunnel::step_times()
}
