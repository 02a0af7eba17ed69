//! Segments of a tenant: definitions compiled over its relations (`tributary_segments`), stored
//! segments (`CREATE SEGMENT`, in the built-in table `segments`) and their membership history
//! (`REFRESH SEGMENT`, in `segment_members`: who entered and who left, when).
//!
//! A refresh computes the members now, compares them with the open memberships and writes the
//! whole `segment_members` table back in one Delta commit: a customer who left gets its
//! `exited_at`, one who entered a new row. Delta has no commit spanning two tables, so
//! `segments.size` and `refreshed_at` are written just before, in their own commit, and the
//! memberships' commit completes the refresh: whoever sees a refresh's memberships sees its size
//! too (a crash between the two leaves the size one refresh ahead of the memberships; the next
//! refresh puts them level). Writes of one process are serialized; several servers writing
//! segments of one tenant are not supported yet.
//!
//! Segments with a schedule other than `'manual'` are refreshed by the [`scheduler`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};

use chrono::Utc;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use tributary_catalog::builtin::{
    SEGMENT_MEMBERS, SEGMENTS, segment_members_schema, segments_schema,
};
use tributary_segments::{Definition, Explained, Sources, compile, explain, parse};

use crate::Engine;
use crate::error::{Error, Result};
use crate::identity::customer_events::CUSTOMER_EVENTS;
use crate::identity::map::CUSTOMER_IDS;
use crate::identity::profiles::resolved_events;
use crate::identity::records::{as_int64, as_micros, as_utf8};
use crate::tenant_of;
use crate::write::{IfTableMissing, WriteMode, now_micros};

pub mod schedule;
pub mod scheduler;

pub use schedule::Schedule;

/// Counts the writes of memberships (and anything else that may make a delivery due).
static CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static CHANGED: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// Records that memberships changed, and wakes the deliverer (`activation::deliver`).
pub fn note_change() {
    CHANGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CHANGED.notify_one();
}

