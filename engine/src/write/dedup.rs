//! Deduplication of events by `message_id`, per tenant, over a time window.
//!
//! SDKs retry a batch when they miss its acknowledgement; the retry carries the same message
//! ids and must not be counted twice. Each tenant keeps the 128-bit hashes of the ids it has
//! accepted with their arrival time. The set is rebuilt at start from the `events` table and the
//! log, so a retry after a restart is caught too. A write claims its ids before it is logged and
//! gives them back if logging fails.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

use twox_hash::XxHash3_128;

/// Hashes are already uniform: the map does not hash them again.
#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type IdMap = HashMap<u128, i64, BuildHasherDefault<IdentityHasher>>;

/// The message ids seen per tenant, with when each arrived (µs since the epoch).
#[derive(Default)]
pub struct MessageIds {
    window_micros: i64,
    tenants: Mutex<HashMap<String, IdMap>>,
}

impl std::fmt::Debug for MessageIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageIds")
            .field("window_micros", &self.window_micros)
            .finish_non_exhaustive()
    }
}

/// The key a message id is remembered by.
pub fn id_hash(message_id: &str) -> u128 {
    XxHash3_128::oneshot(message_id.as_bytes())
}

impl MessageIds {
    /// An empty set that remembers ids for `window_micros`.
    pub fn new(window_micros: i64) -> Self {
        Self {
            window_micros,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Claims the ids of one write: returns which rows are new (not seen before, and not
    /// repeated earlier in the same write). The new ones are remembered at once.
    pub fn claim<'a>(
        &self,
        tenant: &str,
        ids: impl Iterator<Item = &'a str>,
        arrived_micros: i64,
    ) -> Vec<bool> {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let seen = tenants.entry(tenant.to_string()).or_default();
        ids.map(|id| {
            let hash = id_hash(id);
            match seen.entry(hash) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(arrived_micros);
                    true
                }
            }
        })
        .collect()
    }

    /// Gives back ids claimed by a write that did not happen.
    pub fn release<'a>(&self, tenant: &str, ids: impl Iterator<Item = &'a str>) {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        if let Some(seen) = tenants.get_mut(tenant) {
            for id in ids {
                seen.remove(&id_hash(id));
            }
        }
    }

    /// Remembers ids found in stored data (at start).
    pub fn remember<'a>(&self, tenant: &str, ids: impl Iterator<Item = (&'a str, i64)>) {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let seen = tenants.entry(tenant.to_string()).or_default();
        for (id, arrived) in ids {
            let slot = seen.entry(id_hash(id)).or_insert(arrived);
            *slot = (*slot).max(arrived);
        }
    }

    /// Forgets ids that arrived before the window; returns how many went.
    pub fn expire(&self, now_micros: i64) -> usize {
        let oldest = now_micros - self.window_micros;
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let mut removed = 0;
        for seen in tenants.values_mut() {
            let before = seen.len();
            seen.retain(|_, arrived| *arrived >= oldest);
            removed += before - seen.len();
        }
        removed
    }

    /// The earliest arrival time still inside the window.
    pub fn window_start(&self, now_micros: i64) -> i64 {
        now_micros - self.window_micros
    }

    /// Forgets a whole tenant's ids (its events table was replaced).
    pub fn forget_tenant(&self, tenant: &str) {
        self.tenants
            .lock()
            .expect("dedup set poisoned")
            .remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_refused_within_a_write_and_across_writes() {
        let ids = MessageIds::new(1_000);
        assert_eq!(
            ids.claim("t", ["a", "b", "a"].into_iter(), 10),
            [true, true, false]
        );
        assert_eq!(ids.claim("t", ["b", "c"].into_iter(), 20), [false, true]);
        assert_eq!(
            ids.claim("other", ["a"].into_iter(), 20),
            [true],
            "tenants are separate"
        );
        ids.release("t", ["c"].into_iter());
        assert_eq!(ids.claim("t", ["c"].into_iter(), 30), [true]);
    }

    #[test]
    fn ids_older_than_the_window_expire() {
        let ids = MessageIds::new(100);
        ids.remember("t", [("old", 0), ("new", 950)].into_iter());
        assert_eq!(ids.expire(1_000), 1);
        assert_eq!(
            ids.claim("t", ["old", "new"].into_iter(), 1_000),
            [true, false]
        );
    }
}
