//! The write-ahead log: where an accepted write becomes durable before it is acknowledged.
//!
//! One log per server, on a local disk, as segment files `<first seq>.wal`. Every record is a
//! frame `[length u32][crc32 u32][seq u64][tenant][table][table id][Arrow IPC stream]`, numbered by a
//! sequence that only grows. One thread owns the open segment: it takes every record waiting
//! (group commit), writes them, calls `fsync` once, and only then runs each record's
//! `on_durable` step, in sequence order, and answers the writers. A frame cut short by a crash
//! is the log's end: replay stops there and the next write overwrites it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// A segment is closed and a new one started once it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// One group commit writes at most this much before it syncs.
const GROUP_BYTES_MAX: usize = 32 * 1024 * 1024;
const FRAME_HEADER: usize = 8;

/// One logged write: rows for one table of one tenant.
#[derive(Debug, Clone)]
pub struct WalRecord {
    /// The write's sequence number (0 until the log assigns it).
    pub seq: u64,
    /// Tenant name.
    pub tenant: String,
    /// Table name.
    pub table: String,
    /// The Delta table's id: a table dropped and made again under the same name has another,
    /// so a replay never puts the old table's rows into the new one.
    pub table_id: String,
    /// The rows.
    pub batch: RecordBatch,
}

/// Run by the log thread once a record is durable, before the writer hears so.
pub type OnDurable = Box<dyn FnOnce(u64) + Send>;

/// A record waiting in a group commit: its encoded body, its durable step, its writer.
type Pending = (Vec<u8>, OnDurable, oneshot::Sender<Result<u64>>);

enum Command {
    Append {
        frame_body: Vec<u8>,
        on_durable: OnDurable,
        done: oneshot::Sender<Result<u64>>,
    },
    /// Every record below `seq` is committed; rotate a fully committed active segment of at
    /// least `rotate_at_bytes`.
    Release { seq: u64, rotate_at_bytes: u64 },
}

/// Handle to the log thread.
#[derive(Debug)]
pub struct Wal {
    sender: mpsc::Sender<Command>,
    /// Shared with each pending answer, which names it if the log stops.
    dir: Arc<Path>,
    /// Held (an exclusive `flock`) while the log is open: a second process on the same
    /// directory would replay and commit the same records.
    _lock: File,
}

/// The Delta application id under which the flushes of a log record the last sequence they
/// committed; logs made before ids were per log keep this one.
pub const LEGACY_APPLICATION_ID: &str = "tributary-wal";

/// The file in a log directory holding its application id.
const APPLICATION_ID_FILE: &str = "APPLICATION_ID";

/// The Delta application id of the log in `dir`, made on first use: `tributary-wal-<random>`,
/// or [`LEGACY_APPLICATION_ID`] for a log that already has records but no id yet. Each log
/// has its own, so that two servers appending to one table never read each other's recorded
/// sequence as their own (which would drop rows as "already committed").
pub fn application_id(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the log directory", e))?;
    let path = dir.join(APPLICATION_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&path, "read", e)),
    }
    let id = if list_segments(dir)?.is_empty() {
        format!("{LEGACY_APPLICATION_ID}-{:032x}", rand::random::<u128>())
    } else {
        LEGACY_APPLICATION_ID.to_string()
    };
    let temporary = dir.join(format!("{APPLICATION_ID_FILE}.new"));
    let mut file = File::create(&temporary).map_err(|e| io_error(&temporary, "create", e))?;
    file.write_all(id.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&temporary, "write", e))?;
    std::fs::rename(&temporary, &path).map_err(|e| io_error(&path, "rename", e))?;
    Ok(id)
}

