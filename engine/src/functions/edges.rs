//! The answer shape of `explain_merge` (numbered steps) and `explain_identity` (every pair with
//! its status): one row per edge record of the identity graph.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;
use tributary_catalog::builtin::timestamp_type;
use tributary_identity::EdgeView;

/// How the edges are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EdgeListing {
    /// A chain: a leading `step` column, 1 first.
    Steps,
    /// A set: trailing `status` (merged, refused, unbound) and `reason` columns.
    WithStatus,
}

fn edges_schema(listing: EdgeListing) -> SchemaRef {
    let mut fields = Vec::new();
    if listing == EdgeListing::Steps {
        fields.push(Field::new("step", DataType::Int64, false));
    }
    for name in ["id_type", "id_value", "linked_type", "linked_value"] {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    fields.push(Field::new("observed_at", timestamp_type(), false));
    fields.push(Field::new("source", DataType::Utf8, false));
    if listing == EdgeListing::WithStatus {
        fields.push(Field::new("status", DataType::Utf8, false));
        fields.push(Field::new("reason", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// The edges as a table.
pub(super) fn edges_table(
    edges: &[EdgeView],
    listing: EdgeListing,
) -> DfResult<Arc<dyn TableProvider>> {
    let mut step = Int64Builder::new();
    let mut text: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut observed = TimestampMicrosecondBuilder::new();
    let mut source = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut reason = StringBuilder::new();
    for (i, edge) in edges.iter().enumerate() {
        step.append_value(i as i64 + 1);
        text[0].append_value(&edge.from.id_type);
        text[1].append_value(&edge.from.value);
        text[2].append_value(&edge.to.id_type);
        text[3].append_value(&edge.to.value);
        observed.append_value(edge.observed_at);
        source.append_value(&edge.source);
        let (state, why) = match (&edge.refusal, edge.bound) {
            (_, false) => ("unbound", None),
            (Some(refusal), true) => ("refused", Some(refusal.to_string())),
            (None, true) => ("merged", None),
        };
        status.append_value(state);
        reason.append_option(why);
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    if listing == EdgeListing::Steps {
        columns.push(Arc::new(step.finish()));
    }
    columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(observed.finish().with_timezone("UTC")));
    columns.push(Arc::new(source.finish()));
    if listing == EdgeListing::WithStatus {
        columns.push(Arc::new(status.finish()));
        columns.push(Arc::new(reason.finish()));
    }
    memory_table(edges_schema(listing), columns)
}

/// A table of one batch.
pub(super) fn memory_table(
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> DfResult<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
