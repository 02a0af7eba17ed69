//! `window_funnel(window, [mode], timestamp, cond1, …, condN)`: the deepest step of a funnel a
//! group (a person) reached, with every step within `window` of the first — ClickHouse's
//! `windowFunnel(window, mode…)(timestamp, cond1, …)`, with the same semantics for ties, modes
//! and window boundaries.
//!
//! Rows whose timestamp or any condition is NULL are skipped; a group with no other rows gives
//! NULL (as ClickHouse does with `Nullable` arguments). Events are kept as `(time, key)` pairs,
//! where `key` packs the step number (top 8 bits) above a row id (used by `strict_once` to tell
//! rows apart), and are sorted by `(time, step, row)` — the order ClickHouse sorts them in — only
//! if they did not arrive sorted.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, UInt8Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{AggregateUDF, Documentation, EmitTo, Expr};

use crate::aggregate::{self, Aggregate, AggregateDefinition, Naming, TIMESTAMP_ARGUMENT};
use crate::args::{
    CONDITIONS_MAX, argument_types, as_i64, check_condition_count, check_conditions,
    check_time_argument, condition_columns, is_string_type, literal, required_columns,
    string_literal, times_as_i64, window_in_units,
};
use crate::group_events::{self, GroupEvents, time_lists};
use crate::grouped::{GroupState, Rows};

/// SQL name.
pub const NAME: &str = "window_funnel";
const STEP_SHIFT: u32 = 56;
const ROW_MASK: u64 = (1 << STEP_SHIFT) - 1;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    funnel_documentation(
        "Returns the deepest step of a funnel reached within a sliding time window, as \
             ClickHouse's windowFunnel. Steps must happen in order; every step must be within \
             `window` of the first. Modes (comma-separated): strict_deduplication (stop at a \
             repeated step), strict_order (no other event between steps), strict_increase (steps \
             at strictly increasing times), strict_once (an event counts for one step only), \
             allow_reentry (with strict_order: ignore steps that come too early).",
        "window_funnel(window, [mode], timestamp, cond1, cond2, ...)",
        "SELECT anonymous_id, window_funnel(INTERVAL '1 day', timestamp, \
             event = 'product_view', event = 'add_to_cart', event = 'purchase') AS level \
             FROM events GROUP BY anonymous_id",
    )
});

/// The documentation of a funnel function: `window_funnel` and `window_funnel_steps` share
/// their section and arguments, documented once here.
pub(crate) fn funnel_documentation(
    description: &str,
    syntax: &str,
    example: &str,
) -> Documentation {
    const ARGUMENTS: &[(&str, &str)] = &[
        (
            "window",
            "INTERVAL, or integer seconds (integer or date times: their own unit); a window \
             too large for the time unit means 'no limit'",
        ),
        ("mode", "optional constant string of comma-separated modes"),
        ("timestamp", TIMESTAMP_ARGUMENT),
        (
            "condN",
            "condition of step N: boolean, or integer (non-zero is true), 1 to 32 steps",
        ),
    ];
    aggregate::documentation(description, syntax, example, ARGUMENTS)
}

/// The modes of ClickHouse's windowFunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunnelModes {
    /// Stop at the first repeated step.
    pub strict_deduplication: bool,
    /// No other event may come between steps.
    pub strict_order: bool,
    /// Steps must have strictly increasing times.
    pub strict_increase: bool,
    /// One event counts for one step only.
    pub strict_once: bool,
    /// With strict_order: skip steps that come too early instead of stopping.
    pub allow_reentry: bool,
}

impl FunnelModes {
    /// Parses a comma-separated list of modes.
    pub fn parse(text: &str) -> Result<Self> {
        let mut modes = Self::default();
        for mode in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match mode {
                "strict_deduplication" => modes.strict_deduplication = true,
                "strict_order" => modes.strict_order = true,
                "strict_increase" => modes.strict_increase = true,
                "strict_once" => modes.strict_once = true,
                "allow_reentry" => modes.allow_reentry = true,
                "strict" => {
                    return plan_err!("{NAME}: mode 'strict' is now 'strict_deduplication'");
                }
                other => {
                    return plan_err!(
                        "{NAME}: unknown mode '{other}'; modes are strict_deduplication, strict_order, strict_increase, strict_once, allow_reentry"
                    );
                }
            }
        }
        if modes.allow_reentry && !modes.strict_order {
            return plan_err!("{NAME}: allow_reentry requires strict_order");
        }
        Ok(modes)
    }
}

/// What a funnel computation needs besides the events.
#[derive(Debug, Clone, Copy)]
pub struct FunnelParams {
    /// Window length, in the time column's unit.
    pub window: i64,
    /// Number of steps (conditions).
    pub steps: u8,
    /// Modes.
    pub modes: FunnelModes,
}

