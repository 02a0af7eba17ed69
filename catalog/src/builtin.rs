//! The built-in tables every tenant has, with the columns of the data model
//! (docs/data-model.md). Created on a tenant's first start; never dropped.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the collected-events table.
pub const EVENTS: &str = "events";
/// Name of the identity-graph edges table.
pub const IDENTITIES: &str = "identities";
/// Name of the customer profiles table.
pub const PROFILES: &str = "profiles";
/// Name of the log of merges, splits and refused merges of customers.
pub const IDENTITY_CHANGES: &str = "identity_changes";
/// Name of the stored segment definitions.
pub const SEGMENTS: &str = "segments";
/// Name of the segments' membership history.
pub const SEGMENT_MEMBERS: &str = "segment_members";
/// Name of the places segments are delivered to (webhooks, files).
pub const DESTINATIONS: &str = "destinations";
/// Name of the segment → destination pairs being delivered.
pub const ACTIVATIONS: &str = "activations";
/// Name of the log of every delivery attempt.
pub const ACTIVATION_LOG: &str = "activation_log";

/// A built-in table: its name, columns and Delta partition columns.
#[derive(Debug, Clone)]
pub struct BuiltInTable {
    /// Table name inside schema `public`.
    pub name: &'static str,
    /// Arrow schema (strings as `Utf8`, times as UTC microseconds).
    pub schema: SchemaRef,
    /// Delta partition columns.
    pub partition_columns: &'static [&'static str],
    /// The order rows are written in, within each data file ([`storage_order`]).
    pub sort_columns: &'static [&'static str],
}

/// The order in which `events` rows are written within each data file: by event name, then
/// person, then time. Queries that keep a few event names (a segment's purchases, a model's
/// purchase days) then read only the pages holding them (Parquet page-index pruning), and the
/// rows of one person's event lie together, which also compresses the columns better.
pub const EVENTS_SORT_COLUMNS: &[&str] = &["event", "anonymous_id", "timestamp"];

/// The columns a table's rows are sorted by within each data file it is written to; empty for
/// tables written in arrival order.
pub fn storage_order(table: &str) -> &'static [&'static str] {
    if table == EVENTS {
        EVENTS_SORT_COLUMNS
    } else {
        &[]
    }
}

/// Timestamps are stored as UTC microseconds, as Segment and ClickHouse's DateTime64(6) do.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn time(name: &str, nullable: bool) -> Field {
    Field::new(name, timestamp_type(), nullable)
}

/// `events`: one row per collected event, Segment-spec columns in snake_case.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("message_id", false),
        text("type", false),
        text("event", true),
        text("anonymous_id", true),
        text("user_id", true),
        time("timestamp", false),
        time("received_at", true),
        text("source", true),
        text("properties", true),
        text("context", true),
        Field::new("event_date", DataType::Date32, false),
    ]))
}

/// One `events` row, as [`EventsBuilder`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct EventRow<'a> {
    /// Dedup key.
    pub message_id: &'a str,
    /// track, identify, page, screen, alias, group.
    pub kind: &'a str,
    /// Event (or page, screen) name.
    pub event: Option<&'a str>,
    /// Anonymous id (cookie, device).
    pub anonymous_id: Option<&'a str>,
    /// Known user id.
    pub user_id: Option<&'a str>,
    /// When it happened, µs since the epoch (UTC).
    pub timestamp: i64,
    /// When it was received, µs since the epoch (UTC).
    pub received_at: i64,
    /// Channel.
    pub source: &'a str,
    /// JSON text.
    pub properties: Option<&'a str>,
    /// JSON text.
    pub context: Option<&'a str>,
}

/// Builds `events` batches row by row (the HTTP collection API, the data generator).
#[derive(Debug, Default)]
pub struct EventsBuilder {
    message_id: StringBuilder,
    kind: StringBuilder,
    event: StringBuilder,
    anonymous_id: StringBuilder,
    user_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    properties: StringBuilder,
    context: StringBuilder,
    event_date: Date32Builder,
    len: usize,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl EventsBuilder {
    /// Adds a row; `event_date` is the UTC date of its timestamp.
    pub fn push(&mut self, row: EventRow<'_>) {
        self.message_id.append_value(row.message_id);
        self.kind.append_value(row.kind);
        self.event.append_option(row.event);
        self.anonymous_id.append_option(row.anonymous_id);
        self.user_id.append_option(row.user_id);
        self.timestamp.append_value(row.timestamp);
        self.received_at.append_value(row.received_at);
        self.source.append_value(row.source);
        self.properties.append_option(row.properties);
        self.context.append_option(row.context);
        self.event_date
            .append_value(row.timestamp.div_euclid(MICROS_PER_DAY) as i32);
        self.len += 1;
    }

    /// Rows added since the last [`Self::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no row was added since the last [`Self::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows added so far as one batch; the builder starts over empty.
    pub fn finish(&mut self) -> RecordBatch {
        self.len = 0;
        let utc = |b: &mut TimestampMicrosecondBuilder| -> ArrayRef {
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.message_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.user_id.finish()),
            utc(&mut self.timestamp),
            utc(&mut self.received_at),
            Arc::new(self.source.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.context.finish()),
            Arc::new(self.event_date.finish()),
        ];
        RecordBatch::try_new(events_schema(), columns).expect("columns match the events schema")
    }
}

