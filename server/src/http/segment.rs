//! The Segment tracking API's messages, checked one by one and turned into `events` rows.
//!
//! Each message is parsed on its own, so that one bad message (too large, missing ids, a time
//! that is not a time) is rejected and reported by its position while the rest are stored.
//! Column mapping (documented in docs/collection.md): `event` is a track's event name or a
//! page's or screen's name; `properties` holds a track's, page's or screen's properties, an
//! identify's traits, a group's `{"groupId", "traits"}` or an alias's `{"previousId"}`.

use std::borrow::Cow;

use datafusion::arrow::array::RecordBatch;
use serde::Deserialize;
use serde_json::value::RawValue;
use tributary_catalog::builtin::{EventRow, EventsBuilder};

/// Segment's limit on one message.
pub const EVENT_BYTES_MAX: usize = 32 * 1024;
/// Segment's limit on one batch request.
pub const BATCH_BYTES_MAX: usize = 500 * 1024;

/// The message types of the tracking API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// An action the user took.
    Track,
    /// Who the user is, with traits.
    Identify,
    /// A web page view.
    Page,
    /// An app screen view.
    Screen,
    /// Two ids of one user.
    Alias,
    /// The user's group (account, company).
    Group,
}

impl MessageType {
    /// Every type, for error messages.
    const NAMES: &'static str = "track, identify, page, screen, alias, group";

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "alias" => Self::Alias,
            "group" => Self::Group,
            _ => return None,
        })
    }

    /// The type's name as stored in `events.type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Alias => "alias",
            Self::Group => "group",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    group_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
}

/// A message that was not stored, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected {
    /// Position in the request (0 for a single-message endpoint).
    pub index: usize,
    /// The message's id, when it had a readable one.
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// What is wrong with it.
    pub error: String,
}

/// `events` rows built from the accepted messages of one request.
pub struct EventRows {
    builder: EventsBuilder,
    received_at_micros: i64,
    source_name: String,
    /// The messages that were not stored.
    pub rejected: Vec<Rejected>,
}

impl std::fmt::Debug for EventRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRows")
            .field("rows", &self.builder.len())
            .field("rejected", &self.rejected.len())
            .finish()
    }
}

struct Row {
    message_id: String,
    kind: MessageType,
    event: Option<String>,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    timestamp: i64,
    properties: Option<String>,
    context: Option<String>,
}

impl EventRows {
    /// Rows received now, from a source named `source_name`.
    pub fn new(received_at_micros: i64, source_name: &str) -> Self {
        Self {
            builder: EventsBuilder::default(),
            received_at_micros,
            source_name: source_name.to_string(),
            rejected: Vec::new(),
        }
    }

    /// Rows accepted so far.
    pub fn len(&self) -> usize {
        self.builder.len()
    }

    /// True when no message was accepted.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// Checks one message and adds it, or records why not. `kind` is the endpoint's type
    /// (`None` for batch, where each message names its own); `batch_context` is the batch's
    /// `context`, used by messages without one.
    pub fn add(
        &mut self,
        index: usize,
        raw: &str,
        kind: Option<MessageType>,
        batch_context: Option<&RawValue>,
    ) {
        match parse_message(raw, kind, batch_context, self.received_at_micros) {
            Ok(row) => self.builder.push(EventRow {
                message_id: &row.message_id,
                kind: row.kind.name(),
                event: row.event.as_deref(),
                anonymous_id: row.anonymous_id.as_deref(),
                user_id: row.user_id.as_deref(),
                timestamp: row.timestamp,
                received_at: self.received_at_micros,
                source: &self.source_name,
                properties: row.properties.as_deref(),
                context: row.context.as_deref(),
            }),
            Err((message_id, error)) => self.rejected.push(Rejected {
                index,
                message_id,
                error,
            }),
        }
    }

    /// The accepted rows as one `events` batch.
    pub fn finish(mut self) -> (RecordBatch, Vec<Rejected>) {
        (self.builder.finish(), self.rejected)
    }
}

type Refusal = (Option<String>, String);

