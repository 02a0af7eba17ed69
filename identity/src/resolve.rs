//! Resolution: the greedy merge of bound pairs in time order (see the crate docs), applied to
//! one pair in place or recomputed over a connected part of the graph, and the diff of customers
//! before and after a recomputation that becomes `identity_changes` rows.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::graph::{Component, EdgeRefusal, IdentityGraph, NEVER, Node, RawComponent};
use crate::record::{Change, ChangeKind, CustomerId};

impl IdentityGraph {
    pub(crate) fn find(&mut self, node: u32) -> u32 {
        self.find_compressing(node, |n| &mut n.parent)
    }

    pub(crate) fn raw_find(&mut self, node: u32) -> u32 {
        self.find_compressing(node, |n| &mut n.raw_parent)
    }

    /// The root of `node` in the union-find whose parent link `link` gives; the path is
    /// pointed straight at the root.
    fn find_compressing(&mut self, node: u32, link: fn(&mut Node) -> &mut u32) -> u32 {
        let mut root = node;
        while *link(&mut self.nodes[root as usize]) != root {
            root = *link(&mut self.nodes[root as usize]);
        }
        let mut current = node;
        while current != root {
            let next = std::mem::replace(link(&mut self.nodes[current as usize]), root);
            current = next;
        }
        root
    }

    /// Joins the connected parts of `a` and `b`, whose pair has time `time`.
    pub(crate) fn raw_union(&mut self, a: u32, b: u32, time: i64) {
        let (ra, rb) = (self.raw_find(a), self.raw_find(b));
        if ra == rb {
            let part = &mut self.raw_components[ra as usize];
            part.latest = part.latest.max(time);
            return;
        }
        let size = |r: u32| self.raw_components[r as usize].size;
        let (keep, gone) = if size(ra) >= size(rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let gone_part = std::mem::take(&mut self.raw_components[gone as usize]);
        self.nodes[gone as usize].raw_parent = keep;
        self.raw_members.join(keep, gone);
        let part = &mut self.raw_components[keep as usize];
        part.size += gone_part.size;
        part.latest = part.latest.max(gone_part.latest).max(time);
    }

    /// The limit the merge of two customers would break, strongest type first.
    fn broken_limit(&self, a: &Component, b: &Component) -> Option<EdgeRefusal> {
        a.counts
            .iter()
            .filter_map(|&(kind, count_a)| {
                let limit = self.types[kind as usize].limit?;
                let count_b = b
                    .counts
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |(_, c)| *c);
                (count_a + count_b > limit).then_some((kind, limit))
            })
            .min_by_key(|(kind, _)| {
                let info = &self.types[*kind as usize];
                (info.rank, info.name.as_str())
            })
            .map(|(kind, limit)| EdgeRefusal::Limit { kind, limit })
    }

