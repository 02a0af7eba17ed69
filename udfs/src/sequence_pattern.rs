//! ClickHouse's sequence pattern language and the aggregate state shared by `sequence_match` and
//! `sequence_count`.
//!
//! A pattern is a list of `(?N)` (an event meeting condition N), `.` (any event), `.*` (any
//! events) and time conditions `(?t<=S)`, `(?t<S)`, `(?t>=S)`, `(?t>S)`, `(?t==S)` on the time since
//! the previous event (S in seconds for TIMESTAMP times, the time's own unit for integer times).
//! Only rows meeting at least one condition are events. Matching follows ClickHouse: a pattern
//! without time conditions runs as an automaton; one with time conditions by backtracking, with
//! the same limit on work (1,000,000 steps) after which the query fails instead of hanging.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt8Array, UInt64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use crate::args::{
    as_i64, check_condition_count, check_conditions, is_string_type, is_time_type, literal,
    string_literal, times_as_i64, units_per_second,
};
use crate::event_buffer::{self, EventBuffer};
use crate::single_group::{GroupState, SingleGroup, rows_as_states};

/// Most backtracking steps before a match is abandoned (ClickHouse's limit).
const MATCH_STEPS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Event(u32),
    AnyEvent,
    AnyEvents,
    TimeLessOrEqual(i64),
    TimeLess(i64),
    TimeGreaterOrEqual(i64),
    TimeGreater(i64),
    TimeEqual(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    None,
    Event(u32),
    AnyEvent,
}

#[derive(Debug, Clone, Copy)]
struct State {
    loops: bool,
    transition: Transition,
}

/// A parsed pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    actions: Vec<Action>,
    states: Vec<State>,
    has_time: bool,
}

