//! Time-stamped events of many groups in one flat buffer, for the sequence-like aggregates
//! (funnels, sequences): no allocation per group or per row, and groups are separated with a
//! counting pass (stable: each group's events stay in arrival order) only when results are due.
//! The partial state is two lists per group: the times, and each event's `u64` key.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, UInt64Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::logical_expr::EmitTo;

/// Events `(time, key)` of many groups.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventBuffer {
    groups: Vec<u32>,
    times: Vec<i64>,
    keys: Vec<u64>,
}

/// Events of the groups taken out of a buffer: group `g`'s are `events[offsets[g]..offsets[g + 1]]`.
pub(crate) struct TakenEvents {
    pub(crate) offsets: Vec<usize>,
    pub(crate) events: Vec<(i64, u64)>,
}

impl TakenEvents {
    /// Group `g`'s events.
    pub(crate) fn group(&self, g: usize) -> &[(i64, u64)] {
        &self.events[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Group `g`'s events, mutable (to sort them).
    pub(crate) fn group_mut(&mut self, g: usize) -> &mut [(i64, u64)] {
        &mut self.events[self.offsets[g]..self.offsets[g + 1]]
    }
}

/// The state fields: a list of times and a list of keys per group.
pub(crate) fn state_fields(name: &str) -> Vec<FieldRef> {
    vec![
        Arc::new(Field::new(
            format!("{name}[times]"),
            list_type(DataType::Int64),
            true,
        )),
        Arc::new(Field::new(
            format!("{name}[keys]"),
            list_type(DataType::UInt64),
            true,
        )),
    ]
}

fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, false)))
}

impl EventBuffer {
    pub(crate) fn push(&mut self, group: usize, time: i64, key: u64) {
        self.groups.push(group as u32);
        self.times.push(time);
        self.keys.push(key);
    }

    /// Moves out the events of the first `groups` groups (grouped, each in arrival order) and
    /// renumbers the remaining ones.
    pub(crate) fn take(&mut self, groups: usize) -> TakenEvents {
        let mut offsets = vec![0usize; groups + 1];
        for &g in &self.groups {
            if (g as usize) < groups {
                offsets[g as usize + 1] += 1;
            }
        }
        for i in 0..groups {
            offsets[i + 1] += offsets[i];
        }
        let mut events = vec![(0i64, 0u64); offsets[groups]];
        let mut cursor = offsets.clone();
        let mut kept = Self::default();
        for i in 0..self.groups.len() {
            let g = self.groups[i] as usize;
            if g < groups {
                events[cursor[g]] = (self.times[i], self.keys[i]);
                cursor[g] += 1;
            } else {
                kept.push(g - groups, self.times[i], self.keys[i]);
            }
        }
        *self = kept;
        TakenEvents { offsets, events }
    }

    /// The partial state of the first groups, as the two list columns of [`state_fields`].
    pub(crate) fn state(&mut self, emit_to: EmitTo, total_groups: usize) -> Vec<ArrayRef> {
        let groups = match emit_to {
            EmitTo::All => total_groups,
            EmitTo::First(n) => n,
        };
        let taken = self.take(groups);
        let offsets = OffsetBuffer::new(
            taken
                .offsets
                .iter()
                .map(|&o| o as i32)
                .collect::<Vec<_>>()
                .into(),
        );
        let times = Int64Array::from_iter_values(taken.events.iter().map(|e| e.0));
        let keys = UInt64Array::from_iter_values(taken.events.iter().map(|e| e.1));
        let item = |t| Arc::new(Field::new_list_field(t, false));
        vec![
            Arc::new(ListArray::new(
                item(DataType::Int64),
                offsets.clone(),
                Arc::new(times),
                None,
            )),
            Arc::new(ListArray::new(
                item(DataType::UInt64),
                offsets,
                Arc::new(keys),
                None,
            )),
        ]
    }

    /// Appends the events of state row `row` (from [`Self::state`]) to `group`, passing each key
    /// through `map_key`.
    pub(crate) fn merge_row(
        &mut self,
        state: &[ArrayRef],
        row: usize,
        group: usize,
        mut map_key: impl FnMut(u64) -> u64,
    ) {
        let times = state[0].as_list::<i32>();
        let keys = state[1].as_list::<i32>();
        if times.is_null(row) {
            return;
        }
        let time_values = times.values().as_primitive::<Int64Type>();
        let key_values = keys.values().as_primitive::<UInt64Type>();
        let offsets = times.value_offsets();
        for i in offsets[row] as usize..offsets[row + 1] as usize {
            self.push(group, time_values.value(i), map_key(key_values.value(i)));
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.groups.capacity() * 4 + self.times.capacity() * 8 + self.keys.capacity() * 8
    }
}
