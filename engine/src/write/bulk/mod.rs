//! Loads too large to hold in memory (`tributary import` of a large file, a bulk Flight ingest):
//! the rows are never all in memory at once, and they still land in one Delta commit.
//!
//! Each uploaded batch is shaped, filtered by the write hook and deduplicated as it arrives,
//! and kept with each row's partition ([`spill`]): in memory up to
//! [`WriteOptions::load_memory_bytes`](super::WriteOptions), past that in one Arrow IPC spill
//! file per partition on local disk. Once the upload has ended, each partition's rows are
//! gathered, sorted in the table's storage order and written as their own data file — several
//! partitions at a time, one per core — and all the files are committed together. Only then do
//! the write hook's readers (identity resolution) see the rows. A load that fails at any step
//! before the commit commits nothing and gives back the message ids it claimed; the files it
//! may have written are left unreferenced, for vacuum.
//!
//! Memory is bounded by the held rows (or else an uploaded batch), and one partition (or
//! [`RUN_BYTES`] of it, whichever is less: a larger partition is written as several files,
//! each sorted on its own) per core. The ids a load claims carry one arrival time of its own
//! ([`super::dedup::ClaimStamps`]), so they are given back without being listed.

mod spill;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::{Stream, StreamExt, TryStreamExt};
use tributary_catalog::TenantSchema;
use tributary_catalog::builtin::EVENTS;

use super::{WriteMode, WriteReceipt, Writer, layout};
use crate::error::{Error, Result};
use spill::{Spill, Spilled, SpilledPart};
pub(super) use spill::{remove_stale_spills, rows_size};

/// The most rows of one partition, in bytes of Arrow memory, sorted and written as one file.
pub(super) const RUN_BYTES: usize = 256 << 20;

/// Writes the whole of `batches` into `table` as one commit, holding a batch at a time.
///
/// The caller may be dropped at any await (a client that goes away cancels its request): while
/// the upload is read, that gives the claimed ids back ([`Claims`]); from the end of the upload
/// on, the commit and what follows run in a task of their own, so a load is never left half
/// done.
pub(super) async fn load(
    writer: &Arc<Writer>,
    schema: Arc<TenantSchema>,
    table: &str,
    batches: impl Stream<Item = Result<RecordBatch>> + Send,
) -> Result<WriteReceipt> {
    let delta = schema.delta_table(table)?;
    let target = delta.snapshot()?.snapshot().arrow_schema();
    let partitions = delta.snapshot()?.metadata().partition_columns().to_vec();
    let claims = Claims {
        writer: Arc::clone(writer),
        tenant: schema.tenant().to_string(),
        stamp: writer.claim_stamps.next(super::now_micros()),
        kept: false,
    };
    let mut spill = Spill::create(
        &writer.spill_dir,
        writer.options.load_memory_bytes,
        &target,
        &partitions,
    )?;
    let mut receipt = WriteReceipt::default();
    let mut batches = std::pin::pin!(batches);
    let (mut waited, mut admitting, mut spilling) = Default::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |total: &mut std::time::Duration| {
        *total += clock.elapsed();
        clock = std::time::Instant::now();
    };
    while let Some(batch) = batches.next().await {
        lap(&mut waited);
        let kept = admit(writer, &schema, table, &target, &batch?, claims.stamp)?;
        receipt.duplicates += kept.duplicates;
        receipt.conflicts += kept.conflicts;
        receipt.rows += kept.rows.num_rows() as u64;
        lap(&mut admitting);
        spill.append(kept.rows)?;
        lap(&mut spilling);
    }
    tracing::debug!(
        table,
        waited_ms = waited.as_millis() as u64,
        admitting_ms = admitting.as_millis() as u64,
        spilling_ms = spilling.as_millis() as u64,
        "received a load"
    );
    let spilled = spill.finish()?;
    let finish = Finish {
        writer: Arc::clone(writer),
        schema,
        table: table.to_string(),
        delta,
    };
    tokio::spawn(finish.run(spilled, claims, receipt))
        .await
        .map_err(|e| Error::Internal(format!("a load's commit failed: {e}")))?
}

/// Message ids a load claimed (all with the arrival time `stamp`): given back when it is
/// dropped before its commit.
struct Claims {
    writer: Arc<Writer>,
    tenant: String,
    stamp: i64,
    kept: bool,
}

impl Claims {
    /// The load is committed: its ids stay claimed.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        if !self.kept {
            self.writer
                .dedup
                .release_claimed_at(&self.tenant, self.stamp);
        }
    }
}

