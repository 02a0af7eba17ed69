//! `attribution(model, [half_life], timestamp, channel, conversion)`: multi-touch attribution of
//! a person's conversions to the channels that touched them, as a list of `{channel, credit}`
//! sorted by channel.
//!
//! Rows are taken in time order (at equal times, touches before conversions). A touch is a row
//! with a non-NULL `channel` that is not a conversion; each conversion shares one unit of credit
//! among the touches since the previous conversion, by `model`:
//! `first_touch`, `last_touch`, `linear` (equal shares), `position_based` (40% first, 40% last,
//! 20% shared by the ones between; one touch gets all, two get half each) or `time_decay`
//! (weight 2^(-age / half_life), age = conversion time − touch time). A conversion without
//! touches credits no channel. Rows with a NULL time or conversion flag are skipped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    AggregateUDF, Documentation, EmitTo, aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::aggregate::{Aggregate, AggregateDefinition, Naming};
use crate::args::{
    argument_types, as_i64, check_time_argument, is_string_type, literal, times_as_i64,
    window_in_units,
};
use crate::group_events::{self, GroupEvents, flat_values};
use crate::grouped::{GroupState, Rows};

/// SQL name.
pub const NAME: &str = "attribution";
const CONVERSION: u64 = 1 << 63;

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_GENERAL,
        "Multi-touch attribution: each conversion shares one unit of credit among the channels \
         that touched the person since the previous conversion. Models: first_touch, last_touch, \
         linear, position_based (40/20/40), time_decay (needs a half-life). Returns a list of \
         {channel, credit} sorted by channel.",
        "attribution(model, [half_life], timestamp, channel, conversion)",
    )
    .with_sql_example(
        "SELECT a.channel, sum(a.credit) FROM (SELECT unnest(attribution('position_based', \
         timestamp, CASE WHEN event <> 'purchase' THEN source END, event = 'purchase')) AS a \
         FROM events GROUP BY user_id) GROUP BY a.channel",
    )
    .with_argument(
        "model",
        "first_touch, last_touch, linear, position_based or time_decay",
    )
    .with_argument("half_life", "time_decay only: INTERVAL, or integer seconds")
    .with_argument("timestamp", "TIMESTAMP, DATE or integer time")
    .with_argument("channel", "the touch's channel (NULL: not a touch)")
    .with_argument("conversion", "boolean: the row is a conversion")
    .build()
});

/// Attribution models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// All credit to the first touch.
    FirstTouch,
    /// All credit to the last touch.
    LastTouch,
    /// Equal shares.
    Linear,
    /// 40% first, 40% last, 20% shared by the touches between.
    PositionBased,
    /// Weights halving every `half_life` before the conversion.
    TimeDecay {
        /// In the time column's unit.
        half_life: i64,
    },
}

/// Credit of each touch (in order) for one conversion at `conversion_time`.
pub fn shares(model: Model, touch_times: &[i64], conversion_time: i64) -> Vec<f64> {
    let n = touch_times.len();
    let mut shares = vec![0.0; n];
    if n == 0 {
        return shares;
    }
    match model {
        Model::FirstTouch => shares[0] = 1.0,
        Model::LastTouch => shares[n - 1] = 1.0,
        Model::Linear => shares.fill(1.0 / n as f64),
        Model::PositionBased => match n {
            1 => shares[0] = 1.0,
            2 => shares.fill(0.5),
            _ => {
                shares.fill(0.2 / (n - 2) as f64);
                shares[0] = 0.4;
                shares[n - 1] = 0.4;
            }
        },
        Model::TimeDecay { half_life } => {
            let weights: Vec<f64> = touch_times
                .iter()
                .map(|&t| {
                    let age = (conversion_time - t) as f64;
                    if half_life == 0 {
                        if age == 0.0 { 1.0 } else { 0.0 }
                    } else {
                        (-age / half_life as f64).exp2()
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                for (share, weight) in shares.iter_mut().zip(weights) {
                    *share = weight / total;
                }
            } else {
                shares[n - 1] = 1.0;
            }
        }
    }
    shares
}

/// The id of `channel`, given one if it is new.
fn intern(ids: &mut HashMap<String, u64>, channels: &mut Vec<String>, channel: &str) -> u64 {
    if let Some(&id) = ids.get(channel) {
        return id;
    }
    let id = channels.len() as u64;
    channels.push(channel.to_string());
    ids.insert(channel.to_string(), id);
    id
}

/// The `attribution` aggregate function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Attribution;

/// The `attribution` aggregate function.
pub fn attribution() -> AggregateUDF {
    Aggregate::udf(Naming::new(NAME, None, &DOCUMENTATION), Attribution)
}

fn credit_fields() -> Fields {
    Fields::from(vec![
        Field::new("channel", DataType::Utf8, false),
        Field::new("credit", DataType::Float64, false),
    ])
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(credit_fields()),
        false,
    )))
}

