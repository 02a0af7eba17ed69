//! Loads too large to hold in memory (`tributary import` of a large file, a bulk Flight ingest):
//! the rows are never all in memory at once, and they still land in one Delta commit.
//!
//! Each uploaded batch is shaped, filtered by the write hook and deduplicated as it arrives,
//! then split by the table's partition values ([`Spill`]): kept in memory up to
//! [`WriteOptions::load_memory_bytes`](super::WriteOptions), then in one Arrow IPC spill file
//! per partition on local disk. Once the upload has ended, each partition is sorted in the
//! table's storage order and written as its own data file — several partitions at a time, one
//! per core — and all the files are committed together. Only then do the write hook's readers
//! (identity resolution) see the rows, a partition at a time. A load that fails at any step
//! before the commit commits nothing and gives back the message ids it claimed; the files it
//! may have written are left unreferenced, for vacuum.
//!
//! Memory is bounded by the held rows (or else an uploaded batch), and one partition (or
//! [`RUN_BYTES`] of it, whichever is less: a larger partition is written as several files,
//! each sorted on its own) per core. The ids a load claims carry one arrival time of its own
//! ([`super::dedup::ClaimStamps`]), so they are given back without being listed.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::row::{RowConverter, SortField};
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
        spill.append(&kept.rows)?;
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
        target,
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
    target: SchemaRef,
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
            for part in &spilled.parts {
                // The load is committed: a spill that cannot be read back now costs the hook
                // these rows (`CALL rebuild_identity()` recovers them), not the load.
                match part.read_all(&self.target) {
                    Ok(batch) if batch.num_rows() > 0 => {
                        hook.written(tenant, table, &batch, WriteMode::Append)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        tenant,
                        table,
                        "identity resolution skipped part of a committed load: {e}"
                    ),
                }
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

/// Writes one spilled partition as data files (one per [`RUN_BYTES`] of rows, each sorted in the
/// table's storage order); returns their add actions.
async fn write_part(delta: &DeltaTable, table: &str, part: &SpilledPart) -> Result<Vec<Add>> {
    let mut files = RecordBatchWriter::for_table(delta)?;
    if let Some(properties) = layout::writer_properties(table) {
        files = files.with_writer_properties(properties);
    }
    let mut adds = Vec::new();
    let mut run: Vec<RecordBatch> = Vec::new();
    let mut run_bytes = 0;
    let mut batches = part.batches()?.peekable();
    while let Some(batch) = batches.next() {
        let batch = batch?;
        run_bytes += batch.get_array_memory_size();
        run.push(batch);
        if run_bytes >= RUN_BYTES || batches.peek().is_none() {
            let rows = concat_batches(&run[0].schema(), &run)?;
            run.clear();
            run_bytes = 0;
            files.write(layout::sorted_for_file(table, &rows)?).await?;
            adds.extend(files.flush().await?);
        }
    }
    Ok(adds)
}

/// The rows of a load so far by partition: in memory while the load is under
/// [`WriteOptions::load_memory_bytes`](super::WriteOptions), then in one IPC file per partition in a temporary directory.
struct Spill {
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
    schema: SchemaRef,
    /// The partition columns' positions, and the converter that makes their values one key.
    partition_key: Option<(Vec<usize>, RowConverter)>,
    parts: HashMap<Box<[u8]>, PartSink>,
    held_bytes: usize,
    /// Past this many held bytes, every partition goes to disk.
    held_max: usize,
    files: usize,
}

/// Where one partition's rows go.
enum PartSink {
    Held(Vec<RecordBatch>),
    File {
        path: PathBuf,
        file: Box<FileWriter<BufWriter<File>>>,
    },
}

/// A load's partitions, readable until this is dropped.
struct Spilled {
    parts: Vec<SpilledPart>,
    _dir: Option<tempfile::TempDir>,
}

/// One partition's rows: in memory, or in its spill file.
#[derive(Clone)]
enum SpilledPart {
    Held(Vec<RecordBatch>),
    File(PathBuf),
}

impl Spill {
    fn create(
        root: &Path,
        held_max: usize,
        schema: &SchemaRef,
        partitions: &[String],
    ) -> Result<Self> {
        let partition_key = if partitions.is_empty() {
            None
        } else {
            let positions = partitions
                .iter()
                .map(|name| schema.index_of(name))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let fields = positions
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect();
            Some((positions, RowConverter::new(fields)?))
        };
        Ok(Self {
            root: root.to_path_buf(),
            dir: None,
            schema: Arc::clone(schema),
            partition_key,
            parts: HashMap::new(),
            held_bytes: 0,
            held_max,
            files: 0,
        })
    }

    /// Adds rows to their partitions.
    fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some((positions, converter)) = &self.partition_key else {
            return self.push(&[], batch.clone());
        };
        let columns: Vec<ArrayRef> = positions
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let keys = converter.convert_columns(&columns)?;
        let mut groups: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for (row, key) in keys.iter().enumerate() {
            groups.entry(key.data()).or_default().push(row as u32);
        }
        for (key, rows) in groups {
            let rows = take_record_batch(batch, &UInt32Array::from(rows))?;
            self.push(key, rows)?;
        }
        Ok(())
    }

    /// Adds one partition's rows to it; goes to disk once the held rows are too many.
    fn push(&mut self, key: &[u8], rows: RecordBatch) -> Result<()> {
        let on_disk = self.dir.is_some();
        if !self.parts.contains_key(key) {
            let sink = if on_disk {
                self.open_file()?
            } else {
                PartSink::Held(Vec::new())
            };
            self.parts.insert(key.into(), sink);
        }
        match self.parts.get_mut(key).expect("inserted above") {
            PartSink::File { file, .. } => file.write(&rows)?,
            PartSink::Held(held) => {
                self.held_bytes += rows.get_array_memory_size();
                held.push(rows);
                if self.held_bytes > self.held_max {
                    self.move_to_disk()?;
                }
            }
        }
        Ok(())
    }

    /// Writes every held partition to its own file; later rows go straight to the files.
    fn move_to_disk(&mut self) -> Result<()> {
        let keys: Vec<Box<[u8]>> = self.parts.keys().cloned().collect();
        for key in keys {
            let mut sink = self.open_file()?;
            let PartSink::File { file, .. } = &mut sink else {
                unreachable!("open_file opens a file");
            };
            if let Some(PartSink::Held(held)) = self.parts.get(&key) {
                for rows in held {
                    file.write(rows)?;
                }
            }
            self.parts.insert(key, sink);
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// A new spill file in the load's directory (made on first use).
    fn open_file(&mut self) -> Result<PartSink> {
        if self.dir.is_none() {
            std::fs::create_dir_all(&self.root).map_err(spill_error(&self.root))?;
            let dir = tempfile::Builder::new()
                .prefix(SPILL_PREFIX)
                .tempdir_in(&self.root)
                .map_err(spill_error(&self.root))?;
            self.dir = Some(dir);
        }
        self.files += 1;
        let dir = self.dir.as_ref().expect("made above").path();
        let path = dir.join(format!("{}.arrow", self.files));
        let file = File::create(&path).map_err(spill_error(&path))?;
        let file = Box::new(FileWriter::try_new(BufWriter::new(file), &self.schema)?);
        Ok(PartSink::File { path, file })
    }

    /// The partitions, their files closed.
    fn finish(self) -> Result<Spilled> {
        let mut parts = Vec::with_capacity(self.parts.len());
        for (_, sink) in self.parts {
            parts.push(match sink {
                PartSink::Held(held) => SpilledPart::Held(held),
                PartSink::File { path, mut file } => {
                    file.finish()?;
                    SpilledPart::File(path)
                }
            });
        }
        Ok(Spilled {
            parts,
            _dir: self.dir,
        })
    }
}

impl SpilledPart {
    /// The partition's batches, in arrival order.
    fn batches(&self) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send + '_>> {
        Ok(match self {
            Self::Held(held) => Box::new(held.iter().cloned().map(Ok)),
            Self::File(path) => {
                let file = File::open(path).map_err(spill_error(path))?;
                Box::new(FileReader::try_new(file, None)?.map(|b| b.map_err(Error::from)))
            }
        })
    }

    /// The partition's rows as one batch.
    fn read_all(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let batches = self.batches()?.collect::<Result<Vec<_>>>()?;
        Ok(concat_batches(schema, &batches)?)
    }
}

/// The name every spill directory starts with: what is left of one after a crash is removed
/// when the writer opens.
pub(super) const SPILL_PREFIX: &str = "load-";

/// Removes spill directories a crashed process left in `root`.
pub(super) fn remove_stale_spills(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = path.is_dir()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SPILL_PREFIX));
        if stale && let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), "cannot remove a stale load spill: {e}");
        }
    }
}

fn spill_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Storage(format!("load spill {}: {e}", path.display()))
}
