//! Time-stamped events of many groups, for the sequence-like aggregates (funnels, sequences,
//! paths, attribution): one flat buffer of `(group, time, key)` for all groups — no allocation
//! per group or per row — split into groups by a stable counting pass (each group's events stay
//! in arrival order) only when results or partial states are due; and which groups had a usable
//! row, so that a group without one answers NULL where the arguments are nullable.
//!
//! The partial state is a list of times per group, one list per payload column (what an
//! aggregate needs to rebuild each event's key: the key itself, a channel name…), and the
//! `has_rows` flag. Field names follow DataFusion's `format_state_name`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type, UInt64Type};
use datafusion::common::Result;
use datafusion::logical_expr::EmitTo;
use datafusion::logical_expr::utils::format_state_name;

use crate::args::times_as_type;
use crate::grouped::Rows;

/// Events of many groups, and which groups had usable rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupEvents {
    groups: Vec<u32>,
    times: Vec<i64>,
    keys: Vec<u64>,
    has_rows: Vec<bool>,
}

/// Events of the groups taken out of a buffer: group `g`'s are `events[offsets[g]..offsets[g + 1]]`.
pub(crate) struct TakenEvents {
    pub(crate) has_rows: Vec<bool>,
    pub(crate) offsets: Vec<usize>,
    pub(crate) events: Vec<(i64, u64)>,
}

impl TakenEvents {
    /// How many groups were taken.
    pub(crate) fn len(&self) -> usize {
        self.has_rows.len()
    }

