//! The built-in tables every tenant has, with the columns of the data model
//! (docs/data-model.md). Created on a tenant's first start; never dropped.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the collected-events table.
pub const EVENTS: &str = "events";
/// Name of the identity-graph edges table.
pub const IDENTITIES: &str = "identities";
/// Name of the customer profiles table.
pub const PROFILES: &str = "profiles";

/// A built-in table: its name, columns and Delta partition columns.
#[derive(Debug, Clone)]
pub struct BuiltInTable {
    /// Table name inside schema `public`.
    pub name: &'static str,
    /// Arrow schema (strings as `Utf8`, times as UTC microseconds).
    pub schema: SchemaRef,
    /// Delta partition columns.
    pub partition_columns: &'static [&'static str],
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

/// `profiles`: one row per resolved customer.
pub fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        text("customer_id", false),
        text("traits", true),
        time("first_seen", true),
        time("last_seen", true),
    ]))
}

/// Every built-in table, in creation order.
pub fn built_in_tables() -> Vec<BuiltInTable> {
    vec![
        BuiltInTable {
            name: EVENTS,
            schema: events_schema(),
            partition_columns: &["event_date"],
        },
        BuiltInTable {
            name: IDENTITIES,
            schema: identities_schema(),
            partition_columns: &[],
        },
        BuiltInTable {
            name: PROFILES,
            schema: profiles_schema(),
            partition_columns: &[],
        },
    ]
}

/// True for the names of built-in tables.
pub fn is_built_in(name: &str) -> bool {
    [EVENTS, IDENTITIES, PROFILES].contains(&name)
}
