//! What changed between two resolutions of the same tenant (a batch rebuild after a statement
//! changed the tables, or after a rules change): customers merged or split, pairs newly refused.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{IdentityGraph, NEVER};
use crate::record::{Change, ChangeKind, CustomerId, Identifier};

impl IdentityGraph {
    /// The merges, splits and new refusals that turn `before` into `self`. Identifiers new in
    /// `self` join customers without a merge being logged.
    pub fn changes_since(&self, before: &IdentityGraph) -> Vec<Change> {
        // Customers are compared by founder node (integers); ids and identifiers are spelled out
        // only for the customers that merged or split.
        const NONE: u32 = u32::MAX;
        // For each old founder: the first new founder that holds one of its identifiers, and
        // that identifier (a node of `self`).
        let mut first_new: Vec<(u32, u32)> = vec![(NONE, NONE); before.nodes.len()];
        // Old founders whose identifiers went to several new customers: (new founder, node).
        let mut splits: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        // New founders holding identifiers of several old customers: (old founder, node).
        let mut merges: Vec<(u32, Vec<(u32, u32)>)> = Vec::new();
        for root in self.roots() {
            let new = self.components[root as usize].founder;
            let mut olds: Vec<(u32, u32)> = Vec::new();
            self.members.each(root, |node| {
                let kind = &self.types[self.nodes[node as usize].kind as usize].name;
                let Some(old) = before
                    .node_of(kind, self.value(node))
                    .and_then(|n| before.founder(n))
                else {
                    return;
                };
                if olds.iter().any(|&(o, _)| o == old) {
                    return;
                }
                olds.push((old, node));
                let first = &mut first_new[old as usize];
                if first.0 == NONE {
                    *first = (new, node);
                } else if first.0 != new {
                    let holders = splits.entry(old).or_insert_with(|| vec![*first]);
                    if !holders.iter().any(|&(n, _)| n == new) {
                        holders.push((new, node));
                    }
                }
            });
            if olds.len() > 1 {
                merges.push((new, olds));
            }
        }
        let mut changes = Vec::new();
        let mut push = |kind, customer, others: Vec<(CustomerId, u32)>| {
            // As if listed by customer id: the identifier shown first is the one the customer
            // kept, else the first other customer's.
            let mut others = others;
            others.sort_by_key(|&(id, _)| id);
            let kept = others
                .iter()
                .find(|(id, _)| *id == customer)
                .unwrap_or(&others[0])
                .1;
            let kept = self.identifier(kept);
            for &(other, node) in others.iter().filter(|(id, _)| *id != customer) {
                changes.push(Change {
                    kind,
                    customer: Some(customer),
                    other: Some(other),
                    edge: (kept.clone(), self.identifier(node)),
                    observed_at: NEVER,
                    reason: "recomputed in batch".to_string(),
                });
            }
        };
        let (this, that) = (|n: u32| self.founder_id(n), |n: u32| before.founder_id(n));
        for (kind, groups) in [
            (ChangeKind::Merge, spelled(merges, this, that)),
            (
                ChangeKind::Split,
                spelled(splits.into_iter().collect(), that, this),
            ),
        ] {
            for (customer, others) in groups {
                push(kind, customer, others);
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

/// Founder nodes spelled out as customer ids (`group` for the keys, `other` for the customers
/// of each key), in order of customer id.
fn spelled(
    groups: Vec<(u32, Vec<(u32, u32)>)>,
    group: impl Fn(u32) -> CustomerId,
    other: impl Fn(u32) -> CustomerId,
) -> Vec<(CustomerId, Vec<(CustomerId, u32)>)> {
    let mut spelled: Vec<(CustomerId, Vec<(CustomerId, u32)>)> = groups
        .into_iter()
        .map(|(founder, others)| {
            let others = others
                .into_iter()
                .map(|(founder, node)| (other(founder), node))
                .collect();
            (group(founder), others)
        })
        .collect();
    spelled.sort_by_key(|(id, _)| *id);
    spelled
}

#[cfg(test)]
mod tests {
    use crate::{Action, ChangeKind, EdgeRecord, Identifier, IdentityGraph, Rules};

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
        let changes = merged.changes_since(&before);
        let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChangeKind::Merge, ChangeKind::Split]);
        let (u1, u2) = (
            before.customer_of("user_id", "u1"),
            before.customer_of("user_id", "u2"),
        );
        // u1's customer took in the email of u2's; u2's customer lost it to u1's.
        assert_eq!((changes[0].customer, changes[0].other), (u1, u2));
        // Shown by one identifier the customer kept (u1 or the phone) and the one it took in.
        assert_ne!(changes[0].edge.0.id_type, "email");
        assert_eq!(changes[0].edge.1, Identifier::new("email", "e"));
        assert_eq!((changes[1].customer, changes[1].other), (u2, u1));
        assert_eq!(
            changes[1].edge,
            (
                Identifier::new("user_id", "u2"),
                Identifier::new("email", "e")
            )
        );
        assert!(before.changes_since(&before).is_empty());
    }
}
