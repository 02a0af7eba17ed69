//! What a delivery carries and how it is written: the members with the traits and identifiers
//! the activation asks for (people without the destination's consent left out), as a plain
//! JSON body, as Segment messages, or as one Parquet or CSV file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Map, Value, json};
use tributary_catalog::builtin::{PROFILES, timestamp_type};

use super::Activation;
use super::destination::FileFormat;
use crate::Engine;
use crate::error::{Error, Result};
use crate::identity::map::IDENTITY_MAP;
use crate::identity::records::as_utf8;
use crate::sql_text::string_literal;

/// One delivered customer.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub customer_id: String,
    /// The asked-for traits the profile has.
    pub traits: Map<String, Value>,
    /// The asked-for identifier types, with the customer's values.
    pub identifiers: BTreeMap<String, Vec<String>>,
    /// The first `user_id` / `anonymous_id`, for Segment messages.
    user_id: Option<String>,
    anonymous_id: Option<String>,
}

/// One batch of a delivery.
#[derive(Debug)]
pub(crate) struct Batch {
    pub segment: String,
    pub destination: String,
    pub batch_id: String,
    /// The refresh (or activation) whose changes these are, microseconds.
    pub change_at: i64,
    pub entered: Vec<Member>,
    pub exited: Vec<Member>,
}

/// The members among `ids` to deliver, in order: those with consent (when the destination
/// names a consent trait, it must be `true` in their profile), with their details.
pub(crate) async fn members(
    ctx: &SessionContext,
    ids: &[String],
    activation: &Activation,
    consent: Option<&str>,
) -> Result<Vec<Member>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids
        .iter()
        .map(|id| string_literal(id))
        .collect::<Vec<_>>()
        .join(", ");
    let mut traits: HashMap<String, Map<String, Value>> = HashMap::new();
    let sql = format!("SELECT customer_id, traits FROM {PROFILES} WHERE customer_id IN ({list})");
    for batch in ctx.sql(&sql).await?.collect().await? {
        let (customers, texts) = (as_utf8(batch.column(0))?, as_utf8(batch.column(1))?);
        for row in 0..batch.num_rows() {
            if let Ok(Value::Object(map)) = serde_json::from_str(texts.value(row)) {
                traits.insert(customers.value(row).to_string(), map);
            }
        }
    }
    let mut identifiers: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let sql = format!(
        "SELECT customer_id, id_type, id_value FROM {IDENTITY_MAP} WHERE customer_id IN ({list}) \
         ORDER BY customer_id, id_type, id_value"
    );
    for batch in ctx.sql(&sql).await?.collect().await? {
        let columns: Vec<StringArray> = (0..3)
            .map(|i| as_utf8(batch.column(i)))
            .collect::<std::result::Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            identifiers
                .entry(columns[0].value(row).to_string())
                .or_default()
                .push((
                    columns[1].value(row).to_string(),
                    columns[2].value(row).to_string(),
                ));
        }
    }
    let empty = Map::new();
    Ok(ids
        .iter()
        .filter_map(|id| {
            let all_traits = traits.get(id).unwrap_or(&empty);
            if let Some(consent) = consent
                && all_traits.get(consent) != Some(&Value::Bool(true))
            {
                return None;
            }
            let own = identifiers.get(id).map(Vec::as_slice).unwrap_or_default();
            let first = |kind: &str| own.iter().find(|(t, _)| t == kind).map(|(_, v)| v.clone());
            Some(Member {
                customer_id: id.clone(),
                traits: activation
                    .traits
                    .iter()
                    .filter_map(|t| all_traits.get(t).map(|v| (t.clone(), v.clone())))
                    .collect(),
                identifiers: activation
                    .identifiers
                    .iter()
                    .map(|kind| {
                        let values = own
                            .iter()
                            .filter(|(t, _)| t == kind)
                            .map(|(_, v)| v.clone())
                            .collect();
                        (kind.clone(), values)
                    })
                    .collect(),
                user_id: first("user_id"),
                anonymous_id: first("anonymous_id"),
            })
        })
        .collect())
}

