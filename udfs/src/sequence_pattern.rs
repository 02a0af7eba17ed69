//! ClickHouse's sequence pattern language and the aggregate state shared by `sequence_match` and
//! `sequence_count`.
//!
//! A pattern is a list of `(?N)` (an event meeting condition N), `.` (any event), `.*` (any
//! events) and time conditions `(?t<=S)`, `(?t<S)`, `(?t>=S)`, `(?t>S)`, `(?t==S)` on the time since
//! the previous event (S in seconds for TIMESTAMP times, the time's own unit for integer times).
//! Only rows meeting at least one condition are events. Matching follows ClickHouse: a pattern
//! without time conditions runs as an automaton; one with time conditions by backtracking, with
//! the same limit on work (1,000,000 steps) after which the query fails instead of hanging.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt8Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{AggregateUDF, Documentation, EmitTo, Expr};

use crate::aggregate::{self, Aggregate, AggregateDefinition, Naming, TIMESTAMP_ARGUMENT};
use crate::args::{
    CONDITIONS_MAX, argument_types, as_i64, check_condition_count, check_conditions,
    check_time_argument, condition_columns, is_string_type, literal, required_columns,
    string_literal, times_as_i64, units_per_second,
};
use crate::group_events::{self, GroupEvents, time_lists};
use crate::grouped::{GroupState, Rows};

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
    /// For each action, how many `(?N)` actions come before it.
    event_ordinal: Vec<usize>,
    states: Vec<State>,
    has_time: bool,
}

/// The times of the `(?N)` steps matched so far, and the longest such chain seen.
#[derive(Debug, Default)]
struct Chain {
    current: Vec<i64>,
    longest: Vec<i64>,
}

