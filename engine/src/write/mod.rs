//! The durable write path shared by every way data arrives: the HTTP collection API, Flight
//! ingest and `tributary import`.
//!
//! A write is checked and shaped to its table first (bad input changes nothing), then events
//! lose the rows whose `message_id` was already accepted ([`dedup`]). What is left is logged
//! ([`wal`]: fsync, group commit) and put in the in-memory [`buffer`] that queries read
//! ([`overlay`]) before the write is acknowledged. A background flusher commits buffered rows
//! to their Delta table with the log sequence number of the last one as a Delta application
//! transaction, so that replaying the log at start skips exactly what is already committed. A
//! write larger than [`WriteOptions::direct_commit_bytes`] is one Delta commit of its own,
//! which is as durable as the log; an upload larger than that is not even held in memory
//! ([`bulk`]). Small files are compacted after every
//! [`WriteOptions::compact_after_commits`] flushes of a table.

pub mod buffer;
mod bulk;
pub mod conform;
pub mod dedup;
mod flush;
pub(crate) mod follow;
mod layout;
pub mod overlay;
pub mod wal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};
use tributary_catalog::builtin::EVENTS;
use tributary_catalog::{Catalog, SYSTEM_DIRECTORY, Storage, TenantSchema};

use crate::error::{Error, Result};
use buffer::WriteBuffer;
pub use conform::IfTableMissing;
use conform::{conform_batch, ensure_table};
use dedup::{Claim, MessageIds};
use wal::{Wal, WalRecord};

/// (tenant, table).
type TableKey = (String, String);

/// Settings of the write path.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Directory of the write-ahead log (a local disk). `None`: a temporary directory, for
    /// in-memory data roots whose data ends with the process anyway.
    pub wal_dir: Option<PathBuf>,
    /// Buffered rows are committed at the latest this long after they arrive.
    pub flush_interval: Duration,
    /// A table's buffered rows are committed once they take this many bytes.
    pub flush_bytes: usize,
    /// Writes are refused with [`Error::Overloaded`] while the buffer holds this many bytes.
    pub buffer_bytes_max: usize,
    /// A write this large skips the log and buffer: it is one Delta commit of its own.
    pub direct_commit_bytes: usize,
    /// An upload larger than [`WriteOptions::direct_commit_bytes`] keeps this much of its rows in
    /// memory; past it, its rows are spilled to local disk ([`bulk`]).
    pub load_memory_bytes: usize,
    /// How long a `message_id` is remembered for deduplication.
    pub dedup_window: Duration,
    /// A table's small files are compacted after this many flushes (0: never).
    pub compact_after_commits: usize,
    /// `profiles` is rebuilt this often when a tenant's data changed (zero: only on request).
    pub profile_refresh: Duration,
    /// How often commits of other processes on the same data root are looked for (zero:
    /// never; only this process writes).
    pub follow_interval: Duration,
}

impl WriteOptions {
    /// Defaults for a data root: the log under `<root>/_tributary/wal` for a local directory,
    /// `./tributary-wal` for an object store, a temporary directory for `memory://`.
    pub fn for_storage(storage: &Storage) -> Self {
        let wal_dir = match storage.local_directory() {
            Some(root) => Some(root.join(SYSTEM_DIRECTORY).join("wal")),
            None if storage.is_in_memory() => None,
            None => Some(PathBuf::from("tributary-wal")),
        };
        Self {
            wal_dir,
            flush_interval: Duration::from_secs(2),
            flush_bytes: 32 * 1024 * 1024,
            buffer_bytes_max: 512 * 1024 * 1024,
            direct_commit_bytes: 16 * 1024 * 1024,
            load_memory_bytes: 256 * 1024 * 1024,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            compact_after_commits: 20,
            profile_refresh: Duration::from_secs(60),
            follow_interval: Duration::from_secs(1),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Rows stored.
    pub rows: u64,
    /// Events left out because their `message_id` was already accepted with the same payload.
    pub duplicates: u64,
    /// Events left out because their `message_id` was already accepted with another payload.
    pub conflicts: u64,
}

/// Whether a write adds to the table or replaces its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Add the rows.
    Append,
    /// Replace every row (and, for a user table, the columns) in one commit.
    Replace,
}

/// Takes part in every write to a tenant's tables: [`WriteHook::keep`] filters rows before they
/// are logged (suppressed identifiers), [`WriteHook::written`] sees rows once acknowledged
/// (identity resolution).
pub trait WriteHook: Send + Sync {
    /// The rows of a write to keep.
    fn keep(&self, tenant: &str, table: &str, batch: RecordBatch) -> Result<RecordBatch>;
    /// Rows acknowledged: appended, or (with [`WriteMode::Replace`]) now the whole table.
    fn written(&self, tenant: &str, table: &str, batch: &RecordBatch, mode: WriteMode);
}

/// A future that, if dropped before it completes (the writer's request went away), is run to
/// completion in a task of its own. A write handed to the log will be stored, so what follows
/// its durability must happen too; while the writer waits, it runs in the writer's task, with
/// no task of its own.
struct RunsToCompletion(Option<Pin<Box<dyn Future<Output = Result<()>> + Send>>>);

impl Future for RunsToCompletion {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let work = self.0.as_mut().expect("polled after it completed");
        let outcome = std::task::ready!(work.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(outcome)
    }
}

impl Drop for RunsToCompletion {
    fn drop(&mut self) {
        let Some(work) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(work);
            }
            Err(_) => {
                tracing::warn!("a logged write dropped outside the runtime: not acknowledged")
            }
        }
    }
}

