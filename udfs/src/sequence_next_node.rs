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
//! No match gives NULL.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, StringArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
    aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::args::{
    as_i64, check_condition_count, check_conditions, is_string_type, is_time_type, literal,
    string_literal, times_as_i64,
};
use crate::event_buffer::EventBuffer;
use crate::single_group::{GroupState, SingleGroup, rows_as_states};

/// SQL name.
pub const NAME: &str = "sequence_next_node";
/// Key layout: node index above bit 33, "can be base" at bit 32, event bits below.
const NODE_SHIFT: u32 = 33;
const CAN_BE_BASE: u64 = 1 << 32;
const EVENT_BITS: u64 = (1 << 32) - 1;

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
    .with_argument("eventN", "boolean condition of chain step N (1 to 32)")
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

impl GroupState for NextNodeGroups {
    fn ensure_groups(&mut self, groups: usize) {
        self.groups = self.groups.max(groups);
    }

    fn emptied(&self) -> Self {
        Self {
            buffer: EventBuffer::default(),
            values: Vec::new(),
            groups: 0,
            ..self.clone()
        }
    }
}

/// The `sequence_next_node` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SequenceNextNode {
    signature: Signature,
    aliases: Vec<String>,
}

impl Default for SequenceNextNode {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            // Unquoted SQL identifiers are folded to lowercase: ClickHouse's `sequenceNextNode`.
            aliases: vec!["sequencenextnode".to_string()],
        }
    }
}

fn check_arguments(types: &[DataType]) -> Result<()> {
    if types.len() < 6 {
        return plan_err!(
            "{NAME} takes (direction, base, timestamp, event_column, base_condition, event1, ...): got {} argument(s)",
            types.len()
        );
    }
    if !is_string_type(&types[0]) || !is_string_type(&types[1]) {
        return plan_err!("{NAME}: direction and base must be strings such as 'forward', 'head'");
    }
    if !is_time_type(&types[2]) {
        return plan_err!(
            "{NAME}: argument 3 must be a TIMESTAMP, DATE or integer time, got {}",
            types[2]
        );
    }
    if !is_string_type(&types[3]) {
        return plan_err!(
            "{NAME}: argument 4 (the event column) must be text, got {}",
            types[3]
        );
    }
    check_conditions(NAME, &types[4..5], 4)?;
    check_condition_count(NAME, 1, types.len() - 5)?;
    check_conditions(NAME, &types[5..], 5)
}

impl AggregateUDFImpl for SequenceNextNode {
    fn name(&self) -> &str {
        NAME
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(arg_types)?;
        Ok(DataType::Utf8)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |t| DataType::List(Arc::new(Field::new_list_field(t, false)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[times]", args.name),
                list(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[keys]", args.name),
                list(DataType::UInt64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[values]", args.name),
                list(DataType::Utf8),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup::new(NextNodeGroups::try_new(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(NextNodeGroups::try_new(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }

    /// Checks direction and base while the query is planned; the expression is left unchanged.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        Some(Box::new(|function, _context| {
            let args = &function.params.args;
            parse_direction_and_base(
                args.first().and_then(string_literal),
                args.get(1).and_then(string_literal),
            )?;
            Ok(Expr::AggregateFunction(function))
        }))
    }
}

/// Nodes of many groups: (time, key) in an [`EventBuffer`], values in `values` (by node index).
#[derive(Debug, Clone)]
struct NextNodeGroups {
    direction: Direction,
    base: Base,
    events: usize,
    buffer: EventBuffer,
    values: Vec<String>,
    groups: usize,
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
        pair => Ok(pair),
    }
}

impl NextNodeGroups {
    fn try_new(args: &AccumulatorArgs) -> Result<Self> {
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        check_arguments(&types)?;
        let (direction, base) = parse_direction_and_base(
            text(literal(NAME, "first (direction)", &args.exprs[0])?),
            text(literal(NAME, "second (base)", &args.exprs[1])?),
        )?;
        Ok(Self {
            direction,
            base,
            events: types.len() - 5,
            buffer: EventBuffer::default(),
            values: Vec::new(),
            groups: 0,
        })
    }

    fn push(&mut self, group: usize, time: i64, flags: u64, value: &str) {
        let node = self.values.len() as u64;
        self.values.push(value.to_string());
        self.buffer.push(group, time, (node << NODE_SHIFT) | flags);
    }

    fn value(&self, key: u64) -> &str {
        &self.values[(key >> NODE_SHIFT) as usize]
    }

    /// The index of the answer node in `nodes` (sorted), if any.
    fn next_node(&self, nodes: &[(i64, u64)]) -> Option<usize> {
        let n = nodes.len();
        if n <= self.events {
            return None;
        }
        let can_be_base = |i: usize| nodes[i].1 & CAN_BE_BASE != 0;
        let meets = |i: usize, event: usize| nodes[i].1 >> event & 1 == 1;
        let base = match self.base {
            Base::Head => can_be_base(0).then_some(0),
            Base::Tail => can_be_base(n - 1).then_some(n - 1),
            Base::FirstMatch => (0..n).find(|&i| meets(i, 0) && can_be_base(i)),
            Base::LastMatch => (0..n).rev().find(|&i| meets(i, 0) && can_be_base(i)),
        }?;
        match self.direction {
            Direction::Forward => {
                let chained = (0..self.events)
                    .take_while(|&i| base + i < n && meets(base + i, i))
                    .count();
                (chained == self.events && base + chained < n).then_some(base + chained)
            }
            Direction::Backward => {
                let chained = (0..self.events)
                    .take_while(|&i| i < base && meets(base - i, i))
                    .count();
                (chained == self.events).then_some(base - chained)
            }
        }
    }

    /// Sorts one group's nodes by time, then value (stable: arrival order among equals).
    fn sort_nodes(&self, nodes: &mut [(i64, u64)]) {
        nodes.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.value(a.1).cmp(self.value(b.1)))
        });
    }