impl Pattern {
    /// Parses `text` for `conditions` conditions; durations are multiplied by `time_scale`.
    pub(crate) fn parse(
        function: &str,
        text: &str,
        conditions: usize,
        time_scale: i64,
    ) -> Result<Self> {
        let mut actions = vec![Action::AnyEvents];
        let mut states = vec![State {
            loops: true,
            transition: Transition::None,
        }];
        let mut has_time = false;
        let mut rest = text;
        let fail = |rest: &str, message: &str| {
            plan_err!(
                "{function}: invalid pattern '{text}': {message} at position {}",
                text.len() - rest.len()
            )
        };
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix("(?") {
                let after;
                if let Some(time) = inner.strip_prefix('t') {
                    let (make, number): (fn(i64) -> Action, &str) =
                        if let Some(r) = time.strip_prefix("<=") {
                            (Action::TimeLessOrEqual, r)
                        } else if let Some(r) = time.strip_prefix('<') {
                            (Action::TimeLess, r)
                        } else if let Some(r) = time.strip_prefix(">=") {
                            (Action::TimeGreaterOrEqual, r)
                        } else if let Some(r) = time.strip_prefix('>') {
                            (Action::TimeGreater, r)
                        } else if let Some(r) = time.strip_prefix("==") {
                            (Action::TimeEqual, r)
                        } else {
                            return fail(time, "unknown time condition (use <=, <, >=, >, ==)");
                        };
                    let digits = number.chars().take_while(char::is_ascii_digit).count();
                    let Ok(duration) = number[..digits].parse::<i64>() else {
                        return fail(number, "expected a number");
                    };
                    if !matches!(
                        actions.last(),
                        Some(Action::Event(_) | Action::AnyEvent | Action::AnyEvents)
                    ) {
                        return fail(rest, "a time condition must follow an event");
                    }
                    has_time = true;
                    actions.push(make(duration.saturating_mul(time_scale)));
                    after = &number[digits..];
                } else {
                    let digits = inner.chars().take_while(char::is_ascii_digit).count();
                    let Ok(number) = inner[..digits].parse::<usize>() else {
                        return fail(inner, "expected an event number");
                    };
                    if number == 0 || number > conditions {
                        return fail(
                            inner,
                            &format!("event number {number} is out of range 1..={conditions}"),
                        );
                    }
                    let event = (number - 1) as u32;
                    actions.push(Action::Event(event));
                    states.last_mut().expect("one state at least").transition =
                        Transition::Event(event);
                    states.push(State {
                        loops: false,
                        transition: Transition::None,
                    });
                    after = &inner[digits..];
                }
                let Some(next) = after.strip_prefix(')') else {
                    return fail(after, "expected ')'");
                };
                rest = next;
            } else if let Some(next) = rest.strip_prefix(".*") {
                actions.push(Action::AnyEvents);
                states.last_mut().expect("one state at least").loops = true;
                rest = next;
            } else if let Some(next) = rest.strip_prefix('.') {
                actions.push(Action::AnyEvent);
                states.last_mut().expect("one state at least").transition = Transition::AnyEvent;
                states.push(State {
                    loops: false,
                    transition: Transition::None,
                });
                rest = next;
            } else {
                return fail(rest, "unexpected character");
            }
        }
        Ok(Self {
            actions,
            states,
            has_time,
        })
    }

    /// Whether the events (sorted by time; `.1` is the bitmask of conditions met) match.
    pub(crate) fn matches(&self, events: &[(i64, u64)]) -> Result<bool> {
        if self.has_time {
            let mut position = 0;
            self.backtracking_match(events, &mut position)
        } else {
            Ok(self.automaton_match(events))
        }
    }

    /// How many non-overlapping matches the events hold.
    pub(crate) fn count(&self, events: &[(i64, u64)]) -> Result<u64> {
        let mut position = 0;
        let mut count = 0;
        while position < events.len() && self.backtracking_match(events, &mut position)? {
            count += 1;
        }
        Ok(count)
    }

    fn automaton_match(&self, events: &[(i64, u64)]) -> bool {
        let n = self.states.len();
        let mut active = vec![false; n];
        let mut next = vec![false; n];
        active[0] = true;
        let mut any_active = true;
        for &(_, bits) in events {
            if !any_active || active[n - 1] {
                break;
            }
            any_active = false;
            next.fill(false);
            for (i, state) in self.states.iter().enumerate() {
                if !active[i] {
                    continue;
                }
                let advance = match state.transition {
                    Transition::None => false,
                    Transition::AnyEvent => true,
                    Transition::Event(e) => bits >> e & 1 == 1,
                };
                if advance {
                    next[i + 1] = true;
                    any_active = true;
                }
                if state.loops {
                    next[i] = true;
                    any_active = true;
                }
            }
            std::mem::swap(&mut active, &mut next);
        }
        active[n - 1]
    }

    fn backtracking_match(&self, events: &[(i64, u64)], position: &mut usize) -> Result<bool> {
        let end = events.len();
        let begin = *position;
        let mut action = 0;
        let mut base = *position;
        let mut stack: Vec<(usize, usize, usize)> = Vec::new();
        let backtrack = |stack: &mut Vec<(usize, usize, usize)>,
                         action: &mut usize,
                         position: &mut usize,
                         base: &mut usize| {
            while let Some((a, p, b)) = stack.pop() {
                *action = a;
                *position = p + 1;
                *base = b;
                if *position != end {
                    return true;
                }
            }
            false
        };
        let mut steps = 0;
        while action < self.actions.len() && *position < end {
            let (time, bits) = events[*position];
            let since = events[base].0;
            let kept = |ok: bool| ok;
            match self.actions[action] {
                Action::Event(e) => {
                    if bits >> e & 1 == 1 {
                        base = *position;
                        action += 1;
                        *position += 1;
                    } else if !backtrack(&mut stack, &mut action, position, &mut base) {
                        break;
                    }
                }
                Action::AnyEvent => {
                    base = *position;
                    action += 1;
                    *position += 1;
                }
                Action::AnyEvents => {
                    stack.push((action, *position, base));
                    base = *position;
                    action += 1;
                }
                Action::TimeLessOrEqual(d) | Action::TimeLess(d) => {
                    let ok = match self.actions[action] {
                        Action::TimeLessOrEqual(_) => time <= since.saturating_add(d),
                        _ => time < since.saturating_add(d),
                    };
                    if kept(ok) {
                        stack.push((action, *position, base));
                        base = *position;
                        action += 1;
                    } else if !backtrack(&mut stack, &mut action, position, &mut base) {
                        break;
                    }
                }
                Action::TimeGreaterOrEqual(d) | Action::TimeGreater(d) | Action::TimeEqual(d) => {
                    let limit = since.saturating_add(d);
                    let ok = match self.actions[action] {
                        Action::TimeGreaterOrEqual(_) => time >= limit,
                        Action::TimeGreater(_) => time > limit,
                        _ => time == limit,
                    };
                    if ok {
                        stack.push((action, *position, base));
                        base = *position;
                        action += 1;
                    } else {
                        *position += 1;
                        if *position == end
                            && !backtrack(&mut stack, &mut action, position, &mut base)
                        {
                            break;
                        }
                    }
                }
            }
            steps += 1;
            if steps > MATCH_STEPS_MAX {
                return exec_err!(
                    "sequence pattern too difficult to apply: more than {MATCH_STEPS_MAX} steps"
                );
            }
        }
        // Trailing actions that can match nothing.
        while action < self.actions.len()
            && matches!(
                self.actions[action],
                Action::AnyEvents
                    | Action::TimeLessOrEqual(_)
                    | Action::TimeLess(_)
                    | Action::TimeGreaterOrEqual(0)
            )
        {
            action += 1;
        }
        if *position == begin {
            *position += 1;
        }
        Ok(action == self.actions.len())
    }
}

