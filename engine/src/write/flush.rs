//! Committing to Delta: the background flusher, direct commits of large writes, replace, and
//! compaction of small files. Every commit of a table holds that table's commit lock, and shows
//! its new snapshot to queries through [`WriteBuffer::complete`](super::buffer::WriteBuffer)
//! so that the rows it committed leave the buffer at the same moment.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::common::ScalarValue;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use tributary_catalog::builtin::EVENTS;
use tributary_catalog::{Catalog, TenantSchema};

use super::layout;
use super::{Writer, now_micros};
use crate::error::Result;

/// How often the flusher looks for due tables.
const TICK: Duration = Duration::from_millis(200);
/// How often expired message ids are forgotten.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

/// The last sequence of the log with `application_id` each table has committed, for every
/// table of every tenant.
pub(super) async fn committed_sequences(
    catalog: &Catalog,
    application_id: &str,
) -> Result<HashMap<(String, String), u64>> {
    let mut committed = HashMap::new();
    for tenant in catalog.tenant_names() {
        let Some(schema) = catalog.tenant(&tenant) else {
            continue;
        };
        for table in datafusion::catalog::SchemaProvider::table_names(schema.as_ref()) {
            let delta = schema.delta_table(&table)?;
            if let Some(seq) = committed_sequence(&delta, application_id).await? {
                committed.insert((tenant.clone(), table), seq);
            }
        }
    }
    Ok(committed)
}

async fn committed_sequence(delta: &DeltaTable, application_id: &str) -> Result<Option<u64>> {
    let version = delta
        .snapshot()?
        .transaction_version(delta.log_store().as_ref(), application_id)
        .await?;
    Ok(version.map(|v| v.max(0) as u64))
}

/// The flusher: commits due tables, trims the log, expires old message ids. Ends when the
/// writer is dropped.
pub(super) async fn run_flusher(writer: Weak<Writer>) {
    let mut since_expiry = Duration::ZERO;
    loop {
        let Some(strong) = writer.upgrade() else {
            return;
        };
        // After a write was refused for want of memory, every table is due.
        let pressed = strong
            .overloaded
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let due = if pressed {
            strong.buffer.tables()
        } else {
            strong
                .buffer
                .due(strong.options.flush_bytes, strong.options.flush_interval)
        };
        for (tenant, table) in due {
            if let Err(e) = strong.flush_table(&tenant, &table).await {
                tracing::error!(
                    tenant,
                    table,
                    "cannot commit buffered rows (will retry): {e}"
                );
            }
        }
        since_expiry += TICK;
        if since_expiry >= EXPIRE_EVERY {
            since_expiry = Duration::ZERO;
            let expired = strong.dedup.expire(now_micros());
            tracing::debug!(expired, "forgot message ids older than the dedup window");
        }
        let notify = Arc::clone(&strong.flush_now);
        // Holding the writer while asleep would keep it alive forever.
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(TICK) => {},
            () = notify.notified() => {},
        }
    }
}

impl Writer {
    /// Commits a table's buffered rows in one Delta commit that records the last log sequence
    /// it holds; then shows the new snapshot and drops the rows from the buffer.
    pub async fn flush_table(&self, tenant: &str, table: &str) -> Result<()> {
        let lock = self.commit_lock(tenant, table);
        let _guard = lock.lock().await;
        let Some(pending) = self.buffer.pending(tenant, table) else {
            return Ok(());
        };
        let Some(schema) = self
            .catalog
            .tenant(tenant)
            .filter(|schema| schema.has_table(table))
        else {
            self.buffer.discard(tenant, table);
            return Ok(());
        };
        let delta = schema.delta_table(table)?;
        // After a failed attempt the commit may have landed anyway: the log tells.
        let already = committed_sequence(&delta, &self.application_id)
            .await?
            .is_some_and(|seq| seq >= pending.last_seq);
        if !already {
            let properties = CommitProperties::default().with_application_transaction(
                Transaction::new(&self.application_id, pending.last_seq as i64),
            );
            layout::write(delta, table, pending.batches)?
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(properties)
                .await?;
        }
        self.show_commit(&schema, table, pending.last_seq).await;
        self.after_commit(&schema, table).await;
        self.release_log();
        Ok(())
    }

    /// Commits a large write straight to the table.
    pub(super) async fn commit_direct(
        &self,
        schema: &TenantSchema,
        table: &str,
        batch: RecordBatch,
    ) -> Result<()> {
        let lock = self.commit_lock(schema.tenant(), table);
        let _guard = lock.lock().await;
        layout::write(schema.delta_table(table)?, table, vec![batch])?
            .with_save_mode(SaveMode::Append)
            .await?;
        self.show_commit(schema, table, 0).await;
        Ok(())
    }

    /// Replaces a table's rows in one commit. Buffered rows of the table are part of what is
    /// replaced; the commit records their last sequence so a replay does not bring them back.
    pub(super) async fn replace(
        &self,
        schema: &TenantSchema,
        table: &str,
        batch: RecordBatch,
    ) -> Result<u64> {
        let tenant = schema.tenant();
        let lock = self.commit_lock(tenant, table);
        let _guard = lock.lock().await;
        let rows = batch.num_rows() as u64;
        let replaced_seq = self.buffer.pending(tenant, table).map(|p| p.last_seq);
        let mut properties = CommitProperties::default();
        if let Some(seq) = replaced_seq {
            properties = properties
                .with_application_transaction(Transaction::new(&self.application_id, seq as i64));
        }
        let mut write = layout::write(schema.delta_table(table)?, table, vec![batch.clone()])?
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(properties);
        if !tributary_catalog::builtin::has_fixed_columns(table) {
            write = write.with_schema_mode(SchemaMode::Overwrite);
        }
        write.await?;
        self.show_commit(schema, table, replaced_seq.unwrap_or(0))
            .await;
        if table == EVENTS {
            self.dedup.forget_tenant(tenant);
            remember_events(self, tenant, &batch)?;
        }
        Ok(rows)
    }