/// The deepest step reached by `events`, sorted by `(time, key)`.
pub fn funnel_level(events: &[(i64, u64)], params: &FunnelParams) -> u8 {
    funnel::<Span>(events, params).0
}

/// The times of the steps of the deepest funnel reached by `events` (sorted by `(time, key)`):
/// one time per step reached, in step order.
pub fn funnel_step_times(events: &[(i64, u64)], params: &FunnelParams) -> Vec<i64> {
    let (level, chain) = funnel::<Timeline>(events, params);
    chain.map_or_else(Vec::new, |c| c.times[..usize::from(level)].to_vec())
}

/// What the funnel remembers of a partial chain of steps: at least its first and last times.
trait Chain: Clone {
    fn start(time: i64) -> Self;
    fn extend(&self, step: usize, time: i64) -> Self;
    fn first(&self) -> i64;
    fn last(&self) -> i64;
}

/// The first and last times only: all `window_funnel` needs.
#[derive(Clone, Copy)]
struct Span {
    first: i64,
    last: i64,
}

impl Chain for Span {
    fn start(time: i64) -> Self {
        Self {
            first: time,
            last: time,
        }
    }
    fn extend(&self, _step: usize, time: i64) -> Self {
        Self {
            first: self.first,
            last: time,
        }
    }
    fn first(&self) -> i64 {
        self.first
    }
    fn last(&self) -> i64 {
        self.last
    }
}

/// Every step's time, for `window_funnel_steps`.
#[derive(Clone, Copy)]
struct Timeline {
    times: [i64; crate::args::CONDITIONS_MAX],
    last: i64,
}

impl Chain for Timeline {
    fn start(time: i64) -> Self {
        let mut times = [0; crate::args::CONDITIONS_MAX];
        times[0] = time;
        Self { times, last: time }
    }
    fn extend(&self, step: usize, time: i64) -> Self {
        let mut next = *self;
        next.times[step] = time;
        next.last = time;
        next
    }
    fn first(&self) -> i64 {
        self.times[0]
    }
    fn last(&self) -> i64 {
        self.last
    }
}

/// The deepest level reached and the chain that reached it.
fn funnel<C: Chain>(events: &[(i64, u64)], params: &FunnelParams) -> (u8, Option<C>) {
    if events.is_empty() {
        return (0, None);
    }
    if !params.modes.strict_order && params.steps == 1 {
        // ClickHouse answers 1 for any event here, even one meeting no condition.
        let first = events
            .iter()
            .find(|e| step_of(e.1) == 0)
            .unwrap_or(&events[0]);
        return (1, Some(C::start(first.0)));
    }
    if params.modes.strict_once {
        level_strict_once(events, params)
    } else {
        level(events, params)
    }
}

fn step_of(key: u64) -> i64 {
    (key >> STEP_SHIFT) as i64 - 1
}

/// The deepest level that holds a chain, and that chain; `chain_of` reads a level's chain.
fn deepest<L, C>(levels: &[L], chain_of: impl Fn(&L) -> Option<C>) -> (u8, Option<C>) {
    levels
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, level)| chain_of(level).map(|c| (i as u8 + 1, Some(c))))
        .unwrap_or((0, None))
}

/// The level before the first step not reached, and its chain (strict_order stops there).
fn first_gap<L, C>(levels: &[L], chain_of: impl Fn(&L) -> Option<C>) -> (u8, Option<C>) {
    match levels.iter().position(|level| chain_of(level).is_none()) {
        Some(0) | None => (0, None),
        Some(i) => (i as u8, chain_of(&levels[i - 1])),
    }
}

/// The events that count, as `(time, step, row)`: rows meeting no condition (kept only in
/// strict_order mode) are skipped, but in strict_order mode one ends a started funnel.
fn step_events(
    events: &[(i64, u64)],
    strict_order: bool,
) -> impl Iterator<Item = (i64, usize, u64)> + '_ {
    let mut started = false;
    events
        .iter()
        .take_while(move |&&(_, key)| {
            let step = step_of(key);
            started |= step == 0;
            !(strict_order && started && step == -1)
        })
        .filter(|&&(_, key)| step_of(key) != -1)
        .map(|&(time, key)| (time, step_of(key) as usize, key & ROW_MASK))
}