/// Index of the time argument: after the model, and the half-life if given.
fn layout(types: &[DataType]) -> Result<usize> {
    let time = match types.len() {
        4 => 1,
        5 => 2,
        n => {
            return plan_err!(
                "{NAME} takes (model, [half_life], timestamp, channel, conversion): got {n} argument(s)"
            );
        }
    };
    if !is_string_type(&types[0]) {
        return plan_err!(
            "{NAME}: the first argument must be the model name, got {}",
            types[0]
        );
    }
    check_time_argument(NAME, types, time)?;
    if !matches!(types[time + 2], DataType::Boolean | DataType::Null) {
        return plan_err!(
            "{NAME}: the last argument must be a boolean (is this row a conversion?)"
        );
    }
    Ok(time)
}

impl AggregateDefinition for Attribution {
    type State = AttributionGroups;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        layout(arg_types)?;
        Ok(result_type())
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        group_events::state_fields(name, &[("channels", DataType::Utf8)])
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<AttributionGroups> {
        AttributionGroups::try_new(args)
    }
}

/// Touches and conversions of many groups; channels interned as ids (key = flag | id).
#[derive(Debug, Clone)]
pub(crate) struct AttributionGroups {
    model: Model,
    time_index: usize,
    events: GroupEvents,
    channel_ids: HashMap<String, u64>,
    channels: Vec<String>,
}

impl AttributionGroups {
    fn try_new(args: &AccumulatorArgs) -> Result<Self> {
        let types = argument_types(args);
        let time_index = layout(&types)?;
        let name = match literal(NAME, "first (model)", &args.exprs[0])? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            other => return plan_err!("{NAME}: the model must be a string, got {other}"),
        };
        let model = match (name.as_str(), time_index) {
            ("first_touch", 1) => Model::FirstTouch,
            ("last_touch", 1) => Model::LastTouch,
            ("linear", 1) => Model::Linear,
            ("position_based", 1) => Model::PositionBased,
            ("time_decay", 2) => {
                let half_life = literal(NAME, "second (half-life)", &args.exprs[1])?;
                Model::TimeDecay {
                    half_life: window_in_units(NAME, half_life, &types[2])?,
                }
            }
            ("time_decay", _) => {
                return plan_err!(
                    "{NAME}: time_decay needs a half-life: attribution('time_decay', INTERVAL '7 days', ...)"
                );
            }
            ("first_touch" | "last_touch" | "linear" | "position_based", _) => {
                return plan_err!("{NAME}: only time_decay takes a half-life");
            }
            (other, _) => {
                return plan_err!(
                    "{NAME}: unknown model '{other}'; models are first_touch, last_touch, linear, position_based, time_decay"
                );
            }
        };
        Ok(Self {
            model,
            time_index,
            events: GroupEvents::default(),
            channel_ids: HashMap::new(),
            channels: Vec::new(),
        })
    }

    fn channel_id(&mut self, channel: &str) -> u64 {
        intern(&mut self.channel_ids, &mut self.channels, channel)
    }

    /// One group's credits, by channel name.
    fn credits(&self, events: &mut [(i64, u64)]) -> Vec<(usize, f64)> {
        // Time order; at equal times touches (flag 0) before conversions.
        events.sort_by_key(|&(time, key)| (time, key & CONVERSION));
        let mut credit: HashMap<u64, f64> = HashMap::new();
        let mut touches: Vec<(i64, u64)> = Vec::new();
        for &(time, key) in events.iter() {
            if key & CONVERSION == 0 {
                touches.push((time, key));
                continue;
            }
            let times: Vec<i64> = touches.iter().map(|t| t.0).collect();
            for ((_, channel), share) in touches.iter().zip(shares(self.model, &times, time)) {
                // Channels that earned nothing (first/last touch) are not listed.
                if share > 0.0 {
                    *credit.entry(*channel).or_default() += share;
                }
            }
            touches.clear();
        }
        let mut credits: Vec<(usize, f64)> =
            credit.into_iter().map(|(id, c)| (id as usize, c)).collect();
        credits.sort_by(|a, b| self.channels[a.0].cmp(&self.channels[b.0]));
        credits
    }
}