fn parse_message(
    raw: &str,
    endpoint_kind: Option<MessageType>,
    batch_context: Option<&RawValue>,
    received_at: i64,
) -> Result<Row, Refusal> {
    if raw.len() > EVENT_BYTES_MAX {
        return Err((
            None,
            format!(
                "the message is {} bytes; the limit is {EVENT_BYTES_MAX} bytes (32 KB)",
                raw.len()
            ),
        ));
    }
    let message: Message<'_> = serde_json::from_str(raw)
        .map_err(|e| (None, format!("the message is not a valid object: {e}")))?;
    let message_id = id_text(message.message_id, "messageId").map_err(|e| (None, e))?;
    let refuse = |error: String| (message_id.clone(), error);
    let kind = match (endpoint_kind, message.kind.as_deref()) {
        (Some(kind), _) => kind,
        (None, Some(name)) => MessageType::parse(name).ok_or_else(|| {
            refuse(format!(
                "unknown type '{name}' (expected one of: {})",
                MessageType::NAMES
            ))
        })?,
        (None, None) => {
            return Err(refuse(format!(
                "the message has no 'type' (one of: {})",
                MessageType::NAMES
            )));
        }
    };
    let user_id = id_text(message.user_id, "userId").map_err(&refuse)?;
    let anonymous_id = id_text(message.anonymous_id, "anonymousId").map_err(&refuse)?;
    // An alias names its own required ids (checked below).
    if user_id.is_none() && anonymous_id.is_none() && kind != MessageType::Alias {
        return Err(refuse(
            "the message has neither 'userId' nor 'anonymousId'; one is required".into(),
        ));
    }
    let timestamp = match message
        .timestamp
        .as_deref()
        .or(message.original_timestamp.as_deref())
    {
        Some(text) => parse_time(text).ok_or_else(|| {
            refuse(format!(
                "timestamp '{text}' is not an ISO-8601 time such as 2026-11-25T10:00:00Z"
            ))
        })?,
        None => received_at,
    };
    let (event, properties) = match kind {
        MessageType::Track => {
            let name = message
                .event
                .filter(|e| !e.is_empty())
                .ok_or_else(|| refuse("a track message needs 'event', the event's name".into()))?;
            (Some(name.into_owned()), raw_text(message.properties))
        }
        MessageType::Page | MessageType::Screen => (
            message.name.map(Cow::into_owned),
            raw_text(message.properties),
        ),
        MessageType::Identify => (None, raw_text(message.traits)),
        MessageType::Group => {
            let group_id = id_text(message.group_id, "groupId").map_err(&refuse)?;
            let group_id =
                group_id.ok_or_else(|| refuse("a group message needs 'groupId'".into()))?;
            let traits = message.traits.map_or("null", RawValue::get);
            let group_id = serde_json::to_string(&group_id).unwrap_or_default();
            (
                None,
                Some(format!(r#"{{"groupId":{group_id},"traits":{traits}}}"#)),
            )
        }
        MessageType::Alias => {
            let previous = id_text(message.previous_id, "previousId").map_err(&refuse)?;
            let previous =
                previous.ok_or_else(|| refuse("an alias message needs 'previousId'".into()))?;
            if user_id.is_none() {
                return Err(refuse("an alias message needs 'userId'".into()));
            }
            let previous = serde_json::to_string(&previous).unwrap_or_default();
            (None, Some(format!(r#"{{"previousId":{previous}}}"#)))
        }
    };
    Ok(Row {
        message_id: message_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        kind,
        event,
        anonymous_id,
        user_id,
        timestamp,
        properties,
        context: raw_text(message.context.or(batch_context)),
    })
}

/// An id given as a string or a number (SDKs send both); `null` and `""` are absent.
fn id_text(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Ok(serde_json::Value::String(s)) => Ok(Some(s)),
        Ok(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        _ => Err(format!("'{field}' must be a string or a number")),
    }
}

fn raw_text(raw: Option<&RawValue>) -> Option<String> {
    raw.map(RawValue::get)
        .filter(|text| *text != "null")
        .map(str::to_string)
}

/// Microseconds since the epoch of an ISO-8601 time (with an offset, or UTC when it has none).
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;

    fn rows(messages: &[&str], kind: Option<MessageType>) -> (RecordBatch, Vec<Rejected>) {
        let mut rows = EventRows::new(1_000, "web");
        for (index, raw) in messages.iter().enumerate() {
            rows.add(index, raw, kind, None);
        }
        rows.finish()
    }

    #[test]
    fn each_type_maps_to_its_columns() {
        let (batch, rejected) = rows(
            &[
                r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","timestamp":"2026-11-25T10:00:00.5Z","properties":{"revenue":12.5},"context":{"ip":"1.2.3.4"}}"#,
                r#"{"type":"identify","anonymousId":"a1","userId":42,"traits":{"email":"x@y.z"}}"#,
                r#"{"type":"page","name":"Home","anonymousId":"a1"}"#,
                r#"{"type":"alias","userId":"u1","previousId":"a1"}"#,
                r#"{"type":"group","userId":"u1","groupId":"g1","traits":{"plan":"pro"}}"#,
            ],
            None,
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        let text = |name: &str, row: usize| {
            let column = batch.column_by_name(name).unwrap().as_string::<i32>();
            column.is_valid(row).then(|| column.value(row).to_string())
        };
        assert_eq!(text("event", 0).as_deref(), Some("Order Completed"));
        assert_eq!(
            text("properties", 0).as_deref(),
            Some(r#"{"revenue":12.5}"#)
        );
        assert_eq!(text("context", 0).as_deref(), Some(r#"{"ip":"1.2.3.4"}"#));
        assert_eq!(text("message_id", 0).as_deref(), Some("m1"));
        assert_eq!(text("user_id", 1).as_deref(), Some("42"));
        assert_eq!(
            text("properties", 1).as_deref(),
            Some(r#"{"email":"x@y.z"}"#)
        );
        assert_eq!(text("event", 2).as_deref(), Some("Home"));
        assert_eq!(
            text("properties", 3).as_deref(),
            Some(r#"{"previousId":"a1"}"#)
        );
        assert_eq!(
            text("properties", 4).as_deref(),
            Some(r#"{"groupId":"g1","traits":{"plan":"pro"}}"#)
        );
        assert_eq!(text("source", 4).as_deref(), Some("web"));
        let times = batch
            .column_by_name("timestamp")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.value(0), 1_795_600_800_500_000);
        assert_eq!(
            times.value(2),
            1_000,
            "no timestamp: the time it was received"
        );
        assert!(text("message_id", 2).is_some(), "a message id is generated");
    }

    #[test]
    fn bad_messages_are_rejected_with_their_reason() {
        let big = format!(
            r#"{{"type":"track","event":"e","userId":"u","properties":{{"x":"{}"}}}}"#,
            "a".repeat(EVENT_BYTES_MAX)
        );
        let (batch, rejected) = rows(
            &[
                r#"{"type":"track","event":"ok","userId":"u"}"#,
                r#"{"type":"track","event":"e","messageId":"m2"}"#,
                r#"{"type":"track","event":"e","userId":"u","timestamp":"yesterday"}"#,
                r#"{"type":"teleport","userId":"u"}"#,
                r#"{"type":"track","userId":"u"}"#,
                r#"[1,2]"#,
                &big,
                r#"{"type":"alias","previousId":"a"}"#,
            ],
            None,
        );
        assert_eq!(batch.num_rows(), 1);
        let errors: Vec<_> = rejected
            .iter()
            .map(|r| (r.index, r.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 7, "{errors:?}");
        assert!(errors[0].1.contains("neither 'userId' nor 'anonymousId'"));
        assert_eq!(rejected[0].message_id.as_deref(), Some("m2"));
        assert!(errors[1].1.contains("'yesterday' is not an ISO-8601 time"));
        assert!(errors[2].1.contains("unknown type 'teleport'"));
        assert!(errors[3].1.contains("needs 'event'"));
        assert!(errors[4].1.contains("not a valid object"));
        assert!(errors[5].1.contains("limit is 32768 bytes"));
        assert!(errors[6].1.contains("needs 'userId'"));
    }

    #[test]
    fn the_endpoint_decides_the_type() {
        let (batch, rejected) = rows(
            &[r#"{"event":"Clicked","anonymousId":"a"}"#],
            Some(MessageType::Track),
        );
        assert!(rejected.is_empty());
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "track");
    }
}
