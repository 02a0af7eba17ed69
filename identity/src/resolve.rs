//! Resolution: the greedy merge of bound pairs in time order (see the crate docs), applied to
//! one pair in place or recomputed over a connected part of the graph, and the diff of customers
//! before and after a recomputation that becomes `identity_changes` rows.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::graph::{Component, IdentityGraph, NEVER, Node, RawComponent};
use crate::record::{Change, ChangeKind, CustomerId, Refusal};

/// An identifier's place in the priority order: rank, type name, value.
type RankKey<'a> = (u16, &'a str, &'a str);

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
        let size = |r: u32| self.raw_components[r as usize].members.len();
        let (keep, gone) = if size(ra) >= size(rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let gone_part = std::mem::take(&mut self.raw_components[gone as usize]);
        self.nodes[gone as usize].raw_parent = keep;
        let part = &mut self.raw_components[keep as usize];
        part.members.absorb(keep, gone_part.members, gone);
        part.latest = part.latest.max(gone_part.latest).max(time);
    }

    /// The limit the merge of two customers would break, strongest type first.
    fn broken_limit(&self, a: &Component, b: &Component) -> Option<Refusal> {
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
            .map(|(kind, limit)| Refusal::Limit {
                id_type: self.types[kind as usize].name.clone(),
                limit,
            })
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
            e.refusal = Some(refusal.clone());
            if log {
                let change = self.refused_change(edge, refusal);
                self.changes.push(change);
            }
            return;
        }
        let fresh_single =
            |r: u32| self.components[r as usize].members.len() == 1 && fresh.contains(&r);
        // Customer ids are hashes: computed only when the merge is logged.
        let logged = (log && !fresh_single(ra) && !fresh_single(rb))
            .then(|| (self.customer_at(ra), self.customer_at(rb)));
        let (keep, gone) = if self.components[ra as usize].members.len()
            >= self.components[rb as usize].members.len()
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
        part.members.absorb(keep, gone_part.members, gone);
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

    /// The id a node would have as a customer of its own.
    fn components_founder_id(&self, node: u32) -> CustomerId {
        let n = &self.nodes[node as usize];
        CustomerId::of(&self.types[n.kind as usize].name, &n.value)
    }

    /// Resolves every identifier from scratch (after a batch load).
    pub fn resolve_all(&mut self) {
        self.set_deferred(false);
        let members: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&n| self.nodes[n as usize].blocked.is_none())
            .collect();
        for edge in 0..self.edges.len() {
            let refusal = {
                let e = &self.edges[edge];
                if e.bound() {
                    self.blocked_refusal(e.a, e.b)
                } else {
                    None
                }
            };
            if refusal.is_some() {
                self.edges[edge].refusal = refusal;
            }
        }
        self.recompute(members, None, false, &[]);
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
            for &edge in &self.nodes[node as usize].edges {
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
            .filter(|&e| matches!(self.edges[e as usize].refusal, Some(Refusal::Limit { .. })))
            .collect();
        self.reshaped += 1;
        for &node in &members {
            let n = &mut self.nodes[node as usize];
            n.parent = node;
            n.raw_parent = node;
            let kind = n.kind;
            let limited = self.types[kind as usize].limit.is_some();
            self.components[node as usize] = Component::single(node, kind, limited);
            self.raw_components[node as usize] = RawComponent::single();
        }
        self.sort_pairs(&mut edges);
        for &edge in &edges {
            let (a, b, time) = {
                let e = &self.edges[edge as usize];
                (e.a, e.b, e.time())
            };
            self.raw_union(a, b, time);
            self.merge_edge(edge, false, fresh);
        }
        if diff {
            self.log_diff(&members, &before, cause, fresh);
            for &edge in &edges {
                if self.edges[edge as usize].refusal.is_some() && !refused_before.contains(&edge) {
                    let refusal = self.edges[edge as usize].refusal.clone().expect("refused");
                    let change = self.refused_change(edge, refusal);
                    self.changes.push(change);
                }
            }
        }
    }

    /// Sorts pairs by [`Self::pair_key`]: by time with integer keys, then each run of equal
    /// times by identifier (runs are short: a customer's pairs seen at once).
    fn sort_pairs(&self, edges: &mut [u32]) {
        edges.sort_unstable_by_key(|&e| (self.edges[e as usize].time(), e));
        let mut start = 0;
        while start < edges.len() {
            let time = self.edges[edges[start] as usize].time();
            let end = start
                + edges[start..]
                    .iter()
                    .take_while(|&&e| self.edges[e as usize].time() == time)
                    .count();
            if end - start > 1 {
                edges[start..end].sort_by(|&x, &y| self.pair_key(x).cmp(&self.pair_key(y)));
            }
            start = end;
        }
    }

    /// Total order of pairs: time, then the two identifiers (strongest first, then by name).
    fn pair_key(&self, edge: u32) -> (i64, RankKey<'_>, RankKey<'_>) {
        let e = &self.edges[edge as usize];
        let key = |n: u32| {
            let node = &self.nodes[n as usize];
            let kind = &self.types[node.kind as usize];
            (kind.rank, kind.name.as_str(), &*node.value)
        };
        let (ka, kb) = (key(e.a), key(e.b));
        (e.time(), ka.min(kb), ka.max(kb))
    }

    fn log_diff(
        &mut self,
        members: &[u32],
        before: &[CustomerId],
        cause: Option<u32>,
        fresh: &[u32],
    ) {
        let fresh_ids: HashSet<CustomerId> = fresh
            .iter()
            .map(|&n| self.components_founder_id(n))
            .collect();
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
