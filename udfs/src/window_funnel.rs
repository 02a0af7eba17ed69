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

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt8Array};
use datafusion::arrow::buffer::NullBuffer;
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
    if events.is_empty() {
        return 0;
    }
    if !params.modes.strict_order && params.steps == 1 {
        return 1;
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

fn deepest<T>(levels: &[Option<T>]) -> u8 {
    levels
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i as u8 + 1)
}

fn deepest_nonempty<T>(levels: &[Vec<T>]) -> u8 {
    levels
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i as u8 + 1)
}

fn level(events: &[(i64, u64)], params: &FunnelParams) -> u8 {
    let modes = params.modes;
    let steps = usize::from(params.steps);
    // Per step: (time of the funnel's first step, time of this step).
    let mut reached: Vec<Option<(i64, i64)>> = vec![None; steps];
    let mut started = false;
    for &(time, key) in events {
        let step = step_of(key);
        if modes.strict_order && step == -1 {
            if started {
                break;
            }
            continue;
        }
        let step = step as usize;
        if step == 0 {
            reached[0] = Some((time, time));
            started = true;
        } else if modes.strict_deduplication && reached[step].is_some() {
            return deepest(&reached);
        } else if modes.strict_order && started && reached[step - 1].is_none() {
            if modes.allow_reentry {
                continue;
            }
            return reached
                .iter()
                .position(Option::is_none)
                .map_or(0, |i| i as u8);
        } else if let Some((first, previous)) = reached[step - 1] {
            let mut in_window = time <= first.saturating_add(params.window);
            if modes.strict_increase {
                in_window = in_window && previous < time;
            }
            if in_window {
                reached[step] = Some((first, time));
                if step + 1 == steps {
                    return params.steps;
                }
            }
        }
    }
    deepest(&reached)
}

/// A partial funnel for `strict_once`: its first and last times and the row of each step.
#[derive(Clone)]
struct Path {
    first: i64,
    last: i64,
    rows: [u64; crate::args::CONDITIONS_MAX],
}

fn level_strict_once(events: &[(i64, u64)], params: &FunnelParams) -> u8 {
    let modes = params.modes;
    let steps = usize::from(params.steps);
    let mut paths: Vec<Vec<Path>> = vec![Vec::new(); steps];
    let mut started = false;
    for &(time, key) in events {
        let step = step_of(key);
        let row = key & ROW_MASK;
        if modes.strict_order && step == -1 {
            if started {
                break;
            }
            continue;
        }
        let step = step as usize;
        if step == 0 {
            let mut rows = [0; crate::args::CONDITIONS_MAX];
            rows[0] = row;
            paths[0].push(Path {
                first: time,
                last: time,
                rows,
            });
            started = true;
        } else if modes.strict_deduplication && !paths[step].is_empty() {
            return deepest_nonempty(&paths);
        } else if modes.strict_order && started && paths[step - 1].is_empty() {
            if modes.allow_reentry {
                continue;
            }
            return paths.iter().position(Vec::is_empty).map_or(0, |i| i as u8);
        } else if !paths[step - 1].is_empty() {
            let mut extended = Vec::new();
            let previous = &mut paths[step - 1];
            let mut i = 0;
            while i < previous.len() {
                let path = &previous[i];
                let mut matched = time <= path.first.saturating_add(params.window);
                if !matched && previous.len() > 1 {
                    // Out of the window: drop it, but keep at least one path.
                    previous.remove(i);
                    continue;
                }
                matched = matched && !path.rows[..step].contains(&row);
                if matched && modes.strict_increase {
                    matched = path.last < time;
                }
                if matched {
                    let mut next = path.clone();
                    next.rows[step] = row;
                    next.last = time;
                    if step + 1 == steps {
                        return params.steps;
                    }
                    extended.push(next);
                }
                i += 1;
            }
            paths[step].extend(extended);
        }
    }
    deepest_nonempty(&paths)
}

/// The `window_funnel` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    signature: Signature,
    aliases: Vec<String>,
}

impl Default for WindowFunnel {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
            // Unquoted SQL identifiers are folded to lowercase, so `windowFunnel` arrives as this.
            aliases: vec!["windowfunnel".to_string()],
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
        NAME
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        layout(arg_types)?;
        Ok(DataType::UInt8)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(funnel_state_fields(args.name))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FunnelAccumulator::new(FunnelGroups::try_new(
            &args,
        )?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FunnelGroups::try_new(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
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
    time_index: usize,
    events: EventBuffer,
    has_rows: Vec<bool>,
    next_row: u64,
}

impl FunnelGroups {
    pub(crate) fn try_new(args: &AccumulatorArgs) -> Result<Self> {
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
            time_index,
            events: EventBuffer::default(),
            has_rows: Vec::new(),
            next_row: 0,
        })
    }

    fn ensure_groups(&mut self, total: usize) {
        if self.has_rows.len() < total {
            self.has_rows.resize(total, false);
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
        let levels: Vec<u8> = (0..has_rows.len())
            .map(|g| {
                let events = taken.group_mut(g);
                if !events.is_sorted() {
                    events.sort_unstable();
                }
                funnel_level(events, &self.params)
            })
            .collect();
        let nulls = NullBuffer::from(has_rows);
        Ok(Arc::new(UInt8Array::new(levels.into(), Some(nulls))))
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
        let rows = values.first().map_or(0, |v| v.len());
        let mut each_row = Self {
            events: EventBuffer::default(),
            has_rows: Vec::new(),
            next_row: 0,
            ..self.clone()
        };
        let groups: Vec<usize> = (0..rows).collect();
        each_row.update_batch(values, &groups, opt_filter, rows)?;
        each_row.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.events.size() + self.has_rows.capacity() + std::mem::size_of::<Self>()
    }
}

/// The single-group path: the grouped state with one group.
#[derive(Debug)]
pub(crate) struct FunnelAccumulator {
    inner: FunnelGroups,
}

impl FunnelAccumulator {
    pub(crate) fn new(mut inner: FunnelGroups) -> Self {
        inner.ensure_groups(1);
        Self { inner }
    }
}

impl Accumulator for FunnelAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; values.first().map_or(0, |v| v.len())];
        self.inner.update_batch(values, &groups, None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let levels = self.inner.clone().evaluate(EmitTo::All)?;
        ScalarValue::try_from_array(&levels, 0)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner
            .clone()
            .state(EmitTo::All)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let groups = vec![0; states.first().map_or(0, |v| v.len())];
        self.inner.merge_batch(states, &groups, 1)
    }
}

#[cfg(test)]
mod tests;
