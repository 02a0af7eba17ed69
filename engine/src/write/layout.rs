//! How the rows of a commit are laid out in the data files it writes: in their table's
//! storage order ([`storage_order`]) and, for sorted tables, in small Parquet pages. The Delta
//! writer splits a sorted input by partition without reordering it, so each file is sorted;
//! with the page index, a scan that keeps a few event names then decodes only the pages that
//! hold them. Every commit of new rows goes through [`write`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::operations::write::WriteBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tributary_catalog::builtin::storage_order;

use crate::error::Result;

/// Rows per Parquet data page of a sorted table: small enough that one event name's rows in a
/// day's file span a page or two, large enough to keep the page index small.
const SORTED_PAGE_ROWS: usize = 8192;

/// A write of `batches` into `delta` (table `table`), laid out as this module says.
pub(super) fn write(
    delta: DeltaTable,
    table: &str,
    batches: Vec<RecordBatch>,
) -> Result<WriteBuilder> {
    let mut write = delta.write(in_storage_order(table, batches)?);
    if let Some(properties) = writer_properties(table) {
        // One input stream: with more, the writer's plan would deal the sorted rows out to
        // several streams and interleave them again in each partition's file.
        let single_stream = DeltaSessionContext::new_with_session_overrides(&HashMap::from([(
            "datafusion.execution.target_partitions".to_string(),
            "1".to_string(),
        )]))?;
        write = write
            .with_writer_properties(properties)
            .with_session_state(Arc::new(single_stream.state()));
    }
    Ok(write)
}

/// The Parquet settings of `table`'s files, where they differ from the Delta writer's.
pub(super) fn writer_properties(table: &str) -> Option<WriterProperties> {
    (!storage_order(table).is_empty()).then(|| {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(SORTED_PAGE_ROWS)
            .build()
    })
}

/// `batches` as one batch sorted by the table's storage order (nulls first, ascending), or
/// unchanged where the table has none or lacks one of its columns.
fn in_storage_order(table: &str, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let order = storage_order(table);
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let schema = first.schema();
    if order.is_empty() || order.iter().any(|c| schema.index_of(c).is_err()) {
        return Ok(batches);
    }
    let batch = if batches.len() == 1 {
        batches.into_iter().next().expect("one batch")
    } else {
        concat_batches(&schema, &batches)?
    };
    Ok(vec![sorted(&batch, order)?])
}

fn sorted(batch: &RecordBatch, order: &[&str]) -> Result<RecordBatch> {
    let columns: Vec<SortColumn> = order
        .iter()
        .map(|name| SortColumn {
            values: batch.column_by_name(name).expect("checked").clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn events(names: &[Option<&str>], people: &[&str], times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event", DataType::Utf8, true),
            Field::new("anonymous_id", DataType::Utf8, true),
            Field::new("timestamp", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(StringArray::from(people.to_vec())),
                Arc::new(Int64Array::from(times.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn events_are_sorted_by_event_person_and_time_across_batches() {
        let a = events(&[Some("view"), None], &["b", "a"], &[3, 9]);
        let b = events(&[Some("buy"), Some("view")], &["a", "b"], &[5, 1]);
        let out = in_storage_order("events", vec![a, b]).unwrap();
        assert_eq!(out.len(), 1);
        let names = out[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let times = out[0]
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert!(names.is_null(0));
        assert_eq!(
            (1..4).map(|i| names.value(i)).collect::<Vec<_>>(),
            ["buy", "view", "view"]
        );
        assert_eq!(times.values().to_vec(), [9, 5, 1, 3]);
    }

    #[test]
    fn other_tables_keep_their_arrival_order() {
        let a = events(&[Some("view")], &["b"], &[3]);
        let b = events(&[Some("buy")], &["a"], &[5]);
        let out = in_storage_order("orders", vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(out, vec![a, b]);
    }
}
