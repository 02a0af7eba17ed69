//! Edge records from the rows of the two tables identity resolution reads:
//! - `identities`: one record per row (`action` is `bind` or `unbind`);
//! - `events`: an event with both `anonymous_id` and `user_id` binds them; an `identify` binds
//!   its user (or anonymous id) to the `email` and `phone` in its traits; an `alias` binds its
//!   `previousId` (as an `anonymous_id`) to its `userId`; every id an event carries is seen.

use datafusion::arrow::array::{
    Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use tributary_identity::{Action, EdgeRecord};

use crate::error::{Error, Result};

/// Identifier type of `events.anonymous_id` (and of an alias's `previousId`).
pub const ANONYMOUS_ID: &str = "anonymous_id";
/// Identifier type of `events.user_id`.
pub const USER_ID: &str = "user_id";
/// Traits of an `identify` that are identifiers, and their types.
const TRAIT_IDENTIFIERS: [&str; 2] = ["email", "phone"];

/// Any text array (query results may be views) as `Utf8`.
pub(crate) fn as_utf8(array: &dyn Array) -> std::result::Result<StringArray, ArrowError> {
    Ok(cast(array, &DataType::Utf8)?
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .expect("a cast to Utf8 gives a StringArray"))
}

/// Any integer array (counts, sizes) as `Int64`.
pub(crate) fn as_int64(array: &dyn Array) -> std::result::Result<Int64Array, ArrowError> {
    Ok(cast(array, &DataType::Int64)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .expect("a cast to Int64 gives an Int64Array"))
}

/// Any time array as microseconds since the epoch.
pub(crate) fn as_micros(
    array: &dyn Array,
) -> std::result::Result<TimestampMicrosecondArray, ArrowError> {
    Ok(
        cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned()
            .expect("a cast to microseconds gives a TimestampMicrosecondArray"),
    )
}

/// A text column, if the batch has it.
pub(crate) fn text(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>> {
    Ok(batch
        .column_by_name(name)
        .map(|column| as_utf8(column))
        .transpose()?)
}

fn required_text(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    text(batch, name)?.ok_or_else(|| Error::InvalidInput(format!("no column '{name}'")))
}

fn times(batch: &RecordBatch, name: &str) -> Result<TimestampMicrosecondArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::InvalidInput(format!("no column '{name}'")))?;
    Ok(as_micros(column)?)
}

/// Checks `identities` rows before they are written: every required field present and the
/// action `bind` or `unbind`. The error names the first bad row.
pub fn check_identities(batch: &RecordBatch) -> Result<()> {
    let action = required_text(batch, "action")?;
    for row in 0..batch.num_rows() {
        let value = action.is_valid(row).then(|| action.value(row));
        if !matches!(value, Some("bind" | "unbind")) {
            return Err(Error::InvalidInput(format!(
                "identities row {row}: action is {}, expected 'bind' or 'unbind'",
                value.map_or("NULL".to_string(), |v| format!("'{v}'"))
            )));
        }
    }
    Ok(())
}

