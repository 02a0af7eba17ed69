//! `retention(cond1, …, condN)`: for each condition, whether the group (a person) met it along
//! with the first — ClickHouse's `retention`. The answer is a list of 0/1: element 1 is whether
//! `cond1` held for any row; element `i` is whether `cond1` held for some row and `condi` for
//! some (maybe other) row. Rows where any condition is NULL are skipped (as ClickHouse does
//! with `Nullable` arguments).
//!
//! The state per group is one `u32` bitmask of the conditions met.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, UInt8Array, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt32Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
    aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::args::{check_condition_count, check_conditions};
use crate::single_group::{GroupState, SingleGroup, rows_as_states};

/// SQL name.
pub const NAME: &str = "retention";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_GENERAL,
        "Returns a list of 0/1, one per condition, as ClickHouse's retention: the first element \
         is 1 if cond1 held for any row of the group; element i is 1 if cond1 held for some row \
         and condi for some row.",
        "retention(cond1, cond2, ...)",
    )
    .with_sql_example(
        "SELECT retention(event_date = DATE '2026-01-01', event_date = DATE '2026-01-02', \
         event_date = DATE '2026-01-08') FROM events GROUP BY user_id",
    )
    .with_argument("condN", "boolean condition (2 to 32)")
    .build()
});

impl GroupState for RetentionGroups {
    fn ensure_groups(&mut self, groups: usize) {
        if self.met.len() < groups {
            self.met.resize(groups, 0);
        }
    }

    fn emptied(&self) -> Self {
        Self::new(self.conditions, 0)
    }
}

/// The `retention` aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Retention {
    signature: Signature,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt8, false)))
}

impl AggregateUDFImpl for Retention {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        // As ClickHouse: a retention needs a first condition and at least one more.
        check_condition_count(NAME, 2, arg_types.len())?;
        check_conditions(NAME, arg_types, 0)?;
        Ok(result_type())
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[met]", args.name),
            DataType::UInt32,
            false,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup::new(RetentionGroups::new(
            args.exprs.len(),
            0,
        ))))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(RetentionGroups::new(args.exprs.len(), 0)))
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        let empty = RetentionGroups::new(2, 1).results(&[0]);
        ScalarValue::try_from_array(&empty, 0)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

/// Bitmasks of met conditions, one per group.
#[derive(Debug, Clone)]
struct RetentionGroups {
    conditions: usize,
    met: Vec<u32>,
}

impl RetentionGroups {
    fn new(conditions: usize, groups: usize) -> Self {
        Self {
            conditions,
            met: vec![0; groups],
        }
    }

    fn results(&self, masks: &[u32]) -> ArrayRef {
        let n = self.conditions;
        let mut values = Vec::with_capacity(masks.len() * n);
        for &mask in masks {
            let first = mask & 1;
            values.push(first as u8);
            for i in 1..n {
                values.push((first & (mask >> i)) as u8);
            }
        }
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(n, masks.len()));
        Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(DataType::UInt8, false)),
            offsets,
            Arc::new(UInt8Array::from(values)),
            None,
        ))
    }
}

impl GroupsAccumulator for RetentionGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.met.resize(total_num_groups.max(self.met.len()), 0);
        let conditions: Vec<BooleanArray> = values
            .iter()
            .map(|v| Ok(cast(v, &DataType::Boolean)?.as_boolean().clone()))
            .collect::<Result<_>>()?;
        for (row, &group) in group_indices.iter().enumerate() {
            let counted = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            // A row with any NULL condition is skipped, as ClickHouse does with Nullable
            // arguments.
            if !counted || conditions.iter().any(|c| c.is_null(row)) {
                continue;
            }
            for (bit, condition) in conditions.iter().enumerate() {
                if condition.value(row) {
                    self.met[group] |= 1 << bit;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let masks = emit_to.take_needed(&mut self.met);
        Ok(self.results(&masks))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let masks = emit_to.take_needed(&mut self.met);
        Ok(vec![Arc::new(UInt32Array::from(masks))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.met.resize(total_num_groups.max(self.met.len()), 0);
        let masks = values[0].as_primitive::<UInt32Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if masks.is_valid(row) {
                self.met[group] |= masks.value(row);
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
        self.met.capacity() * 4 + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(values: &[Option<bool>]) -> ArrayRef {
        Arc::new(BooleanArray::from(values.to_vec()))
    }

    fn lists(array: &ArrayRef) -> Vec<Vec<u8>> {
        let list = array.as_list::<i32>();
        (0..list.len())
            .map(|i| {
                list.value(i)
                    .as_primitive::<datafusion::arrow::datatypes::UInt8Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn later_conditions_count_only_with_the_first() {
        let mut groups = RetentionGroups::new(3, 0);
        let values = [
            bools(&[Some(true), Some(false), Some(false), Some(false)]),
            bools(&[Some(false), Some(true), Some(false), Some(true)]),
            bools(&[Some(false), None, Some(true), Some(false)]),
        ];
        groups
            .update_batch(&values, &[0, 0, 0, 1], None, 2)
            .unwrap();
        // Row 1 has a NULL condition and is skipped: no counted row of group 0 meets cond2.
        assert_eq!(
            lists(&groups.evaluate(EmitTo::All).unwrap()),
            [vec![1, 0, 1], vec![0, 0, 0]]
        );
    }

    #[test]
    fn grouped_and_single_paths_agree_through_states() {
        let values = [
            bools(&[Some(true), None, Some(false)]),
            bools(&[Some(false), Some(true), None]),
        ];
        let mut single = SingleGroup::new(RetentionGroups::new(2, 0));
        single.update_batch(&values).unwrap();
        let mut grouped = RetentionGroups::new(2, 0);
        grouped.update_batch(&values, &[0, 0, 0], None, 1).unwrap();
        let state = grouped.state(EmitTo::All).unwrap();
        let mut merged = RetentionGroups::new(2, 0);
        merged.merge_batch(&state, &[0], 1).unwrap();
        let expected =
            ScalarValue::try_from_array(&merged.evaluate(EmitTo::All).unwrap(), 0).unwrap();
        assert_eq!(single.evaluate().unwrap(), expected);
    }
}
