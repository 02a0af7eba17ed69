//! `sequence_next_node(direction, base, timestamp, event_column, base_condition, event1, …)`:
//! the value of the event that comes next after a chain of events — the path question "what did
//! people do after adding to cart?" — ClickHouse's
//! `sequenceNextNode(direction, base)(timestamp, event_column, base_condition, event1, …)`.
//!
//! Every row is a node (rows with a NULL argument are skipped), sorted by time and, at equal
//! times, by value. `base` picks the chain's starting node: `head` (the first node, if it meets
//! `base_condition`), `tail` (the last, likewise), `first_match` / `last_match` (the first / last
//! node meeting both `event1` and `base_condition`). Going `forward`, nodes base, base+1, … must
//! meet event1, event2, … and the answer is the node after them; `backward` walks the other way.
//! With no event conditions, `head` and `tail` answer the base node itself (as ClickHouse does).
//! No match gives NULL.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, UInt64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    AggregateUDF, Documentation, EmitTo, Expr, aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::aggregate::{Aggregate, AggregateDefinition, Naming};
use crate::args::{
    argument_types, as_i64, check_condition_count, check_conditions, check_time_argument,
    condition_columns, is_string_type, literal, required_columns, string_literal, times_as_i64,
};
use crate::group_events::{self, GroupEvents, flat_values};
use crate::grouped::{GroupState, Rows};

/// SQL name.
pub const NAME: &str = "sequence_next_node";
/// Most chain conditions (ClickHouse's limit for this function: one bit each in a `u64`).
const EVENTS_MAX: usize = 64;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_GENERAL,
        "Returns the value of the event that follows (forward) or precedes (backward) a chain of \
         events matching event1, event2, ... from a base node (head, tail, first_match, \
         last_match), as ClickHouse's sequenceNextNode. NULL if there is none.",
        "sequence_next_node(direction, base, timestamp, event_column, base_condition, event1, ...)",
    )
    .with_sql_example(
        "SELECT next, count(*) FROM (SELECT sequence_next_node('forward', 'first_match', \
         timestamp, event, true, event = 'add_to_cart') AS next FROM events \
         GROUP BY anonymous_id) GROUP BY next ORDER BY 2 DESC",
    )
    .with_argument("direction", "'forward' or 'backward'")
    .with_argument("base", "'head', 'tail', 'first_match' or 'last_match'")
    .with_argument("timestamp", "TIMESTAMP, DATE or integer time")
    .with_argument("event_column", "the value to return (text)")
    .with_argument("base_condition", "boolean: may this row start the chain")
    .with_argument(
        "eventN",
        "condition of chain step N: boolean, or integer (non-zero is true); 0 to 64, at \
         least 1 for first_match and last_match",
    )
    .build()
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Head,
    Tail,
    FirstMatch,
    LastMatch,
}

/// The `sequence_next_node` aggregate function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct SequenceNextNode;

/// The `sequence_next_node` aggregate function.
pub fn sequence_next_node() -> AggregateUDF {
    Aggregate::udf(
        Naming::new(NAME, Some("sequencenextnode"), &DOCUMENTATION),
        SequenceNextNode,
    )
}

fn check_arguments(types: &[DataType]) -> Result<()> {
    if types.len() < 5 {
        return plan_err!(
            "{NAME} takes (direction, base, timestamp, event_column, base_condition, event1, ...): got {} argument(s)",
            types.len()
        );
    }
    if !is_string_type(&types[0]) || !is_string_type(&types[1]) {
        return plan_err!("{NAME}: direction and base must be strings such as 'forward', 'head'");
    }
    check_time_argument(NAME, types, 2)?;
    if !is_string_type(&types[3]) {
        return plan_err!(
            "{NAME}: argument 4 (the event column) must be text, got {}",
            types[3]
        );
    }
    check_condition_count(NAME, 0, EVENTS_MAX, types.len() - 5)?;
    check_conditions(NAME, &types[4..], 4)
}

impl AggregateDefinition for SequenceNextNode {
    type State = NextNodeGroups;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(arg_types)?;
        Ok(DataType::Utf8)
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        group_events::state_fields(
            name,
            &[
                ("events", DataType::UInt64),
                ("can_be_base", DataType::Boolean),
                ("values", DataType::Utf8),
            ],
        )
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<NextNodeGroups> {
        NextNodeGroups::try_new(args)
    }

    fn check_constants(&self, args: &[Expr]) -> Result<()> {
        parse_direction_and_base(
            args.first().and_then(string_literal),
            args.get(1).and_then(string_literal),
            args.len().saturating_sub(5),
        )?;
        Ok(())
    }
}

