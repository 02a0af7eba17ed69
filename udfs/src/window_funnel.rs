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

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt8Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
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
    string_literal, times_as_i64, window_in_units,
};
use crate::event_buffer::{self, EventBuffer};
use crate::single_group::{GroupState, SingleGroup, rows_as_states};

/// SQL name.
pub const NAME: &str = "window_funnel";
const STEP_SHIFT: u32 = 56;
const ROW_MASK: u64 = (1 << STEP_SHIFT) - 1;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_GENERAL,
        "Returns the deepest step of a funnel reached within a sliding time window, as \
         ClickHouse's windowFunnel. Steps must happen in order; every step must be within \
         `window` of the first. Modes (comma-separated): strict_deduplication (stop at a \
         repeated step), strict_order (no other event between steps), strict_increase (steps \
         at strictly increasing times), strict_once (an event counts for one step only), \
         allow_reentry (with strict_order: ignore steps that come too early).",
        "window_funnel(window, [mode], timestamp, cond1, cond2, ...)",
    )
    .with_sql_example(
        "SELECT anonymous_id, window_funnel(INTERVAL '1 day', timestamp, \
         event = 'product_view', event = 'add_to_cart', event = 'purchase') AS level \
         FROM events GROUP BY anonymous_id",
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

fn level<C: Chain>(events: &[(i64, u64)], params: &FunnelParams) -> (u8, Option<C>) {
    let modes = params.modes;
    let steps = usize::from(params.steps);
    let mut reached: Vec<Option<C>> = vec![None; steps];
    let mut started = false;
    for &(time, key) in events {
        let step = step_of(key);
        if step == -1 {
            // A row meeting no condition (kept only in strict_order mode) ends a started funnel.
            if modes.strict_order && started {
                break;
            }
            continue;
        }
        let step = step as usize;
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
    for &(time, key) in events {
        let step = step_of(key);
        let row = key & ROW_MASK;
        if step == -1 {
            // A row meeting no condition (kept only in strict_order mode) ends a started funnel.
            if modes.strict_order && started {
                break;
            }
            continue;
        }
        let step = step as usize;
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
pub enum FunnelOutput {
    /// The deepest step reached (`window_funnel`).
    Level,
    /// The time of each step reached (`window_funnel_steps`).
    StepTimes,
}

/// The `window_funnel` aggregate function (and `window_funnel_steps`, its step-times variant).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    signature: Signature,
    aliases: Vec<String>,
    output: FunnelOutput,
}

impl Default for WindowFunnel {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            // Unquoted SQL identifiers are folded to lowercase, so `windowFunnel` arrives as this.
            aliases: vec!["windowfunnel".to_string()],
            output: FunnelOutput::Level,
        }
    }
}

impl WindowFunnel {
    /// `window_funnel_steps`: the same arguments, answering each step's time.
    pub fn step_times() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            aliases: Vec::new(),
            output: FunnelOutput::StepTimes,
        }
    }
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
    let Some(time_type) = types.get(time) else {
        return plan_err!("{NAME}: missing the timestamp argument");
    };
    if !is_time_type(time_type) {
        return plan_err!(
            "{NAME}: argument {} must be a TIMESTAMP, DATE or integer time, got {time_type}",
            time + 1
        );
    }
    let conditions = &types[time + 1..];
    check_condition_count(NAME, 1, conditions.len())?;
    check_conditions(NAME, conditions, time + 1)?;
    Ok((mode, time))
}

impl AggregateUDFImpl for WindowFunnel {
    fn name(&self) -> &str {
        match self.output {
            FunnelOutput::Level => NAME,
            FunnelOutput::StepTimes => crate::window_funnel_steps::NAME,
        }
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (_, time_index) = layout(arg_types)?;
        Ok(match self.output {
            FunnelOutput::Level => DataType::UInt8,
            FunnelOutput::StepTimes => step_times_type(&arg_types[time_index]),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(funnel_state_fields(args.name))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let groups = FunnelGroups::try_new(&args, self.output)?;
        Ok(Box::new(SingleGroup::new(groups)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FunnelGroups::try_new(&args, self.output)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        match self.output {
            FunnelOutput::Level => Some(&DOCUMENTATION),
            FunnelOutput::StepTimes => Some(&crate::window_funnel_steps::DOCUMENTATION),
        }
    }

    /// Checks the mode while the query is planned, so a bad mode fails the statement before any
    /// result is fetched; the expression itself is left unchanged.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        Some(Box::new(|function, _context| {
            if let Some(mode) = function.params.args.get(1).and_then(string_literal) {
                FunnelModes::parse(mode)?;
            }
            Ok(Expr::AggregateFunction(function))
        }))
    }
}