fn level<C: Chain>(events: &[(i64, u64)], params: &FunnelParams) -> (u8, Option<C>) {
    let modes = params.modes;
    let steps = usize::from(params.steps);
    let mut reached: Vec<Option<C>> = vec![None; steps];
    let mut started = false;
    for (time, step, _) in step_events(events, modes.strict_order) {
        if step == 0 {
            reached[0] = Some(C::start(time));
            started = true;
        } else if modes.strict_deduplication && reached[step].is_some() {
            return deepest(&reached, Option::clone);
        } else if modes.strict_order && started && reached[step - 1].is_none() {
            if modes.allow_reentry {
                continue;
            }
            return first_gap(&reached, Option::clone);
        } else if let Some(previous) = &reached[step - 1] {
            let mut in_window = time <= previous.first().saturating_add(params.window);
            if modes.strict_increase {
                in_window = in_window && previous.last() < time;
            }
            if in_window {
                let chain = previous.extend(step, time);
                if step + 1 == steps {
                    return (params.steps, Some(chain));
                }
                reached[step] = Some(chain);
            }
        }
    }
    deepest(&reached, Option::clone)
}

/// A partial funnel for `strict_once`: its chain and the row of each step.
#[derive(Clone)]
struct Path<C> {
    chain: C,
    rows: [u64; crate::args::CONDITIONS_MAX],
}

/// The chain of a `strict_once` level: its first path's, if it has any.
fn first_path<C: Clone>(level: &[Path<C>]) -> Option<C> {
    level.first().map(|p| p.chain.clone())
}

fn level_strict_once<C: Chain>(events: &[(i64, u64)], params: &FunnelParams) -> (u8, Option<C>) {
    let modes = params.modes;
    let steps = usize::from(params.steps);
    let mut paths: Vec<Vec<Path<C>>> = vec![Vec::new(); steps];
    let mut started = false;
    for (time, step, row) in step_events(events, modes.strict_order) {
        if step == 0 {
            let mut rows = [0; crate::args::CONDITIONS_MAX];
            rows[0] = row;
            paths[0].push(Path {
                chain: C::start(time),
                rows,
            });
            started = true;
        } else if modes.strict_deduplication && !paths[step].is_empty() {
            return deepest(&paths, |l| first_path(l));
        } else if modes.strict_order && started && paths[step - 1].is_empty() {
            if modes.allow_reentry {
                continue;
            }
            return first_gap(&paths, |l| first_path(l));
        } else if !paths[step - 1].is_empty() {
            let mut extended = Vec::new();
            let previous = &mut paths[step - 1];
            let mut i = 0;
            while i < previous.len() {
                let path = &previous[i];
                let mut matched = time <= path.chain.first().saturating_add(params.window);
                if !matched && previous.len() > 1 {
                    // Out of the window: drop it, but keep at least one path.
                    previous.remove(i);
                    continue;
                }
                matched = matched && !path.rows[..step].contains(&row);
                if matched && modes.strict_increase {
                    matched = path.chain.last() < time;
                }
                if matched {
                    let mut next = Path {
                        chain: path.chain.extend(step, time),
                        rows: path.rows,
                    };
                    next.rows[step] = row;
                    if step + 1 == steps {
                        return (params.steps, Some(next.chain));
                    }
                    extended.push(next);
                }
                i += 1;
            }
            paths[step].extend(extended);
        }
    }
    deepest(&paths, |l| first_path(l))
}

/// What a funnel aggregate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FunnelOutput {
    /// The deepest step reached (`window_funnel`).
    Level,
    /// The time of each step reached (`window_funnel_steps`).
    StepTimes,
}

/// The `window_funnel` aggregate function (and `window_funnel_steps`, its step-times variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WindowFunnel {
    pub(crate) output: FunnelOutput,
}

/// The `window_funnel` aggregate function.
pub fn window_funnel() -> AggregateUDF {
    let naming = Naming::new(NAME, Some("windowfunnel"), &DOCUMENTATION);
    Aggregate::udf(
        naming,
        WindowFunnel {
            output: FunnelOutput::Level,
        },
    )
}

/// Where the arguments are: `(mode index, time index)`; conditions follow the time.
fn layout(types: &[DataType]) -> Result<(Option<usize>, usize)> {
    if types.len() < 3 {
        return plan_err!(
            "{NAME} takes (window, [mode], timestamp, cond1, ...): got {} argument(s)",
            types.len()
        );
    }
    let (mode, time) = if is_string_type(&types[1]) {
        (Some(1), 2)
    } else {
        (None, 1)
    };
    check_time_argument(NAME, types, time)?;
    let conditions = &types[time + 1..];
    check_condition_count(NAME, 1, CONDITIONS_MAX, conditions.len())?;
    check_conditions(NAME, conditions, time + 1)?;
    Ok((mode, time))
}

