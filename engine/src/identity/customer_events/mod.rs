//! `customer_events` (customer_id, event, timestamp): every event with the customer it belongs
//! to now, served from memory — what segment counts, funnels by customer and journeys read,
//! without joining `events` to `identity_map` (twice: by `user_id`, by `anonymous_id`) and
//! decoding the same Parquet pages on every query.
//!
//! It is exact, not a cache that lags: a query sees the events `events` shows it (the snapshot
//! and the buffered rows, taken together) with the customers `identity_map` gives it —
//! `coalesce(customer of user_id, customer of anonymous_id)`, NULL when neither is known.
//! - The rows of each committed Delta file are read once into a [`Chunk`] and kept while the
//!   file is in the snapshot (files never change; a compaction's new files are read, its
//!   removed ones forgotten).
//! - Each event's person is the ordinal of its (`user_id`, `anonymous_id`) pair; the customer of
//!   every pair follows the live identity graph, version by version ([`stitch`]).
//! - Buffered rows are stitched when the query runs.
//! - Filters on `event` and `timestamp` choose the row ranges read ([`windows`]); DataFusion
//!   filters again above (the pushdown is inexact).
//!
//! Memory, per tenant and from its first query on: 12 bytes per event plus the text of every
//! distinct (`user_id`, `anonymous_id`) pair.

mod chunk;
mod stitch;
mod windows;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, StringArray,
    StringViewArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStore;
use object_store::path::Path;
use tributary_catalog::builtin::{EVENTS, timestamp_type};

use self::chunk::{Chunk, Group, People};
pub(crate) use self::stitch::GraphVersion;
use self::stitch::{NO_CUSTOMER, Stitch, Stitcher};
use self::windows::Windows;
use super::TenantIdentity;
use crate::computed::{Compute, ComputedExec};
use crate::write::overlay::StoredTable;

/// The table's name.
pub const CUSTOMER_EVENTS: &str = "customer_events";

/// Files read at once when chunks are missing.
const PARALLEL_READS: usize = 8;

/// `customer_events`' columns.
pub fn customer_events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8View, true),
        Field::new("event", DataType::Utf8View, true),
        Field::new("timestamp", timestamp_type(), false),
        Field::new("customer_key", DataType::UInt32, true),
    ]))
}

/// The chunks and pairs of one tenant's committed events.
#[derive(Debug, Default)]
pub struct EventIndex {
    state: tokio::sync::Mutex<IndexState>,
}

#[derive(Debug, Default)]
struct IndexState {
    chunks: HashMap<Path, Arc<Chunk>>,
    people: People,
    stitcher: Stitcher,
}

impl EventIndex {
    /// The chunks of `files` (reading those not kept yet, forgetting those no longer listed)
    /// and the stitch of every pair under the current graph.
    async fn current(
        &self,
        identity: &TenantIdentity,
        store: &Arc<dyn ObjectStore>,
        files: &[Path],
    ) -> DfResult<(Vec<Arc<Chunk>>, Arc<Stitch>)> {
        let mut state = self.state.lock().await;
        let missing: Vec<Path> = files
            .iter()
            .filter(|path| !state.chunks.contains_key(*path))
            .cloned()
            .collect();
        let read: Vec<(Path, Vec<RecordBatch>)> = stream::iter(missing)
            .map(|path| {
                let store = Arc::clone(store);
                async move {
                    let batches = chunk::read_file(store, path.clone()).await?;
                    Ok::<_, DataFusionError>((path, batches))
                }
            })
            .buffer_unordered(PARALLEL_READS)
            .try_collect()
            .await?;
        let state = &mut *state;
        for (path, batches) in read {
            let chunk = Chunk::of(&batches, &mut state.people)?;
            state.chunks.insert(path, Arc::new(chunk));
        }
        if state.chunks.len() > files.len() {
            let listed: std::collections::HashSet<&Path> = files.iter().collect();
            state.chunks.retain(|path, _| listed.contains(path));
        }
        let stitch = identity
            .read_keyed(|at, graph, keys| state.stitcher.stitch(&state.people, at, graph, keys));
        let chunks = files
            .iter()
            .filter_map(|path| state.chunks.get(path).cloned())
            .collect();
        Ok((chunks, stitch))
    }
}

