//! How the rows of a commit are laid out in the data files it writes: in their table's
//! storage order ([`storage_order`]) and, for sorted tables, in small Parquet pages. The Delta
//! writer splits a sorted input by partition without reordering it, so each file is sorted;
//! with the page index, a scan that keeps a few event names then decodes only the pages that
//! hold them. Every commit of new rows goes through [`write`], or, for a load too large to hold,
//! writes its files with [`writer_properties`] and [`sorted_for_file`] or [`gathered_for_file`]
//! (`bulk/`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{SortOptions, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::prelude::{Expr, col, lit};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::operations::write::WriteBuilder;
use deltalake::protocol::SaveMode;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tributary_catalog::builtin::storage_order;

use crate::error::Result;

/// Rows per Parquet data page of a sorted table: small enough that one event name's rows in a
/// day's file span a page or two, large enough to keep the page index small.
const SORTED_PAGE_ROWS: usize = 8192;

/// A write of `batches` into `delta` (table `table`), laid out as this module says.
///
/// A sorted table's rows are sorted by its partition columns, then its storage order, and
/// written from one input stream: with several, the writer's plan routes batches between
/// streams and a partition's file may receive them out of order (seen: a day's second 8k rows
/// written before its first).
pub(super) fn write(
    delta: DeltaTable,
    table: &str,
    batches: Vec<RecordBatch>,
) -> Result<WriteBuilder> {
    let order = storage_order(table);
    let (Some(properties), Some(schema)) = (
        writer_properties(table),
        batches.first().map(|b| b.schema()),
    ) else {
        return Ok(delta.write(batches));
    };
    let partitions = delta.snapshot()?.metadata().partition_columns().to_vec();
    let key: Vec<&str> = partitions
        .iter()
        .map(String::as_str)
        .chain(order.iter().copied())
        .collect();
    if key.iter().any(|column| schema.index_of(column).is_err()) {
        return Ok(delta.write(batches));
    }
    let batch = if batches.len() == 1 {
        batches.into_iter().next().expect("one batch")
    } else {
        concat_batches(&schema, &batches)?
    };
    let sorted = sorted(&batch, &key)?;
    drop(batch);
    let single_stream = DeltaSessionContext::new_with_session_overrides(&HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]))?;
    Ok(delta
        .write(vec![sorted])
        .with_writer_properties(properties)
        .with_session_state(Arc::new(single_stream.state())))
}

/// The Parquet settings of `table`'s files, where they differ from the Delta writer's.
pub(super) fn writer_properties(table: &str) -> Option<WriterProperties> {
    is_sorted(table).then(|| {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(SORTED_PAGE_ROWS)
            .build()
    })
}

/// Partitions up to this size are rewritten whole, sorted, when they hold several files; one
/// compaction reads at most this much (the latest partitions first; the rest wait for the next),
/// so a backfill over many days never loads them all at once.
const SORTED_REWRITE_MAX_BYTES: i64 = 128 << 20;

/// True for tables whose files are written sorted.
pub(super) fn is_sorted(table: &str) -> bool {
    !storage_order(table).is_empty()
}

/// Merges the small files of a sorted table: every partition of at most
/// [`SORTED_REWRITE_MAX_BYTES`] that holds several files is read and written again as sorted
/// files, in one commit that replaces exactly those partitions (concatenating sorted flush
/// files, as Delta's own compaction does, would leave a file of sorted runs). Returns the
/// number of files replaced and whether larger partitions still hold several files (for which
/// the caller uses Delta's compaction).
pub(super) async fn rewrite_sorted(delta: &DeltaTable, table: &str) -> Result<(usize, bool)> {
    let snapshot = delta.snapshot()?;
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let mut by_partition: BTreeMap<Vec<Option<String>>, (usize, i64)> = BTreeMap::new();
    for file in snapshot.log_data() {
        let values = file.partition_values_map();
        let key = partitions
            .iter()
            .map(|c| values.get(c).cloned().flatten())
            .collect();
        let entry = by_partition.entry(key).or_default();
        *entry = (entry.0 + 1, entry.1 + file.size());
    }
    let crowded = by_partition.iter().filter(|(_, (files, _))| *files > 1);
    let (small, large): (Vec<_>, Vec<_>) =
        crowded.partition(|(_, (_, bytes))| *bytes <= SORTED_REWRITE_MAX_BYTES);
    let mut budget = SORTED_REWRITE_MAX_BYTES;
    let small: Vec<_> = small
        .into_iter()
        .rev()
        .take_while(|(_, (_, bytes))| {
            let fits = *bytes <= budget;
            budget -= bytes;
            fits
        })
        .collect();
    if small.is_empty() {
        return Ok((0, !large.is_empty()));
    }
    let schema = snapshot.snapshot().arrow_schema();
    let predicate = small
        .iter()
        .map(|(values, _)| partition_filter(&schema, &partitions, values))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .reduce(Expr::or)
        .expect("at least one partition");
    let replaced = small.iter().map(|(_, (files, _))| files).sum();
    let context = DeltaSessionContext::new().into_inner();
    delta.update_datafusion_session(&context.state())?;
    let rows = context
        .read_table(delta.table_provider().await?)?
        .filter(predicate.clone())?
        .collect()
        .await?;
    tracing::debug!(
        table,
        batches = rows.len(),
        "read the partitions to rewrite sorted"
    );
    write(delta.clone(), table, rows)?
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(predicate)
        .await?;
    Ok((replaced, !large.is_empty()))
}