/// What the aggregate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceOutput {
    /// 1 if the pattern matches, else 0 (`UInt8`).
    Match,
    /// Number of non-overlapping matches (`UInt64`).
    Count,
}

impl SequenceOutput {
    pub(crate) fn data_type(self) -> DataType {
        match self {
            Self::Match => DataType::UInt8,
            Self::Count => DataType::UInt64,
        }
    }
}

/// Checks `(pattern, timestamp, cond1, …)` argument types.
pub(crate) fn check_arguments(function: &str, types: &[DataType]) -> Result<()> {
    if types.len() < 3 {
        return plan_err!(
            "{function} takes (pattern, timestamp, cond1, ...): got {} argument(s)",
            types.len()
        );
    }
    if !is_string_type(&types[0]) {
        return plan_err!(
            "{function}: the first argument must be the pattern string, got {}",
            types[0]
        );
    }
    if !is_time_type(&types[1]) {
        return plan_err!(
            "{function}: argument 2 must be a TIMESTAMP, DATE or integer time, got {}",
            types[1]
        );
    }
    // As ClickHouse: at least two conditions.
    check_condition_count(function, 2, types.len() - 2)?;
    check_conditions(function, &types[2..], 2)
}

/// The state fields of the sequence aggregates.
pub(crate) fn state_fields(name: &str) -> Vec<FieldRef> {
    let mut fields = event_buffer::state_fields(name);
    fields.push(Arc::new(Field::new(
        format!("{name}[has_rows]"),
        DataType::Boolean,
        true,
    )));
    fields
}

/// `sequence_match` or `sequence_count`: the same arguments and state, a different answer.
#[derive(Debug)]
pub struct SequenceAggregate {
    name: &'static str,
    output: SequenceOutput,
    signature: Signature,
    aliases: Vec<String>,
    documentation: &'static LazyLock<Documentation>,
}

impl SequenceAggregate {
    pub(crate) fn new(
        name: &'static str,
        alias: &str,
        output: SequenceOutput,
        documentation: &'static LazyLock<Documentation>,
    ) -> Self {
        Self {
            name,
            output,
            signature: Signature::variadic_any(Volatility::Immutable),
            aliases: vec![alias.to_string()],
            documentation,
        }
    }
}

impl PartialEq for SequenceAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SequenceAggregate {}

impl std::hash::Hash for SequenceAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl AggregateUDFImpl for SequenceAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(self.name, arg_types)?;
        Ok(self.output.data_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(args.name))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let groups = SequenceGroups::try_new(self.name, self.output, &args)?;
        Ok(Box::new(SingleGroup::new(groups)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SequenceGroups::try_new(
            self.name,
            self.output,
            &args,
        )?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation)
    }

    /// Checks the pattern while the query is planned, so a bad pattern fails the statement
    /// before any result is fetched; the expression itself is left unchanged.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let name = self.name;
        Some(Box::new(move |function, _context| {
            let args = &function.params.args;
            match args.first().and_then(string_literal) {
                Some(text) => {
                    Pattern::parse(name, text, args.len().saturating_sub(2), 1)?;
                }
                None => {
                    return plan_err!(
                        "{name}: the first argument must be a constant pattern string"
                    );
                }
            }
            Ok(Expr::AggregateFunction(function))
        }))
    }
}

/// Events of many groups with the pattern to apply.
#[derive(Debug, Clone)]
pub(crate) struct SequenceGroups {
    pattern: Arc<Pattern>,
    output: SequenceOutput,
    events: EventBuffer,
    has_rows: Vec<bool>,
}

impl SequenceGroups {
    pub(crate) fn try_new(
        function: &'static str,
        output: SequenceOutput,
        args: &AccumulatorArgs,
    ) -> Result<Self> {
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        check_arguments(function, &types)?;
        let text = match literal(function, "first (pattern)", &args.exprs[0])? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            other => return plan_err!("{function}: the pattern must be a string, got {other}"),
        };
        let scale = units_per_second(&types[1]).unwrap_or(1);
        let pattern = Pattern::parse(function, &text, types.len() - 2, scale)?;
        Ok(Self {
            pattern: Arc::new(pattern),
            output,
            events: EventBuffer::default(),
            has_rows: Vec::new(),
        })
    }
}

