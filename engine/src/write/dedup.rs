//! Deduplication of events by `message_id`, per tenant, over a time window.
//!
//! SDKs retry a batch when they miss its acknowledgement; the retry carries the same message
//! ids and must not be counted twice. Each tenant keeps the 128-bit hashes of the ids it has
//! accepted with their arrival time and a hash of their payload: the same id with the same
//! payload is a duplicate, the same id with another payload a conflict (both are dropped; the
//! first event stays, and conflicts are reported). The set is rebuilt at start from the `events` table and the
//! log, so a retry after a restart is caught too. A write claims its ids before it is logged and
//! gives them back if logging fails.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use twox_hash::XxHash3_128;

use crate::error::{Error, Result};

/// The columns that make an event's payload: a retry repeats all of them. Not `timestamp`: a
/// message sent without one gets the time it was received, which differs on a retry.
pub(super) const PAYLOAD_COLUMNS: [&str; 6] = [
    "type",
    "event",
    "anonymous_id",
    "user_id",
    "properties",
    "context",
];

/// An `events` batch's message ids (as plain strings) and each row's payload hash.
pub fn ids_and_payloads(batch: &RecordBatch) -> Result<(StringArray, Vec<u64>)> {
    let text = |name: &str| -> Result<ArrayRef> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("events have no column '{name}'")))?;
        // Stored strings may be read as views: hash them as the plain strings they are.
        Ok(match column.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => cast(column, &DataType::Utf8)?,
            _ => std::sync::Arc::clone(column),
        })
    };
    let ids = text("message_id")?;
    let ids = ids
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Internal("message_id is not text".into()))?;
    let columns = PAYLOAD_COLUMNS
        .iter()
        .map(|name| text(name))
        .collect::<Result<Vec<_>>>()?;
    let mut hashes = vec![0u64; batch.num_rows()];
    create_hashes(&columns, &RandomState::with_seed(0x7472_6962), &mut hashes)?;
    Ok((ids, hashes))
}

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

/// An accepted id: when it arrived (µs) and the hash of its payload.
#[derive(Debug, Clone, Copy)]
struct Seen {
    arrived: i64,
    payload: u64,
}

type IdMap = HashMap<u128, Seen, BuildHasherDefault<IdentityHasher>>;

/// Arrival times for claims, each one used once: a write's claims can then be told apart from
/// every other write's by their time alone.
#[derive(Debug, Default)]
pub struct ClaimStamps(std::sync::atomic::AtomicI64);

impl ClaimStamps {
    /// `now_micros`, or one past the last stamp handed out if that is later.
    pub fn next(&self, now_micros: i64) -> i64 {
        use std::sync::atomic::Ordering::Relaxed;
        let mut last = self.0.load(Relaxed);
        loop {
            let stamp = now_micros.max(last + 1);
            match self.0.compare_exchange_weak(last, stamp, Relaxed, Relaxed) {
                Ok(_) => return stamp,
                Err(actual) => last = actual,
            }
        }
    }
}

/// What became of one row's message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: the row is stored.
    New,
    /// Seen with the same payload: a retry, dropped.
    Duplicate,
    /// Seen with another payload: dropped, and reported.
    Conflict,
}

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

    /// Claims the ids of one write (with each row's payload hash): which rows are new (not
    /// seen before, nor earlier in the same write), duplicates or conflicts. The new ones are
    /// remembered at once.
    pub fn claim<'a>(
        &self,
        tenant: &str,
        ids: impl Iterator<Item = (&'a str, u64)>,
        arrived_micros: i64,
    ) -> Vec<Claim> {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let seen = tenants.entry(tenant.to_string()).or_default();
        ids.map(|(id, payload)| match seen.entry(id_hash(id)) {
            std::collections::hash_map::Entry::Occupied(found)
                if found.get().payload == payload =>
            {
                Claim::Duplicate
            }
            std::collections::hash_map::Entry::Occupied(_) => Claim::Conflict,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Seen {
                    arrived: arrived_micros,
                    payload,
                });
                Claim::New
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

    /// Gives back every id claimed with the arrival time `stamp` (a bulk load's claims, all
    /// made with one stamp no other write uses: [`ClaimStamps`]). Scans the tenant's ids once.
    pub fn release_claimed_at(&self, tenant: &str, stamp: i64) {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        if let Some(seen) = tenants.get_mut(tenant) {
            seen.retain(|_, id| id.arrived != stamp);
        }
    }

    /// Remembers ids found in stored data (at start): (id, arrival, payload hash).
    pub fn remember<'a>(&self, tenant: &str, ids: impl Iterator<Item = (&'a str, i64, u64)>) {
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let seen = tenants.entry(tenant.to_string()).or_default();
        for (id, arrived, payload) in ids {
            let slot = seen.entry(id_hash(id)).or_insert(Seen { arrived, payload });
            slot.arrived = slot.arrived.max(arrived);
        }
    }

    /// Forgets ids that arrived before the window; returns how many went.
    pub fn expire(&self, now_micros: i64) -> usize {
        let oldest = now_micros - self.window_micros;
        let mut tenants = self.tenants.lock().expect("dedup set poisoned");
        let mut removed = 0;
        for seen in tenants.values_mut() {
            let before = seen.len();
            seen.retain(|_, id| id.arrived >= oldest);
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
    use Claim::{Conflict, Duplicate, New};

    #[test]
    fn repeats_are_refused_within_a_write_and_across_writes() {
        let ids = MessageIds::new(1_000);
        assert_eq!(
            ids.claim("t", [("a", 1), ("b", 2), ("a", 1)].into_iter(), 10),
            [New, New, Duplicate]
        );
        assert_eq!(
            ids.claim("t", [("b", 2), ("c", 3), ("a", 9)].into_iter(), 20),
            [Duplicate, New, Conflict]
        );
        assert_eq!(
            ids.claim("other", [("a", 1)].into_iter(), 20),
            [New],
            "tenants are separate"
        );
        ids.release("t", ["c"].into_iter());
        assert_eq!(ids.claim("t", [("c", 3)].into_iter(), 30), [New]);
    }

    #[test]
    fn a_loads_claims_are_given_back_by_their_stamp_alone() {
        let ids = MessageIds::new(1_000);
        let stamps = ClaimStamps::default();
        let (before, load, after) = (stamps.next(10), stamps.next(10), stamps.next(10));
        assert!(
            before < load && load < after,
            "stamps are unique even within a microsecond"
        );
        ids.claim("t", [("a", 1)].into_iter(), before);
        ids.claim("t", [("b", 1), ("c", 1)].into_iter(), load);
        ids.claim("t", [("d", 1)].into_iter(), after);
        ids.release_claimed_at("t", load);
        assert_eq!(
            ids.claim(
                "t",
                [("a", 1), ("b", 1), ("c", 1), ("d", 1)].into_iter(),
                20
            ),
            [Duplicate, New, New, Duplicate]
        );
    }

    #[test]
    fn ids_older_than_the_window_expire() {
        let ids = MessageIds::new(100);
        ids.remember("t", [("old", 0, 1), ("new", 950, 1)].into_iter());
        assert_eq!(ids.expire(1_000), 1);
        assert_eq!(
            ids.claim("t", [("old", 1), ("new", 1)].into_iter(), 1_000),
            [New, Duplicate]
        );
    }
}