/// What a load does once its upload has ended, in a task of its own.
struct Finish {
    writer: Arc<Writer>,
    schema: Arc<TenantSchema>,
    table: String,
    delta: DeltaTable,
}

impl Finish {
    async fn run(
        self,
        spilled: Spilled,
        claims: Claims,
        receipt: WriteReceipt,
    ) -> Result<WriteReceipt> {
        let (tenant, table) = (self.schema.tenant(), self.table.as_str());
        if receipt.rows > 0 {
            commit(&self.writer, &self.schema, table, self.delta, &spilled).await?;
        }
        claims.keep();
        let started = std::time::Instant::now();
        if let Some(hook) = self.writer.hook.get() {
            let shown = spilled.for_each_batch(|batch| {
                hook.written(tenant, table, batch, WriteMode::Append);
            });
            // The load is committed: a spill that cannot be read back now costs the hook these
            // rows (`CALL rebuild_identity()` recovers them), not the load.
            if let Err(e) = shown {
                tracing::warn!(
                    tenant,
                    table,
                    "identity resolution skipped part of a committed load: {e}"
                );
            }
        }
        tracing::debug!(
            table,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "showed a load to the write hook"
        );
        Ok(receipt)
    }
}

/// The rows of one uploaded batch that a load keeps, and how many it dropped.
struct Admitted {
    rows: RecordBatch,
    duplicates: u64,
    conflicts: u64,
}

/// One uploaded batch made ready to spill: shaped to the table, filtered by the write hook, and
/// (for events) without the rows whose message id was accepted before; the new ids are claimed
/// with the load's `stamp`.
fn admit(
    writer: &Writer,
    schema: &TenantSchema,
    table: &str,
    target: &SchemaRef,
    batch: &RecordBatch,
    stamp: i64,
) -> Result<Admitted> {
    let mut rows = writer.shape_batch(batch, target, table)?;
    if let Some(hook) = writer.hook.get() {
        rows = hook.keep(schema.tenant(), table, rows)?;
    }
    if table != EVENTS {
        return Ok(Admitted {
            rows,
            duplicates: 0,
            conflicts: 0,
        });
    }
    let (rows, _, duplicates, conflicts) =
        writer.claim_message_ids(schema.tenant(), rows, stamp)?;
    Ok(Admitted {
        rows,
        duplicates,
        conflicts,
    })
}

/// Writes every spilled partition as sorted data files, several at a time, and commits them all
/// in one Delta commit.
async fn commit(
    writer: &Writer,
    schema: &TenantSchema,
    table: &str,
    delta: DeltaTable,
    spilled: &Spilled,
) -> Result<()> {
    let started = std::time::Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs: Vec<(DeltaTable, String, SpilledPart)> = spilled
        .parts
        .iter()
        .map(|part| (delta.clone(), table.to_string(), part.clone()))
        .collect();
    let written: Vec<Vec<Add>> = futures::stream::iter(jobs)
        .map(|(delta, table, part)| {
            tokio::spawn(async move { write_part(&delta, &table, &part).await })
        })
        .buffer_unordered(cores)
        .map(|joined| joined.map_err(|e| Error::Internal(format!("a file writer failed: {e}")))?)
        .try_collect()
        .await?;
    let actions: Vec<Action> = written.into_iter().flatten().map(Action::Add).collect();
    let files = actions.len();
    let lock = writer.commit_lock(schema.tenant(), table);
    let _guard = lock.lock().await;
    let latest = schema.delta_table(table)?;
    let partition_by = Some(latest.snapshot()?.metadata().partition_columns().to_vec())
        .filter(|columns| !columns.is_empty());
    CommitBuilder::default()
        .with_actions(actions)
        .build(
            Some(latest.snapshot()?),
            latest.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by,
                predicate: None,
            },
        )
        .await?;
    writer.show_commit(schema, table, 0).await;
    tracing::info!(
        table,
        files,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "committed a load spilled by partition"
    );
    Ok(())
}

/// Writes one partition as data files (one per [`RUN_BYTES`] of rows, each sorted in the
/// table's storage order); returns their add actions.
async fn write_part(delta: &DeltaTable, table: &str, part: &SpilledPart) -> Result<Vec<Add>> {
    let mut files = RecordBatchWriter::for_table(delta)?;
    if let Some(properties) = layout::writer_properties(table) {
        files = files.with_writer_properties(properties);
    }
    let mut adds = Vec::new();
    for run in part.runs(table, RUN_BYTES)? {
        files.write(run?).await?;
        adds.extend(files.flush().await?);
    }
    Ok(adds)
}
