//! Activation (docs/segments.md#activation): stored segments delivered to destinations —
//! webhooks and files — as customers enter and leave.
//!
//! Destinations (`CREATE DESTINATION`, [`destination`]) and activations (`ACTIVATE SEGMENT`)
//! are rows of the built-in tables `destinations` and `activations`, each written whole like
//! `segments`. What to deliver is never stored apart: it is derived from `segment_members`,
//! which each refresh commits before anything is sent, so a delivery is durable before it is
//! attempted; [`deliver`] sends it and records every attempt in `activation_log`, from which it
//! also knows what was acknowledged.

pub mod deliver;
pub mod destination;
mod payload;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use tributary_catalog::builtin::{
    ACTIVATIONS, DESTINATIONS, activations_schema, destinations_schema,
};

use crate::Engine;
use crate::error::{Error, Result};
use crate::identity::records::{as_int64, as_micros, as_utf8};
use crate::segments;
use crate::sql_text::string_literal;
use crate::write::now_micros;
pub use destination::Destination;

/// Serializes the writes of destinations and activations (each rewrites a whole table).
static WRITES: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

/// One stored destination.
#[derive(Debug, Clone)]
pub struct StoredDestination {
    /// What it is, read from `config`.
    pub destination: Destination,
    /// Its JSON, as given.
    pub config: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// A segment delivered to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The stored segment.
    pub segment: String,
    /// The destination.
    pub destination: String,
    /// Profile traits each delivered member carries.
    pub traits: Vec<String>,
    /// Identifier types each delivered member carries (`email`, `phone`…).
    pub identifiers: Vec<String>,
    /// Microseconds since the epoch; members at this time are the first delivery's "entered".
    pub created_at: i64,
}

/// The tenant's destinations by name.
pub async fn destinations(ctx: &SessionContext) -> Result<BTreeMap<String, StoredDestination>> {
    let mut stored = BTreeMap::new();
    let sql = format!("SELECT name, config, created_at FROM {DESTINATIONS}");
    for batch in ctx.sql(&sql).await?.collect().await? {
        let (names, configs) = (as_utf8(batch.column(0))?, as_utf8(batch.column(1))?);
        let created = as_micros(batch.column(2))?;
        for row in 0..batch.num_rows() {
            let config = configs.value(row).to_string();
            stored.insert(
                names.value(row).to_string(),
                StoredDestination {
                    destination: Destination::parse(&config)?,
                    config,
                    created_at: created.value(row),
                },
            );
        }
    }
    Ok(stored)
}

/// The tenant's activations, by segment and destination.
pub async fn activations(ctx: &SessionContext) -> Result<Vec<Activation>> {
    let mut stored = Vec::new();
    let sql = format!(
        "SELECT segment, destination, traits, identifiers, created_at FROM {ACTIVATIONS} \
         ORDER BY segment, destination"
    );
    let names = |text: &str| -> Result<Vec<String>> {
        serde_json::from_str(text)
            .map_err(|e| Error::Internal(format!("activations: a name list is not JSON: {e}")))
    };
    for batch in ctx.sql(&sql).await?.collect().await? {
        let text: Vec<_> = (0..4)
            .map(|i| as_utf8(batch.column(i)))
            .collect::<std::result::Result<_, _>>()?;
        let created = as_micros(batch.column(4))?;
        for row in 0..batch.num_rows() {
            stored.push(Activation {
                segment: text[0].value(row).to_string(),
                destination: text[1].value(row).to_string(),
                traits: names(text[2].value(row))?,
                identifiers: names(text[3].value(row))?,
                created_at: created.value(row),
            });
        }
    }
    Ok(stored)
}

/// `CREATE DESTINATION name AS 'config'`.
pub async fn create_destination(
    engine: &Engine,
    ctx: &SessionContext,
    name: &str,
    config: &str,
) -> Result<u64> {
    let destination = Destination::parse(config)?;
    if let destination::Sink::File { uri, .. } = &destination.sink {
        payload::file_store(engine, uri)?;
    }
    let _write = WRITES.lock().await;
    let mut stored = destinations(ctx).await?;
    if stored.contains_key(name) {
        return Err(Error::AlreadyExists(format!(
            "destination '{name}' already exists"
        )));
    }
    stored.insert(
        name.to_string(),
        StoredDestination {
            destination,
            config: config.to_string(),
            created_at: now_micros(),
        },
    );
    write_destinations(engine, ctx, &stored).await?;
    Ok(0)
}

/// `DROP DESTINATION name`: refused while a segment is activated to it.
pub async fn drop_destination(engine: &Engine, ctx: &SessionContext, name: &str) -> Result<u64> {
    let _write = WRITES.lock().await;
    let mut stored = destinations(ctx).await?;
    if stored.remove(name).is_none() {
        return Err(unknown_destination(name));
    }
    let users: Vec<String> = activations(ctx)
        .await?
        .into_iter()
        .filter(|a| a.destination == name)
        .map(|a| format!("'{}'", a.segment))
        .collect();
    if !users.is_empty() {
        return Err(Error::InvalidInput(format!(
            "destination '{name}' receives segment {}; DEACTIVATE SEGMENT … FROM {name} first",
            users.join(", ")
        )));
    }
    write_destinations(engine, ctx, &stored).await?;
    Ok(0)
}