    /// Shows a table's new snapshot and drops its rows up to `last_seq` from the buffer. The
    /// commit has happened: if the snapshot cannot be read now, the rows still leave the
    /// buffer (they are in the table) and the next successful read shows them.
    pub(super) async fn show_commit(&self, schema: &TenantSchema, table: &str, last_seq: u64) {
        let mut attempts = 0;
        let loaded = loop {
            match schema.load_latest(table).await {
                Ok(loaded) => break Some(loaded),
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    tracing::warn!(table, "cannot read the new snapshot yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
                }
                Err(e) => {
                    tracing::error!(table, "cannot read the new snapshot: {e}");
                    break None;
                }
            }
        };
        self.buffer.complete(schema.tenant(), table, last_seq, || {
            if let Some(loaded) = loaded {
                schema.install(table, loaded);
            }
        });
    }

    /// Counts flushes and compacts a table's small files every so often.
    async fn after_commit(&self, schema: &TenantSchema, table: &str) {
        let every = self.options.compact_after_commits;
        if every == 0 {
            return;
        }
        let due = {
            let mut counts = self
                .commits_since_compaction
                .lock()
                .expect("compaction counts poisoned");
            let count = counts
                .entry((schema.tenant().to_string(), table.to_string()))
                .or_default();
            *count += 1;
            let due = *count >= every;
            if due {
                *count = 0;
            }
            due
        };
        if due && let Err(e) = self.compact(schema, table).await {
            tracing::warn!(table, "compaction failed (the table is unchanged): {e}");
        }
    }

    /// Merges a table's small files (the caller holds the table's commit lock): a sorted
    /// table's partitions are rewritten sorted ([`layout::rewrite_sorted`]); what is left, and
    /// every other table, goes through Delta's compaction.
    async fn compact(&self, schema: &TenantSchema, table: &str) -> Result<()> {
        if layout::is_sorted(table) {
            let delta = schema.delta_table(table)?;
            let (replaced, larger_left) = layout::rewrite_sorted(&delta, table).await?;
            if replaced > 0 {
                tracing::info!(table, replaced, "rewrote small files sorted");
                self.show_commit(schema, table, 0).await;
            }
            if !larger_left {
                return Ok(());
            }
        }
        let mut optimize = schema
            .delta_table(table)?
            .optimize()
            .with_type(OptimizeType::Compact);
        if let Some(properties) = layout::writer_properties(table) {
            optimize = optimize.with_writer_properties(properties);
        }
        let (_, metrics) = optimize.await?;
        tracing::info!(
            table,
            removed = metrics.num_files_removed,
            added = metrics.num_files_added,
            "compacted small files"
        );
        self.show_commit(schema, table, 0).await;
        Ok(())
    }

    fn release_log(&self) {
        match self.buffer.lowest_seq() {
            Some(seq) => self.wal.release_below(seq),
            None => self.wal.release_below(u64::MAX),
        }
    }

    /// Commits everything buffered and removes every committed record from the log (after an
    /// erasure, so that erased rows do not stay in log segments).
    pub async fn purge_log(&self) -> Result<()> {
        self.flush_all().await?;
        self.wal
            .purge_below(self.buffer.lowest_seq().unwrap_or(u64::MAX));
        Ok(())
    }

    /// Loads the message ids of every tenant's recent events (inside the dedup window).
    pub(super) async fn load_message_ids(&self) -> Result<()> {
        let since = self.dedup.window_start(now_micros());
        for tenant in self.catalog.tenant_names() {
            let Some(provider) = self
                .catalog
                .tenant(&tenant)
                .and_then(|schema| schema.provider(EVENTS))
            else {
                continue;
            };
            let batches = SessionContext::new()
                .read_table(provider)?
                .filter(
                    col("received_at").gt_eq(lit(ScalarValue::TimestampMicrosecond(
                        Some(since),
                        Some("UTC".into()),
                    ))),
                )?
                .select_columns(
                    &["message_id", "received_at"]
                        .into_iter()
                        .chain(super::dedup::PAYLOAD_COLUMNS)
                        .collect::<Vec<_>>(),
                )?
                .collect()
                .await?;
            for batch in batches {
                remember_events(self, &tenant, &batch)?;
            }
        }
        Ok(())
    }
}

/// Remembers the message ids of stored events with their arrival times and payloads.
pub(super) fn remember_events(writer: &Writer, tenant: &str, batch: &RecordBatch) -> Result<()> {
    let (ids, payloads) = super::dedup::ids_and_payloads(batch)?;
    let now = now_micros();
    let arrived = batch
        .column_by_name("received_at")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
    writer.dedup.remember(
        tenant,
        (0..ids.len()).filter(|i| ids.is_valid(*i)).map(|i| {
            let time = arrived
                .filter(|a| a.is_valid(i))
                .map_or(now, |a| a.value(i));
            (ids.value(i), time, payloads[i])
        }),
    );
    Ok(())
}
