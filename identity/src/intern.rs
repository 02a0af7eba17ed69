//! Identifier values, each kept once: the text of every identifier in one buffer, found again by
//! type and value through a hash table of node numbers.
//!
//! A graph of a few hundred thousand identifiers would otherwise hold one allocation per value
//! and a map of owned keys; a full resolution spends most of its time on exactly that.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// The values of a graph's identifiers; node `n` is the `n`th value interned.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    /// Every value, back to back.
    text: String,
    /// Where each node's value ends in `text` (it starts where the previous one ends).
    ends: Vec<usize>,
    /// Each node's identifier type.
    kinds: Vec<u32>,
    /// Each node's hash of (type, value), so the table grows without hashing text again.
    hashes: Vec<u64>,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Interner {
    /// Makes room for `additional` more values.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let hashes = &self.hashes;
        self.table
            .reserve(additional, |&node| hashes[node as usize]);
        self.ends.reserve(additional);
        // Identifiers are short (ids, phones, emails): a guess that spares most regrowth.
        self.text.reserve(additional.saturating_mul(24));
        self.kinds.reserve(additional);
        self.hashes.reserve(additional);
    }

    /// The value of `node`.
    pub(crate) fn value(&self, node: u32) -> &str {
        let node = node as usize;
        let start = if node == 0 { 0 } else { self.ends[node - 1] };
        &self.text[start..self.ends[node]]
    }

    fn hash(&self, kind: u32, value: &str) -> u64 {
        self.hasher.hash_one((kind, value))
    }

    /// The node of `(kind, value)`, if interned.
    pub(crate) fn get(&self, kind: u32, value: &str) -> Option<u32> {
        let hash = self.hash(kind, value);
        self.find(hash, kind, value)
    }

    fn find(&self, hash: u64, kind: u32, value: &str) -> Option<u32> {
        self.table
            .find(hash, |&node| {
                self.kinds[node as usize] == kind && self.value(node) == value
            })
            .copied()
    }

    /// The node of `(kind, value)` and whether it is new; a new one is numbered next.
    pub(crate) fn intern(&mut self, kind: u32, value: &str) -> (u32, bool) {
        let hash = self.hash(kind, value);
        if let Some(node) = self.find(hash, kind, value) {
            return (node, false);
        }
        let node = u32::try_from(self.ends.len()).expect("fewer than 2^32 identifiers");
        self.text.push_str(value);
        self.ends.push(self.text.len());
        self.kinds.push(kind);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table
            .insert_unique(hash, node, |&n| hashes[n as usize]);
        (node, true)
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;

    #[test]
    fn values_are_kept_once_per_type() {
        let mut interner = Interner::default();
        assert_eq!(interner.intern(0, "a"), (0, true));
        assert_eq!(interner.intern(1, "a"), (1, true));
        assert_eq!(interner.intern(0, ""), (2, true));
        assert_eq!(interner.intern(0, "a"), (0, false));
        for n in 0..10_000 {
            interner.intern(2, &format!("value-{n}"));
        }
        assert_eq!(interner.get(2, "value-9999"), Some(10_002));
        assert_eq!(interner.get(0, "value-9999"), None);
        assert_eq!(interner.value(1), "a");
        assert_eq!(interner.value(2), "");
        assert_eq!(interner.value(3), "value-0");
    }
}
