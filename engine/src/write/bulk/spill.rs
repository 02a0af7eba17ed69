//! Where a bulk load's rows wait between their arrival and its commit: in memory, as the batches
//! that arrived with each row's partition, while they take at most the load's memory budget;
//! past it, in one Arrow IPC file per partition on local disk. Either way each partition is
//! later read out as runs of rows sorted for one data file each.

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

use super::super::layout;
use crate::error::{Error, Result};

/// The name every spill directory starts with: what is left of one after a crash is removed
/// when the writer opens.
const SPILL_PREFIX: &str = "load-";

/// Rows handed to the write hook at a time when a load was spilled, in bytes.
const HOOK_BATCH_BYTES: usize = 16 << 20;

/// The rows of a load so far.
pub(super) struct Spill {
    root: PathBuf,
    /// The spill directory, once the load went to disk.
    dir: Option<tempfile::TempDir>,
    schema: SchemaRef,
    /// The partition columns' positions, and the converter that makes their values one key.
    partition_key: Option<(Vec<usize>, RowConverter)>,
    /// Each partition's number, by key.
    numbers: HashMap<Box<[u8]>, u32>,
    /// Held batches as they arrived, with each row's partition number.
    held: Vec<(RecordBatch, Vec<u32>)>,
    held_bytes: usize,
    /// Past this many held bytes, the load goes to disk.
    held_max: usize,
    /// On disk: each partition's file, by number.
    files: Vec<Option<PartFile>>,
}

struct PartFile {
    path: PathBuf,
    writer: Box<FileWriter<BufWriter<File>>>,
}

impl Spill {
    pub(super) fn create(
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
            numbers: HashMap::new(),
            held: Vec::new(),
            held_bytes: 0,
            held_max,
            files: Vec::new(),
        })
    }

    /// Adds rows; goes to disk once the held rows are too many.
    pub(super) fn append(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let parts = self.partitions_of(&batch)?;
        if self.dir.is_some() {
            return self.write_split(&batch, &parts);
        }
        self.held_bytes += rows_size(&batch)?;
        self.held.push((batch, parts));
        if self.held_bytes > self.held_max {
            self.move_to_disk()?;
        }
        Ok(())
    }

    /// Each row's partition number.
    fn partitions_of(&mut self, batch: &RecordBatch) -> Result<Vec<u32>> {
        let Self {
            partition_key,
            numbers,
            ..
        } = self;
        let Some((positions, converter)) = partition_key else {
            numbers.entry(Box::default()).or_insert(0);
            return Ok(vec![0; batch.num_rows()]);
        };
        let columns: Vec<ArrayRef> = positions
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let keys = converter.convert_columns(&columns)?;
        let mut parts = Vec::with_capacity(batch.num_rows());
        for key in keys.iter() {
            let next = numbers.len() as u32;
            parts.push(match numbers.get(key.data()) {
                Some(&number) => number,
                None => *numbers.entry(key.data().into()).or_insert(next),
            });
        }
        Ok(parts)
    }

    /// Appends each partition's rows of `batch` to its file.
    fn write_split(&mut self, batch: &RecordBatch, parts: &[u32]) -> Result<()> {
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.numbers.len()];
        for (row, &part) in parts.iter().enumerate() {
            rows[part as usize].push(row as u32);
        }
        for (part, rows) in rows.into_iter().enumerate() {
            if !rows.is_empty() {
                let taken = take_record_batch(batch, &UInt32Array::from(rows))?;
                self.file(part)?.write(&taken)?;
            }
        }
        Ok(())
    }

    /// The file of partition `part`, made on first use (and the spill directory with it).
    fn file(&mut self, part: usize) -> Result<&mut FileWriter<BufWriter<File>>> {
        if self.dir.is_none() {
            std::fs::create_dir_all(&self.root).map_err(spill_error(&self.root))?;
            let dir = tempfile::Builder::new()
                .prefix(SPILL_PREFIX)
                .tempdir_in(&self.root)
                .map_err(spill_error(&self.root))?;
            self.dir = Some(dir);
        }
        if self.files.len() <= part {
            self.files.resize_with(part + 1, || None);
        }
        if self.files[part].is_none() {
            let dir = self.dir.as_ref().expect("made above").path();
            let path = dir.join(format!("{part}.arrow"));
            let file = File::create(&path).map_err(spill_error(&path))?;
            let writer = Box::new(FileWriter::try_new(BufWriter::new(file), &self.schema)?);
            self.files[part] = Some(PartFile { path, writer });
        }
        Ok(&mut self.files[part].as_mut().expect("opened above").writer)
    }

    /// Writes the held batches to the partitions' files; later rows go straight to them.
    fn move_to_disk(&mut self) -> Result<()> {
        for (batch, parts) in std::mem::take(&mut self.held) {
            self.write_split(&batch, &parts)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// The load's partitions, their files closed.
    pub(super) fn finish(self) -> Result<Spilled> {
        if self.dir.is_some() || self.held.is_empty() {
            let mut parts = Vec::new();
            for file in self.files.into_iter().flatten() {
                let PartFile { path, mut writer } = file;
                writer.finish()?;
                parts.push(SpilledPart::File(path));
            }
            return Ok(Spilled {
                parts,
                held: Arc::default(),
                _dir: self.dir,
            });
        }
        let mut rows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.numbers.len()];
        for (index, (_, parts)) in self.held.iter().enumerate() {
            for (row, &part) in parts.iter().enumerate() {
                rows[part as usize].push((index, row));
            }
        }
        let held_rows: usize = self.held.iter().map(|(batch, _)| batch.num_rows()).sum();
        let row_bytes = self.held_bytes / held_rows.max(1);
        let held: Arc<Vec<RecordBatch>> = Arc::new(self.held.into_iter().map(|(b, _)| b).collect());
        let parts = rows
            .into_iter()
            .filter(|rows| !rows.is_empty())
            .map(|rows| SpilledPart::Held {
                batches: Arc::clone(&held),
                rows,
                row_bytes,
            })
            .collect();
        Ok(Spilled {
            parts,
            held,
            _dir: None,
        })
    }
}

