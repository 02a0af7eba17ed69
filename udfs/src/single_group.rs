//! What every Tributary aggregate shares around its `GroupsAccumulator`: the single-group
//! `Accumulator` (DataFusion's path without GROUP BY, and for window frames) is the grouped state
//! with one group, and `convert_to_state` treats each row as a group of its own.

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};

/// A grouped aggregate state that can be resized and emptied.
pub(crate) trait GroupState:
    GroupsAccumulator + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// Makes room for at least `groups` groups (so an untouched group still has an answer).
    fn ensure_groups(&mut self, groups: usize);

    /// The same aggregate (same parameters) with no groups and no data.
    fn emptied(&self) -> Self;
}

/// `convert_to_state` for any [`GroupState`]: every row becomes the state of its own group.
pub(crate) fn rows_as_states<G: GroupState>(
    state: &G,
    values: &[ArrayRef],
    opt_filter: Option<&BooleanArray>,
) -> Result<Vec<ArrayRef>> {
    let rows = values.first().map_or(0, |v| v.len());
    let mut each_row = state.emptied();
    let groups: Vec<usize> = (0..rows).collect();
    each_row.update_batch(values, &groups, opt_filter, rows)?;
    each_row.state(EmitTo::All)
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
        let groups = vec![0; values.first().map_or(0, |v| v.len())];
        self.inner.update_batch(values, &groups, None, 1)
    }

    /// Computes from a copy: window frames call this more than once, between updates.
    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.inner.clone().evaluate(EmitTo::All)?, 0)
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
