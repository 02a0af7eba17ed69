//! The identity graph: identifiers, the edge records between them, and the customers they form.
//! Records come in through [`IdentityGraph::apply`] (and [`IdentityGraph::observe`] for an
//! identifier seen alone); the resolution itself is in `resolve.rs`.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::intern::Interner;
use crate::record::{
    Action, Change, ChangeKind, CustomerId, EdgeRecord, EdgeView, Identifier, Refusal,
};
use crate::rules::{BlockReason, Rules};

/// Hash maps keyed by identifiers and pairs: foldhash, several times faster than SipHash here.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;

/// No time: the neutral value of max().
pub(crate) const NEVER: i64 = i64::MIN;

/// How many identifier types [`IdentityGraph::type_of`] scans before it looks in the index.
const SCANNED_TYPES: usize = 16;

/// No pair: the end of an identifier's list of pairs.
const NO_EDGE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct TypeInfo {
    pub(crate) name: String,
    pub(crate) rank: u16,
    pub(crate) limit: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: u32,
    pub(crate) first_seen: i64,
    /// Latest edge record touching it (identity_map's `updated_at`).
    pub(crate) last_change: i64,
    /// Why it never merges (boxed: rare, and every identifier carries the field).
    pub(crate) blocked: Option<Box<BlockReason>>,
    /// Union-find parent among merged identifiers.
    pub(crate) parent: u32,
    /// Union-find parent among identifiers connected by any bound pair (merged or refused).
    pub(crate) raw_parent: u32,
    /// The first and the last pair recorded for it; each pair links to the next of each of its
    /// two identifiers (`Edge::next`), so no identifier holds a list of its own.
    first_edge: u32,
    last_edge: u32,
}

#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) first_bind: i64,
    pub(crate) last_bind: i64,
    pub(crate) last_unbind: i64,
    pub(crate) source: u32,
    pub(crate) merged: bool,
    pub(crate) refusal: Option<EdgeRefusal>,
    /// The next pair of `a` and of `b`, in the order recorded.
    next: [u32; 2],
}

/// Why a bound pair did not merge, as kept with the pair; [`IdentityGraph::refusal`] spells it
/// out as a [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeRefusal {
    /// This identifier is blocked.
    Blocked(u32),
    /// The merged customer would hold more than `limit` identifiers of type `kind`.
    Limit { kind: u32, limit: u32 },
}

impl Edge {
    pub(crate) fn bound(&self) -> bool {
        self.last_bind != NEVER && self.last_bind > self.last_unbind
    }

    pub(crate) fn time(&self) -> i64 {
        self.first_bind.max(self.last_unbind)
    }
}

/// The identifiers of each component, as rings: every identifier links to the next member of
/// its component, so joining two components swaps two links (no list is kept or copied).
#[derive(Debug, Default)]
pub(crate) struct Rings(Vec<u32>);

impl Rings {
    /// Adds `node` (numbered next) as a component of its own.
    fn push(&mut self, node: u32) {
        debug_assert_eq!(node as usize, self.0.len());
        self.0.push(node);
    }

    /// Makes `node` a component of its own again (its whole component must be reset too).
    pub(crate) fn reset(&mut self, node: u32) {
        self.0[node as usize] = node;
    }

    /// Joins the ring of `a` with the (different) ring of `b`.
    pub(crate) fn join(&mut self, a: u32, b: u32) {
        self.0.swap(a as usize, b as usize);
    }

    /// Calls `visit` for each member of the component of `node`, `node` first.
    pub(crate) fn each(&self, node: u32, mut visit: impl FnMut(u32)) {
        let mut current = node;
        loop {
            visit(current);
            current = self.0[current as usize];
            if current == node {
                break;
            }
        }
    }

    /// The members of the component of `node`.
    pub(crate) fn of(&self, node: u32) -> Vec<u32> {
        let mut members = Vec::new();
        self.each(node, |n| members.push(n));
        members
    }
}

/// A merged customer, kept at its union-find root.
#[derive(Debug, Clone, Default)]
pub(crate) struct Component {
    pub(crate) size: u32,
    pub(crate) counts: Vec<(u32, u32)>,
    pub(crate) founder: u32,
}