/// The chunks of the committed events `events` shows, and their customers now.
async fn committed(
    identity: &Arc<TenantIdentity>,
    events: &StoredTable,
) -> DfResult<(Vec<Arc<Chunk>>, Arc<Stitch>)> {
    let (store, files) = events.snapshot(CUSTOMER_EVENTS, EVENTS)?.data_files()?;
    identity
        .events_index()
        .current(identity, &store, &files)
        .await
}

/// The rows of `customer_events` the windows admit, with the columns of `projection`.
async fn rows(
    identity: Arc<TenantIdentity>,
    events: StoredTable,
    windows: Windows,
    projection: Option<Vec<usize>>,
) -> DfResult<Vec<RecordBatch>> {
    let (chunks, stitch) = committed(&identity, &events).await?;
    let schema = customer_events_schema();
    let columns: Vec<usize> = projection.unwrap_or_else(|| (0..schema.fields().len()).collect());
    let output = Arc::new(schema.project(&columns)?);
    let mut batches = Vec::new();
    for (chunk, group, slice) in admitted_slices(&chunks, &windows) {
        let keys: UInt32Array = chunk.people[slice.clone()]
            .iter()
            .map(|&p| {
                let key = stitch.key_of[p as usize];
                (key != NO_CUSTOMER).then_some(key)
            })
            .collect();
        let times =
            TimestampMicrosecondArray::new(chunk.times.slice(slice.start, slice.len()), None)
                .with_timezone("UTC");
        batches.push(batch_of(
            &output,
            &columns,
            keys,
            &stitch.ids,
            || repeated(group.event.as_deref(), slice.len()),
            Arc::new(times),
        )?);
    }
    batches.extend(buffered_rows(
        &identity, &events, &windows, &output, &columns,
    )?);
    Ok(batches)
}

/// The row ranges of `chunks` that `windows` admit, each with its chunk and event group.
fn admitted_slices<'a>(
    chunks: &'a [Arc<Chunk>],
    windows: &'a Windows,
) -> impl Iterator<Item = (&'a Chunk, &'a Group, Range<usize>)> + 'a {
    chunks.iter().flat_map(move |chunk| {
        chunk.groups.iter().flat_map(move |group| {
            let ranges = windows.ranges(group.event.as_deref());
            let slices = if ranges.is_empty() {
                Vec::new()
            } else {
                chunk.slices(group, &ranges)
            };
            slices
                .into_iter()
                .map(move |slice| (chunk.as_ref(), group, slice))
        })
    })
}

/// The buffered rows of `events` that `windows` admit, with their customers under the current
/// graph, as [`batch_of`] makes them.
fn buffered_rows(
    identity: &TenantIdentity,
    events: &StoredTable,
    windows: &Windows,
    output: &SchemaRef,
    columns: &[usize],
) -> DfResult<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for batch in &events.buffered {
        let batch = admitted(batch, windows)?;
        if batch.num_rows() > 0 {
            batches.push(stitch_buffered(identity, &batch, output, columns)?);
        }
    }
    Ok(batches)
}

/// The buffered `events` rows of `batch` that `windows` admit.
fn admitted(batch: &RecordBatch, windows: &Windows) -> DfResult<RecordBatch> {
    let events = cast(buffered_column(batch, "event")?, &DataType::Utf8)?;
    let events = events.as_string::<i32>();
    let times = cast(buffered_column(batch, "timestamp")?, &timestamp_type())?;
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let event = events.is_valid(row).then(|| events.value(row));
            Some(times.is_valid(row) && windows.admits_row(event, times.value(row)))
        })
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// The column `name` of buffered `events` rows.
fn buffered_column<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        DataFusionError::Internal(format!("buffered {EVENTS} rows have no '{name}' column"))
    })
}