/// One row of a group: its value, the chain conditions it meets (bit N-1 for eventN), and
/// whether it meets the base condition.
#[derive(Debug, Clone, Default)]
struct Node {
    value: String,
    events: u64,
    can_be_base: bool,
}

/// Nodes of many groups: `(time, node index)` in [`GroupEvents`], the nodes in `nodes`.
#[derive(Debug, Clone)]
pub(crate) struct NextNodeGroups {
    direction: Direction,
    base: Base,
    chain_length: usize,
    events: GroupEvents,
    nodes: Vec<Node>,
}

fn text(function_arg: &ScalarValue) -> Option<&str> {
    match function_arg {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

/// Parses direction and base, refusing the combinations ClickHouse refuses.
fn parse_direction_and_base(
    direction: Option<&str>,
    base: Option<&str>,
    chain_length: usize,
) -> Result<(Direction, Base)> {
    let direction = match direction {
        Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        other => {
            return plan_err!("{NAME}: direction must be 'forward' or 'backward', got {other:?}");
        }
    };
    let base = match base {
        Some("head") => Base::Head,
        Some("tail") => Base::Tail,
        Some("first_match") => Base::FirstMatch,
        Some("last_match") => Base::LastMatch,
        other => {
            return plan_err!(
                "{NAME}: base must be 'head', 'tail', 'first_match' or 'last_match', got {other:?}"
            );
        }
    };
    match (direction, base) {
        (Direction::Backward, Base::Head) => plan_err!("{NAME}: 'head' cannot go 'backward'"),
        (Direction::Forward, Base::Tail) => plan_err!("{NAME}: 'tail' cannot go 'forward'"),
        (_, Base::FirstMatch | Base::LastMatch) if chain_length == 0 => {
            plan_err!("{NAME}: first_match and last_match need at least one event condition")
        }
        pair => Ok(pair),
    }
}

impl NextNodeGroups {
    fn try_new(args: &AccumulatorArgs) -> Result<Self> {
        let types = argument_types(args);
        check_arguments(&types)?;
        let chain_length = types.len() - 5;
        let (direction, base) = parse_direction_and_base(
            text(literal(NAME, "first (direction)", &args.exprs[0])?),
            text(literal(NAME, "second (base)", &args.exprs[1])?),
            chain_length,
        )?;
        Ok(Self {
            direction,
            base,
            chain_length,
            events: GroupEvents::default(),
            nodes: Vec::new(),
        })
    }

    fn push(&mut self, group: usize, time: i64, node: Node) {
        self.events.push(group, time, self.nodes.len() as u64);
        self.nodes.push(node);
    }

    fn node(&self, key: u64) -> &Node {
        &self.nodes[key as usize]
    }

    /// The index of the answer node in `nodes` (sorted), if any.
    fn next_node(&self, nodes: &[(i64, u64)]) -> Option<usize> {
        let n = nodes.len();
        if n <= self.chain_length {
            return None;
        }
        let can_be_base = |i: usize| self.node(nodes[i].1).can_be_base;
        let meets = |i: usize, event: usize| self.node(nodes[i].1).events >> event & 1 == 1;
        let base = match self.base {
            Base::Head => can_be_base(0).then_some(0),
            Base::Tail => can_be_base(n - 1).then_some(n - 1),
            Base::FirstMatch => (0..n).find(|&i| meets(i, 0) && can_be_base(i)),
            Base::LastMatch => (0..n).rev().find(|&i| meets(i, 0) && can_be_base(i)),
        }?;
        match self.direction {
            Direction::Forward => {
                let chained = (0..self.chain_length)
                    .take_while(|&i| base + i < n && meets(base + i, i))
                    .count();
                (chained == self.chain_length && base + chained < n).then_some(base + chained)
            }
            Direction::Backward => {
                let chained = (0..self.chain_length)
                    .take_while(|&i| i < base && meets(base - i, i))
                    .count();
                (chained == self.chain_length).then_some(base - chained)
            }
        }
    }

    /// Sorts one group's nodes by time, then value (stable: arrival order among equals).
    fn sort_nodes(&self, nodes: &mut [(i64, u64)]) {
        nodes.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.node(a.1).value.cmp(&self.node(b.1).value))
        });
    }

    /// Drops nodes no longer referenced (after results or state were taken), renumbering keys.
    fn compact(&mut self) {
        let mut kept = Vec::new();
        let nodes = &mut self.nodes;
        self.events.map_keys(|key| {
            kept.push(std::mem::take(&mut nodes[key as usize]));
            (kept.len() - 1) as u64
        });
        self.nodes = kept;
    }
}