/// A load's partitions, readable until this is dropped.
pub(super) struct Spilled {
    pub(super) parts: Vec<SpilledPart>,
    /// The held batches as they arrived (none when the load went to disk).
    held: Arc<Vec<RecordBatch>>,
    _dir: Option<tempfile::TempDir>,
}

impl Spilled {
    /// Calls `seen` with every row of the load, for the write hook: the batches as they
    /// arrived when held, else each partition's rows a few at a time.
    pub(super) fn for_each_batch(&self, mut seen: impl FnMut(&RecordBatch)) -> Result<()> {
        if !self.held.is_empty() {
            self.held.iter().for_each(seen);
            return Ok(());
        }
        for part in &self.parts {
            if let SpilledPart::File(path) = part {
                for batch in concatenated(path, HOOK_BATCH_BYTES)? {
                    seen(&batch?);
                }
            }
        }
        Ok(())
    }
}

/// One partition's rows.
#[derive(Clone)]
pub(super) enum SpilledPart {
    /// Rows of the held batches, as (batch, row); `row_bytes` is the batches' mean row size.
    Held {
        batches: Arc<Vec<RecordBatch>>,
        rows: Vec<(usize, usize)>,
        row_bytes: usize,
    },
    /// Its spill file.
    File(PathBuf),
}

impl SpilledPart {
    /// The partition's rows in runs of about `run_bytes`, each in the storage order of
    /// `table`: the rows of one data file each.
    pub(super) fn runs<'a>(
        &'a self,
        table: &'a str,
        run_bytes: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'a>> {
        Ok(match self {
            Self::Held {
                batches,
                rows,
                row_bytes,
            } => {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let run_rows = (run_bytes / (*row_bytes).max(1)).max(1);
                Box::new(
                    rows.chunks(run_rows)
                        .map(move |run| layout::gathered_for_file(table, &refs, run)),
                )
            }
            Self::File(path) => Box::new(
                concatenated(path, run_bytes)?
                    .map(move |run| run.and_then(|rows| layout::sorted_for_file(table, &rows))),
            ),
        })
    }
}

/// The batches of a spill file joined into runs of at least `run_bytes` (the last one: what is
/// left).
fn concatenated(
    path: &Path,
    run_bytes: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send> {
    let file = File::open(path).map_err(spill_error(path))?;
    let mut batches = FileReader::try_new(file, None)?.peekable();
    let mut run: Vec<RecordBatch> = Vec::new();
    let mut bytes = 0;
    Ok(std::iter::from_fn(move || {
        while let Some(batch) = batches.next() {
            let added = batch
                .map_err(Error::from)
                .and_then(|batch| Ok((rows_size(&batch)?, batch)));
            let (size, batch) = match added {
                Ok(added) => added,
                Err(e) => return Some(Err(e)),
            };
            bytes += size;
            run.push(batch);
            if bytes >= run_bytes || batches.peek().is_none() {
                bytes = 0;
                let rows = std::mem::take(&mut run);
                return Some(concat_batches(&rows[0].schema(), &rows).map_err(Error::from));
            }
        }
        None
    }))
}

/// The bytes `batch`'s rows take. Not the buffers' sizes: a batch decoded from a Flight message
/// holds slices of that message's one buffer, which every column would count whole.
pub(in crate::write) fn rows_size(batch: &RecordBatch) -> Result<usize> {
    let mut bytes = 0;
    for column in batch.columns() {
        bytes += column.to_data().get_slice_memory_size()?;
    }
    Ok(bytes)
}

/// Removes spill directories a crashed process left in `root`.
pub(in crate::write) fn remove_stale_spills(root: &Path) {
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