impl Wal {
    /// Opens the log in `dir`: reads every record in it (for replay) and starts the log thread.
    /// New records are numbered from `max(last record + 1, next_seq_floor)`.
    pub fn open(dir: &Path, next_seq_floor: u64) -> Result<(Self, Vec<WalRecord>)> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the log directory", e))?;
        let lock = lock_directory(dir)?;
        let segments = list_segments(dir)?;
        let mut records = Vec::new();
        let mut tail: Option<(PathBuf, u64)> = None;
        for (index, (_, path)) in segments.iter().enumerate() {
            let is_last = index + 1 == segments.len();
            let valid_len = read_segment(path, &mut records, is_last)?;
            if is_last {
                tail = Some((path.clone(), valid_len));
            }
        }
        let next_seq = records
            .last()
            .map_or(1, |r| r.seq + 1)
            .max(next_seq_floor.max(1));
        let (active, active_len) = match tail {
            Some((path, len)) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, "open", e))?;
                // Whatever follows the last whole frame is a write cut short: drop it.
                file.set_len(len)
                    .map_err(|e| io_error(&path, "truncate", e))?;
                file.seek(SeekFrom::Start(len))
                    .map_err(|e| io_error(&path, "seek", e))?;
                file.sync_all().map_err(|e| io_error(&path, "sync", e))?;
                (file, len)
            }
            None => (new_segment(dir, next_seq)?, 0),
        };
        let mut segment_firsts: Vec<u64> = segments.iter().map(|(first, _)| *first).collect();
        if segment_firsts.is_empty() {
            segment_firsts.push(next_seq);
        }
        let (sender, receiver) = mpsc::channel();
        let state = LogThread {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, active),
            file_len: active_len,
            next_seq,
            segment_firsts,
            failed: None,
        };
        std::thread::Builder::new()
            .name("tributary-wal".into())
            .spawn(move || state.run(receiver))
            .map_err(|e| io_error(dir, "start the log thread", e))?;
        Ok((
            Self {
                sender,
                dir: Arc::from(dir),
                _lock: lock,
            },
            records,
        ))
    }

    /// Logs a record; resolves with its sequence number once it is on disk and `on_durable` ran.
    pub async fn append(&self, record: &WalRecord, on_durable: OnDurable) -> Result<u64> {
        self.submit(record, on_durable)?.await
    }

    /// Hands a record to the log thread now, which logs it whether or not the answer returned
    /// is awaited (its writer may have gone away); the answer resolves as [`Self::append`]'s.
    pub fn submit(
        &self,
        record: &WalRecord,
        on_durable: OnDurable,
    ) -> Result<impl Future<Output = Result<u64>> + Send + 'static> {
        let frame_body = encode_body(record)?;
        let (done, answer) = oneshot::channel();
        self.sender
            .send(Command::Append {
                frame_body,
                on_durable,
                done,
            })
            .map_err(|_| self.stopped())?;
        let dir = Arc::clone(&self.dir);
        Ok(async move { answer.await.map_err(|_| stopped_at(&dir))? })
    }

    /// Tells the log that every record below `seq` is committed to its table.
    pub fn release_below(&self, seq: u64) {
        let _ = self.sender.send(Command::Release {
            seq,
            rotate_at_bytes: SEGMENT_BYTES / 4,
        });
    }

    /// As [`Self::release_below`], and when every record is committed the active segment is
    /// replaced however small it is, so that no committed record stays on disk (after an erasure).
    pub fn purge_below(&self, seq: u64) {
        let _ = self.sender.send(Command::Release {
            seq,
            rotate_at_bytes: 1,
        });
    }

    fn stopped(&self) -> Error {
        stopped_at(&self.dir)
    }
}

fn stopped_at(dir: &Path) -> Error {
    Error::Storage(format!(
        "the write-ahead log in {} has stopped",
        dir.display()
    ))
}

struct LogThread {
    dir: PathBuf,
    file: BufWriter<File>,
    file_len: u64,
    next_seq: u64,
    /// First sequence number of every segment on disk, oldest first; the last is active.
    segment_firsts: Vec<u64>,
    /// Set after a failed write or sync: nothing more is accepted (the disk is in doubt).
    failed: Option<String>,
}

impl LogThread {
    fn run(mut self, receiver: mpsc::Receiver<Command>) {
        while let Ok(first) = receiver.recv() {
            let mut group = Vec::new();
            let mut group_bytes = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Release {
                        seq,
                        rotate_at_bytes,
                    } => self.release_below(seq, rotate_at_bytes),
                    Command::Append {
                        frame_body,
                        on_durable,
                        done,
                    } => {
                        group_bytes += frame_body.len();
                        group.push((frame_body, on_durable, done));
                    }
                }
                if group_bytes < GROUP_BYTES_MAX {
                    next = receiver.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
        }
        let _ = self.file.flush();
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        let first_seq = self.next_seq;
        let written = match &self.failed {
            Some(reason) => Err(reason.clone()),
            None => self.write_frames(&group).map_err(|e| {
                let reason = format!(
                    "the write-ahead log in {} failed and accepts no more writes: {e}",
                    self.dir.display()
                );
                self.failed = Some(reason.clone());
                reason
            }),
        };
        match written {
            Ok(()) => {
                for (offset, (_, on_durable, done)) in group.into_iter().enumerate() {
                    let seq = first_seq + offset as u64;
                    on_durable(seq);
                    let _ = done.send(Ok(seq));
                }
                if self.file_len >= SEGMENT_BYTES
                    && let Err(e) = self.rotate()
                {
                    self.failed = Some(format!("cannot start a new log segment: {e}"));
                }
            }
            Err(reason) => {
                for (_, _, done) in group {
                    let _ = done.send(Err(Error::Storage(reason.clone())));
                }
            }
        }
    }