impl AggregateDefinition for WindowFunnel {
    type State = FunnelGroups;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (_, time_index) = layout(arg_types)?;
        Ok(match self.output {
            FunnelOutput::Level => DataType::UInt8,
            FunnelOutput::StepTimes => step_times_type(&arg_types[time_index]),
        })
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        group_events::state_fields(name, &[("keys", DataType::UInt64)])
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<FunnelGroups> {
        FunnelGroups::try_new(args, self.output)
    }

    fn check_constants(&self, args: &[Expr]) -> Result<()> {
        if let Some(mode) = args.get(1).and_then(string_literal) {
            FunnelModes::parse(mode)?;
        }
        Ok(())
    }
}

/// `window_funnel_steps` answers a list of times of the time column's type.
fn step_times_type(time_type: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(time_type.clone(), false)))
}

/// Funnel events of many groups (see [`GroupEvents`]).
#[derive(Debug, Clone)]
pub(crate) struct FunnelGroups {
    params: FunnelParams,
    output: FunnelOutput,
    time_type: DataType,
    time_index: usize,
    /// Whether a group without usable rows answers NULL (some argument is nullable) or 0.
    nullable: bool,
    events: GroupEvents,
    next_row: u64,
}

impl FunnelGroups {
    pub(crate) fn try_new(args: &AccumulatorArgs, output: FunnelOutput) -> Result<Self> {
        let types = argument_types(args);
        let (mode_index, time_index) = layout(&types)?;
        let window_value = literal(NAME, "first (window)", &args.exprs[0])?;
        let window = window_in_units(NAME, window_value, &types[time_index])?;
        let modes = match mode_index {
            Some(i) => match literal(NAME, "mode", &args.exprs[i])? {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => FunnelModes::parse(s)?,
                other => return plan_err!("{NAME}: the mode must be a string, got {other}"),
            },
            None => FunnelModes::default(),
        };
        let steps = (types.len() - time_index - 1) as u8;
        let nullable = args.expr_fields[time_index..]
            .iter()
            .any(|f| f.is_nullable());
        Ok(Self {
            params: FunnelParams {
                window,
                steps,
                modes,
            },
            output,
            time_type: types[time_index].clone(),
            time_index,
            nullable,
            events: GroupEvents::default(),
            next_row: 0,
        })
    }
}

impl GroupState for FunnelGroups {
    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let times = times_as_i64(&rows.values[self.time_index])?;
        let times = as_i64(&times);
        let conditions = condition_columns(&rows.values[self.time_index + 1..])?;
        let strict_once = self.params.modes.strict_once;
        let strict_order = self.params.modes.strict_order;
        let required = required_columns(times, &conditions);
        for (row, group) in rows.usable(&required) {
            self.events.mark(group);
            let time = times.value(row);
            let row_id = if strict_once {
                self.next_row & ROW_MASK
            } else {
                0
            };
            let mut matched = false;
            for (step, condition) in conditions.iter().enumerate() {
                if condition.value(row) {
                    self.events
                        .push(group, time, ((step as u64 + 1) << STEP_SHIFT) | row_id);
                    matched = true;
                }
            }
            if strict_order && !matched {
                self.events.push(group, time, row_id);
            }
            self.next_row += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = self.events.take(emit_to);
        for g in 0..taken.len() {
            let events = taken.group_mut(g);
            if !events.is_sorted() {
                events.sort_unstable();
            }
        }
        let nulls = taken.nulls(self.nullable);
        match self.output {
            FunnelOutput::Level => {
                let levels: Vec<u8> = (0..taken.len())
                    .map(|g| funnel_level(taken.group(g), &self.params))
                    .collect();
                Ok(Arc::new(UInt8Array::new(levels.into(), nulls)))
            }
            FunnelOutput::StepTimes => time_lists(taken.len(), &self.time_type, nulls, |g| {
                Ok(funnel_step_times(taken.group(g), &self.params))
            }),
        }
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(self.events.state_of_keys(emit_to))
    }

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        if !self.params.modes.strict_once {
            return self.events.merge_keys(states, |_, key| key);
        }
        // Row ids of each merged state follow this one's, as ClickHouse merges them.
        let mut state_row = None;
        let mut base = self.next_row;
        let mut next_row = self.next_row;
        self.events.merge_keys(states, |row, key| {
            if state_row != Some(row) {
                state_row = Some(row);
                base = next_row;
            }
            let row_id = key & ROW_MASK;
            next_row = next_row.max(base + row_id + 1);
            (key & !ROW_MASK) | ((base + row_id) & ROW_MASK)
        })?;
        self.next_row = next_row;
        Ok(())
    }

    fn size(&self) -> usize {
        self.events.size()
    }

    fn ensure_groups(&mut self, groups: usize) {
        self.events.ensure_groups(groups);
    }
}

#[cfg(test)]
mod tests;