impl Chain {
    /// The `ordinal`-th `(?N)` step matched an event at `time` (earlier steps keep theirs).
    fn matched(&mut self, ordinal: usize, time: i64) {
        self.current.truncate(ordinal);
        self.current.push(time);
        if self.current.len() > self.longest.len() {
            self.longest.clone_from(&self.current);
        }
    }
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
        let event_ordinal = actions
            .iter()
            .scan(0, |seen, action| {
                let before = *seen;
                *seen += usize::from(matches!(action, Action::Event(_)));
                Some(before)
            })
            .collect();
        Ok(Self {
            actions,
            event_ordinal,
            states,
            has_time,
        })
    }

    /// Whether the events (sorted by time; `.1` is the bitmask of conditions met) match.
    pub(crate) fn matches(&self, events: &[(i64, u64)]) -> Result<bool> {
        if self.has_time {
            let mut position = 0;
            self.backtracking_match(events, &mut position, None)
        } else {
            Ok(self.automaton_match(events))
        }
    }

    /// How many non-overlapping matches the events hold.
    pub(crate) fn count(&self, events: &[(i64, u64)]) -> Result<u64> {
        let mut position = 0;
        let mut count = 0;
        while position < events.len() && self.backtracking_match(events, &mut position, None)? {
            count += 1;
        }
        Ok(count)
    }

    /// The times of the events matched by the `(?N)` steps of the first match, or, without a
    /// match, of the longest partial chain tried (ClickHouse's `sequenceMatchEvents`).
    pub(crate) fn matched_times(&self, events: &[(i64, u64)]) -> Result<Vec<i64>> {
        let mut chain = Chain::default();
        let mut position = 0;
        if self.backtracking_match(events, &mut position, Some(&mut chain))? {
            Ok(chain.current)
        } else {
            Ok(chain.longest)
        }
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

    fn backtracking_match(
        &self,
        events: &[(i64, u64)],
        position: &mut usize,
        mut chain: Option<&mut Chain>,
    ) -> Result<bool> {
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
            match self.actions[action] {
                Action::Event(e) => {
                    if bits >> e & 1 == 1 {
                        if let Some(chain) = chain.as_deref_mut() {
                            chain.matched(self.event_ordinal[action], time);
                        }
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
                    if ok {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SequenceOutput {
    /// 1 if the pattern matches, else 0 (`UInt8`).
    Match,
    /// Number of non-overlapping matches (`UInt64`).
    Count,
    /// The times of the matched events (a list of the time column's type).
    Events,
}

impl SequenceOutput {
    pub(crate) fn data_type(self, time_type: &DataType) -> DataType {
        match self {
            Self::Match => DataType::UInt8,
            Self::Count => DataType::UInt64,
            Self::Events => {
                DataType::List(Arc::new(Field::new_list_field(time_type.clone(), false)))
            }
        }
    }
}

/// The documentation of a sequence function: `sequence_match`, `sequence_count` and
/// `sequence_match_events` share their section and arguments, documented once here.
pub(crate) fn sequence_documentation(
    description: &str,
    syntax: &str,
    example: &str,
) -> Documentation {
    const ARGUMENTS: &[(&str, &str)] = &[
        ("pattern", "constant pattern string"),
        ("timestamp", TIMESTAMP_ARGUMENT),
        (
            "condN",
            "condition N: boolean, or integer (non-zero is true); 2 to 32",
        ),
    ];
    aggregate::documentation(description, syntax, example, ARGUMENTS)
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
    check_time_argument(function, types, 1)?;
    // As ClickHouse: at least two conditions.
    check_condition_count(function, 2, CONDITIONS_MAX, types.len() - 2)?;
    check_conditions(function, &types[2..], 2)
}

/// `sequence_match`, `sequence_count` or `sequence_match_events`: the same arguments and state,
/// a different answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SequenceAggregate {
    name: &'static str,
    output: SequenceOutput,
}

impl SequenceAggregate {
    /// The sequence function `naming` answering `output`.
    pub(crate) fn udf(naming: Naming, output: SequenceOutput) -> AggregateUDF {
        Aggregate::udf(
            naming,
            Self {
                name: naming.name,
                output,
            },
        )
    }
}

impl AggregateDefinition for SequenceAggregate {
    type State = SequenceGroups;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments(self.name, arg_types)?;
        Ok(self.output.data_type(&arg_types[1]))
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        group_events::state_fields(name, &[("keys", DataType::UInt64)])
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<SequenceGroups> {
        SequenceGroups::try_new(self.name, self.output, args)
    }

    fn check_constants(&self, args: &[Expr]) -> Result<()> {
        match args.first().and_then(string_literal) {
            Some(text) => {
                Pattern::parse(self.name, text, args.len().saturating_sub(2), 1)?;
                Ok(())
            }
            None => plan_err!(
                "{}: the first argument must be a constant pattern string",
                self.name
            ),
        }
    }
}

/// Events of many groups with the pattern to apply.
#[derive(Debug, Clone)]
pub(crate) struct SequenceGroups {
    pattern: Arc<Pattern>,
    output: SequenceOutput,
    time_type: DataType,
    /// Whether a group without usable rows answers NULL (some argument is nullable) or 0.
    nullable: bool,
    events: GroupEvents,
}

impl SequenceGroups {
    pub(crate) fn try_new(
        function: &'static str,
        output: SequenceOutput,
        args: &AccumulatorArgs,
    ) -> Result<Self> {
        let types = argument_types(args);
        check_arguments(function, &types)?;
        let text = match literal(function, "first (pattern)", &args.exprs[0])? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            other => return plan_err!("{function}: the pattern must be a string, got {other}"),
        };
        let scale = units_per_second(&types[1]).unwrap_or(1);
        let pattern = Pattern::parse(function, &text, types.len() - 2, scale)?;
        // ClickHouse's sequenceMatchEvents answers an empty list, never NULL.
        let nullable = output != SequenceOutput::Events
            && args.expr_fields[1..].iter().any(|f| f.is_nullable());
        Ok(Self {
            pattern: Arc::new(pattern),
            output,
            time_type: types[1].clone(),
            nullable,
            events: GroupEvents::default(),
        })
    }
}

impl GroupState for SequenceGroups {
    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let times = times_as_i64(&rows.values[1])?;
        let times = as_i64(&times);
        let conditions = condition_columns(&rows.values[2..])?;
        let required = required_columns(times, &conditions);
        for (row, group) in rows.usable(&required) {
            self.events.mark(group);
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
        let mut taken = self.events.take(emit_to);
        for g in 0..taken.len() {
            let events = taken.group_mut(g);
            // Stable by time only: events at the same time keep their arrival order.
            if !events.is_sorted_by_key(|e| e.0) {
                events.sort_by_key(|e| e.0);
            }
        }
        let nulls = taken.nulls(self.nullable);
        let groups = 0..taken.len();
        Ok(match self.output {
            SequenceOutput::Match => {
                let matched = groups
                    .map(|g| Ok(u8::from(self.pattern.matches(taken.group(g))?)))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(UInt8Array::new(matched.into(), nulls))
            }
            SequenceOutput::Count => {
                let counts = groups
                    .map(|g| self.pattern.count(taken.group(g)))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(UInt64Array::new(counts.into(), nulls))
            }
            SequenceOutput::Events => time_lists(taken.len(), &self.time_type, None, |g| {
                self.pattern.matched_times(taken.group(g))
            })?,
        })
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.events.state_of_keys(emit_to))
    }

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        self.events.merge_keys(states, |_, key| key)
    }

    fn size(&self) -> usize {
        self.events.size()
    }

    fn ensure_groups(&mut self, groups: usize) {
        self.events.ensure_groups(groups);
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
