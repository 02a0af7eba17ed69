//! What every Tributary aggregate shares around its grouped state. An aggregate implements
//! [`GroupState`] once; [`Grouped`] makes it DataFusion's `GroupsAccumulator` (the fast path,
//! with `convert_to_state` treating each row as a group of its own) and [`SingleGroup`] its
//! `Accumulator` (the path without GROUP BY, and for window frames) as the same state with one
//! group. So the two paths cannot disagree by construction, and [`agreement`] checks that they
//! do not for every aggregate anyway, through partial states and early emission.

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

/// A batch for a grouped state: argument columns (or partial-state columns), each row's group,
/// and the rows a FILTER clause keeps. Room for every group is made before a state sees it.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub(crate) values: &'a [ArrayRef],
    pub(crate) group_indices: &'a [usize],
    pub(crate) opt_filter: Option<&'a BooleanArray>,
}

impl<'a> Rows<'a> {
    /// A batch: its columns, each row's group, and which rows count (all without a filter).
    pub(crate) fn new(
        values: &'a [ArrayRef],
        group_indices: &'a [usize],
        opt_filter: Option<&'a BooleanArray>,
    ) -> Self {
        Self {
            values,
            group_indices,
            opt_filter,
        }
    }
}

/// A grouped aggregate state: `GroupsAccumulator`'s methods, plus resizing.
pub(crate) trait GroupState: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Adds the rows of a batch to their groups (`GroupsAccumulator::update_batch`); room for
    /// every group is made first (by [`Grouped`] and [`SingleGroup`]).
    fn update(&mut self, rows: Rows<'_>) -> Result<()>;

    /// The results of the first groups, which are then dropped (`GroupsAccumulator::evaluate`).
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef>;

    /// The partial state of the first groups, which are then dropped.
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>>;

    /// Adds partial states (from [`Self::state`]; no filter) to groups; room is made first, as
    /// for [`Self::update`].
    fn merge(&mut self, states: Rows<'_>) -> Result<()>;

    /// Memory held on the heap, in bytes (the wrappers add the state's own size).
    fn size(&self) -> usize;

    /// Makes room for at least `groups` groups (so an untouched group still has an answer).
    fn ensure_groups(&mut self, groups: usize);
}

/// The grouped path: DataFusion's `GroupsAccumulator` over a [`GroupState`].
#[derive(Debug)]
pub(crate) struct Grouped<G> {
    pub(crate) state: G,
    /// The state as it was made (same parameters, no data): `convert_to_state` starts from a
    /// copy of it for every batch, without copying what `state` holds.
    empty: G,
}

impl<G: GroupState> Grouped<G> {
    /// The grouped path of a new, empty state.
    pub(crate) fn new(state: G) -> Self {
        Self {
            empty: state.clone(),
            state,
        }
    }

    /// Makes room for `groups`, then hands the batch to `apply` (update or merge).
    fn apply(
        &mut self,
        groups: usize,
        rows: Rows<'_>,
        apply: fn(&mut G, Rows<'_>) -> Result<()>,
    ) -> Result<()> {
        self.state.ensure_groups(groups);
        apply(&mut self.state, rows)
    }
}

/// The boxed grouped path of a new, empty state.
pub(crate) fn groups_accumulator<G: GroupState>(state: G) -> Box<dyn GroupsAccumulator> {
    Box::new(Grouped::new(state))
}

/// The boxed single-group path of a state.
pub(crate) fn accumulator<G: GroupState>(state: G) -> Box<dyn Accumulator> {
    Box::new(SingleGroup::new(state))
}

impl<G: GroupState> GroupsAccumulator for Grouped<G> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let rows = Rows::new(values, group_indices, opt_filter);
        self.apply(total_num_groups, rows, G::update)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.state.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.state.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let states = Rows::new(values, group_indices, None);
        self.apply(total_num_groups, states, G::merge)
    }

    /// Every row becomes the state of its own group.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut each_row = self.empty.clone();
        each_row.ensure_groups(rows);
        let groups: Vec<usize> = (0..rows).collect();
        each_row.update(Rows::new(values, &groups, opt_filter))?;
        each_row.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.state.size() + std::mem::size_of::<G>()
    }
}

/// The single-group path of an aggregate: its grouped state with one group.
#[derive(Debug)]
pub(crate) struct SingleGroup<G> {
    inner: G,
}

impl<G: GroupState> SingleGroup<G> {
    pub(crate) fn new(mut inner: G) -> Self {
        inner.ensure_groups(1);
        Self { inner }
    }
}

impl<G: GroupState> Accumulator for SingleGroup<G> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner
            .update(Rows::one_group(values, &one_group(values)))
    }

    /// Computes from a copy: window frames call this more than once, between updates.
    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.inner.clone().evaluate(EmitTo::All)?, 0)
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Self>()
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
        self.inner
            .merge(Rows::one_group(states, &one_group(states)))
    }
}

/// Group 0 for every row of `columns`.
fn one_group(columns: &[ArrayRef]) -> Vec<usize> {
    vec![0; columns.first().map_or(0, |v| v.len())]
}