/// `column = value AND …` for one partition's values (as the Delta log writes them).
fn partition_filter(
    schema: &Schema,
    columns: &[String],
    values: &[Option<String>],
) -> Result<Expr> {
    let mut terms = Vec::with_capacity(columns.len());
    for (column, value) in columns.iter().zip(values) {
        let data_type = schema.field_with_name(column)?.data_type();
        terms.push(match value {
            None => col(column).is_null(),
            Some(text) => {
                col(column).eq(lit(ScalarValue::try_from_string(text.clone(), data_type)?))
            }
        });
    }
    Ok(terms.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
}

/// The rows of one data file of `table` in storage order (as they are, for unsorted tables).
/// Partition columns are left out of the key: a file holds one partition.
pub(super) fn sorted_for_file(table: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let order = storage_order(table);
    if order.is_empty() || order.iter().any(|c| batch.schema().index_of(c).is_err()) {
        return Ok(batch.clone());
    }
    sorted(batch, order)
}

/// The rows `rows` ((batch, row) pairs) of `batches` gathered into one batch, the rows of one
/// data file of `table`, in storage order.
pub(super) fn gathered_for_file(
    table: &str,
    batches: &[&RecordBatch],
    rows: &[(usize, usize)],
) -> Result<RecordBatch> {
    // A `take` per source batch, then one sort: both copy whole columns at a time, which is
    // cheaper than gathering row by row from every batch (`interleave`).
    let mut by_batch: Vec<Vec<u32>> = vec![Vec::new(); batches.len()];
    for &(batch, row) in rows {
        by_batch[batch].push(row as u32);
    }
    let taken = by_batch
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(batch, rows)| take_record_batch(batches[batch], &UInt32Array::from(rows)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let gathered = concat_batches(&batches[0].schema(), &taken)?;
    drop(taken);
    sorted_for_file(table, &gathered)
}

/// `batch` sorted by the columns `order`, ascending, nulls first.
fn sorted(batch: &RecordBatch, order: &[&str]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = order
        .iter()
        .map(|name| Arc::clone(batch.column_by_name(name).expect("checked by the caller")))
        .collect();
    let indices = sort_permutation(&columns)?;
    Ok(take_record_batch(batch, &UInt32Array::from(indices))?)
}

/// The row numbers of `columns` in ascending order of their values, nulls first. Keys in
/// Arrow's row format compare with one `memcmp` each, much faster than column by column.
fn sort_permutation(columns: &[ArrayRef]) -> Result<Vec<u32>> {
    let fields = columns
        .iter()
        .map(|c| SortField::new_with_options(c.data_type().clone(), SortOptions::new(false, true)))
        .collect();
    let rows = RowConverter::new(fields)?.convert_columns(columns)?;
    let mut indices: Vec<u32> = (0..rows.num_rows() as u32).collect();
    indices.sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use tributary_catalog::builtin::EVENTS;

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
    fn rows_are_sorted_by_the_key_with_nulls_first() {
        let batch = events(
            &[Some("view"), None, Some("buy"), Some("view")],
            &["b", "a", "a", "b"],
            &[3, 9, 5, 1],
        );
        let out = sorted(&batch, &["event", "anonymous_id", "timestamp"]).unwrap();
        let names = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let times = out.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(names.is_null(0));
        assert_eq!(
            (1..4).map(|i| names.value(i)).collect::<Vec<_>>(),
            ["buy", "view", "view"]
        );
        assert_eq!(times.values().to_vec(), [9, 5, 1, 3]);
    }

    #[test]
    fn rows_gathered_from_several_batches_are_those_rows_sorted() {
        let first = events(&[Some("view"), Some("buy")], &["b", "a"], &[3, 5]);
        let second = events(
            &[None, Some("view"), Some("buy")],
            &["a", "b", "z"],
            &[9, 1, 7],
        );
        let rows = [(0, 0), (1, 1), (1, 0), (0, 1)];
        let gathered = gathered_for_file(EVENTS, &[&first, &second], &rows).unwrap();
        let picked =
            concat_batches(&first.schema(), &[first.slice(0, 2), second.slice(0, 2)]).unwrap();
        assert_eq!(gathered, sorted_for_file(EVENTS, &picked).unwrap());
        let times = gathered
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(times.values().to_vec(), [9, 5, 1, 3]);
    }
}