/// Identifiers connected by bound pairs, kept at its raw union-find root.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawComponent {
    pub(crate) size: u32,
    pub(crate) latest: i64,
}

/// The identity graph of one tenant.
#[derive(Debug)]
pub struct IdentityGraph {
    pub(crate) rules: Rules,
    pub(crate) types: Vec<TypeInfo>,
    /// The types after the first [`SCANNED_TYPES`], by name.
    type_index: FastMap<String, u32>,
    names: Interner,
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    edge_index: FastMap<(u32, u32), u32>,
    sources: Vec<String>,
    source_index: FastMap<String, u32>,
    /// Per identifier; meaningful at union-find roots only.
    pub(crate) components: Vec<Component>,
    pub(crate) raw_components: Vec<RawComponent>,
    /// The members of each customer.
    pub(crate) members: Rings,
    /// The members of each connected part.
    pub(crate) raw_members: Rings,
    /// Changes made by the last `apply`.
    pub(crate) changes: Vec<Change>,
    /// While loading in batch, records are only gathered; [`IdentityGraph::resolve_all`] resolves.
    deferred: bool,
    /// Identifiers first seen by the record being applied.
    fresh: Vec<u32>,
    /// Counts the changes that may give a known identifier another founder (see
    /// [`IdentityGraph::reshaped`]).
    pub(crate) reshaped: u64,
}