    /// Group `g`'s events.
    pub(crate) fn group(&self, g: usize) -> &[(i64, u64)] {
        &self.events[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Group `g`'s events, mutable (to sort them).
    pub(crate) fn group_mut(&mut self, g: usize) -> &mut [(i64, u64)] {
        &mut self.events[self.offsets[g]..self.offsets[g + 1]]
    }

    /// The validity of the answers: groups without rows are NULL when `nullable`, else none is.
    pub(crate) fn nulls(&self, nullable: bool) -> Option<NullBuffer> {
        nullable.then(|| NullBuffer::from(self.has_rows.clone()))
    }
}

/// The state fields: times, then one list per payload column `(name, item type)`, then `has_rows`.
pub(crate) fn state_fields(name: &str, payload: &[(&str, DataType)]) -> Vec<FieldRef> {
    let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
    let mut fields = vec![Arc::new(Field::new(
        format_state_name(name, "times"),
        list(DataType::Int64),
        true,
    ))];
    for (column, item) in payload {
        fields.push(Arc::new(Field::new(
            format_state_name(name, column),
            list(item.clone()),
            true,
        )));
    }
    fields.push(Arc::new(Field::new(
        format_state_name(name, "has_rows"),
        DataType::Boolean,
        true,
    )));
    fields
}

impl GroupEvents {
    /// Makes room for at least `groups` groups.
    pub(crate) fn ensure_groups(&mut self, groups: usize) {
        if self.has_rows.len() < groups {
            self.has_rows.resize(groups, false);
        }
    }

    /// Notes that `group` had a usable row (even one that adds no event).
    pub(crate) fn mark(&mut self, group: usize) {
        self.has_rows[group] = true;
    }

    /// Adds an event to `group`.
    pub(crate) fn push(&mut self, group: usize, time: i64, key: u64) {
        self.groups.push(group as u32);
        self.times.push(time);
        self.keys.push(key);
    }

    /// Moves out the events of the first groups (grouped, each in arrival order) and renumbers
    /// the remaining ones.
    pub(crate) fn take(&mut self, emit_to: EmitTo) -> TakenEvents {
        let has_rows = emit_to.take_needed(&mut self.has_rows);
        let groups = has_rows.len();
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
        let mut kept = 0;
        for i in 0..self.groups.len() {
            let g = self.groups[i] as usize;
            if g < groups {
                events[cursor[g]] = (self.times[i], self.keys[i]);
                cursor[g] += 1;
            } else {
                self.groups[kept] = (g - groups) as u32;
                self.times[kept] = self.times[i];
                self.keys[kept] = self.keys[i];
                kept += 1;
            }
        }
        self.groups.truncate(kept);
        self.times.truncate(kept);
        self.keys.truncate(kept);
        TakenEvents {
            has_rows,
            offsets,
            events,
        }
    }

    /// Rewrites the key of every remaining event (in arrival order).
    pub(crate) fn map_keys(&mut self, mut map_key: impl FnMut(u64) -> u64) {
        for key in &mut self.keys {
            *key = map_key(*key);
        }
    }

    /// The partial state of the first groups, as the columns of [`state_fields`]: `payload`
    /// turns the taken events into the flat values of each payload column.
    pub(crate) fn state(
        &mut self,
        emit_to: EmitTo,
        payload: impl FnOnce(&[(i64, u64)]) -> Vec<ArrayRef>,
    ) -> Vec<ArrayRef> {
        let taken = self.take(emit_to);
        let offsets = OffsetBuffer::new(
            taken
                .offsets
                .iter()
                .map(|&o| o as i32)
                .collect::<Vec<_>>()
                .into(),
        );
        let times: ArrayRef = Arc::new(Int64Array::from_iter_values(
            taken.events.iter().map(|e| e.0),
        ));
        let mut columns: Vec<ArrayRef> = std::iter::once(times)
            .chain(payload(&taken.events))
            .map(|values| {
                let item = Arc::new(Field::new_list_field(values.data_type().clone(), true));
                Arc::new(ListArray::new(item, offsets.clone(), values, None)) as ArrayRef
            })
            .collect();
        columns.push(Arc::new(BooleanArray::from(taken.has_rows)));
        columns
    }

    /// Adds partial states (from [`Self::state`]) to groups: `key_of(state_row, i)` makes the
    /// key of the `i`-th flat event (whose payload is at index `i` of each payload column).
    pub(crate) fn merge(
        &mut self,
        states: Rows<'_>,
        mut key_of: impl FnMut(usize, usize) -> Result<u64>,
    ) -> Result<()> {
        let state = states.values;
        let times = state[0].as_list::<i32>();
        let has_rows = state[state.len() - 1].as_boolean();
        let time_values = times.values().as_primitive::<Int64Type>();
        let offsets = times.value_offsets();
        for (row, &group) in states.group_indices.iter().enumerate() {
            if has_rows.is_valid(row) && has_rows.value(row) {
                self.has_rows[group] = true;
            }
            if times.is_null(row) {
                continue;
            }
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                let key = key_of(row, i)?;
                self.push(group, time_values.value(i), key);
            }
        }
        Ok(())
    }

    /// [`Self::state`] for aggregates whose only payload is the event key.
    pub(crate) fn state_of_keys(&mut self, emit_to: EmitTo) -> Vec<ArrayRef> {
        self.state(emit_to, |events| {
            vec![Arc::new(UInt64Array::from_iter_values(
                events.iter().map(|e| e.1),
            ))]
        })
    }

    /// [`Self::merge`] of a [`Self::state_of_keys`] state; `map_key(state_row, key)` may
    /// rewrite each key.
    pub(crate) fn merge_keys(
        &mut self,
        states: Rows<'_>,
        mut map_key: impl FnMut(usize, u64) -> u64,
    ) -> Result<()> {
        let keys = flat_values(&states.values[1]).as_primitive::<UInt64Type>();
        self.merge(states, |row, i| Ok(map_key(row, keys.value(i))))
    }

    /// Memory held, in bytes.
    pub(crate) fn size(&self) -> usize {
        self.groups.capacity() * 4
            + self.times.capacity() * 8
            + self.keys.capacity() * 8
            + self.has_rows.capacity()
    }
}

/// One list of times per group (`times_of(g)`), as a list array of the time column's type.
pub(crate) fn time_lists(
    groups: usize,
    time_type: &DataType,
    nulls: Option<NullBuffer>,
    mut times_of: impl FnMut(usize) -> Result<Vec<i64>>,
) -> Result<ArrayRef> {
    let mut lengths = Vec::with_capacity(groups);
    let mut times = Vec::new();
    for g in 0..groups {
        let group_times = times_of(g)?;
        lengths.push(group_times.len());
        times.extend(group_times);
    }
    Ok(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(time_type.clone(), false)),
        OffsetBuffer::from_lengths(lengths),
        times_as_type(times, time_type)?,
        nulls,
    )))
}

/// The flat values of a list column of a partial state.
pub(crate) fn flat_values(state: &ArrayRef) -> &ArrayRef {
    state.as_list::<i32>().values()
}