fn rfc3339(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn member_json(member: &Member) -> Value {
    json!({
        "customer_id": member.customer_id,
        "traits": member.traits,
        "identifiers": member.identifiers,
    })
}

/// `{"segment", "destination", "batch_id", "change_at", "entered": [...], "exited": [...]}`.
pub(crate) fn plain_body(batch: &Batch) -> Value {
    json!({
        "segment": batch.segment,
        "destination": batch.destination,
        "batch_id": batch.batch_id,
        "change_at": rfc3339(batch.change_at),
        "entered": batch.entered.iter().map(member_json).collect::<Vec<_>>(),
        "exited": batch.exited.iter().map(member_json).collect::<Vec<_>>(),
    })
}

/// A Segment `batch`: per member a `track` ("Audience Entered" / "Audience Exited") and an
/// `identify` with the segment as a boolean trait; identified by the member's first `user_id`,
/// else its first `anonymous_id`, else its `customer_id` as `userId`.
pub(crate) fn segment_body(batch: &Batch) -> Value {
    let timestamp = rfc3339(batch.change_at);
    let mut messages = Vec::new();
    let changes = batch
        .entered
        .iter()
        .map(|m| (m, true))
        .chain(batch.exited.iter().map(|m| (m, false)));
    for (index, (member, entered)) in changes.enumerate() {
        let mut who = Map::new();
        match (&member.user_id, &member.anonymous_id) {
            (Some(user), _) => who.insert("userId".into(), json!(user)),
            (None, Some(anonymous)) => who.insert("anonymousId".into(), json!(anonymous)),
            (None, None) => who.insert("userId".into(), json!(member.customer_id)),
        };
        let mut traits = member.traits.clone();
        traits.insert(batch.segment.clone(), json!(entered));
        let event = if entered {
            "Audience Entered"
        } else {
            "Audience Exited"
        };
        let mut track = who.clone();
        track.extend([
            ("type".into(), json!("track")),
            ("event".into(), json!(event)),
            (
                "messageId".into(),
                json!(format!("{}-{index}-track", batch.batch_id)),
            ),
            ("timestamp".into(), json!(timestamp)),
            (
                "properties".into(),
                json!({"audience_key": batch.segment, "destination": batch.destination,
                       "customer_id": member.customer_id}),
            ),
        ]);
        let mut identify = who;
        identify.extend([
            ("type".into(), json!("identify")),
            (
                "messageId".into(),
                json!(format!("{}-{index}-identify", batch.batch_id)),
            ),
            ("timestamp".into(), json!(timestamp)),
            ("traits".into(), Value::Object(traits)),
        ]);
        messages.push(Value::Object(track));
        messages.push(Value::Object(identify));
    }
    json!({"batch": messages})
}

/// The object store of a file destination's `uri` (a directory is created if missing).
pub(crate) fn file_store(engine: &Engine, uri: &str) -> Result<Arc<dyn ObjectStore>> {
    let storage = engine.catalog().storage().sibling(uri)?;
    Ok(storage.root_store()?)
}

/// Writes the batch as one file `<segment>/<batch_id>.<format>` under the destination's uri.
pub(crate) async fn write_file(
    engine: &Engine,
    uri: &str,
    format: FileFormat,
    batch: &Batch,
) -> Result<()> {
    let changes: Vec<(&Member, &str)> = batch
        .entered
        .iter()
        .map(|m| (m, "entered"))
        .chain(batch.exited.iter().map(|m| (m, "exited")))
        .collect();
    let text = |f: &dyn Fn(&(&Member, &str)) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(changes.iter().map(f)))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("change", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("traits", DataType::Utf8, false),
        Field::new("identifiers", DataType::Utf8, false),
        Field::new("change_at", timestamp_type(), false),
    ]));
    let rows = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            text(&|_| batch.segment.clone()),
            text(&|(_, change)| change.to_string()),
            text(&|(m, _)| m.customer_id.clone()),
            text(&|(m, _)| Value::Object(m.traits.clone()).to_string()),
            text(&|(m, _)| json!(m.identifiers).to_string()),
            Arc::new(
                TimestampMicrosecondArray::from(vec![batch.change_at; changes.len()])
                    .with_timezone("UTC"),
            ),
        ],
    )?;
    let mut bytes = Vec::new();
    let extension = match format {
        FileFormat::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None)
                .map_err(|e| Error::Internal(format!("parquet: {e}")))?;
            writer
                .write(&rows)
                .and_then(|()| writer.close().map(|_| ()))
                .map_err(|e| Error::Internal(format!("parquet: {e}")))?;
            "parquet"
        }
        FileFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut bytes);
            writer.write(&rows)?;
            drop(writer);
            "csv"
        }
    };
    let path = object_store::path::Path::from_iter([
        batch.segment.as_str(),
        &format!("{}.{extension}", batch.batch_id),
    ]);
    file_store(engine, uri)?
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| Error::Internal(format!("cannot write {path} under {uri}: {e}")))?;
    Ok(())
}