/// `ACTIVATE SEGMENT s TO d …`: answers how many members the first delivery enters.
pub async fn activate(
    engine: &Engine,
    ctx: &SessionContext,
    segment: &str,
    destination: &str,
    traits: Vec<String>,
    identifiers: Vec<String>,
) -> Result<u64> {
    let _write = WRITES.lock().await;
    if !segments::stored(ctx).await?.contains_key(segment) {
        return Err(Error::NotFound(format!(
            "segment '{segment}' does not exist"
        )));
    }
    if !destinations(ctx).await?.contains_key(destination) {
        return Err(unknown_destination(destination));
    }
    let mut stored = activations(ctx).await?;
    if stored
        .iter()
        .any(|a| a.segment == segment && a.destination == destination)
    {
        return Err(Error::AlreadyExists(format!(
            "segment '{segment}' is already activated to '{destination}'"
        )));
    }
    stored.push(Activation {
        segment: segment.to_string(),
        destination: destination.to_string(),
        traits,
        identifiers,
        created_at: now_micros(),
    });
    write_activations(engine, ctx, &stored).await?;
    segments::note_change();
    let sql = format!(
        "SELECT count(*) FROM segment_members WHERE segment = {} AND exited_at IS NULL",
        string_literal(segment)
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    match batches.iter().find(|b| b.num_rows() > 0) {
        Some(batch) => Ok(as_int64(batch.column(0))?.value(0) as u64),
        None => Ok(0),
    }
}

/// `DEACTIVATE SEGMENT s FROM d`: nothing more is delivered (the log stays).
pub async fn deactivate(
    engine: &Engine,
    ctx: &SessionContext,
    segment: &str,
    destination: &str,
) -> Result<u64> {
    let _write = WRITES.lock().await;
    let mut stored = activations(ctx).await?;
    let before = stored.len();
    stored.retain(|a| !(a.segment == segment && a.destination == destination));
    if stored.len() == before {
        return Err(Error::NotFound(format!(
            "segment '{segment}' is not activated to '{destination}'"
        )));
    }
    write_activations(engine, ctx, &stored).await?;
    Ok(0)
}

/// The destinations `segment` is activated to (a segment being delivered is not dropped).
pub async fn destinations_of(ctx: &SessionContext, segment: &str) -> Result<Vec<String>> {
    Ok(activations(ctx)
        .await?
        .into_iter()
        .filter(|a| a.segment == segment)
        .map(|a| a.destination)
        .collect())
}

fn unknown_destination(name: &str) -> Error {
    Error::NotFound(format!("destination '{name}' does not exist"))
}

/// A batch of `schema`: text columns from each row's texts, then a last column of UTC times.
fn text_rows(schema: SchemaRef, rows: &[(Vec<&str>, i64)]) -> Result<RecordBatch> {
    let width = schema.fields().len() - 1;
    let mut columns: Vec<ArrayRef> = (0..width)
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(texts, _)| texts[i]),
            )) as ArrayRef
        })
        .collect();
    let times = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, at)| *at));
    columns.push(Arc::new(times.with_timezone("UTC")));
    Ok(RecordBatch::try_new(schema, columns)?)
}

async fn write_destinations(
    engine: &Engine,
    ctx: &SessionContext,
    stored: &BTreeMap<String, StoredDestination>,
) -> Result<()> {
    let rows: Vec<(Vec<&str>, i64)> = stored
        .iter()
        .map(|(name, d)| {
            (
                vec![name.as_str(), d.destination.kind(), d.config.as_str()],
                d.created_at,
            )
        })
        .collect();
    let batch = text_rows(destinations_schema(), &rows)?;
    segments::replace_table(engine, ctx, DESTINATIONS, batch).await
}

async fn write_activations(
    engine: &Engine,
    ctx: &SessionContext,
    stored: &[Activation],
) -> Result<()> {
    let lists: Vec<(String, String)> = stored
        .iter()
        .map(|a| {
            let json = |names: &Vec<String>| serde_json::to_string(names).expect("names serialize");
            (json(&a.traits), json(&a.identifiers))
        })
        .collect();
    let rows: Vec<(Vec<&str>, i64)> = stored
        .iter()
        .zip(&lists)
        .map(|(a, (traits, identifiers))| {
            (
                vec![a.segment.as_str(), &a.destination, traits, identifiers],
                a.created_at,
            )
        })
        .collect();
    let batch = text_rows(activations_schema(), &rows)?;
    segments::replace_table(engine, ctx, ACTIVATIONS, batch).await
}