/// How many changes [`note_change`] has seen in this process.
pub fn change_count() -> u64 {
    CHANGES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits for the next [`note_change`] (or one that came since the last wait).
pub async fn changed() {
    CHANGED.notified().await;
}

/// Serializes the writes of stored segments (each rewrites a whole table).
static WRITES: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// Runs `f` with the tenant's relations as a segment reads them: every customer
/// (`customer_ids`), the profiles by key (`customer_profiles`), the events with their customer
/// (`customer_events` when their properties are not needed), and per-customer tallies of one
/// event (`event_measures`).
pub fn with_sources<T>(f: impl FnOnce(&Sources<'_>) -> T) -> T {
    let customers = CUSTOMER_IDS;
    let events = format!(
        "({})",
        resolved_events("TRUE", "e.timestamp, e.event, e.properties", "TRUE")
    );
    f(&Sources {
        customers,
        profiles: crate::identity::customer_profiles::CUSTOMER_PROFILES,
        events: &events,
        event_times: CUSTOMER_EVENTS,
        event_measures: crate::functions::event_measures::FUNCTION.name,
    })
}

/// A definition's problem, as a planning error (the user's input).
pub fn segment_error(error: tributary_segments::Error) -> DataFusionError {
    DataFusionError::Plan(error.to_string())
}

/// One stored segment.
#[derive(Debug, Clone)]
pub struct StoredSegment {
    /// Its definition (JSON text).
    pub definition: String,
    /// The SQL it compiled to when created.
    pub sql: String,
    /// When it is refreshed.
    pub schedule: String,
    /// Members after the last refresh.
    pub size: Option<i64>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub refreshed_at: Option<i64>,
}

/// The tenant's stored segments by name.
pub async fn stored(ctx: &SessionContext) -> Result<BTreeMap<String, StoredSegment>> {
    let batches = ctx
        .sql(&format!("SELECT * FROM {SEGMENTS}"))
        .await?
        .collect()
        .await?;
    let mut segments = BTreeMap::new();
    for batch in batches {
        let text = |i: usize| as_utf8(batch.column(i));
        let (names, definitions, sqls, schedules) = (text(0)?, text(1)?, text(2)?, text(3)?);
        let sizes = as_int64(batch.column(4))?;
        let (created, refreshed) = (as_micros(batch.column(5))?, as_micros(batch.column(6))?);
        for row in 0..batch.num_rows() {
            segments.insert(
                names.value(row).to_string(),
                StoredSegment {
                    definition: definitions.value(row).to_string(),
                    sql: sqls.value(row).to_string(),
                    schedule: schedules.value(row).to_string(),
                    size: sizes.is_valid(row).then(|| sizes.value(row)),
                    created_at: created.value(row),
                    refreshed_at: refreshed.is_valid(row).then(|| refreshed.value(row)),
                },
            );
        }
    }
    Ok(segments)
}

/// The stored segments the definition `text` may read: none when it refers to no segment (the
/// common case, which then skips reading `segments` on every count).
pub async fn stored_for(
    ctx: &SessionContext,
    text: &str,
) -> Result<BTreeMap<String, StoredSegment>> {
    match parse(text) {
        Ok(definition) if definition.references().is_empty() => Ok(BTreeMap::new()),
        _ => stored(ctx).await,
    }
}

/// The SQL selecting the members of the definition `text` now, its references to other
/// segments resolved among `stored`.
pub fn members_sql(
    text: &str,
    stored: &BTreeMap<String, StoredSegment>,
) -> std::result::Result<String, tributary_segments::Error> {
    compiled(text, stored, |definition, sources, lookup| {
        compile(definition, sources, Utc::now(), lookup)
    })
}

/// The SQL explaining the definition `text` for `customer_id` ([`tributary_segments::explain`]).
pub fn explain_sql(
    text: &str,
    stored: &BTreeMap<String, StoredSegment>,
    customer_id: &str,
) -> std::result::Result<(String, Vec<Explained>), tributary_segments::Error> {
    compiled(text, stored, |definition, sources, lookup| {
        explain(definition, sources, Utc::now(), lookup, customer_id)
    })
}

type Lookup<'a> = dyn Fn(&str) -> Option<Definition> + 'a;

/// True for a stored definition that is a SQL query (`CREATE SEGMENT … AS SELECT …`) rather
/// than JSON.
pub fn is_query(text: &str) -> bool {
    !text.trim_start().starts_with('{')
}

/// A stored definition read: JSON conditions, or a SQL query.
pub fn definition_of(text: &str) -> std::result::Result<Definition, tributary_segments::Error> {
    if is_query(text) {
        Ok(Definition::query(text))
    } else {
        parse(text)
    }
}

/// Runs a compilation of the definition `text` over the tenant's relations, with its
/// references resolved among `stored`.
fn compiled<T>(
    text: &str,
    stored: &BTreeMap<String, StoredSegment>,
    run: impl FnOnce(
        &Definition,
        &Sources<'_>,
        &Lookup<'_>,
    ) -> std::result::Result<T, tributary_segments::Error>,
) -> std::result::Result<T, tributary_segments::Error> {
    let definition = definition_of(text)?;
    let lookup = |name: &str| -> Option<Definition> {
        stored
            .get(name)
            .and_then(|s| definition_of(&s.definition).ok())
    };
    with_sources(|sources| run(&definition, sources, &lookup))
}

/// `CREATE SEGMENT name [SCHEDULE '…'] AS 'definition'`: stores it and computes its first
/// members (all entered); returns how many.
pub async fn create(
    engine: &Engine,
    ctx: &SessionContext,
    name: &str,
    schedule: Schedule,
    text: &str,
) -> Result<u64> {
    let _write = WRITES.lock().await;
    let mut segments = stored(ctx).await?;
    if segments.contains_key(name) {
        return Err(Error::AlreadyExists(format!(
            "segment '{name}' already exists"
        )));
    }
    let now = now_micros();
    let mut segment = StoredSegment {
        definition: text.to_string(),
        sql: String::new(),
        schedule: schedule.to_string(),
        size: None,
        created_at: now,
        refreshed_at: None,
    };
    // Stored before it compiles, so that a reference back to it is seen as the cycle it is.
    segments.insert(name.to_string(), segment.clone());
    segment.sql = members_sql(text, &segments).map_err(|e| Error::InvalidInput(e.to_string()))?;
    // Planned, not run: a query that does not plan (an unknown table, no customer_id column)
    // is refused before anything is stored.
    if let Err(e) = ctx.sql(&segment.sql).await {
        return Err(Error::InvalidInput(format!(
            "CREATE SEGMENT {name}: the query does not plan (it must answer a customer_id \
             column): {e}"
        )));
    }
    segments.insert(name.to_string(), segment);
    write_segments(engine, ctx, &segments).await?;
    refresh_locked(engine, ctx, name, true).await
}

/// `REFRESH SEGMENT name`: records who entered and who left; returns how many did.
pub async fn refresh(engine: &Engine, ctx: &SessionContext, name: &str) -> Result<u64> {
    refresh_when(engine, ctx, name, true).await
}

/// A refresh; with `record_unchanged` false, one in which nobody entered or left writes
/// nothing (realtime segments, re-evaluated on every change, would otherwise commit each time).
pub(crate) async fn refresh_when(
    engine: &Engine,
    ctx: &SessionContext,
    name: &str,
    record_unchanged: bool,
) -> Result<u64> {
    let _write = WRITES.lock().await;
    refresh_locked(engine, ctx, name, record_unchanged).await
}

async fn refresh_locked(
    engine: &Engine,
    ctx: &SessionContext,
    name: &str,
    record_unchanged: bool,
) -> Result<u64> {
    let mut segments = stored(ctx).await?;
    let Some(segment) = segments.get(name) else {
        return Err(unknown(name));
    };
    let sql = members_sql(&segment.definition, &segments)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let now = now_micros();
    let mut members: HashSet<String> = HashSet::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let ids = as_utf8(batch.column(0))?;
        members.extend((0..batch.num_rows()).map(|row| ids.value(row).to_string()));
    }
    let history = history(ctx, "TRUE").await?;
    let mut rows = MemberRows::default();
    let mut still_in: HashSet<&str> = HashSet::new();
    let mut changes = 0u64;
    for membership in &history {
        let customer = membership.customer.as_str();
        let mut exited_at = membership.exited_at;
        if exited_at.is_none() && membership.segment == name {
            if members.contains(customer) {
                still_in.insert(customer);
            } else {
                exited_at = Some(now);
                changes += 1;
            }
        }
        rows.push(
            &membership.segment,
            customer,
            membership.entered_at,
            exited_at,
        );
    }
    let mut newcomers: Vec<&String> = members
        .iter()
        .filter(|c| !still_in.contains(c.as_str()))
        .collect();
    newcomers.sort();
    for customer in newcomers {
        rows.push(name, customer, now, None);
        changes += 1;
    }
    if changes == 0 && !record_unchanged {
        return Ok(0);
    }
    if let Some(segment) = segments.get_mut(name) {
        segment.size = Some(members.len() as i64);
        segment.refreshed_at = Some(now);
    }
    write_segments(engine, ctx, &segments).await?;
    if changes > 0 {
        replace_table(engine, ctx, SEGMENT_MEMBERS, rows.finish()?).await?;
        note_change();
    }
    Ok(changes)
}

/// Removes a customer's memberships of every segment (`CALL forget`): an erased person is in
/// no segment's history, so is never delivered; answers how many rows went.
pub async fn erase_customer(engine: &Engine, tenant: &str, customer: &str) -> Result<u64> {
    let _write = WRITES.lock().await;
    let condition = format!(
        "customer_id = {}",
        crate::sql_text::string_literal(customer)
    );
    engine
        .delete_rows(tenant, SEGMENT_MEMBERS, &condition)
        .await
}

/// `DROP SEGMENT name`: removes it and its history; refused while another segment refers to it.
pub async fn drop(engine: &Engine, ctx: &SessionContext, name: &str) -> Result<u64> {
    let _write = WRITES.lock().await;
    let mut segments = stored(ctx).await?;
    if segments.remove(name).is_none() {
        return Err(unknown(name));
    }
    let mut users: Vec<&String> = segments
        .iter()
        .filter(|(_, s)| definition_of(&s.definition).is_ok_and(|d| d.references().contains(&name)))
        .map(|(other, _)| other)
        .collect();
    if !users.is_empty() {
        users.sort();
        return Err(Error::InvalidInput(format!(
            "segment '{name}' is used by {}; drop or change those first",
            users
                .iter()
                .map(|u| format!("'{u}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let others = format!("segment <> {}", crate::sql_text::string_literal(name));
    let mut rows = MemberRows::default();
    for m in history(ctx, &others).await? {
        rows.push(&m.segment, &m.customer, m.entered_at, m.exited_at);
    }
    replace_table(engine, ctx, SEGMENT_MEMBERS, rows.finish()?).await?;
    note_change();
    write_segments(engine, ctx, &segments).await?;
    Ok(1)
}

/// One row of `segment_members`.
struct Membership {
    segment: String,
    customer: String,
    entered_at: i64,
    exited_at: Option<i64>,
}

/// The rows of `segment_members` that meet `condition`.
async fn history(ctx: &SessionContext, condition: &str) -> Result<Vec<Membership>> {
    let sql = format!("SELECT * FROM {SEGMENT_MEMBERS} WHERE {condition}");
    let mut rows = Vec::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let (segments, customers) = (as_utf8(batch.column(0))?, as_utf8(batch.column(1))?);
        let (entered, exited) = (as_micros(batch.column(2))?, as_micros(batch.column(3))?);
        rows.extend((0..batch.num_rows()).map(|row| Membership {
            segment: segments.value(row).to_string(),
            customer: customers.value(row).to_string(),
            entered_at: entered.value(row),
            exited_at: exited.is_valid(row).then(|| exited.value(row)),
        }));
    }
    Ok(rows)
}

fn unknown(name: &str) -> Error {
    Error::NotFound(format!("segment '{name}' does not exist"))
}

async fn write_segments(
    engine: &Engine,
    ctx: &SessionContext,
    segments: &BTreeMap<String, StoredSegment>,
) -> Result<()> {
    let mut text: [StringBuilder; 4] = Default::default();
    let mut size = Int64Builder::new();
    let (mut created, mut refreshed) = (
        TimestampMicrosecondBuilder::new(),
        TimestampMicrosecondBuilder::new(),
    );
    for (name, segment) in segments {
        for (builder, value) in
            text.iter_mut()
                .zip([name, &segment.definition, &segment.sql, &segment.schedule])
        {
            builder.append_value(value);
        }
        size.append_option(segment.size);
        created.append_value(segment.created_at);
        refreshed.append_option(segment.refreshed_at);
    }
    let mut columns: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.push(Arc::new(size.finish()));
    columns.push(Arc::new(created.finish().with_timezone("UTC")));
    columns.push(Arc::new(refreshed.finish().with_timezone("UTC")));
    replace_table(
        engine,
        ctx,
        SEGMENTS,
        RecordBatch::try_new(segments_schema(), columns)?,
    )
    .await
}

/// Replaces a whole built-in table of the session's tenant with `batch` (one Delta commit).
pub(crate) async fn replace_table(
    engine: &Engine,
    ctx: &SessionContext,
    table: &str,
    batch: RecordBatch,
) -> Result<()> {
    engine
        .writer()
        .write(
            &tenant_of(ctx),
            table,
            vec![batch],
            IfTableMissing::Fail,
            WriteMode::Replace,
        )
        .await?;
    Ok(())
}

/// Rows of `segment_members` being built.
#[derive(Default)]
struct MemberRows {
    segments: StringBuilder,
    customers: StringBuilder,
    entered: TimestampMicrosecondBuilder,
    exited: TimestampMicrosecondBuilder,
}

impl MemberRows {
    fn push(&mut self, segment: &str, customer: &str, entered: i64, exited: Option<i64>) {
        self.segments.append_value(segment);
        self.customers.append_value(customer);
        self.entered.append_value(entered);
        self.exited.append_option(exited);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            segment_members_schema(),
            vec![
                Arc::new(self.segments.finish()),
                Arc::new(self.customers.finish()),
                Arc::new(self.entered.finish().with_timezone("UTC")),
                Arc::new(self.exited.finish().with_timezone("UTC")),
            ],
        )?)
    }
}