/// The write path of one server.
pub struct Writer {
    catalog: Arc<Catalog>,
    buffer: Arc<WriteBuffer>,
    wal: Wal,
    dedup: MessageIds,
    claim_stamps: dedup::ClaimStamps,
    options: WriteOptions,
    commit_locks: Mutex<HashMap<TableKey, Arc<tokio::sync::Mutex<()>>>>,
    commits_since_compaction: Mutex<HashMap<TableKey, usize>>,
    flush_now: Arc<tokio::sync::Notify>,
    /// Set when a write was refused because the buffer is full: the flusher then commits all.
    overloaded: std::sync::atomic::AtomicBool,
    hook: std::sync::OnceLock<Arc<dyn WriteHook>>,
    /// The Delta application id of this writer's log ([`wal::application_id`]).
    application_id: String,
    /// Where large loads spill their rows while they arrive (the log's directory: local disk).
    spill_dir: PathBuf,
    /// Keeps a temporary log directory alive as long as the writer.
    _temporary_wal: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Opens the write path: replays the log into the buffer (skipping what each table has
    /// committed), loads the recent message ids, and starts the background flusher.
    pub async fn open(catalog: Arc<Catalog>, options: WriteOptions) -> Result<Arc<Self>> {
        let (wal_dir, temporary) = match &options.wal_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = tempfile::tempdir().map_err(|e| {
                    Error::Storage(format!("cannot make a temporary log directory: {e}"))
                })?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let application_id = wal::application_id(&wal_dir)?;
        bulk::remove_stale_spills(&wal_dir);
        let committed = flush::committed_sequences(&catalog, &application_id).await?;
        let floor = committed.values().copied().max().unwrap_or(0) + 1;
        let (wal, records) = Wal::open(&wal_dir, floor)?;
        let writer = Arc::new(Self {
            catalog,
            buffer: Arc::new(WriteBuffer::default()),
            wal,
            dedup: MessageIds::new(options.dedup_window.as_micros() as i64),
            claim_stamps: dedup::ClaimStamps::default(),
            options,
            commit_locks: Mutex::default(),
            commits_since_compaction: Mutex::default(),
            flush_now: Arc::new(tokio::sync::Notify::new()),
            overloaded: std::sync::atomic::AtomicBool::new(false),
            hook: std::sync::OnceLock::new(),
            application_id,
            spill_dir: wal_dir,
            _temporary_wal: temporary,
        });
        writer.load_message_ids().await?;
        writer.replay(records, &committed)?;
        tokio::spawn(flush::run_flusher(Arc::downgrade(&writer)));
        Ok(writer)
    }

    /// Sets the hook every later write goes through (once).
    pub fn set_hook(&self, hook: Arc<dyn WriteHook>) {
        if self.hook.set(hook).is_err() {
            tracing::warn!("the write hook was set already; kept the first");
        }
    }

    /// The buffer queries read through.
    pub fn buffer(&self) -> &Arc<WriteBuffer> {
        &self.buffer
    }

    /// Writes rows to `tenant.public.table`; returns once they are durable and visible.
    pub async fn write(
        &self,
        tenant: &str,
        table: &str,
        batches: Vec<RecordBatch>,
        if_missing: IfTableMissing,
        mode: WriteMode,
    ) -> Result<WriteReceipt> {
        self.write_into_table(
            tenant,
            table,
            batches,
            if_missing,
            |schema, batches| async move { self.write_to(&schema, table, batches, mode).await },
        )
        .await
    }

    /// Runs `write` with `tenant`'s schema, first creating `table` from the columns of
    /// `batches` when it is missing and `if_missing` allows it. The load either lands whole,
    /// with its new table, or leaves nothing behind.
    async fn write_into_table<Written>(
        &self,
        tenant: &str,
        table: &str,
        batches: Vec<RecordBatch>,
        if_missing: IfTableMissing,
        write: impl FnOnce(Arc<TenantSchema>, Vec<RecordBatch>) -> Written,
    ) -> Result<WriteReceipt>
    where
        Written: std::future::Future<Output = Result<WriteReceipt>>,
    {
        let schema = self.catalog.require_tenant(tenant)?;
        let created = ensure_table(&schema, table, &batches, if_missing).await?;
        let result = write(Arc::clone(&schema), batches).await;
        if result.is_err() && created {
            schema.drop_table(table, true).await?;
        }
        result
    }

    /// Writes an upload as it arrives: as [`Writer::write`], but once the batches received
    /// exceed [`WriteOptions::direct_commit_bytes`] the rest is not collected in memory — the
    /// load is spilled by partition and committed whole at its end ([`bulk`]). A stream that
    /// ends in an error writes nothing. A replace is still collected.
    pub async fn write_stream(
        self: &Arc<Self>,
        tenant: &str,
        table: &str,
        batches: impl Stream<Item = Result<RecordBatch>> + Send,
        if_missing: IfTableMissing,
        mode: WriteMode,
    ) -> Result<WriteReceipt> {
        let mut batches = std::pin::pin!(batches);
        let mut held = Vec::new();
        let mut held_bytes = 0;
        while held_bytes < self.options.direct_commit_bytes || mode == WriteMode::Replace {
            let Some(batch) = batches.next().await else {
                return self.write(tenant, table, held, if_missing, mode).await;
            };
            let batch = batch?;
            held_bytes += bulk::rows_size(&batch)?;
            held.push(batch);
        }
        self.write_into_table(tenant, table, held, if_missing, |schema, held| {
            let rest = futures::stream::iter(held.into_iter().map(Ok)).chain(batches);
            bulk::load(self, schema, table, rest)
        })
        .await
    }

    async fn write_to(
        &self,
        schema: &TenantSchema,
        table: &str,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
    ) -> Result<WriteReceipt> {
        let tenant = schema.tenant();
        let started = std::time::Instant::now();
        let mut batch = self.shape(schema, table, &batches, mode)?;
        // The input is copied into `batch`: a large load is not held twice while it commits.
        drop(batches);
        if let Some(hook) = self.hook.get() {
            batch = hook.keep(tenant, table, batch)?;
        }
        tracing::debug!(
            table,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shaped a write"
        );
        if batch.num_rows() == 0 && mode == WriteMode::Append {
            return Ok(WriteReceipt::default());
        }
        let is_events = table == EVENTS;
        if mode == WriteMode::Replace {
            let rows = self.replace(schema, table, batch.clone()).await?;
            if let Some(hook) = self.hook.get() {
                hook.written(tenant, table, &batch, mode);
            }
            return Ok(WriteReceipt {
                rows,
                ..WriteReceipt::default()
            });
        }
        let started = std::time::Instant::now();
        let (batch, claimed, duplicates, conflicts) = if is_events {
            self.claim_message_ids(tenant, batch, self.claim_stamps.next(now_micros()))?
        } else {
            (batch, None, 0, 0)
        };
        tracing::debug!(
            table,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "deduplicated a write"
        );
        let rows = batch.num_rows() as u64;
        let mut acknowledged = self.hook.get().map(|_| batch.clone());
        let written = if rows == 0 {
            Ok(())
        } else if batch.get_array_memory_size() >= self.options.direct_commit_bytes {
            let started = std::time::Instant::now();
            let committed = self.commit_direct(schema, table, batch).await;
            tracing::info!(
                table,
                rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "committed a large write straight to Delta"
            );
            committed
        } else {
            // Once the record is handed to the log it will be stored, so the hook runs with it
            // even if this writer stops waiting.
            let (hook, seen) = (self.hook.get().cloned(), acknowledged.take());
            let (tenant, table_name) = (tenant.to_string(), table.to_string());
            self.log_and_buffer(schema, table, batch, move || {
                if let (Some(hook), Some(batch)) = (hook, seen) {
                    hook.written(&tenant, &table_name, &batch, WriteMode::Append);
                }
            })
            .await
        };
        if let Err(e) = written {
            if let Some(ids) = claimed {
                self.dedup.release(tenant, ids.iter().flatten());
            }
            return Err(e);
        }
        if let (Some(hook), Some(batch)) = (self.hook.get(), acknowledged)
            && rows > 0
        {
            hook.written(tenant, table, &batch, mode);
        }
        Ok(WriteReceipt {
            rows,
            duplicates,
            conflicts,
        })
    }

    /// Conforms the input to the table's columns and makes it one batch. Events get
    /// `received_at` (now) where it is missing.
    fn shape(
        &self,
        schema: &TenantSchema,
        table: &str,
        batches: &[RecordBatch],
        mode: WriteMode,
    ) -> Result<RecordBatch> {
        let replaces_columns =
            mode == WriteMode::Replace && !tributary_catalog::builtin::has_fixed_columns(table);
        let target = if replaces_columns {
            let first = batches.first().ok_or_else(|| {
                Error::InvalidInput(format!("cannot replace table '{table}' with no data"))
            })?;
            Arc::new(tributary_catalog::storage_schema(&first.schema()))
        } else {
            schema
                .delta_table(table)?
                .snapshot()?
                .snapshot()
                .arrow_schema()
        };
        let conformed = batches
            .iter()
            .map(|b| self.shape_batch(b, &target, table))
            .collect::<Result<Vec<_>>>()?;
        Ok(concat_batches(&target, &conformed)?)
    }

    /// One batch conformed to `target`, the columns of `table`; events get `received_at`
    /// (now) where it is missing.
    fn shape_batch(
        &self,
        batch: &RecordBatch,
        target: &SchemaRef,
        table: &str,
    ) -> Result<RecordBatch> {
        let batch = conform_batch(batch, target, table)?;
        if table == EVENTS {
            return fill_received_at(batch);
        }
        Ok(batch)
    }

    /// Drops rows whose message id was accepted before (or earlier in this write): returns
    /// the rows kept, their claimed ids, and the counts of duplicates and conflicts.
    #[allow(clippy::type_complexity)]
    fn claim_message_ids(
        &self,
        tenant: &str,
        batch: RecordBatch,
        stamp: i64,
    ) -> Result<(RecordBatch, Option<StringArray>, u64, u64)> {
        let (ids, payloads) = dedup::ids_and_payloads(&batch)?;
        let claims = self.dedup.claim(
            tenant,
            ids.iter()
                .map(|id| id.unwrap_or_default())
                .zip(payloads.iter().copied()),
            stamp,
        );
        let count = |kind: Claim| claims.iter().filter(|c| **c == kind).count() as u64;
        let (duplicates, conflicts) = (count(Claim::Duplicate), count(Claim::Conflict));
        if conflicts > 0 {
            let examples: Vec<&str> = claims
                .iter()
                .zip(ids.iter())
                .filter(|(claim, _)| **claim == Claim::Conflict)
                .filter_map(|(_, id)| id)
                .take(5)
                .collect();
            tracing::warn!(
                tenant,
                conflicts,
                ?examples,
                "message ids sent again with another payload; the first event is kept"
            );
        }
        if duplicates + conflicts == 0 {
            return Ok((batch, Some(ids), 0, 0));
        }
        let mask = BooleanArray::from(claims.iter().map(|c| *c == Claim::New).collect::<Vec<_>>());
        let kept = filter_record_batch(&batch, &mask)?;
        let claimed = datafusion::arrow::compute::filter(&ids, &mask)?;
        let claimed = claimed
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| Error::Internal("message ids are not text".into()))?;
        Ok((kept, Some(claimed), duplicates, conflicts))
    }