/// One batch of `customer_events`' `columns` (positions in its schema, `output` their schema):
/// the customers of `keys` (ids from `ids`), the events `event` makes, `times`.
fn batch_of(
    output: &SchemaRef,
    columns: &[usize],
    keys: UInt32Array,
    ids: &StringViewArray,
    event: impl Fn() -> DfResult<ArrayRef>,
    times: ArrayRef,
) -> DfResult<RecordBatch> {
    let rows = keys.len();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for &column in columns {
        arrays.push(match column {
            0 => take(ids, &keys, None)?,
            1 => event()?,
            2 => Arc::clone(&times),
            _ => Arc::new(keys.clone()),
        });
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(output),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// `event` `n` times, sharing one copy of its text.
fn repeated(event: Option<&str>, n: usize) -> DfResult<ArrayRef> {
    let one = StringViewArray::from(vec![event]);
    let zeros = UInt32Array::from(vec![0; n]);
    Ok(take(&one, &zeros, None)?)
}

/// Buffered `events` rows with their customers under the current graph, as [`batch_of`].
fn stitch_buffered(
    identity: &TenantIdentity,
    batch: &RecordBatch,
    output: &SchemaRef,
    columns: &[usize],
) -> DfResult<RecordBatch> {
    let column = |name: &str| buffered_column(batch, name);
    let text = |name: &str| -> DfResult<StringArray> {
        Ok(cast(column(name)?, &DataType::Utf8)?
            .as_string::<i32>()
            .clone())
    };
    let (users, anonymous) = (text("user_id")?, text("anonymous_id")?);
    fn value(array: &StringArray, row: usize) -> Option<&str> {
        array.is_valid(row).then(|| array.value(row))
    }
    let (keys, ids): (UInt32Array, _) = identity.read_keyed(|at, graph, keys| {
        let found = (0..batch.num_rows())
            .map(|row| {
                let pair = (value(&users, row), value(&anonymous, row));
                stitch::pair_key(graph, at.generation, keys, pair)
            })
            .collect();
        (found, keys.ids())
    });
    let times = cast(column("timestamp")?, &timestamp_type())?;
    batch_of(
        output,
        columns,
        keys,
        &ids,
        || Ok(cast(column("event")?, &DataType::Utf8View)?),
        times,
    )
}

/// `customer_events` of one tenant, as one query sees it.
#[derive(Debug)]
pub struct CustomerEventsTable {
    identity: Arc<TenantIdentity>,
    events: StoredTable,
}

impl CustomerEventsTable {
    /// The table over `events` (the tenant's `events` as the query sees it).
    pub fn new(identity: Arc<TenantIdentity>, events: StoredTable) -> Self {
        Self { identity, events }
    }

    /// Calls `visit(customer_key, time)` for every row of `event` whose time lies in
    /// `from..=to` (microseconds since the epoch) and that has a customer; answers every
    /// customer id by key. What per-customer measures (`event_measures`) are counted from:
    /// committed rows are read straight from the chunks, nothing is copied.
    pub(crate) async fn for_each_keyed(
        &self,
        event: &str,
        from: i64,
        to: i64,
        mut visit: impl FnMut(u32, i64) + Send,
    ) -> DfResult<Arc<StringViewArray>> {
        let windows = Windows::one(event, from, to);
        let (chunks, stitch) = committed(&self.identity, &self.events).await?;
        for (chunk, _, slice) in admitted_slices(&chunks, &windows) {
            let people = &chunk.people[slice.clone()];
            for (&person, &time) in people.iter().zip(&chunk.times[slice]) {
                let key = stitch.key_of[person as usize];
                if key != NO_CUSTOMER {
                    visit(key, time);
                }
            }
        }
        let columns = [2, 3];
        let output = Arc::new(customer_events_schema().project(&columns)?);
        for rows in buffered_rows(&self.identity, &self.events, &windows, &output, &columns)? {
            let times = rows.column(0).as_primitive::<TimestampMicrosecondType>();
            let keys = rows
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
            for (time, key) in times.values().iter().zip(keys.iter()) {
                if let Some(key) = key {
                    visit(key, *time);
                }
            }
        }
        Ok(self.identity.read_keyed(|_, _, keys| keys.ids()))
    }
}

#[async_trait]
impl TableProvider for CustomerEventsTable {
    fn schema(&self) -> SchemaRef {
        customer_events_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(customer_events_schema().project(columns)?),
            None => customer_events_schema(),
        };
        let windows = Windows::of(filters);
        let (identity, events) = (Arc::clone(&self.identity), self.events.clone());
        let projection = projection.cloned();
        let compute: Compute = Arc::new(move || {
            let (identity, events) = (Arc::clone(&identity), events.clone());
            Box::pin(rows(identity, events, windows.clone(), projection.clone()))
        });
        Ok(Arc::new(ComputedExec::new(
            CUSTOMER_EVENTS,
            schema,
            compute,
        )))
    }
}