    fn write_frames(&mut self, group: &[Pending]) -> std::io::Result<()> {
        let mut seq = self.next_seq;
        for (body, _, _) in group {
            let mut checked = Vec::with_capacity(8 + body.len());
            checked.extend_from_slice(&seq.to_le_bytes());
            checked.extend_from_slice(body);
            let len = u32::try_from(checked.len())
                .map_err(|_| std::io::Error::other("a record over 4 GiB"))?;
            self.file.write_all(&len.to_le_bytes())?;
            self.file
                .write_all(&crc32fast::hash(&checked).to_le_bytes())?;
            self.file.write_all(&checked)?;
            self.file_len += (FRAME_HEADER + checked.len()) as u64;
            seq += 1;
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.next_seq = seq;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| io_error(&self.dir, "flush", e))?;
        let file = new_segment(&self.dir, self.next_seq)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.file_len = 0;
        self.segment_firsts.push(self.next_seq);
        Ok(())
    }

    fn release_below(&mut self, seq: u64, rotate_at_bytes: u64) {
        // A closed segment can go when the next one starts at or below `seq`.
        while self.segment_firsts.len() > 1 && self.segment_firsts[1] <= seq {
            let path = segment_path(&self.dir, self.segment_firsts[0]);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), "cannot remove a log segment: {e}");
                return;
            }
            self.segment_firsts.remove(0);
        }
        // Everything logged is committed and the active segment is large: start afresh.
        if seq >= self.next_seq && self.file_len >= rotate_at_bytes && self.failed.is_none() {
            if let Err(e) = self.rotate() {
                self.failed = Some(format!("cannot start a new log segment: {e}"));
                return;
            }
            self.release_below(seq, rotate_at_bytes);
        }
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn new_segment(dir: &Path, first_seq: u64) -> Result<File> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "create", e))?;
    // The new name must survive a crash too.
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(file)
}

/// Takes the log directory for this process, or says which other one has it.
fn lock_directory(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Storage(format!(
            "the write-ahead log in {} is in use by another process (another `tributary serve` \
             on the same data root?): give each server its own --wal-dir",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(&path, "lock", e)),
    }
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, "list", e))? {
        let path = entry.map_err(|e| io_error(dir, "list", e))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads the whole frames of one segment into `records`; returns the length they take. A
/// damaged frame ends the last segment (a write cut short) but is an error anywhere else.
fn read_segment(path: &Path, records: &mut Vec<WalRecord>, is_last: bool) -> Result<u64> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(0))?;
            f.read_to_end(&mut bytes)
        })
        .map_err(|e| io_error(path, "read", e))?;
    let mut offset = 0usize;
    while offset < bytes.len() {
        match decode_frame(&bytes[offset..]) {
            Some((record, frame_len)) => {
                records.push(record?);
                offset += frame_len;
            }
            None if is_last => {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    "the log ends in a write cut short; it is dropped (it was never acknowledged)"
                );
                break;
            }
            None => {
                return Err(Error::Storage(format!(
                    "the write-ahead log segment {} is damaged at byte {offset}",
                    path.display()
                )));
            }
        }
    }
    Ok(offset as u64)
}

/// One frame from the start of `bytes`, with its length; `None` when it is incomplete or its
/// checksum does not match.
fn decode_frame(bytes: &[u8]) -> Option<(Result<WalRecord>, usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let checked = bytes.get(FRAME_HEADER..FRAME_HEADER + len)?;
    if crc32fast::hash(checked) != crc || checked.len() < 8 {
        return None;
    }
    let seq = u64::from_le_bytes(checked[0..8].try_into().ok()?);
    Some((decode_body(seq, &checked[8..]), FRAME_HEADER + len))
}

fn encode_body(record: &WalRecord) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(record.batch.get_array_memory_size() + 64);
    for name in [&record.tenant, &record.table, &record.table_id] {
        let len = u16::try_from(name.len())
            .map_err(|_| Error::InvalidInput(format!("name too long: {name}")))?;
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(name.as_bytes());
    }
    let mut writer = StreamWriter::try_new(&mut body, &record.batch.schema())?;
    writer.write(&record.batch)?;
    writer.finish()?;
    drop(writer);
    Ok(body)
}

fn decode_body(seq: u64, body: &[u8]) -> Result<WalRecord> {
    let damaged = || Error::Storage(format!("log record {seq} is damaged"));
    let mut rest = body;
    let mut names = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = u16::from_le_bytes(
            rest.get(0..2)
                .ok_or_else(damaged)?
                .try_into()
                .unwrap_or_default(),
        ) as usize;
        let name = rest.get(2..2 + len).ok_or_else(damaged)?;
        names.push(String::from_utf8(name.to_vec()).map_err(|_| damaged())?);
        rest = &rest[2 + len..];
    }
    let reader = StreamReader::try_new(Cursor::new(rest), None)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(damaged)?;
    let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
    let table_id = names.pop().ok_or_else(damaged)?;
    let table = names.pop().ok_or_else(damaged)?;
    let tenant = names.pop().ok_or_else(damaged)?;
    Ok(WalRecord {
        seq,
        tenant,
        table,
        table_id,
        batch,
    })
}

