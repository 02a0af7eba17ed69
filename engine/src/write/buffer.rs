//! The in-memory buffer: rows that are durable in the log but not yet committed to their Delta
//! table. Queries see them at once (see [`super::overlay`]); the flusher commits them and then,
//! under the same lock that queries read through, swaps in the table's new snapshot and drops
//! the rows, so that no query sees a row twice or misses it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;

type TableKey = (String, String);

#[derive(Debug, Default)]
struct TableRows {
    /// Rows in sequence order.
    entries: Vec<(u64, RecordBatch)>,
    bytes: usize,
    oldest: Option<Instant>,
}

/// Rows waiting for their commit, per (tenant, table).
#[derive(Debug, Default)]
pub struct WriteBuffer {
    tables: Mutex<BTreeMap<TableKey, TableRows>>,
}

/// Rows taken for a flush: every buffered row of one table up to `last_seq`.
#[derive(Debug)]
pub struct PendingRows {
    /// Sequence number of the last row taken.
    pub last_seq: u64,
    /// The rows, oldest first.
    pub batches: Vec<RecordBatch>,
}

impl WriteBuffer {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<TableKey, TableRows>> {
        self.tables.lock().expect("write buffer poisoned")
    }

    /// Adds durable rows. Called in sequence order (by the log thread).
    pub fn insert(&self, tenant: &str, table: &str, seq: u64, batch: RecordBatch) {
        let mut tables = self.lock();
        let rows = tables
            .entry((tenant.to_string(), table.to_string()))
            .or_default();
        rows.bytes += batch.get_array_memory_size();
        rows.oldest.get_or_insert_with(Instant::now);
        rows.entries.push((seq, batch));
    }

    /// Runs `read` with a table's buffered rows while no flush can complete, so that what it
    /// reads next to them (the table's installed snapshot) matches them.
    pub fn read<T>(
        &self,
        tenant: &str,
        table: &str,
        read: impl FnOnce(Vec<RecordBatch>) -> T,
    ) -> T {
        let tables = self.lock();
        let rows = tables
            .get(&(tenant.to_string(), table.to_string()))
            .map(|rows| rows.entries.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default();
        read(rows)
    }

    /// Every buffered row of a table, kept in the buffer until [`Self::complete`].
    pub fn pending(&self, tenant: &str, table: &str) -> Option<PendingRows> {
        let tables = self.lock();
        let rows = tables.get(&(tenant.to_string(), table.to_string()))?;
        let last_seq = rows.entries.last()?.0;
        Some(PendingRows {
            last_seq,
            batches: rows.entries.iter().map(|(_, b)| b.clone()).collect(),
        })
    }

    /// After a commit of rows up to `last_seq`: runs `install` (which shows the new snapshot)
    /// and drops those rows, both under the lock queries read through.
    pub fn complete(&self, tenant: &str, table: &str, last_seq: u64, install: impl FnOnce()) {
        let mut tables = self.lock();
        install();
        let key = (tenant.to_string(), table.to_string());
        if let Some(rows) = tables.get_mut(&key) {
            rows.entries.retain(|(seq, _)| *seq > last_seq);
            rows.bytes = rows
                .entries
                .iter()
                .map(|(_, b)| b.get_array_memory_size())
                .sum();
            if rows.entries.is_empty() {
                tables.remove(&key);
            } else {
                rows.oldest = Some(Instant::now());
            }
        }
    }

    /// Forgets a table's rows (the table was dropped or replaced).
    pub fn discard(&self, tenant: &str, table: &str) {
        self.lock().remove(&(tenant.to_string(), table.to_string()));
    }

    /// Tables due for a flush: holding `flush_bytes` or more, or rows older than `max_age`.
    pub fn due(&self, flush_bytes: usize, max_age: Duration) -> Vec<(String, String)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, rows)| {
                rows.bytes >= flush_bytes
                    || rows
                        .oldest
                        .is_some_and(|oldest| now.duration_since(oldest) >= max_age)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Every table with buffered rows.
    pub fn tables(&self) -> Vec<(String, String)> {
        self.lock().keys().cloned().collect()
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.lock().values().map(|rows| rows.bytes).sum()
    }

    /// The lowest sequence number still buffered.
    pub fn lowest_seq(&self) -> Option<u64> {
        self.lock()
            .values()
            .filter_map(|rows| rows.entries.first().map(|(seq, _)| *seq))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use std::sync::Arc;

    fn batch(v: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v])) as _)]).unwrap()
    }

    #[test]
    fn complete_drops_only_what_was_committed() {
        let buffer = WriteBuffer::default();
        buffer.insert("t", "a", 1, batch(1));
        buffer.insert("t", "a", 3, batch(3));
        let pending = buffer.pending("t", "a").unwrap();
        assert_eq!(pending.last_seq, 3);
        buffer.insert("t", "a", 4, batch(4));
        let mut installed = false;
        buffer.complete("t", "a", pending.last_seq, || installed = true);
        assert!(installed);
        assert_eq!(buffer.read("t", "a", |rows| rows.len()), 1);
        assert_eq!(buffer.lowest_seq(), Some(4));
        buffer.complete("t", "a", 4, || {});
        assert_eq!(buffer.lowest_seq(), None);
        assert!(buffer.tables().is_empty());
    }

    #[test]
    fn due_by_size_and_age() {
        let buffer = WriteBuffer::default();
        buffer.insert("t", "a", 1, batch(1));
        assert!(buffer.due(usize::MAX, Duration::from_secs(60)).is_empty());
        assert_eq!(buffer.due(1, Duration::from_secs(60)).len(), 1);
        assert_eq!(buffer.due(usize::MAX, Duration::ZERO).len(), 1);
    }
}