impl<'a> Rows<'a> {
    /// The rows that count, as `(row, group)`: kept by the filter, and not NULL in any of
    /// `required`.
    pub(crate) fn usable(
        self,
        required: &'a [&'a dyn Array],
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        let filter = self.opt_filter;
        self.group_indices
            .iter()
            .enumerate()
            .filter(move |&(row, _)| {
                filter.is_none_or(|f| f.is_valid(row) && f.value(row))
                    && required.iter().all(|column| column.is_valid(row))
            })
            .map(|(row, &group)| (row, group))
    }

    /// Every row in group 0 of one.
    fn one_group(values: &'a [ArrayRef], group_indices: &'a [usize]) -> Self {
        Self {
            values,
            group_indices,
            opt_filter: None,
        }
    }
}

/// The test every aggregate runs: the same rows through every path give the same answers.
#[cfg(test)]
pub(crate) mod agreement {
    use super::*;
    use datafusion::arrow::array::UInt32Array;
    use datafusion::arrow::compute::{concat, take};

    /// Deterministic pseudo-random numbers, enough for a test.
    pub(crate) fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Feeds `values` (rows of `groups` groups, by `group_of`) to copies of the empty state `fresh`
    /// through:
    /// the grouped path in one pass; two halves merged through partial states, emitting the
    /// first groups early; `convert_to_state` of every row merged; and the single-group path
    /// per group (rows in the same order). Asserts that every answer agrees with the first.
    pub(crate) fn assert_paths_agree<G: GroupState>(
        fresh: &G,
        values: &[ArrayRef],
        group_of: &[usize],
        groups: usize,
    ) {
        let rows = group_of.len();
        let mut whole = Grouped::new(fresh.clone());
        whole.update_batch(values, group_of, None, groups).unwrap();
        let expected = whole.evaluate(EmitTo::All).unwrap();
        assert_eq!(expected.len(), groups);

        // Two halves, the right one's state merged into the left; the first groups emitted early.
        let half = rows / 2;
        let part = |start: usize, len: usize| -> Vec<ArrayRef> {
            values.iter().map(|v| v.slice(start, len)).collect()
        };
        let mut left = Grouped::new(fresh.clone());
        let mut right = Grouped::new(fresh.clone());
        left.update_batch(&part(0, half), &group_of[..half], None, groups)
            .unwrap();
        right
            .update_batch(&part(half, rows - half), &group_of[half..], None, groups)
            .unwrap();
        let early = groups.min(3);
        let right_first = right.state(EmitTo::First(early)).unwrap();
        let right_rest = right.state(EmitTo::All).unwrap();
        left.merge_batch(&right_first, &(0..early).collect::<Vec<_>>(), groups)
            .unwrap();
        left.merge_batch(&right_rest, &(early..groups).collect::<Vec<_>>(), groups)
            .unwrap();
        let first = left.evaluate(EmitTo::First(early)).unwrap();
        let rest = left.evaluate(EmitTo::All).unwrap();
        let merged = concat(&[first.as_ref(), rest.as_ref()]).unwrap();
        assert_eq!(&merged, &expected, "merged partial states");

        // Every row as its own state, merged into its group.
        let states = whole.convert_to_state(values, None).unwrap();
        let mut converted = Grouped::new(fresh.clone());
        converted.merge_batch(&states, group_of, groups).unwrap();
        assert_eq!(
            &converted.evaluate(EmitTo::All).unwrap(),
            &expected,
            "convert_to_state"
        );

        // The single-group path, one group at a time, in two batches through a partial state.
        for group in 0..groups {
            let mine: Vec<u32> = (0..rows)
                .filter(|&r| group_of[r] == group)
                .map(|r| r as u32)
                .collect();
            let indices = UInt32Array::from(mine);
            let rows_of_group: Vec<ArrayRef> = values
                .iter()
                .map(|v| take(v, &indices, None).unwrap())
                .collect();
            let n = indices.len();
            let mut single = SingleGroup::new(fresh.clone());
            let mut other = SingleGroup::new(fresh.clone());
            single
                .update_batch(
                    &rows_of_group
                        .iter()
                        .map(|v| v.slice(0, n / 2))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
            other
                .update_batch(
                    &rows_of_group
                        .iter()
                        .map(|v| v.slice(n / 2, n - n / 2))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
            let state: Vec<ArrayRef> = other
                .state()
                .unwrap()
                .iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            single.merge_batch(&state).unwrap();
            let answer = single.evaluate().unwrap();
            let want = ScalarValue::try_from_array(&expected, group).unwrap();
            assert_eq!(answer, want, "single path, group {group}");
        }

        // A filter that drops every row gives the answer of a group without rows.
        let none = BooleanArray::from(vec![false; rows]);
        let mut filtered = Grouped::new(fresh.clone());
        filtered
            .update_batch(values, group_of, Some(&none), groups)
            .unwrap();
        let empty = filtered.evaluate(EmitTo::All).unwrap();
        let mut untouched = Grouped::new(fresh.clone());
        untouched.state.ensure_groups(groups);
        assert_eq!(&untouched.evaluate(EmitTo::All).unwrap(), &empty);
    }
}
