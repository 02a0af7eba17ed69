//! `event_measures(event [, from [, until]])`: per customer, how often and when it did `event`
//! between `from` and `until` (both inclusive; NULL or absent: unbounded) — one row per
//! customer with at least one such event: `customer_id, customer_key, events, first_time,
//! last_time, distinct_days` (UTC days).
//!
//! The same numbers as `SELECT customer_id, count(*), min(timestamp), max(timestamp),
//! count(DISTINCT date_trunc('day', timestamp)) FROM customer_events WHERE event = … GROUP BY
//! customer_id`, counted over the rows `customer_events` keeps in memory, each customer's tally
//! at the position of its `customer_key`: no hash table, no text. It is what a segment's
//! behaviour conditions read (a count over a million events in a few milliseconds instead of a
//! hash aggregation ten times as long); `tests/sql/event_measures.slt` checks it against the
//! `GROUP BY`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringViewArray,
    TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tributary_catalog::builtin::timestamp_type;

use super::args::{text_args, time_literal};
use super::{Call, Compute, ComputedExec, TableFunction, session_state};
use crate::identity::customer_events::{CUSTOMER_EVENTS, CustomerEventsTable};

/// `event_measures`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "event_measures",
    call: event_measures,
};

const USAGE: &str = "event_measures(event [, from [, until]])";

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn event_measures(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let (name, args) = (call.name, call.args);
    if args.is_empty() || args.len() > 3 {
        return plan_err!("{name} takes {USAGE}");
    }
    let [event] = text_args(name, USAGE, &args[..1])?
        .try_into()
        .expect("one argument");
    let bound = |index: usize, what: &str| match args.get(index) {
        Some(expr) => time_literal(name, what, expr),
        None => Ok(None),
    };
    let window = Window {
        event,
        from: bound(1, "from")?.unwrap_or(i64::MIN),
        until: bound(2, "until")?.unwrap_or(i64::MAX),
    };
    Ok(Arc::new(EventMeasures {
        window,
        schema: schema(),
    }))
}

/// The function's columns.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8View, false),
        Field::new("customer_key", DataType::UInt32, false),
        Field::new("events", DataType::Int64, false),
        Field::new("first_time", timestamp_type(), false),
        Field::new("last_time", timestamp_type(), false),
        Field::new("distinct_days", DataType::Int64, false),
    ]))
}

/// The events a call measures: `event` in `from..=until` (microseconds since the epoch).
#[derive(Debug, Clone)]
struct Window {
    event: String,
    from: i64,
    until: i64,
}

/// The tallies of one call, computed when scanned.
#[derive(Debug)]
struct EventMeasures {
    window: Window,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for EventMeasures {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(columns) => columns.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let output = Arc::new(self.schema.project(&columns)?);
        // The session's own `customer_events` (the events as this query sees them), found
        // without copying the session: this is planned on every segment count.
        let state = session_state(session)?;
        let provider = state
            .schema_for_ref(CUSTOMER_EVENTS)?
            .table(CUSTOMER_EVENTS)
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("no table {CUSTOMER_EVENTS}")))?;
        let window = self.window.clone();
        let schema = Arc::clone(&output);
        let compute: Compute = Arc::new(move || {
            let (provider, window) = (Arc::clone(&provider), window.clone());
            let (schema, columns) = (Arc::clone(&schema), columns.clone());
            Box::pin(async move {
                let events = provider
                    .downcast_ref::<CustomerEventsTable>()
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "{CUSTOMER_EVENTS} is not the engine's own table"
                        ))
                    })?;
                let mut tally = Tally::new(columns.contains(&5));
                let ids = events
                    .for_each_keyed(&window.event, window.from, window.until, |key, time| {
                        tally.add(key, time)
                    })
                    .await?;
                Ok(vec![tally.batch(&schema, &columns, &ids)?])
            })
        });
        Ok(Arc::new(ComputedExec::new(
            "event_measures",
            output,
            compute,
        )))
    }
}