/// `window_funnel_steps` answers a list of times of the time column's type.
fn step_times_type(time_type: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(time_type.clone(), false)))
}

pub(crate) fn funnel_state_fields(name: &str) -> Vec<FieldRef> {
    let mut fields = event_buffer::state_fields(name);
    fields.push(Arc::new(Field::new(
        format!("{name}[has_rows]"),
        DataType::Boolean,
        true,
    )));
    fields
}

/// Funnel events of many groups (see [`EventBuffer`]), and which groups had usable rows.
#[derive(Debug, Clone)]
pub(crate) struct FunnelGroups {
    params: FunnelParams,
    output: FunnelOutput,
    time_type: DataType,
    time_index: usize,
    events: EventBuffer,
    has_rows: Vec<bool>,
    next_row: u64,
}

impl FunnelGroups {
    pub(crate) fn try_new(args: &AccumulatorArgs, output: FunnelOutput) -> Result<Self> {
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
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
        Ok(Self {
            params: FunnelParams {
                window,
                steps,
                modes,
            },
            output,
            time_type: types[time_index].clone(),
            time_index,
            events: EventBuffer::default(),
            has_rows: Vec::new(),
            next_row: 0,
        })
    }
}

impl GroupState for FunnelGroups {
    fn ensure_groups(&mut self, groups: usize) {
        if self.has_rows.len() < groups {
            self.has_rows.resize(groups, false);
        }
    }

    fn emptied(&self) -> Self {
        Self {
            events: EventBuffer::default(),
            has_rows: Vec::new(),
            next_row: 0,
            ..self.clone()
        }
    }
}

fn boolean_columns(values: &[ArrayRef]) -> Result<Vec<BooleanArray>> {
    values
        .iter()
        .map(|v| Ok(cast(v, &DataType::Boolean)?.as_boolean().clone()))
        .collect()
}

impl GroupsAccumulator for FunnelGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.ensure_groups(total_num_groups);
        let times = times_as_i64(&values[self.time_index])?;
        let times = as_i64(&times);
        let conditions = boolean_columns(&values[self.time_index + 1..])?;
        let strict_once = self.params.modes.strict_once;
        let strict_order = self.params.modes.strict_order;
        for (row, &group) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            if times.is_null(row) || conditions.iter().any(|c| c.is_null(row)) {
                continue;
            }
            self.has_rows[group] = true;
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
        let has_rows = emit_to.take_needed(&mut self.has_rows);
        let mut taken = self.events.take(has_rows.len());
        for g in 0..has_rows.len() {
            let events = taken.group_mut(g);
            if !events.is_sorted() {
                events.sort_unstable();
            }
        }
        let nulls = NullBuffer::from(has_rows.clone());
        match self.output {
            FunnelOutput::Level => {
                let levels: Vec<u8> = (0..has_rows.len())
                    .map(|g| funnel_level(taken.group(g), &self.params))
                    .collect();
                Ok(Arc::new(UInt8Array::new(levels.into(), Some(nulls))))
            }
            FunnelOutput::StepTimes => {
                let mut lengths = Vec::with_capacity(has_rows.len());
                let mut times = Vec::new();
                for g in 0..has_rows.len() {
                    let steps = funnel_step_times(taken.group(g), &self.params);
                    lengths.push(steps.len());
                    times.extend(steps);
                }
                let values: ArrayRef = Arc::new(Int64Array::from(times));
                let values = match &self.time_type {
                    DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, &DataType::Date32)?,
                    other => cast(&values, other)?,
                };
                Ok(Arc::new(ListArray::new(
                    Arc::new(Field::new_list_field(self.time_type.clone(), false)),
                    OffsetBuffer::from_lengths(lengths),
                    values,
                    Some(nulls),
                )))
            }
        }
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
        let strict_once = self.params.modes.strict_once;
        for (row, &group) in group_indices.iter().enumerate() {
            if has_rows.is_valid(row) && has_rows.value(row) {
                self.has_rows[group] = true;
            }
            let base = self.next_row;
            let mut max_row = None;
            self.events.merge_row(values, row, group, |key| {
                if !strict_once {
                    return key;
                }
                // Row ids of the other state follow this one's, as ClickHouse merges them.
                let row_id = key & ROW_MASK;
                max_row = max_row.max(Some(row_id));
                (key & !ROW_MASK) | ((base + row_id) & ROW_MASK)
            });
            if let Some(max_row) = max_row {
                self.next_row = base + max_row + 1;
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
        self.events.size() + self.has_rows.capacity() + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests;