impl GroupState for SequenceGroups {
    fn ensure_groups(&mut self, groups: usize) {
        if self.has_rows.len() < groups {
            self.has_rows.resize(groups, false);
        }
    }

    fn emptied(&self) -> Self {
        Self {
            events: EventBuffer::default(),
            has_rows: Vec::new(),
            ..self.clone()
        }
    }
}

impl GroupsAccumulator for SequenceGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.ensure_groups(total_num_groups);
        let times = times_as_i64(&values[1])?;
        let times = as_i64(&times);
        let conditions: Vec<BooleanArray> = values[2..]
            .iter()
            .map(|v| Ok(cast(v, &DataType::Boolean)?.as_boolean().clone()))
            .collect::<Result<_>>()?;
        for (row, &group) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            if times.is_null(row) || conditions.iter().any(|c| c.is_null(row)) {
                continue;
            }
            self.has_rows[group] = true;
            let bits = conditions
                .iter()
                .enumerate()
                .fold(0u64, |bits, (i, c)| bits | (u64::from(c.value(row)) << i));
            if bits != 0 {
                self.events.push(group, times.value(row), bits);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let has_rows = emit_to.take_needed(&mut self.has_rows);
        let mut taken = self.events.take(has_rows.len());
        let mut results = Vec::with_capacity(has_rows.len());
        for g in 0..has_rows.len() {
            let events = taken.group_mut(g);
            // Stable by time only: events at the same time keep their arrival order.
            if !events.is_sorted_by_key(|e| e.0) {
                events.sort_by_key(|e| e.0);
            }
            results.push(match self.output {
                SequenceOutput::Match => u64::from(self.pattern.matches(events)?),
                SequenceOutput::Count => self.pattern.count(events)?,
            });
        }
        let nulls = Some(NullBuffer::from(has_rows));
        Ok(match self.output {
            SequenceOutput::Match => Arc::new(UInt8Array::new(
                results.iter().map(|&r| r as u8).collect::<Vec<_>>().into(),
                nulls,
            )),
            SequenceOutput::Count => Arc::new(UInt64Array::new(results.into(), nulls)),
        })
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let mut state = self.events.state(emit_to, self.has_rows.len());
        let has_rows = emit_to.take_needed(&mut self.has_rows);
        state.push(Arc::new(BooleanArray::from(has_rows)));
        Ok(state)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.ensure_groups(total_num_groups);
        let has_rows = values[2].as_boolean();
        for (row, &group) in group_indices.iter().enumerate() {
            if has_rows.is_valid(row) && has_rows.value(row) {
                self.has_rows[group] = true;
            }
            self.events.merge_row(values, row, group, |key| key);
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
        self.events.size() + self.has_rows.capacity() + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(list: &[(i64, u64)]) -> Vec<(i64, u64)> {
        list.to_vec()
    }

    #[test]
    fn parses_and_refuses() {
        assert!(Pattern::parse("f", "(?1)(?2)", 2, 1).is_ok());
        assert!(Pattern::parse("f", "(?1).*(?t>=3)(?2)", 2, 1).is_ok());
        let err = Pattern::parse("f", "(?3)", 2, 1).unwrap_err().to_string();
        assert!(err.contains("event number 3 is out of range"), "{err}");
        let err = Pattern::parse("f", "(?1)x", 1, 1).unwrap_err().to_string();
        assert!(err.contains("unexpected character at position 4"), "{err}");
        assert!(Pattern::parse("f", "(?1", 1, 1).is_err());
        assert!(Pattern::parse("f", "(?t<1)(?t<1)", 1, 1).is_err());
    }

    #[test]
    fn automaton_and_backtracking() {
        let seq = events(&[(1, 0b01), (2, 0b10), (3, 0b01), (10, 0b10)]);
        let p = Pattern::parse("f", "(?1)(?2)", 2, 1).unwrap();
        assert!(p.matches(&seq).unwrap());
        assert_eq!(p.count(&seq).unwrap(), 2);
        let timed = Pattern::parse("f", "(?1)(?t>5)(?2)", 2, 1).unwrap();
        assert!(timed.matches(&seq).unwrap());
        let never = Pattern::parse("f", "(?2)(?1)(?1)", 2, 1).unwrap();
        assert!(!never.matches(&seq).unwrap());
    }
}