    /// Drops values no longer referenced (after results or state were taken), renumbering keys.
    fn compact(&mut self) {
        let mut taken = self.buffer.take(self.groups);
        let mut values = Vec::with_capacity(taken.events.len());
        let mut kept = EventBuffer::default();
        for g in 0..self.groups {
            for &(time, key) in taken.group_mut(g).iter() {
                let node = values.len() as u64;
                values.push(std::mem::take(
                    &mut self.values[(key >> NODE_SHIFT) as usize],
                ));
                kept.push(
                    g,
                    time,
                    (node << NODE_SHIFT) | (key & (CAN_BE_BASE | EVENT_BITS)),
                );
            }
        }
        self.buffer = kept;
        self.values = values;
    }

    fn emit_count(&self, emit_to: EmitTo) -> usize {
        match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n,
        }
    }
}

impl GroupsAccumulator for NextNodeGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let times = times_as_i64(&values[2])?;
        let times = as_i64(&times);
        let texts = cast(&values[3], &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let conditions: Vec<BooleanArray> = values[4..]
            .iter()
            .map(|v| Ok(cast(v, &DataType::Boolean)?.as_boolean().clone()))
            .collect::<Result<_>>()?;
        for (row, &group) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
                || times.is_null(row)
                || texts.is_null(row)
                || conditions.iter().any(|c| c.is_null(row))
            {
                continue;
            }
            let mut flags = if conditions[0].value(row) {
                CAN_BE_BASE
            } else {
                0
            };
            for (event, condition) in conditions[1..].iter().enumerate() {
                flags |= u64::from(condition.value(row)) << event;
            }
            self.push(group, times.value(row), flags, texts.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let count = self.emit_count(emit_to);
        let mut taken = self.buffer.take(count);
        let mut answers: Vec<Option<String>> = Vec::with_capacity(count);
        for g in 0..count {
            let nodes = taken.group_mut(g);
            self.sort_nodes(nodes);
            answers.push(
                self.next_node(nodes)
                    .map(|i| self.value(nodes[i].1).to_string()),
            );
        }
        self.groups -= count;
        self.compact();
        Ok(Arc::new(StringArray::from(answers)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let count = self.emit_count(emit_to);
        let taken = self.buffer.take(count);
        let offsets = OffsetBuffer::new(
            taken
                .offsets
                .iter()
                .map(|&o| o as i32)
                .collect::<Vec<_>>()
                .into(),
        );
        let times = Int64Array::from_iter_values(taken.events.iter().map(|e| e.0));
        let flags = datafusion::arrow::array::UInt64Array::from_iter_values(
            taken
                .events
                .iter()
                .map(|e| e.1 & (CAN_BE_BASE | EVENT_BITS)),
        );
        let texts = StringArray::from_iter_values(taken.events.iter().map(|e| self.value(e.1)));
        let item = |t| Arc::new(Field::new_list_field(t, false));
        self.groups -= count;
        self.compact();
        Ok(vec![
            Arc::new(ListArray::new(
                item(DataType::Int64),
                offsets.clone(),
                Arc::new(times),
                None,
            )),
            Arc::new(ListArray::new(
                item(DataType::UInt64),
                offsets.clone(),
                Arc::new(flags),
                None,
            )),
            Arc::new(ListArray::new(
                item(DataType::Utf8),
                offsets,
                Arc::new(texts),
                None,
            )),
        ])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        let times = values[0].as_list::<i32>();
        let flags = values[1].as_list::<i32>();
        let texts = values[2].as_list::<i32>();
        let time_values = times.values().as_primitive::<Int64Type>();
        let flag_values = flags.values().as_primitive::<UInt64Type>();
        let text_values = texts.values().as_string::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if times.is_null(row) {
                continue;
            }
            let offsets = times.value_offsets();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                self.push(
                    group,
                    time_values.value(i),
                    flag_values.value(i),
                    text_values.value(i),
                );
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        rows_as_states(self, values, opt_filter)
    }

    fn size(&self) -> usize {
        self.buffer.size()
            + self.values.iter().map(|v| v.len() + 24).sum::<usize>()
            + std::mem::size_of::<Self>()
    }
}
