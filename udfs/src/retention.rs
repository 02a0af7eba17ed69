//! `retention(cond1, …, condN)`: for each condition, whether the group (a person) met it along
//! with the first — ClickHouse's `retention`. The answer is a list of 0/1: element 1 is whether
//! `cond1` held for any row; element `i` is whether `cond1` held for some row and `condi` for
//! some (maybe other) row. Rows where any condition is NULL are skipped (as ClickHouse does
//! with `Nullable` arguments).
//!
//! The state per group is one `u32` bitmask of the conditions met.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, UInt8Array, UInt32Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt32Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    AggregateUDF, Documentation, EmitTo, aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::aggregate::{Aggregate, AggregateDefinition, Naming};
use crate::args::{CONDITIONS_MAX, check_condition_count, check_conditions, condition_columns};
use crate::grouped::{GroupState, Rows};

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
    .with_argument(
        "condN",
        "condition: boolean, or integer (non-zero is true); 2 to 32",
    )
    .build()
});

/// The `retention` aggregate function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Retention;

/// The `retention` aggregate function.
pub fn retention() -> AggregateUDF {
    Aggregate::udf(Naming::new(NAME, None, &DOCUMENTATION), Retention)
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt8, false)))
}

impl AggregateDefinition for Retention {
    type State = RetentionGroups;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        // As ClickHouse: a retention needs a first condition and at least one more.
        check_condition_count(NAME, 2, CONDITIONS_MAX, arg_types.len())?;
        check_conditions(NAME, arg_types, 0)?;
        Ok(result_type())
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        vec![Arc::new(Field::new(
            format_state_name(name, "met"),
            DataType::UInt32,
            false,
        ))]
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<RetentionGroups> {
        Ok(RetentionGroups::new(args.exprs.len(), 0))
    }

    /// A list of zeros, as ClickHouse answers over no rows.
    fn answer_without_rows(&self) -> Option<ScalarValue> {
        let empty = RetentionGroups::new(2, 1).results(&[0]);
        ScalarValue::try_from_array(&empty, 0).ok()
    }
}

/// Bitmasks of met conditions, one per group.
#[derive(Debug, Clone)]
pub(crate) struct RetentionGroups {
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

impl GroupState for RetentionGroups {
    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let conditions = condition_columns(rows.values)?;
        // A row with any NULL condition is skipped, as ClickHouse does with Nullable arguments.
        let required: Vec<&dyn Array> = conditions.iter().map(|c| c as &dyn Array).collect();
        for (row, group) in rows.usable(&required) {
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

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        let masks = states.values[0].as_primitive::<UInt32Type>();
        for (row, &group) in states.group_indices.iter().enumerate() {
            if masks.is_valid(row) {
                self.met[group] |= masks.value(row);
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.met.capacity() * 4
    }

    fn ensure_groups(&mut self, groups: usize) {
        if self.met.len() < groups {
            self.met.resize(groups, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouped::Grouped;
    use crate::grouped::agreement::{assert_paths_agree, lcg};
    use datafusion::arrow::array::BooleanArray;
    use datafusion::logical_expr::GroupsAccumulator;

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
        let mut groups = Grouped::new(RetentionGroups::new(3, 0));
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
    fn every_path_agrees() {
        let mut seed = 3;
        let rows = 300;
        let conditions: Vec<ArrayRef> = (0..3)
            .map(|_| {
                bools(
                    &(0..rows)
                        .map(|_| match lcg(&mut seed) % 5 {
                            0 => None,
                            v => Some(v % 2 == 0),
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let group_of: Vec<usize> = (0..rows).map(|_| (lcg(&mut seed) % 9) as usize).collect();
        assert_paths_agree(&RetentionGroups::new(3, 0), &conditions, &group_of, 9);
    }
}