/// `identities`: identity-graph edges, two identifiers observed together.
pub fn identities_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("id_type", false),
        text("id_value", false),
        text("linked_type", false),
        text("linked_value", false),
        text("source", true),
        time("observed_at", false),
        text("action", false),
    ]))
}

/// `profiles`: one row per resolved customer, rebuilt whole by each refresh.
pub fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("customer_id", false),
        text("traits", true),
        time("first_seen", true),
        time("last_seen", true),
        text("identifiers", false),
        Field::new("event_count", DataType::Int64, false),
        Field::new("purchase_count", DataType::Int64, false),
        time("last_purchase_at", true),
        Field::new("total_revenue", DataType::Float64, false),
        time("updated_at", false),
        text("rfm_segment", true),
        text("lifecycle_stage", true),
        Field::new("clv", DataType::Float64, true),
        Field::new("p_alive", DataType::Float64, true),
    ]))
}

/// `identity_changes`: what identity resolution did to customers, when and why.
pub fn identity_changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time("changed_at", false),
        text("kind", false),
        text("customer_id", true),
        text("other_customer_id", true),
        text("id_type", false),
        text("id_value", false),
        text("linked_type", false),
        text("linked_value", false),
        time("observed_at", true),
        text("reason", false),
    ]))
}

/// `segments`: one row per stored segment.
pub fn segments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("name", false),
        text("definition", false),
        text("sql", false),
        text("schedule", false),
        Field::new("size", DataType::Int64, true),
        time("created_at", false),
        time("refreshed_at", true),
    ]))
}

/// `segment_members`: who entered and left each segment, when (`exited_at` NULL while a member;
/// a customer who leaves and comes back has a new row).
pub fn segment_members_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("segment", false),
        text("customer_id", false),
        time("entered_at", false),
        time("exited_at", true),
    ]))
}

/// `destinations`: one row per destination (`CREATE DESTINATION`); `config` is its JSON.
pub fn destinations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("name", false),
        text("type", false),
        text("config", false),
        time("created_at", false),
    ]))
}

/// `activations`: one row per segment delivered to a destination (`ACTIVATE SEGMENT`); `traits`
/// and `identifiers` are JSON arrays of the names each member carries.
pub fn activations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("segment", false),
        text("destination", false),
        text("traits", false),
        text("identifiers", false),
        time("created_at", false),
    ]))
}

/// `activation_log`: one row per delivery attempt. `change_at` is the refresh (or activation)
/// whose enters and exits the batch carries; `status` is `delivered` or `failed`.
pub fn activation_log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("destination", false),
        text("segment", false),
        text("batch_id", false),
        time("change_at", false),
        Field::new("entered", DataType::Int64, false),
        Field::new("exited", DataType::Int64, false),
        Field::new("attempts", DataType::Int64, false),
        text("status", false),
        text("error", true),
        time("attempted_at", false),
    ]))
}

/// Every built-in table, in creation order.
pub fn built_in_tables() -> Vec<BuiltInTable> {
    vec![
        BuiltInTable {
            name: EVENTS,
            schema: events_schema(),
            partition_columns: &["event_date"],
            sort_columns: EVENTS_SORT_COLUMNS,
        },
        BuiltInTable {
            name: IDENTITIES,
            schema: identities_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: PROFILES,
            schema: profiles_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: IDENTITY_CHANGES,
            schema: identity_changes_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: SEGMENTS,
            schema: segments_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: SEGMENT_MEMBERS,
            schema: segment_members_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: DESTINATIONS,
            schema: destinations_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: ACTIVATIONS,
            schema: activations_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
        BuiltInTable {
            name: ACTIVATION_LOG,
            schema: activation_log_schema(),
            partition_columns: &[],
            sort_columns: &[],
        },
    ]
}

/// The names of the built-in tables, in creation order (those of [`built_in_tables`]).
const BUILT_IN_NAMES: [&str; 9] = [
    EVENTS,
    IDENTITIES,
    PROFILES,
    IDENTITY_CHANGES,
    SEGMENTS,
    SEGMENT_MEMBERS,
    DESTINATIONS,
    ACTIVATIONS,
    ACTIVATION_LOG,
];

/// True for the names of built-in tables.
pub fn is_built_in(name: &str) -> bool {
    BUILT_IN_NAMES.contains(&name)
}

/// True for tables whose columns a replacing write keeps: the built-in tables data is collected
/// into. `profiles` is derived, and each refresh replaces it with its columns.
pub fn has_fixed_columns(name: &str) -> bool {
    is_built_in(name) && name != PROFILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_order_is_each_tables_sort_columns() {
        for table in built_in_tables() {
            assert_eq!(
                storage_order(table.name),
                table.sort_columns,
                "{}",
                table.name
            );
            for column in table.sort_columns {
                assert!(table.schema.field_with_name(column).is_ok(), "{column}");
            }
        }
    }

    #[test]
    fn the_name_list_is_the_table_list() {
        let names: Vec<&str> = built_in_tables().iter().map(|t| t.name).collect();
        assert_eq!(names, BUILT_IN_NAMES);
    }
}
