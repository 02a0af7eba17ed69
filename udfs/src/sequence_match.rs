//! `sequence_match(pattern, timestamp, cond1, …)`: 1 if the group's events, in time order, match
//! the pattern, else 0 — ClickHouse's `sequenceMatch(pattern)(timestamp, cond1, …)`. The pattern
//! language is described in [`crate::sequence_pattern`].

use std::sync::LazyLock;

use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate::Naming;
use crate::sequence_pattern::{SequenceAggregate, SequenceOutput, sequence_documentation};

/// SQL name.
pub const NAME: &str = "sequence_match";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    sequence_documentation(
        "Returns 1 if the group's events in time order match the pattern, else 0, as ClickHouse's \
         sequenceMatch. Pattern: (?N) an event meeting condition N, . any event, .* any events, \
         (?t>=S) (?t>S) (?t<=S) (?t<S) (?t==S) a time since the previous event (seconds for \
         timestamps). Only rows meeting some condition are events.",
        "sequence_match(pattern, timestamp, cond1, cond2, ...)",
        "SELECT count(*) FROM (SELECT sequence_match('(?1).*(?t<=3600)(?2)', timestamp, \
         event = 'add_to_cart', event = 'purchase') AS bought FROM events GROUP BY anonymous_id) \
         WHERE bought = 1",
    )
});

/// The `sequence_match` aggregate function.
pub fn sequence_match() -> AggregateUDF {
    // Unquoted SQL identifiers are folded to lowercase: `sequencematch` is ClickHouse's camelCase name.
    let naming = Naming::new(NAME, Some("sequencematch"), &DOCUMENTATION);
    SequenceAggregate::udf(naming, SequenceOutput::Match)
}
