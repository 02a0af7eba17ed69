//! `sequence_count(pattern, timestamp, cond1, …)`: how many non-overlapping times the group's
//! events, in time order, match the pattern — ClickHouse's `sequenceCount(pattern)(timestamp, …)`. The pattern
//! language is described in [`crate::sequence_pattern`].

use std::sync::LazyLock;

use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate::Naming;
use crate::sequence_pattern::{SequenceAggregate, SequenceOutput, sequence_documentation};

/// SQL name.
pub const NAME: &str = "sequence_count";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    sequence_documentation(
        "Returns how many non-overlapping times the group's events in time order match the pattern, \
         as ClickHouse's sequenceCount. Pattern: (?N) an event meeting condition N, . any event, .* any events, \
         (?t>=S) (?t>S) (?t<=S) (?t<S) (?t==S) a time since the previous event (seconds for \
         timestamps). Only rows meeting some condition are events.",
        "sequence_count(pattern, timestamp, cond1, cond2, ...)",
        "SELECT anonymous_id, sequence_count('(?1)(?2)', timestamp, \
         event = 'add_to_cart', event = 'purchase') AS carts_bought \
         FROM events GROUP BY anonymous_id",
    )
});

/// The `sequence_count` aggregate function.
pub fn sequence_count() -> AggregateUDF {
    // Unquoted SQL identifiers are folded to lowercase: `sequencecount` is ClickHouse's camelCase name.
    let naming = Naming::new(NAME, Some("sequencecount"), &DOCUMENTATION);
    SequenceAggregate::udf(naming, SequenceOutput::Count)
}