    async fn log_and_buffer(
        &self,
        schema: &TenantSchema,
        table: &str,
        batch: RecordBatch,
        acknowledged: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        let tenant = schema.tenant();
        let held = self.buffer.bytes();
        if held + batch.get_array_memory_size() > self.options.buffer_bytes_max {
            self.overloaded
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.flush_now.notify_one();
            return Err(Error::Overloaded(format!(
                "the write buffer is full ({} MiB waiting to be committed); retry shortly",
                held / (1024 * 1024)
            )));
        }
        let record = WalRecord {
            seq: 0,
            tenant: tenant.to_string(),
            table: table.to_string(),
            table_id: table_id(schema, table)?,
            batch,
        };
        let buffer = Arc::clone(&self.buffer);
        let buffered = record.clone();
        let durable = self.wal.submit(
            &record,
            Box::new(move |seq| {
                buffer.insert(&buffered.tenant, &buffered.table, seq, buffered.batch);
            }),
        )?;
        RunsToCompletion(Some(Box::pin(async move {
            durable.await?;
            acknowledged();
            Ok(())
        })))
        .await
    }

    /// Commits buffered rows of every table now (before a DML statement or at shutdown).
    pub async fn flush_all(&self) -> Result<()> {
        for (tenant, table) in self.buffer.tables() {
            self.flush_table(&tenant, &table).await?;
        }
        Ok(())
    }

