//! What changed between two resolutions of the same tenant (a batch rebuild after a statement
//! changed the tables, or after a rules change): customers merged or split, pairs newly refused.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{IdentityGraph, NEVER};
use crate::record::{Change, ChangeKind, CustomerId, Identifier};

impl IdentityGraph {
    /// The merges, splits and new refusals that turn `before` into `self`. Identifiers new in
    /// `self` join customers without a merge being logged.
    pub fn changes_since(&self, before: &IdentityGraph) -> Vec<Change> {
        let mut by_new: BTreeMap<CustomerId, BTreeMap<CustomerId, Identifier>> = BTreeMap::new();
        let mut by_old: BTreeMap<CustomerId, BTreeMap<CustomerId, Identifier>> = BTreeMap::new();
        for (customer, members, _) in self.customers() {
            for (id_type, value) in members {
                let Some(old) = before.customer_of(id_type, value) else {
                    continue;
                };
                let id = Identifier::new(id_type, value);
                by_new
                    .entry(customer)
                    .or_default()
                    .entry(old)
                    .or_insert_with(|| id.clone());
                by_old.entry(old).or_default().entry(customer).or_insert(id);
            }
        }
        let mut changes = Vec::new();
        let mut push =
            |kind, customer: CustomerId, other: CustomerId, a: &Identifier, b: &Identifier| {
                changes.push(Change {
                    kind,
                    customer: Some(customer),
                    other: Some(other),
                    edge: (a.clone(), b.clone()),
                    observed_at: NEVER,
                    reason: "recomputed in batch".to_string(),
                });
            };
        // A customer reached from several old ones is a merge; one reaching several is a split.
        for (kind, groups) in [(ChangeKind::Merge, &by_new), (ChangeKind::Split, &by_old)] {
            for (customer, others) in groups.iter().filter(|(_, others)| others.len() > 1) {
                let kept = others
                    .get(customer)
                    .or_else(|| others.values().next())
                    .expect("non-empty");
                for (other, id) in others.iter().filter(|(other, _)| *other != customer) {
                    push(kind, *customer, *other, kept, id);
                }
            }
        }
        let refused_before: BTreeSet<(Identifier, Identifier)> = before.refused_pairs().collect();
        for edge in 0..self.edges.len() as u32 {
            let e = &self.edges[edge as usize];
            let Some(refusal) = e.refusal.filter(|_| e.bound()) else {
                continue;
            };
            let pair = (self.identifier(e.a), self.identifier(e.b));
            if !refused_before.contains(&pair) {
                changes.push(self.refused_change(edge, refusal));
            }
        }
        changes
    }

    /// The bound pairs refused now, strongest identifier first.
    fn refused_pairs(&self) -> impl Iterator<Item = (Identifier, Identifier)> + '_ {
        self.edges
            .iter()
            .filter(|e| e.bound() && e.refusal.is_some())
            .map(|e| (self.identifier(e.a), self.identifier(e.b)))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Action, ChangeKind, EdgeRecord, IdentityGraph, Rules};

    fn record(
        from: (&'static str, &'static str),
        to: (&'static str, &'static str),
        at: i64,
        action: Action,
    ) -> EdgeRecord<'static> {
        EdgeRecord {
            from,
            to,
            observed_at: at,
            action,
            source: "crm",
        }
    }

    #[test]
    fn a_rebuild_reports_merges_splits_and_refusals() {
        let first = [
            record(("user_id", "u1"), ("phone", "p"), 1, Action::Bind),
            record(("user_id", "u2"), ("email", "e"), 2, Action::Bind),
        ];
        let before = IdentityGraph::build(Rules::default(), first, []);
        let mut second = first.to_vec();
        second.push(record(("phone", "p"), ("email", "e"), 3, Action::Bind));
        let refused = IdentityGraph::build(Rules::default(), second.clone(), []);
        let changes = refused.changes_since(&before);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].kind, ChangeKind::Refused);
        second.push(record(("user_id", "u2"), ("email", "e"), 4, Action::Unbind));
        let merged = IdentityGraph::build(Rules::default(), second.clone(), []);
        let kinds: Vec<ChangeKind> = merged
            .changes_since(&before)
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(kinds, [ChangeKind::Merge, ChangeKind::Split]);
        assert!(before.changes_since(&before).is_empty());
    }
}
