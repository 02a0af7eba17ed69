//! `segment_preview(definition [, limit])`: the customers a segment definition selects now —
//! `customer_id` rows in order, at most `limit` (all without). The definition is the JSON of
//! docs/segments.md; `tributary_segments` checks it and compiles it to the SQL this runs, which
//! `EXPLAIN SEGMENT` shows and `segment_size(definition)` counts.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::plan_err;
use datafusion::error::{DataFusionError, Result as DfResult};
use tributary_catalog::builtin::PROFILES;
use tributary_segments::{Definition, Sources, compile, parse};

use super::args::{count_literal, text_args};
use super::{Call, SqlTable, TableFunction, live};
use crate::identity::map::IDENTITY_MAP;
use crate::identity::profiles::resolved_events;

/// `segment_preview`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "segment_preview",
    call: segment_preview,
};

const USAGE: &str = "segment_preview(definition [, limit])";

fn segment_preview(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let Some(first) = call.args.first() else {
        return plan_err!("{} takes {USAGE}", call.name);
    };
    if call.args.len() > 2 {
        return plan_err!("{} takes {USAGE}", call.name);
    }
    let [definition] = text_args(call.name, USAGE, std::slice::from_ref(first))?
        .try_into()
        .expect("one argument");
    let mut sql = format!(
        "SELECT customer_id FROM ({}) ORDER BY customer_id",
        segment_sql(&definition)?
    );
    if call.args.len() == 2 {
        let limit = count_literal(call.name, "limit", call.args.get(1), 0)?;
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "customer_id",
        DataType::Utf8,
        false,
    )]));
    Ok(live(
        schema,
        SqlTable {
            inputs: Vec::new(),
            sql,
        },
    ))
}

/// The SQL selecting the `customer_id` of every member of `definition` (JSON text) now, over the
/// calling tenant's customers (`identity_map`), `profiles` and events.
pub(crate) fn segment_sql(definition: &str) -> DfResult<String> {
    let definition = parse(definition).map_err(segment_error)?;
    with_sources(|sources| compile(&definition, sources, Utc::now(), &no_stored_segment))
        .map_err(segment_error)
}

/// Runs `f` with the tenant's relations as a segment reads them.
pub(super) fn with_sources<T>(f: impl FnOnce(&Sources<'_>) -> T) -> T {
    let customers = format!("(SELECT DISTINCT customer_id FROM {IDENTITY_MAP})");
    let events = format!(
        "({})",
        resolved_events("TRUE", "e.timestamp, e.event, e.properties", "TRUE")
    );
    f(&Sources {
        customers: &customers,
        profiles: PROFILES,
        events: &events,
    })
}

/// No segment is stored yet (`CREATE SEGMENT` is to come), so a reference names an unknown one.
pub(super) fn no_stored_segment(_name: &str) -> Option<Definition> {
    None
}

/// A definition's problem, as a planning error (the user's input).
pub(super) fn segment_error(error: tributary_segments::Error) -> DataFusionError {
    DataFusionError::Plan(error.to_string())
}