fn io_error(path: &Path, action: &str, error: std::io::Error) -> Error {
    Error::Storage(format!(
        "write-ahead log: cannot {action} {}: {error}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn each_new_log_has_its_own_application_id_and_old_logs_keep_theirs() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = application_id(first.path()).unwrap();
        assert!(id.starts_with("tributary-wal-"), "{id}");
        assert_eq!(
            application_id(first.path()).unwrap(),
            id,
            "stable across opens"
        );
        assert_ne!(application_id(second.path()).unwrap(), id);
        let old = tempfile::tempdir().unwrap();
        new_segment(old.path(), 1).unwrap();
        assert_eq!(application_id(old.path()).unwrap(), LEGACY_APPLICATION_ID);
    }

    fn record(value: i64) -> WalRecord {
        let batch =
            RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![value])) as _)])
                .unwrap();
        WalRecord {
            seq: 0,
            tenant: "default".into(),
            table: "t".into(),
            table_id: "id-1".into(),
            batch,
        }
    }

    fn value(record: &WalRecord) -> i64 {
        record
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn records_come_back_in_order_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert!(replayed.is_empty());
        let applied = Arc::new(AtomicU64::new(0));
        let mut seqs = Vec::new();
        for v in 0..5 {
            let on_durable = Arc::clone(&applied);
            let seq = wal
                .append(
                    &record(v),
                    Box::new(move |seq| on_durable.store(seq, Ordering::SeqCst)),
                )
                .await
                .unwrap();
            assert_eq!(
                applied.load(Ordering::SeqCst),
                seq,
                "applied before the ack"
            );
            seqs.push(seq);
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        drop(wal);
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        let values: Vec<_> = replayed.iter().map(value).collect();
        assert_eq!(values, [0, 1, 2, 3, 4]);
        let seq = wal.append(&record(9), Box::new(|_| {})).await.unwrap();
        assert_eq!(seq, 6, "numbering goes on after the replayed records");
    }

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path(), 0).unwrap();
            for v in 0..3 {
                wal.append(&record(v), Box::new(|_| {})).await.unwrap();
            }
        }
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 5).unwrap();
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(replayed.iter().map(value).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(wal.append(&record(7), Box::new(|_| {})).await.unwrap(), 3);
        drop(wal);
        let (_, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(replayed.iter().map(value).collect::<Vec<_>>(), [0, 1, 7]);
    }

    #[tokio::test]
    async fn a_log_in_use_is_refused_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        let error = Wal::open(dir.path(), 0).unwrap_err();
        assert!(
            error.to_string().contains("in use by another process"),
            "{error}"
        );
        drop(wal);
        Wal::open(dir.path(), 0).unwrap();
    }

    #[tokio::test]
    async fn numbering_starts_above_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 100).unwrap();
        assert_eq!(wal.append(&record(1), Box::new(|_| {})).await.unwrap(), 100);
    }

    #[tokio::test]
    async fn concurrent_appends_share_syncs_and_keep_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        let wal = Arc::new(wal);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for v in 0..64 {
            let wal = Arc::clone(&wal);
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                wal.append(
                    &record(v),
                    Box::new(move |seq| order.lock().unwrap().push(seq)),
                )
                .await
                .unwrap()
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "on_durable runs in sequence order");
        assert_eq!(order.len(), 64);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Whatever byte a crash cuts the log at, replay gives back a prefix of the records
        /// in order, every record wholly before the cut included, and the log goes on.
        #[test]
        fn a_cut_anywhere_replays_a_prefix(values in proptest::collection::vec(0i64..1000, 1..12), cut in 0.0f64..1.0) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let mut ends = Vec::new();
            runtime.block_on(async {
                let (wal, _) = Wal::open(dir.path(), 0).unwrap();
                for v in &values {
                    wal.append(&record(*v), Box::new(|_| {})).await.unwrap();
                    let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
                    ends.push(std::fs::metadata(path).unwrap().len());
                }
            });
            let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            let cut_at = (len as f64 * cut) as u64;
            OpenOptions::new().write(true).open(&path).unwrap().set_len(cut_at).unwrap();
            let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
            let whole = ends.iter().filter(|end| **end <= cut_at).count();
            let got: Vec<i64> = replayed.iter().map(value).collect();
            proptest::prop_assert_eq!(&got[..], &values[..whole]);
            let next = runtime.block_on(wal.append(&record(-1), Box::new(|_| {}))).unwrap();
            proptest::prop_assert_eq!(next, whole as u64 + 1);
        }
    }
}