    /// Forgets the buffered rows of a table that was dropped.
    pub fn discard(&self, tenant: &str, table: &str) {
        self.buffer.discard(tenant, table);
    }

    fn commit_lock(&self, tenant: &str, table: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.commit_locks.lock().expect("commit locks poisoned");
        Arc::clone(
            locks
                .entry((tenant.to_string(), table.to_string()))
                .or_default(),
        )
    }

    fn replay(
        &self,
        records: Vec<WalRecord>,
        committed: &HashMap<(String, String), u64>,
    ) -> Result<()> {
        let mut replayed = 0usize;
        for record in records {
            let key = (record.tenant.clone(), record.table.clone());
            if committed.get(&key).is_some_and(|last| record.seq <= *last) {
                continue;
            }
            let Some(schema) = self.catalog.tenant(&record.tenant) else {
                tracing::warn!(
                    tenant = record.tenant,
                    "log record for a tenant that is gone"
                );
                continue;
            };
            let Ok(delta) = schema.delta_table(&record.table) else {
                tracing::warn!(table = record.table, "log record for a table that is gone");
                continue;
            };
            if table_id(&schema, &record.table)? != record.table_id {
                tracing::warn!(
                    table = record.table,
                    "log record of a table since dropped and made again: skipped"
                );
                continue;
            }
            let target = delta.snapshot()?.snapshot().arrow_schema();
            let batch = match conform_batch(&record.batch, &target, &record.table) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(
                        table = record.table,
                        "log record no longer fits its table: {e}"
                    );
                    continue;
                }
            };
            if record.table == EVENTS {
                flush::remember_events(self, &record.tenant, &batch)?;
            }
            self.buffer
                .insert(&record.tenant, &record.table, record.seq, batch);
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(replayed, "replayed log records not yet committed");
        }
        Ok(())
    }
}

fn fill_received_at(batch: RecordBatch) -> Result<RecordBatch> {
    let Ok(index) = batch.schema().index_of("received_at") else {
        return Ok(batch);
    };
    let column = batch.column(index);
    if column.null_count() == 0 {
        return Ok(batch);
    }
    let times = column
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| Error::Internal("received_at is not a microsecond time".into()))?;
    let now = now_micros();
    let filled: TimestampMicrosecondArray = times
        .iter()
        .map(|t| Some(t.unwrap_or(now)))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone_opt(times.timezone());
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(filled);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The Delta table's id (from its metadata), which a table made again under the same name
/// does not share.
fn table_id(schema: &TenantSchema, table: &str) -> Result<String> {
    Ok(schema
        .delta_table(table)?
        .snapshot()?
        .metadata()
        .id()
        .to_string())
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