impl IdentityGraph {
    /// An empty graph following `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            types: Vec::new(),
            names: Interner::default(),
            nodes: Vec::new(),
            edges: Vec::new(),
            edge_index: FastMap::default(),
            sources: Vec::new(),
            source_index: FastMap::default(),
            type_index: FastMap::default(),
            components: Vec::new(),
            raw_components: Vec::new(),
            members: Rings::default(),
            raw_members: Rings::default(),
            changes: Vec::new(),
            deferred: false,
            fresh: Vec::new(),
            reshaped: 0,
        }
    }

    /// Counts the changes that may have given an identifier already in the graph another
    /// founder: merges, splits, and an older sighting of an identifier that then founds its
    /// customer. While it stays the same, every known identifier keeps its founder (new
    /// identifiers may have come, each its own customer), so a reader that maps identifiers to
    /// customers need only look at the new ones.
    pub fn reshaped(&self) -> u64 {
        self.reshaped
    }

    pub(crate) fn set_deferred(&mut self, deferred: bool) {
        self.deferred = deferred;
    }

    /// An empty graph that gathers records without resolving them until
    /// [`IdentityGraph::resolve_all`] (a batch load).
    pub fn deferred(rules: Rules) -> Self {
        let mut graph = Self::new(rules);
        graph.deferred = true;
        graph
    }

    /// Builds the graph from all records at once (the batch recomputation).
    pub fn build<'a>(
        rules: Rules,
        records: impl IntoIterator<Item = EdgeRecord<'a>>,
        seen: impl IntoIterator<Item = ((&'a str, &'a str), i64)>,
    ) -> Self {
        let mut graph = Self::deferred(rules);
        let records = records.into_iter();
        graph.reserve(records.size_hint().0);
        for record in records {
            graph.apply(record);
        }
        for (identifier, at) in seen {
            graph.observe(identifier, at);
        }
        graph.resolve_all();
        graph
    }

    /// Makes room for about `records` more edge records (each may bring two new identifiers
    /// and a new pair), so a batch load does not grow its tables step by step.
    pub fn reserve(&mut self, records: usize) {
        // Records repeat their identifiers (a user id with each of its devices): about one new
        // identifier per record; the table grows if there are more.
        let identifiers = records;
        self.names.reserve(identifiers);
        self.nodes.reserve(identifiers);
        self.members.0.reserve(identifiers);
        self.raw_members.0.reserve(identifiers);
        self.components.reserve(identifiers);
        self.raw_components.reserve(identifiers);
        self.edges.reserve(records);
        self.edge_index.reserve(records);
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Number of identifiers known (blocked ones included).
    pub fn identifier_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of distinct pairs recorded.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Number of customers.
    pub fn customer_count(&self) -> usize {
        self.roots().count()
    }

    /// The union-find roots: one identifier per customer.
    pub(crate) fn roots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.nodes.len() as u32).filter(|&n| {
            let node = &self.nodes[n as usize];
            node.parent == n && node.blocked.is_none()
        })
    }

    /// Records that an identifier was seen at `at` (an event carrying it): it becomes a customer
    /// of its own if it is new.
    pub fn observe(&mut self, (id_type, value): (&str, &str), at: i64) {
        let node = self.intern(id_type, value, at);
        self.touch_seen(node, at);
    }

    /// Applies one record; returns the changes to customers it made.
    pub fn apply(&mut self, record: EdgeRecord<'_>) -> Vec<Change> {
        self.changes.clear();
        self.fresh.clear();
        let a = self.intern(record.from.0, record.from.1, record.observed_at);
        let b = self.intern(record.to.0, record.to.1, record.observed_at);
        if a == b {
            self.touch_seen(a, record.observed_at);
            return Vec::new();
        }
        for node in [a, b] {
            self.touch_seen(node, record.observed_at);
            let last = &mut self.nodes[node as usize].last_change;
            *last = (*last).max(record.observed_at);
        }
        let source = self.intern_source(record.source);
        let key = (a.min(b), a.max(b));
        let (edge, created) = match self.edge_index.get(&key) {
            Some(&edge) => (edge, false),
            None => {
                // Stored strongest identifier first, whatever the order of the first record.
                let (a, b) = if self.rank_cmp(b, a).is_lt() {
                    (b, a)
                } else {
                    (a, b)
                };
                let edge = self.edges.len() as u32;
                self.edges.push(Edge {
                    a,
                    b,
                    first_bind: i64::MAX,
                    last_bind: NEVER,
                    last_unbind: NEVER,
                    source,
                    merged: false,
                    refusal: None,
                    next: [NO_EDGE; 2],
                });
                self.edge_index.insert(key, edge);
                self.link(a, edge);
                self.link(b, edge);
                (edge, true)
            }
        };
        let before = &self.edges[edge as usize];
        let (was_bound, was_time) = (before.bound(), before.time());
        let e = &mut self.edges[edge as usize];
        match record.action {
            Action::Bind => {
                if record.observed_at < e.first_bind {
                    e.first_bind = record.observed_at;
                    e.source = source;
                }
                e.last_bind = e.last_bind.max(record.observed_at);
            }
            Action::Unbind => e.last_unbind = e.last_unbind.max(record.observed_at),
        }
        let (bound, time) = (e.bound(), e.time());
        if self.deferred || (!was_bound && !bound) || (was_bound && bound && was_time == time) {
            return Vec::new();
        }
        if let Some(refusal) = self.blocked_refusal(a, b) {
            if created || !was_bound {
                let e = &mut self.edges[edge as usize];
                e.refusal = Some(refusal);
                let change = self.refused_change(edge, refusal);
                self.changes.push(change);
            }
            return std::mem::take(&mut self.changes);
        }
        let (raw_a, raw_b) = (self.raw_find(a), self.raw_find(b));
        let after_everything = !was_bound
            && time > self.raw_components[raw_a as usize].latest
            && time > self.raw_components[raw_b as usize].latest;
        let fresh = std::mem::take(&mut self.fresh);
        if after_everything {
            self.raw_union(a, b, time);
            self.merge_edge(edge, true, &fresh);
        } else {
            let mut members = self.raw_members.of(raw_a);
            if raw_b != raw_a {
                members.extend(self.raw_members.of(raw_b));
            }
            self.recompute(members, Some(edge), true, &fresh);
        }
        self.fresh = fresh;
        std::mem::take(&mut self.changes)
    }

    fn touch_seen(&mut self, node: u32, at: i64) {
        let first = self.nodes[node as usize].first_seen;
        if at >= first {
            return;
        }
        self.nodes[node as usize].first_seen = at;
        if self.deferred || self.nodes[node as usize].blocked.is_some() {
            return;
        }
        let root = self.find(node) as usize;
        if self.older(node, self.components[root].founder) {
            self.components[root].founder = node;
            self.reshaped += 1;
        }
    }

    /// Appends `edge` to the pairs of `node`.
    fn link(&mut self, node: u32, edge: u32) {
        let last = std::mem::replace(&mut self.nodes[node as usize].last_edge, edge);
        if last == NO_EDGE {
            self.nodes[node as usize].first_edge = edge;
        } else {
            let previous = &mut self.edges[last as usize];
            let side = usize::from(previous.a != node);
            previous.next[side] = edge;
        }
    }

    /// The pairs recorded for `node`, in the order recorded.
    pub(crate) fn edges_of(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.nodes[node as usize].first_edge;
        std::iter::from_fn(move || {
            (next != NO_EDGE).then(|| {
                let edge = next;
                let e = &self.edges[edge as usize];
                next = e.next[usize::from(e.a != node)];
                edge
            })
        })
    }

    pub(crate) fn blocked_refusal(&self, a: u32, b: u32) -> Option<EdgeRefusal> {
        [a, b]
            .into_iter()
            .find(|&n| self.nodes[n as usize].blocked.is_some())
            .map(EdgeRefusal::Blocked)
    }

    /// A kept refusal, spelled out.
    pub(crate) fn refusal(&self, refusal: EdgeRefusal) -> Refusal {
        match refusal {
            EdgeRefusal::Blocked(node) => Refusal::Blocked {
                identifier: self.identifier(node),
                reason: self.nodes[node as usize]
                    .blocked
                    .as_deref()
                    .cloned()
                    .expect("a refusal by block names a blocked identifier"),
            },
            EdgeRefusal::Limit { kind, limit } => Refusal::Limit {
                id_type: self.types[kind as usize].name.clone(),
                limit,
            },
        }
    }

    pub(crate) fn refused_change(&self, edge: u32, refusal: EdgeRefusal) -> Change {
        let e = &self.edges[edge as usize];
        let customer_of = |n: u32| {
            self.nodes[n as usize]
                .blocked
                .is_none()
                .then(|| self.customer_at(n))
        };
        Change {
            kind: ChangeKind::Refused,
            customer: customer_of(e.a),
            other: customer_of(e.b),
            edge: (self.identifier(e.a), self.identifier(e.b)),
            observed_at: e.time(),
            reason: self.refusal(refusal).to_string(),
        }
    }

    fn intern(&mut self, id_type: &str, value: &str, at: i64) -> u32 {
        let kind = match self.type_of(id_type) {
            Some(kind) => kind,
            None => {
                let kind = u32::try_from(self.types.len()).expect("fewer types than identifiers");
                if kind as usize >= SCANNED_TYPES {
                    self.type_index.insert(id_type.to_string(), kind);
                }
                self.types.push(TypeInfo {
                    name: id_type.to_string(),
                    rank: self.rules.rank(id_type),
                    limit: self.rules.limit(id_type),
                });
                kind
            }
        };
        let (node, new) = self.names.intern(kind, value);
        if !new {
            return node;
        }
        let blocked = self.rules.blocked(id_type, value).map(Box::new);
        let unblocked = blocked.is_none();
        self.nodes.push(Node {
            kind,
            first_seen: at,
            last_change: NEVER,
            blocked,
            parent: node,
            raw_parent: node,
            first_edge: NO_EDGE,
            last_edge: NO_EDGE,
        });
        let limited = self.types[kind as usize].limit.is_some();
        self.components.push(Component::single(node, kind, limited));
        self.raw_components.push(RawComponent::single());
        self.members.push(node);
        self.raw_members.push(node);
        if unblocked && !self.deferred {
            self.fresh.push(node);
        }
        node
    }

    /// The index of an identifier type. A tenant has few: a scan of the first ones beats
    /// hashing, and the index finds the rest (bad data can bring thousands).
    fn type_of(&self, id_type: &str) -> Option<u32> {
        match self.types[..self.types.len().min(SCANNED_TYPES)]
            .iter()
            .position(|t| t.name == id_type)
        {
            Some(kind) => Some(kind as u32),
            None => self.type_index.get(id_type).copied(),
        }
    }

    fn intern_source(&mut self, source: &str) -> u32 {
        if let Some(&id) = self.source_index.get(source) {
            return id;
        }
        let id = u32::try_from(self.sources.len()).expect("fewer sources than pairs");
        self.sources.push(source.to_string());
        self.source_index.insert(source.to_string(), id);
        id
    }

    pub(crate) fn node_of(&self, id_type: &str, value: &str) -> Option<u32> {
        let kind = self.type_of(id_type)?;
        self.names.get(kind, value)
    }

    /// The value of an identifier.
    pub(crate) fn value(&self, node: u32) -> &str {
        self.names.value(node)
    }

    pub(crate) fn identifier(&self, node: u32) -> Identifier {
        let n = &self.nodes[node as usize];
        Identifier::new(self.types[n.kind as usize].name.clone(), self.value(node))
    }

    /// True when `a` founds a customer before `b`: seen earlier, then stronger, then by name.
    pub(crate) fn older(&self, a: u32, b: u32) -> bool {
        let first_seen = |n: u32| self.nodes[n as usize].first_seen;
        first_seen(a)
            .cmp(&first_seen(b))
            .then_with(|| self.rank_cmp(a, b))
            .is_lt()
    }

    /// The priority order of identifiers: the stronger type first, then by type name, then by
    /// value. Text is compared only when it must be (most comparisons are settled by rank).
    pub(crate) fn rank_cmp(&self, a: u32, b: u32) -> std::cmp::Ordering {
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        let (kind_a, kind_b) = (self.nodes[a as usize].kind, self.nodes[b as usize].kind);
        let (type_a, type_b) = (&self.types[kind_a as usize], &self.types[kind_b as usize]);
        type_a.rank.cmp(&type_b.rank).then_with(|| {
            if kind_a == kind_b {
                self.value(a).cmp(self.value(b))
            } else {
                (type_a.name.as_str(), self.value(a)).cmp(&(type_b.name.as_str(), self.value(b)))
            }
        })
    }

    /// Union-find root without path compression (read paths).
    pub(crate) fn root(&self, mut node: u32) -> u32 {
        while self.nodes[node as usize].parent != node {
            node = self.nodes[node as usize].parent;
        }
        node
    }

    pub(crate) fn customer_at(&self, node: u32) -> CustomerId {
        self.founder_id(self.components[self.root(node) as usize].founder)
    }

    /// The number of an identifier's node, stable for the life of this graph (a rebuilt graph
    /// numbers afresh); `None` when the identifier is unknown.
    pub fn node(&self, id_type: &str, value: &str) -> Option<u32> {
        self.node_of(id_type, value)
    }

    /// The founder node of the customer `node` belongs to, `None` when the node is blocked:
    /// `customer_of(t, v)` is `node(t, v)`, then `founder`, then [`Self::founder_id`]. Readers
    /// that keep node numbers resolve many identifiers without hashing their text again.
    pub fn founder(&self, node: u32) -> Option<u32> {
        self.nodes[node as usize]
            .blocked
            .is_none()
            .then(|| self.components[self.root(node) as usize].founder)
    }

    /// The founder node of every customer (the customers of [`Self::customers`], in the same
    /// order), without listing their identifiers.
    pub fn founders(&self) -> impl Iterator<Item = u32> + '_ {
        self.roots()
            .map(|root| self.components[root as usize].founder)
    }

    /// The id of the customer whose founder node is `founder` (the same for that node for the
    /// life of the graph).
    pub fn founder_id(&self, founder: u32) -> CustomerId {
        let n = &self.nodes[founder as usize];
        CustomerId::of(&self.types[n.kind as usize].name, self.value(founder))
    }

    /// The customer an identifier belongs to; `None` when unknown or blocked.
    pub fn customer_of(&self, id_type: &str, value: &str) -> Option<CustomerId> {
        let node = self.node_of(id_type, value)?;
        self.nodes[node as usize]
            .blocked
            .is_none()
            .then(|| self.customer_at(node))
    }

    /// The members of a customer.
    fn members_of(&self, customer: CustomerId) -> Option<Vec<u32>> {
        self.roots()
            .find(|&root| self.customer_at(root) == customer)
            .map(|root| self.members.of(root))
    }

    /// The identifiers of a customer, strongest type first.
    pub fn identifiers_of(&self, customer: CustomerId) -> Vec<Identifier> {
        let Some(mut members) = self.members_of(customer) else {
            return Vec::new();
        };
        members.sort_by(|a, b| self.rank_cmp(*a, *b));
        members.into_iter().map(|n| self.identifier(n)).collect()
    }

    /// Every customer: its id, its identifiers and the time of the latest edge record among them.
    pub fn customers(&self) -> impl Iterator<Item = (CustomerId, Vec<(&str, &str)>, i64)> + '_ {
        self.roots().map(|root| {
            let component = &self.components[root as usize];
            let mut members = Vec::with_capacity(component.size as usize);
            let mut updated = NEVER;
            self.members.each(root, |n| {
                let node = &self.nodes[n as usize];
                members.push((self.types[node.kind as usize].name.as_str(), self.value(n)));
                updated = updated.max(node.last_change.max(node.first_seen));
            });
            (self.customer_at(component.founder), members, updated)
        })
    }

    fn view(&self, edge: u32) -> EdgeView {
        let e = &self.edges[edge as usize];
        EdgeView {
            from: self.identifier(e.a),
            to: self.identifier(e.b),
            observed_at: e.time(),
            source: self.sources[e.source as usize].clone(),
            bound: e.bound(),
            refusal: e.refusal.map(|r| self.refusal(r)),
        }
    }

    /// The chain of merged pairs that joins two identifiers; `None` unless one customer holds both.
    pub fn explain_merge(&self, from: (&str, &str), to: (&str, &str)) -> Option<Vec<EdgeView>> {
        let start = self.node_of(from.0, from.1)?;
        let goal = self.node_of(to.0, to.1)?;
        let blocked = |n: u32| self.nodes[n as usize].blocked.is_some();
        if blocked(start) || blocked(goal) || self.root(start) != self.root(goal) {
            return None;
        }
        let mut came_by: HashMap<u32, u32> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut visited = HashSet::from([start]);
        while let Some(node) = queue.pop_front() {
            if node == goal {
                break;
            }
            for edge in self.edges_of(node) {
                let e = &self.edges[edge as usize];
                if !e.merged || !e.bound() {
                    continue;
                }
                let next = if e.a == node { e.b } else { e.a };
                if visited.insert(next) {
                    came_by.insert(next, edge);
                    queue.push_back(next);
                }
            }
        }
        let mut chain = Vec::new();
        let mut node = goal;
        while node != start {
            let edge = came_by[&node];
            let e = &self.edges[edge as usize];
            let previous = if e.a == node { e.b } else { e.a };
            let mut step = self.view(edge);
            if e.a == node {
                // Shown in the direction of the chain.
                std::mem::swap(&mut step.from, &mut step.to);
            }
            chain.push(step);
            node = previous;
        }
        chain.reverse();
        Some(chain)
    }

    /// Every pair recorded for a customer's identifiers: merged, refused and unbound.
    pub fn explain_customer(&self, customer: CustomerId) -> Vec<EdgeView> {
        let Some(members) = self.members_of(customer) else {
            return Vec::new();
        };
        let mut edges: Vec<u32> = members.iter().flat_map(|&n| self.edges_of(n)).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut views: Vec<EdgeView> = edges.into_iter().map(|e| self.view(e)).collect();
        views.sort_by(|a, b| (a.observed_at, &a.from, &a.to).cmp(&(b.observed_at, &b.from, &b.to)));
        views
    }
}

impl Component {
    /// A customer of one identifier; only types with a limit are counted.
    pub(crate) fn single(node: u32, kind: u32, limited: bool) -> Self {
        Self {
            size: 1,
            counts: if limited { vec![(kind, 1)] } else { Vec::new() },
            founder: node,
        }
    }
}

impl RawComponent {
    pub(crate) fn single() -> Self {
        Self {
            size: 1,
            latest: NEVER,
        }
    }
}