    /// Merges the customers of a bound pair unless a limit forbids it. With `log`, the merge or
    /// the refusal is added to the changes.
    pub(crate) fn merge_edge(&mut self, edge: u32, log: bool, fresh: &[u32]) {
        let (a, b) = (self.edges[edge as usize].a, self.edges[edge as usize].b);
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            let e = &mut self.edges[edge as usize];
            e.merged = true;
            e.refusal = None;
            return;
        }
        if let Some(refusal) =
            self.broken_limit(&self.components[ra as usize], &self.components[rb as usize])
        {
            let e = &mut self.edges[edge as usize];
            e.merged = false;
            e.refusal = Some(refusal);
            if log {
                let change = self.refused_change(edge, refusal);
                self.changes.push(change);
            }
            return;
        }
        let fresh_single = |r: u32| self.components[r as usize].size == 1 && fresh.contains(&r);
        // Customer ids are hashes: computed only when the merge is logged.
        let logged = (log && !fresh_single(ra) && !fresh_single(rb))
            .then(|| (self.customer_at(ra), self.customer_at(rb)));
        let (keep, gone) = if self.components[ra as usize].size >= self.components[rb as usize].size
        {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let gone_part = std::mem::take(&mut self.components[gone as usize]);
        self.nodes[gone as usize].parent = keep;
        self.reshaped += 1;
        let founder = self.components[keep as usize].founder;
        let founder = if self.older(gone_part.founder, founder) {
            gone_part.founder
        } else {
            founder
        };
        let part = &mut self.components[keep as usize];
        part.founder = founder;
        for (kind, count) in gone_part.counts {
            match part.counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, c)) => *c += count,
                None => part.counts.push((kind, count)),
            }
        }
        part.size += gone_part.size;
        self.members.join(keep, gone);
        let e = &mut self.edges[edge as usize];
        e.merged = true;
        e.refusal = None;
        if let Some((id_a, id_b)) = logged {
            let kept = self.customer_at(keep);
            let absorbed = if kept == id_a { id_b } else { id_a };
            let e = &self.edges[edge as usize];
            self.changes.push(Change {
                kind: ChangeKind::Merge,
                customer: Some(kept),
                other: Some(absorbed),
                edge: (self.identifier(e.a), self.identifier(e.b)),
                observed_at: e.time(),
                reason: format!(
                    "{} and {} observed together",
                    self.identifier(e.a),
                    self.identifier(e.b)
                ),
            });
        }
    }

    /// Resolves every identifier from scratch (after a batch load).
    pub fn resolve_all(&mut self) {
        self.set_deferred(false);
        let mut pairs = Vec::with_capacity(self.edges.len());
        for edge in 0..self.edges.len() as u32 {
            let e = &self.edges[edge as usize];
            if !e.bound() {
                continue;
            }
            match self.blocked_refusal(e.a, e.b) {
                Some(refusal) => self.edges[edge as usize].refusal = Some(refusal),
                None => pairs.push(edge),
            }
        }
        for node in 0..self.nodes.len() as u32 {
            if self.nodes[node as usize].blocked.is_none() {
                self.reset(node);
            }
        }
        self.merge_in_order(&mut pairs, &[]);
    }

    /// Makes `node` a customer of its own again, before its part is resolved anew.
    fn reset(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        n.parent = node;
        n.raw_parent = node;
        let kind = n.kind;
        let limited = self.types[kind as usize].limit.is_some();
        self.components[node as usize] = Component::single(node, kind, limited);
        self.raw_components[node as usize] = RawComponent::single();
        self.members.reset(node);
        self.raw_members.reset(node);
    }

    /// Joins the bound pairs `pairs` (their identifiers reset) in the order of the crate docs.
    fn merge_in_order(&mut self, pairs: &mut [u32], fresh: &[u32]) {
        self.reshaped += 1;
        self.sort_pairs(pairs);
        for &edge in pairs.iter() {
            let (a, b, time) = {
                let e = &self.edges[edge as usize];
                (e.a, e.b, e.time())
            };
            self.raw_union(a, b, time);
            self.merge_edge(edge, false, fresh);
        }
    }

    /// Resolves the identifiers `members` (whole connected parts) again from their bound pairs.
    /// With `diff`, merges, splits and new refusals are added to the changes.
    pub(crate) fn recompute(
        &mut self,
        members: Vec<u32>,
        cause: Option<u32>,
        diff: bool,
        fresh: &[u32],
    ) {
        let before: Vec<CustomerId> = if diff {
            members.iter().map(|&n| self.customer_at(n)).collect()
        } else {
            Vec::new()
        };
        let mut edges: Vec<u32> = Vec::new();
        for &node in &members {
            for edge in self.edges_of(node) {
                let e = &self.edges[edge as usize];
                let other = if e.a == node { e.b } else { e.a };
                if e.a == node && e.bound() && self.nodes[other as usize].blocked.is_none() {
                    edges.push(edge);
                }
            }
        }
        let refused_before: HashSet<u32> = edges
            .iter()
            .copied()
            .filter(|&e| {
                matches!(
                    self.edges[e as usize].refusal,
                    Some(EdgeRefusal::Limit { .. })
                )
            })
            .collect();
        for &node in &members {
            self.reset(node);
        }
        self.merge_in_order(&mut edges, fresh);
        if diff {
            self.log_diff(&members, &before, cause, fresh);
            for &edge in &edges {
                if self.edges[edge as usize].refusal.is_some() && !refused_before.contains(&edge) {
                    let refusal = self.edges[edge as usize].refusal.expect("refused");
                    let change = self.refused_change(edge, refusal);
                    self.changes.push(change);
                }
            }
        }
    }

    /// Sorts pairs by [`Self::pair_cmp`]: by (time, rank of the stronger identifier) as integer
    /// keys, then each run of equal keys by identifier (runs are short: a customer's pairs seen
    /// at once).
    fn sort_pairs(&self, edges: &mut [u32]) {
        // Sorted by (time, rank of the stronger identifier) as integers; only pairs equal in both
        // are then compared by identifier.
        let rank = |node: u32| self.types[self.nodes[node as usize].kind as usize].rank;
        let mut keyed: Vec<((i64, u16), u32)> = edges
            .iter()
            .map(|&edge| {
                let e = &self.edges[edge as usize];
                ((e.time(), rank(e.a)), edge)
            })
            .collect();
        keyed.sort_unstable();
        let mut start = 0;
        while start < keyed.len() {
            let key = keyed[start].0;
            let end = start + keyed[start..].iter().take_while(|(k, _)| *k == key).count();
            if end - start > 1 {
                keyed[start..end].sort_unstable_by(|&(_, x), &(_, y)| self.pair_cmp(x, y));
            }
            start = end;
        }
        for (slot, (_, edge)) in edges.iter_mut().zip(keyed) {
            *slot = edge;
        }
    }

    /// Total order of pairs: time, then the two identifiers in priority order (a pair keeps its
    /// stronger identifier as `a`).
    fn pair_cmp(&self, x: u32, y: u32) -> std::cmp::Ordering {
        let (x, y) = (&self.edges[x as usize], &self.edges[y as usize]);
        x.time()
            .cmp(&y.time())
            .then_with(|| self.rank_cmp(x.a, y.a))
            .then_with(|| self.rank_cmp(x.b, y.b))
    }

    fn log_diff(
        &mut self,
        members: &[u32],
        before: &[CustomerId],
        cause: Option<u32>,
        fresh: &[u32],
    ) {
        let fresh_ids: HashSet<CustomerId> = fresh.iter().map(|&n| self.founder_id(n)).collect();
        let mut by_old: HashMap<CustomerId, BTreeSet<CustomerId>> = HashMap::new();
        let mut by_new: HashMap<CustomerId, BTreeSet<CustomerId>> = HashMap::new();
        for (&node, &old) in members.iter().zip(before) {
            let new = self.customer_at(node);
            by_old.entry(old).or_default().insert(new);
            by_new.entry(new).or_default().insert(old);
        }
        let (edge, observed_at, what) = match cause {
            Some(edge) => {
                let e = &self.edges[edge as usize];
                let pair = (self.identifier(e.a), self.identifier(e.b));
                let what = if e.bound() {
                    format!("{} and {} observed together", pair.0, pair.1)
                } else {
                    format!("{} and {} unbound", pair.0, pair.1)
                };
                let at = if e.bound() { e.time() } else { e.last_unbind };
                (pair, at, what)
            }
            None => {
                let first = self.identifier(members[0]);
                ((first.clone(), first), NEVER, "recomputed".to_string())
            }
        };
        let mut rows = Vec::new();
        for (new, olds) in by_new.iter().filter(|(_, olds)| olds.len() > 1) {
            for old in olds.iter().filter(|o| *o != new && !fresh_ids.contains(o)) {
                rows.push((ChangeKind::Merge, *new, *old));
            }
        }
        for (old, news) in by_old.iter().filter(|(_, news)| news.len() > 1) {
            for new in news.iter().filter(|n| *n != old) {
                rows.push((ChangeKind::Split, *old, *new));
            }
        }
        rows.sort();
        for (kind, customer, other) in rows {
            self.changes.push(Change {
                kind,
                customer: Some(customer),
                other: Some(other),
                edge: edge.clone(),
                observed_at,
                reason: what.clone(),
            });
        }
    }
}

impl Ord for ChangeKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ChangeKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