impl GroupState for AttributionGroups {
    fn ensure_groups(&mut self, groups: usize) {
        self.events.ensure_groups(groups);
    }

    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let times = times_as_i64(&rows.values[self.time_index])?;
        let times = as_i64(&times);
        let channels = cast(&rows.values[self.time_index + 1], &DataType::Utf8)?;
        let channels = channels.as_string::<i32>();
        let conversions = cast(&rows.values[self.time_index + 2], &DataType::Boolean)?;
        let conversions = conversions.as_boolean();
        let required: [&dyn Array; 2] = [times, conversions];
        for (row, group) in rows.usable(&required) {
            self.events.mark(group);
            let time = times.value(row);
            if conversions.value(row) {
                self.events.push(group, time, CONVERSION);
            } else if channels.is_valid(row) {
                let id = self.channel_id(channels.value(row));
                self.events.push(group, time, id);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = self.events.take(emit_to);
        let (mut lengths, mut names, mut credits) = (Vec::new(), Vec::new(), Vec::new());
        for g in 0..taken.len() {
            let group_credits = self.credits(taken.group_mut(g));
            lengths.push(group_credits.len());
            for (id, credit) in group_credits {
                names.push(self.channels[id].clone());
                credits.push(credit);
            }
        }
        let items = StructArray::new(
            credit_fields(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Float64Array::from(credits)),
            ],
            None,
        );
        Ok(Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(
                DataType::Struct(credit_fields()),
                false,
            )),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(items),
            taken.nulls(true),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let channels = &self.channels;
        Ok(self.events.state(emit_to, |events| {
            // A conversion travels as a NULL channel.
            let names: StringArray = events
                .iter()
                .map(|e| (e.1 & CONVERSION == 0).then(|| channels[e.1 as usize].as_str()))
                .collect();
            vec![Arc::new(names)]
        }))
    }

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        let names = flat_values(&states.values[1]).as_string::<i32>();
        let (channel_ids, channels) = (&mut self.channel_ids, &mut self.channels);
        self.events.merge(states, |_, i| {
            Ok(if names.is_null(i) {
                CONVERSION
            } else {
                intern(channel_ids, channels, names.value(i))
            })
        })
    }

    fn size(&self) -> usize {
        let channels: usize = self.channels.iter().map(|c| c.len() * 2 + 48).sum();
        self.events.size() + channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouped::Grouped;
    use crate::grouped::agreement::assert_paths_agree;
    use datafusion::arrow::array::BooleanArray;
    use datafusion::logical_expr::GroupsAccumulator;

    fn groups(model: Model) -> AttributionGroups {
        AttributionGroups {
            model,
            time_index: 1,
            events: GroupEvents::default(),
            channel_ids: HashMap::new(),
            channels: Vec::new(),
        }
    }

    fn total_credit(result: &ArrayRef) -> Vec<f64> {
        let lists = result.as_list::<i32>();
        (0..lists.len())
            .map(|i| {
                let items = lists.value(i);
                let credits = items
                    .as_struct()
                    .column(1)
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .clone();
                credits.values().iter().sum()
            })
            .collect()
    }

    proptest::proptest! {
        /// Every conversion with touches before it hands out exactly one unit, and every path
        /// (grouped, single, through partial states) gives the same answer.
        #[test]
        fn credit_is_conserved(rows in proptest::collection::vec((0i64..30, 0u8..5, 0usize..3), 1..40)) {
            let model = Model::PositionBased;
            let channel_names = ["web", "wechat", "email", "sms"];
            let times: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(rows.iter().map(|r| r.0)));
            let channels: ArrayRef = Arc::new(StringArray::from_iter(rows.iter().map(|r| channel_names.get(usize::from(r.1)).copied())));
            let converted: ArrayRef = Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.1 == 4))));
            let model_column: ArrayRef = Arc::new(StringArray::from(vec!["position_based"; rows.len()]));
            let values = vec![model_column, times, channels, converted];
            let group_of: Vec<usize> = rows.iter().map(|r| r.2).collect();

            // Expected: per group, conversions that had a touch since the previous conversion.
            let mut expected = [0.0f64; 3];
            for (g, expected) in expected.iter_mut().enumerate() {
                let mut mine: Vec<(i64, bool)> = rows.iter().filter(|r| r.2 == g).map(|r| (r.0, r.1 == 4)).collect();
                mine.sort_by_key(|&(t, conversion)| (t, conversion));
                let mut touched = false;
                for (_, conversion) in mine {
                    if conversion {
                        if touched { *expected += 1.0; }
                        touched = false;
                    } else {
                        touched = true;
                    }
                }
            }

            let mut whole = Grouped::new(groups(model));
            whole.update_batch(&values, &group_of, None, 3).unwrap();
            let got = total_credit(&whole.evaluate(EmitTo::All).unwrap());
            for g in 0..3 {
                proptest::prop_assert!((got[g] - expected[g]).abs() < 1e-9, "group {g}: {} vs {}", got[g], expected[g]);
            }

            assert_paths_agree(&groups(model), &values, &group_of, 3);
        }
    }

    #[test]
    fn each_model_shares_one_unit() {
        let times = [0, 10, 20, 30];
        for model in [
            Model::FirstTouch,
            Model::LastTouch,
            Model::Linear,
            Model::PositionBased,
            Model::TimeDecay { half_life: 10 },
        ] {
            let total: f64 = shares(model, &times, 40).iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "{model:?}: {total}");
        }
        assert_eq!(
            shares(Model::PositionBased, &times, 40),
            [0.4, 0.1, 0.1, 0.4]
        );
        assert_eq!(shares(Model::PositionBased, &[1, 2], 3), [0.5, 0.5]);
        // Ages 10 and 20 with a half-life of 10: weights 1/2 and 1/4.
        let decay = shares(Model::TimeDecay { half_life: 10 }, &[20, 30], 40);
        assert!((decay[1] - 2.0 / 3.0).abs() < 1e-12, "{decay:?}");
        assert!(shares(Model::Linear, &[], 1).is_empty());
    }
}
