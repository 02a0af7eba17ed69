//! `sequence_match_events(pattern, timestamp, cond1, …)`: the times of the events that the
//! `(?N)` steps of the pattern matched — of the first match, or, without one, of the longest
//! partial chain — ClickHouse's `sequenceMatchEvents(pattern)(timestamp, cond1, …)`. Answers
//! "when did this person do each step?" for the people `sequence_match` finds. The pattern
//! language is described in [`crate::sequence_pattern`].

use std::sync::LazyLock;

use datafusion::logical_expr::{AggregateUDF, Documentation};

use crate::aggregate::Naming;
use crate::sequence_pattern::{SequenceAggregate, SequenceOutput, sequence_documentation};

/// SQL name.
pub const NAME: &str = "sequence_match_events";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    sequence_documentation(
        "Returns the times of the events matched by the pattern's (?N) steps: of the first \
         match, or, if the pattern does not match, of the longest partial chain tried — as \
         ClickHouse's sequenceMatchEvents. An empty list when no step matched (never NULL).",
        "sequence_match_events(pattern, timestamp, cond1, cond2, ...)",
        "SELECT anonymous_id, sequence_match_events('(?1).*(?2)', timestamp, \
         event = 'add_to_cart', event = 'purchase') AS times FROM events GROUP BY anonymous_id",
    )
});

/// The `sequence_match_events` aggregate function.
pub fn sequence_match_events() -> AggregateUDF {
    // Unquoted SQL identifiers are folded to lowercase: ClickHouse's `sequenceMatchEvents`.
    let naming = Naming::new(NAME, Some("sequencematchevents"), &DOCUMENTATION);
    SequenceAggregate::udf(naming, SequenceOutput::Events)
}