/// Each customer's measures, at the position of its key (`events` 0: none).
struct Tally {
    events: Vec<i64>,
    first: Vec<i64>,
    last: Vec<i64>,
    /// (key, day) of every event, when distinct days are asked for.
    days: Option<Vec<(u32, i64)>>,
}

impl Tally {
    /// No events yet; with `with_days`, distinct days are counted too.
    fn new(with_days: bool) -> Self {
        Tally {
            events: Vec::new(),
            first: Vec::new(),
            last: Vec::new(),
            days: with_days.then(Vec::new),
        }
    }

    /// One event of the customer `key` at `time`.
    fn add(&mut self, key: u32, time: i64) {
        let at = key as usize;
        if at >= self.events.len() {
            self.events.resize(at + 1, 0);
            self.first.resize(at + 1, i64::MAX);
            self.last.resize(at + 1, i64::MIN);
        }
        self.events[at] += 1;
        self.first[at] = self.first[at].min(time);
        self.last[at] = self.last[at].max(time);
        if let Some(days) = &mut self.days {
            days.push((key, time.div_euclid(MICROS_PER_DAY)));
        }
    }

    /// One row per customer with an event, in key order: `columns` (positions in the
    /// function's schema, `schema` their schema), the customer ids taken from `ids`.
    fn batch(
        mut self,
        schema: &SchemaRef,
        columns: &[usize],
        ids: &StringViewArray,
    ) -> DfResult<RecordBatch> {
        let keys: UInt32Array = (0..self.events.len() as u32)
            .filter(|&key| self.events[key as usize] > 0)
            .collect();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        for &column in columns {
            arrays.push(match column {
                0 => take(ids, &keys, None)?,
                1 => Arc::new(keys.clone()),
                2 => Arc::new(Int64Array::from_iter_values(pick(&keys, &self.events))),
                3 => Arc::new(time_array(pick(&keys, &self.first))),
                4 => Arc::new(time_array(pick(&keys, &self.last))),
                _ => {
                    let days = self.distinct_days();
                    Arc::new(Int64Array::from_iter_values(pick(&keys, &days)))
                }
            });
        }
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(keys.len())),
        )?)
    }

    /// Distinct days per key.
    fn distinct_days(&mut self) -> Vec<i64> {
        let mut counts = vec![0; self.events.len()];
        let Some(days) = &mut self.days else {
            return counts;
        };
        days.sort_unstable();
        days.dedup();
        for &(key, _) in days.iter() {
            counts[key as usize] += 1;
        }
        counts
    }
}

/// `values` at each of `keys`.
fn pick<'a>(keys: &'a UInt32Array, values: &'a [i64]) -> impl Iterator<Item = i64> + 'a {
    keys.values().iter().map(|&key| values[key as usize])
}

fn time_array(values: impl Iterator<Item = i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC")
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;

    #[test]
    fn tallies_per_key() {
        let day = MICROS_PER_DAY;
        let mut tally = Tally::new(true);
        for (key, time) in [(2, 5), (2, day + 1), (0, -1), (2, day + 9)] {
            tally.add(key, time);
        }
        let ids = StringViewArray::from(vec!["a", "b", "c"]);
        let out = tally.batch(&schema(), &[0, 1, 2, 3, 4, 5], &ids).unwrap();
        assert_eq!(out.num_rows(), 2);
        let ids = out.column(0).as_string_view();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "c"));
        let events = out.column(2).as_primitive::<Int64Type>();
        assert_eq!(events.values().as_ref(), &[1, 3]);
        let first = out.column(3).as_primitive::<TimestampMicrosecondType>();
        let last = out.column(4).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((first.value(1), last.value(1)), (5, day + 9));
        let days = out.column(5).as_primitive::<Int64Type>();
        // -1 µs is the day before the epoch; 5 µs and day + 1 / day + 9 are two days.
        assert_eq!(days.values().as_ref(), &[1, 2]);
    }
}