/// Calls `edge` for each row of an `identities` batch.
pub fn identity_records(batch: &RecordBatch, mut edge: impl FnMut(EdgeRecord<'_>)) -> Result<()> {
    let id_type = required_text(batch, "id_type")?;
    let id_value = required_text(batch, "id_value")?;
    let linked_type = required_text(batch, "linked_type")?;
    let linked_value = required_text(batch, "linked_value")?;
    let action = required_text(batch, "action")?;
    let source = text(batch, "source")?;
    let observed = times(batch, "observed_at")?;
    for row in 0..batch.num_rows() {
        if [&id_type, &id_value, &linked_type, &linked_value]
            .iter()
            .any(|c| c.is_null(row))
            || observed.is_null(row)
        {
            continue;
        }
        let Ok(action) = action.value(row).parse::<Action>() else {
            continue;
        };
        edge(EdgeRecord {
            from: (id_type.value(row), id_value.value(row)),
            to: (linked_type.value(row), linked_value.value(row)),
            observed_at: observed.value(row),
            action,
            source: source
                .as_ref()
                .filter(|s| s.is_valid(row))
                .map_or("", |s| s.value(row)),
        });
    }
    Ok(())
}

/// What an event says about identities, in the order of its rows.
#[derive(Debug, Clone, Copy)]
pub enum EventIdentity<'a> {
    /// Two identifiers observed together.
    Edge(EdgeRecord<'a>),
    /// An identifier seen alone, at a time.
    Seen((&'a str, &'a str), i64),
}

/// Calls `found` for each pair an `events` batch binds and each id it carries alone.
pub fn event_records(batch: &RecordBatch, mut found: impl FnMut(EventIdentity<'_>)) -> Result<()> {
    let kind = text(batch, "type")?;
    let anonymous = text(batch, "anonymous_id")?;
    let user = text(batch, "user_id")?;
    let source = text(batch, "source")?;
    let properties = text(batch, "properties")?;
    let at = times(batch, "timestamp")?;
    for row in 0..batch.num_rows() {
        if at.is_null(row) {
            continue;
        }
        let observed_at = at.value(row);
        let channel = cell(&source, row).unwrap_or("");
        let anonymous_id = cell(&anonymous, row);
        let user_id = cell(&user, row);
        match (anonymous_id, user_id) {
            (Some(a), Some(u)) => found(EventIdentity::Edge(bind(
                (ANONYMOUS_ID, a),
                (USER_ID, u),
                observed_at,
                channel,
            ))),
            (Some(a), None) => found(EventIdentity::Seen((ANONYMOUS_ID, a), observed_at)),
            (None, Some(u)) => found(EventIdentity::Seen((USER_ID, u), observed_at)),
            (None, None) => {}
        }
        let holder = user_id
            .map(|u| (USER_ID, u))
            .or(anonymous_id.map(|a| (ANONYMOUS_ID, a)));
        let (Some(holder), Some(text)) = (holder, cell(&properties, row)) else {
            continue;
        };
        match cell(&kind, row) {
            Some("identify") => {
                let Ok(serde_json::Value::Object(traits)) = serde_json::from_str(text) else {
                    continue;
                };
                for id_type in TRAIT_IDENTIFIERS {
                    if let Some(value) = traits.get(id_type).and_then(identifier_text) {
                        found(EventIdentity::Edge(bind(
                            holder,
                            (id_type, &value),
                            observed_at,
                            channel,
                        )));
                    }
                }
            }
            Some("alias") => {
                let Ok(serde_json::Value::Object(alias)) = serde_json::from_str(text) else {
                    continue;
                };
                if let (Some(previous), Some(u)) =
                    (alias.get("previousId").and_then(identifier_text), user_id)
                {
                    found(EventIdentity::Edge(bind(
                        (ANONYMOUS_ID, &previous),
                        (USER_ID, u),
                        observed_at,
                        channel,
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A non-empty text cell.
fn cell(column: &Option<StringArray>, row: usize) -> Option<&str> {
    column
        .as_ref()
        .filter(|c| c.is_valid(row))
        .map(|c| c.value(row))
        .filter(|v| !v.is_empty())
}

fn bind<'a>(
    from: (&'a str, &'a str),
    to: (&'a str, &'a str),
    observed_at: i64,
    source: &'a str,
) -> EdgeRecord<'a> {
    EdgeRecord {
        from,
        to,
        observed_at,
        action: Action::Bind,
        source,
    }
}

/// A JSON string or number as identifier text.
fn identifier_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::ArrayRef;
    use tributary_catalog::builtin::{EventRow, EventsBuilder};

    use super::*;

    fn event<'a>(
        kind: &'a str,
        anonymous: Option<&'a str>,
        user: Option<&'a str>,
        properties: Option<&'a str>,
    ) -> EventRow<'a> {
        EventRow {
            message_id: "m",
            kind,
            event: None,
            anonymous_id: anonymous,
            user_id: user,
            timestamp: 7,
            received_at: 8,
            source: "web",
            properties,
            context: None,
        }
    }

    #[test]
    fn events_bind_ids_traits_and_aliases() {
        let mut builder = EventsBuilder::default();
        builder.push(event("track", Some("a1"), Some("u1"), None));
        builder.push(event("track", Some("a2"), None, None));
        builder.push(event(
            "identify",
            None,
            Some("u1"),
            Some(r#"{"email":"x@y.z","phone":13800138000,"name":"X"}"#),
        ));
        builder.push(event(
            "alias",
            None,
            Some("u1"),
            Some(r#"{"previousId":"a3"}"#),
        ));
        builder.push(event("identify", Some("a4"), None, Some("not json")));
        let batch = builder.finish();
        let mut edges = Vec::new();
        let mut seen = Vec::new();
        event_records(&batch, |found| match found {
            EventIdentity::Edge(e) => edges.push(format!(
                "{}:{}={}:{}@{}",
                e.from.0, e.from.1, e.to.0, e.to.1, e.observed_at
            )),
            EventIdentity::Seen(id, _) => seen.push(format!("{}:{}", id.0, id.1)),
        })
        .unwrap();
        assert_eq!(
            edges,
            [
                "anonymous_id:a1=user_id:u1@7",
                "user_id:u1=email:x@y.z@7",
                "user_id:u1=phone:13800138000@7",
                "anonymous_id:a3=user_id:u1@7",
            ]
        );
        assert_eq!(
            seen,
            [
                "anonymous_id:a2",
                "user_id:u1",
                "user_id:u1",
                "anonymous_id:a4"
            ]
        );
    }

    #[test]
    fn identities_with_a_bad_action_are_refused_by_row() {
        let column = |values: Vec<Option<&str>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let batch =
            RecordBatch::try_from_iter([("action", column(vec![Some("bind"), Some("merge")]))])
                .unwrap();
        let err = check_identities(&batch).unwrap_err().to_string();
        assert!(err.contains("row 1: action is 'merge'"), "{err}");
    }
}