impl GroupState for NextNodeGroups {
    fn ensure_groups(&mut self, groups: usize) {
        self.events.ensure_groups(groups);
    }

    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let times = times_as_i64(&rows.values[2])?;
        let times = as_i64(&times);
        let texts = cast(&rows.values[3], &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let conditions = condition_columns(&rows.values[4..])?;
        let mut required = required_columns(times, &conditions);
        required.push(texts);
        for (row, group) in rows.usable(&required) {
            self.events.mark(group);
            let events = conditions[1..]
                .iter()
                .enumerate()
                .fold(0u64, |bits, (i, c)| bits | (u64::from(c.value(row)) << i));
            let node = Node {
                value: texts.value(row).to_string(),
                events,
                can_be_base: conditions[0].value(row),
            };
            self.push(group, times.value(row), node);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = self.events.take(emit_to);
        let mut answers: Vec<Option<&str>> = Vec::with_capacity(taken.len());
        for g in 0..taken.len() {
            let nodes = taken.group_mut(g);
            self.sort_nodes(nodes);
            answers.push(
                self.next_node(nodes)
                    .map(|i| self.node(nodes[i].1).value.as_str()),
            );
        }
        let answers: ArrayRef = Arc::new(StringArray::from(answers));
        self.compact();
        Ok(answers)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let nodes = &self.nodes;
        let state = self.events.state(emit_to, |events| {
            let node = |e: &(i64, u64)| &nodes[e.1 as usize];
            vec![
                Arc::new(UInt64Array::from_iter_values(
                    events.iter().map(|e| node(e).events),
                )),
                Arc::new(BooleanArray::from_iter(
                    events.iter().map(|e| Some(node(e).can_be_base)),
                )),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| node(e).value.as_str()),
                )),
            ]
        });
        self.compact();
        Ok(state)
    }

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        let events = flat_values(&states.values[1]).as_primitive::<UInt64Type>();
        let bases = flat_values(&states.values[2]).as_boolean();
        let texts = flat_values(&states.values[3]).as_string::<i32>();
        let nodes = &mut self.nodes;
        self.events.merge(states, |_, i| {
            nodes.push(Node {
                value: texts.value(i).to_string(),
                events: events.value(i),
                can_be_base: bases.value(i),
            });
            Ok((nodes.len() - 1) as u64)
        })
    }

    fn size(&self) -> usize {
        let node = std::mem::size_of::<Node>();
        self.events.size()
            + self
                .nodes
                .iter()
                .map(|n| n.value.len() + node)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouped::Grouped;
    use crate::grouped::agreement::{assert_paths_agree, lcg};
    use datafusion::logical_expr::GroupsAccumulator;

    fn groups(direction: Direction, base: Base, chain_length: usize) -> NextNodeGroups {
        NextNodeGroups {
            direction,
            base,
            chain_length,
            events: GroupEvents::default(),
            nodes: Vec::new(),
        }
    }

    #[test]
    fn every_path_agrees() {
        let mut seed = 11;
        let rows = 300;
        let pages = ["home", "product", "cart", "checkout"];
        let times: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from_iter(
            (0..rows).map(|_| Some((lcg(&mut seed) % 50) as i64)),
        ));
        let texts: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|_| pages.get((lcg(&mut seed) % 5) as usize).copied()),
        ));
        let condition = |seed: &mut u64| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(
                (0..rows).map(|_| Some(!lcg(seed).is_multiple_of(3))),
            ))
        };
        let values = vec![
            Arc::clone(&texts),
            Arc::clone(&texts),
            times,
            texts,
            condition(&mut seed),
            condition(&mut seed),
            condition(&mut seed),
        ];
        let group_of: Vec<usize> = (0..rows).map(|_| (lcg(&mut seed) % 7) as usize).collect();
        for (direction, base) in [
            (Direction::Forward, Base::Head),
            (Direction::Forward, Base::FirstMatch),
            (Direction::Backward, Base::Tail),
            (Direction::Backward, Base::LastMatch),
        ] {
            assert_paths_agree(&groups(direction, base, 2), &values, &group_of, 7);
        }
    }

    #[test]
    fn base_only_answers_the_base_node() {
        let mut state = Grouped::new(groups(Direction::Forward, Base::Head, 0));
        let times: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![2, 1]));
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["b", "a"]));
        let yes: ArrayRef = Arc::new(BooleanArray::from(vec![true, true]));
        let values = vec![Arc::clone(&texts), Arc::clone(&texts), times, texts, yes];
        state.update_batch(&values, &[0, 0], None, 1).unwrap();
        let answer = state.evaluate(EmitTo::All).unwrap();
        assert_eq!(answer.as_string::<i32>().value(0), "a");
        assert!(parse_direction_and_base(Some("forward"), Some("first_match"), 0).is_err());
    }
}
