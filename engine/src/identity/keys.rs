//! `customer_key`: a number for each customer id, handed out in order of first sight and never
//! changed or reused while the process runs, so that every table showing it (`customer_ids`,
//! `customer_events`) agrees on it whatever graph version each was read at. Grouping and joining
//! on it is much cheaper than on the 25-character `customer_id` (a segment count groups a million
//! events by customer). It is not stored: it differs between processes and restarts.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringViewArray};
use tributary_identity::{CustomerId, IdentityGraph};

/// Not a key: a founder not looked up yet.
const NO_KEY: u32 = u32::MAX;

/// The keys of one tenant's customers.
#[derive(Debug, Default)]
pub struct CustomerKeys {
    keys: HashMap<CustomerId, u32>,
    ids: Vec<String>,
    /// `ids` as an array, made again when ids were added.
    array: Option<Arc<StringViewArray>>,
    /// The key of each founder node of one graph (by its generation), indexed by node
    /// ([`NO_KEY`]: not looked up yet): a founder's customer id never changes while that graph
    /// lives, so it is hashed once. (A vector, not a map: every pair's customer is looked up here
    /// after each write, and a hash per lookup cost more than the rest of that walk.)
    founders: (u64, Vec<u32>),
}

impl CustomerKeys {
    /// The key of the customer whose founder node in `graph` (of `generation`) is `founder`.
    pub fn founder_key(&mut self, generation: u64, graph: &IdentityGraph, founder: u32) -> u32 {
        if self.founders.0 != generation {
            self.founders = (generation, Vec::new());
        }
        let at = founder as usize;
        if let Some(&key) = self.founders.1.get(at)
            && key != NO_KEY
        {
            return key;
        }
        let key = self.key(graph.founder_id(founder));
        let founders = &mut self.founders.1;
        if founders.len() <= at {
            founders.resize(at + 1, NO_KEY);
        }
        founders[at] = key;
        key
    }

    /// The key of `customer`, handing out the next one when it has none yet.
    pub fn key(&mut self, customer: CustomerId) -> u32 {
        if let Some(&key) = self.keys.get(&customer) {
            return key;
        }
        let key = u32::try_from(self.ids.len()).expect("fewer than 2^32 customers");
        self.ids.push(customer.to_string());
        self.keys.insert(customer, key);
        key
    }

    /// Every customer id given a key, at the position of its key.
    pub fn ids(&mut self) -> Arc<StringViewArray> {
        match &self.array {
            Some(array) if array.len() == self.ids.len() => Arc::clone(array),
            _ => {
                let array = Arc::new(StringViewArray::from_iter_values(&self.ids));
                self.array = Some(Arc::clone(&array));
                array
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn keys_are_stable_and_ids_follow_them() {
        let mut keys = CustomerKeys::default();
        let id = |text: &str| text.parse::<CustomerId>().expect("a customer id");
        let (a, b) = (
            id("c000000000000000000000001"),
            id("c00000000000000000000abcd"),
        );
        let first = keys.key(a);
        assert_eq!(keys.key(a), first);
        let ids = keys.ids();
        assert_eq!(ids.len(), 1);
        let second = keys.key(b);
        assert_ne!(first, second);
        assert_eq!(keys.ids().len(), 2);
        assert_eq!(keys.ids().value(first as usize), a.to_string());
    }
}
