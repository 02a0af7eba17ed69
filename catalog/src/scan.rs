//! How queries read a Delta table: the snapshot's file list, taken once per snapshot, becomes a
//! DataFusion Parquet `DataSourceExec` over the table's real object-store URL.
//!
//! delta-rs has a scan of its own, but its plan node cannot be serialized for other processes
//! (a Ballista executor) and cannot say that a table's files are sorted. This plan is plain
//! DataFusion: `datafusion-proto` carries it, an executor that reaches the same store reads it,
//! and the files' sort order ([`crate::builtin::storage_order`]) is declared, so DataFusion keeps
//! it wherever a file group holds one file or the statistics prove the files do not overlap.
//!
//! Filters on partition columns alone choose the files; every other filter is pushed into the
//! Parquet reader by DataFusion (statistics, page index, row filters). Tables using Delta
//! features this reader does not apply (deletion vectors, column mapping) are refused by name
//! rather than read wrong.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, ScalarValue, Statistics, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::Result;

/// The Delta configuration key of column mapping.
const COLUMN_MAPPING_MODE: &str = "delta.columnMapping.mode";

/// One data file of the snapshot.
#[derive(Debug, Clone)]
struct DataFile {
    /// From the root of the object store.
    path: Path,
    size: u64,
    /// One per partition column, typed as the table schema says.
    partition_values: Vec<ScalarValue>,
    /// Of the file's columns, from its Delta statistics (see [`file_statistics`]).
    statistics: Option<Arc<Statistics>>,
}

/// A Delta table at one snapshot, read by a plain Parquet scan.
#[derive(Debug)]
pub struct SnapshotTable {
    /// delta-rs's provider of the same snapshot: `INSERT INTO` goes through it.
    delta: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// The columns stored in the files, in table order.
    file_fields: Vec<FieldRef>,
    /// The partition columns, in the order Delta lists them.
    partition_fields: Vec<FieldRef>,
    files: Vec<DataFile>,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    /// The order rows lie in each file (empty: none declared).
    sort_columns: Vec<String>,
    /// Why this table cannot be read by this scan, when it cannot.
    unsupported: Option<String>,
}

impl SnapshotTable {
    /// The scan of `table`'s loaded snapshot; `delta` is delta-rs's provider of it, whose schema
    /// queries keep seeing. `sort_columns` is the order of rows within each file.
    pub fn new(
        name: &str,
        table: &DeltaTable,
        delta: Arc<dyn TableProvider>,
        sort_columns: &[&str],
    ) -> Result<Self> {
        let snapshot = table.snapshot()?;
        let schema = delta.schema();
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let (partition_fields, file_fields): (Vec<FieldRef>, Vec<FieldRef>) = schema
            .fields()
            .iter()
            .cloned()
            .partition(|f| partition_columns.contains(f.name()));
        let partition_fields = partition_columns
            .iter()
            .filter_map(|name| partition_fields.iter().find(|f| f.name() == name).cloned())
            .collect::<Vec<_>>();
        let mut unsupported = snapshot
            .metadata()
            .configuration()
            .get(COLUMN_MAPPING_MODE)
            .filter(|mode| !mode.eq_ignore_ascii_case("none"))
            .map(|mode| format!("table '{name}' uses Delta column mapping (mode '{mode}')"));
        let table_url = table.table_url();
        let table_root = Path::from_url_path(table_url.path())?;
        let mut files = Vec::new();
        for file in snapshot.log_data().iter() {
            if unsupported.is_none() && file.deletion_vector_descriptor().is_some() {
                unsupported = Some(format!("table '{name}' has Delta deletion vectors"));
            }
            let raw = file.partition_values_map();
            let partition_values = partition_fields
                .iter()
                .map(|field| match raw.get(field.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                })
                .collect::<DfResult<Vec<_>>>()?;
            // Partition columns get exact statistics from their values, which must not be null.
            let statistics = partition_values
                .iter()
                .all(|v| !v.is_null())
                .then(|| file_statistics(file.stats().as_deref(), &file_fields))
                .flatten()
                .map(Arc::new);
            files.push(DataFile {
                path: table_root
                    .parts()
                    .chain(file.object_store_path().parts())
                    .collect(),
                size: file.size().max(0) as u64,
                partition_values,
                statistics,
            });
        }
        // Date partitions' directories sort by date: groups then hold neighbouring days.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let store_url = ObjectStoreUrl::parse(format!(
            "{}://{}",
            table_url.scheme(),
            table_url.authority()
        ))?;
        let sort_columns = sort_columns
            .iter()
            .filter(|c| schema.field_with_name(c).is_ok())
            .map(|c| c.to_string())
            .collect();
        Ok(Self {
            delta,
            file_fields,
            partition_fields,
            files,
            store_url,
            store: table.log_store().root_object_store(None),
            schema,
            sort_columns,
            unsupported,
        })
    }

    /// The snapshot's data files (paths from the store's root) and the store they are in,
    /// for readers that keep rows of their own (`customer_events`); refused like a scan when
    /// the table uses a feature this reader does not apply.
    pub fn data_files(&self) -> DfResult<(Arc<dyn ObjectStore>, Vec<Path>)> {
        if let Some(reason) = &self.unsupported {
            return not_impl_err!("{reason}, which Tributary's scan cannot read yet");
        }
        let files = self.files.iter().map(|f| f.path.clone()).collect();
        Ok((Arc::clone(&self.store), files))
    }

    /// The order of the scan's columns: the files' columns, then the partition columns.
    fn scan_schema(&self) -> Schema {
        Schema::new(
            self.file_fields
                .iter()
                .chain(&self.partition_fields)
                .cloned()
                .collect::<Vec<_>>(),
        )
    }

    /// The files whose partition values may meet every one of `filters` (all on partition
    /// columns only).
    fn files_matching(&self, state: &dyn Session, filters: &[Expr]) -> DfResult<Vec<&DataFile>> {
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(predicate) if !self.files.is_empty() => predicate,
            _ => return Ok(self.files.iter().collect()),
        };
        let schema = Arc::new(Schema::new(self.partition_fields.clone()));
        let columns = (0..self.partition_fields.len())
            .map(|i| {
                ScalarValue::iter_to_array(self.files.iter().map(|f| f.partition_values[i].clone()))
            })
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        let df_schema = DFSchema::try_from(schema)?;
        let keep = state
            .create_physical_expr(predicate, &df_schema)?
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let keep = keep
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "a partition filter did not give booleans".into(),
                )
            })?;
        Ok(self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
            .map(|(_, f)| f)
            .collect())
    }

    fn is_partition_filter(&self, filter: &Expr) -> bool {
        let columns = filter.column_refs();
        !columns.is_empty()
            && columns
                .iter()
                .all(|c| self.partition_fields.iter().any(|f| f.name() == &c.name))
    }

    /// The declared order of rows within each file, as `layout` writes them (ascending, nulls
    /// first), preceded by the partition columns (constant in a file).
    fn output_ordering(&self, scan_schema: &Schema) -> Vec<LexOrdering> {
        if self.sort_columns.is_empty() {
            return vec![];
        }
        let order = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let sort: Option<Vec<PhysicalSortExpr>> = self
            .partition_fields
            .iter()
            .map(|f| f.name().as_str())
            .chain(self.sort_columns.iter().map(String::as_str))
            .map(|name| {
                let index = scan_schema.index_of(name).ok()?;
                Some(PhysicalSortExpr::new(
                    Arc::new(Column::new(name, index)),
                    order,
                ))
            })
            .collect();
        sort.and_then(LexOrdering::new).into_iter().collect()
    }
}

/// The statistics of a data file's columns from its Delta `stats`: the row count, null counts,
/// and bounds of number, date and time columns, so that DataFusion skips files a filter rules
/// out without opening them. DataFusion prunes with `Exact` bounds only, so they are given as
/// such, though a time's may not be attained: Delta keeps times to the millisecond, so a time's
/// maximum is rounded up (still a true bound). These statistics feed only file pruning and the
/// check of declared orderings, never an answer (the scan's own statistics stay unknown).
/// String bounds may be truncated prefixes and float bounds say nothing of NaN: neither is used.
fn file_statistics(stats: Option<&str>, file_fields: &[FieldRef]) -> Option<Statistics> {
    let stats: serde_json::Value = serde_json::from_str(stats?).ok()?;
    let rows = usize::try_from(stats.get("numRecords")?.as_u64()?).ok()?;
    let of = |key: &str, field: &FieldRef| stats.get(key).and_then(|m| m.get(field.name()));
    let column_statistics = file_fields
        .iter()
        .map(|field| {
            let mut column = ColumnStatistics::new_unknown();
            if let Some(nulls) = of("nullCount", field).and_then(serde_json::Value::as_u64) {
                column.null_count = Precision::Exact(nulls as usize);
            }
            if has_usable_bounds(field.data_type()) {
                let bound = |key| of(key, field).and_then(|v| scalar_of(v, field.data_type()));
                if let Some(min) = bound("minValues") {
                    column.min_value = Precision::Exact(min);
                }
                if let Some(max) = bound("maxValues") {
                    column.max_value = Precision::Exact(rounded_up_to_the_millisecond(max));
                }
            }
            column
        })
        .collect();
    Some(Statistics {
        num_rows: Precision::Exact(rows),
        total_byte_size: Precision::Absent,
        column_statistics,
    })
}

fn has_usable_bounds(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
}

fn scalar_of(value: &serde_json::Value, data_type: &DataType) -> Option<ScalarValue> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    ScalarValue::try_from_string(text, data_type).ok()
}

/// A time kept to the millisecond, as the largest time it may stand for.
fn rounded_up_to_the_millisecond(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::TimestampMicrosecond(Some(t), tz) => {
            ScalarValue::TimestampMicrosecond(Some(t.saturating_add(999)), tz)
        }
        ScalarValue::TimestampNanosecond(Some(t), tz) => {
            ScalarValue::TimestampNanosecond(Some(t.saturating_add(999_999)), tz)
        }
        other => other,
    }
}

/// How large the scan of `files` is, as the planner needs it to choose a join's build side:
/// rows and bytes, inexact (files' Delta row counts where known, the sum of their sizes).
fn scan_statistics(files: &[&DataFile], scan_schema: &Schema) -> Statistics {
    let mut statistics = Statistics::new_unknown(scan_schema);
    let rows: Option<usize> = files
        .iter()
        .map(|f| {
            f.statistics
                .as_ref()
                .and_then(|s| s.num_rows.get_value().copied())
        })
        .sum();
    if let Some(rows) = rows {
        statistics.num_rows = Precision::Inexact(rows);
    }
    statistics.total_byte_size =
        Precision::Inexact(files.iter().map(|f| f.size as usize).sum::<usize>());
    statistics
}

/// Deals files to at most `groups` groups of about equal bytes, keeping a partition's files
/// together in the order given.
fn file_groups(files: Vec<PartitionedFile>, groups: usize) -> Vec<FileGroup> {
    let groups = groups.max(1).min(files.len().max(1));
    let total: u64 = files.iter().map(|f| f.object_meta.size).sum();
    let share = total.div_ceil(groups as u64).max(1);
    let mut dealt: Vec<Vec<PartitionedFile>> = vec![vec![]];
    let mut bytes = 0u64;
    for file in files {
        if bytes >= share && dealt.len() < groups {
            dealt.push(vec![]);
            bytes = 0;
        }
        bytes += file.object_meta.size;
        dealt.last_mut().expect("one group").push(file);
    }
    dealt.into_iter().map(FileGroup::new).collect()
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(reason) = &self.unsupported {
            return not_impl_err!("{reason}, which Tributary's scan cannot read yet");
        }
        let scan_schema = self.scan_schema();
        let positions: HashMap<&str, usize> = scan_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().as_str(), i))
            .collect();
        let projection: Vec<usize> = match projection {
            Some(columns) => columns.clone(),
            None => (0..self.schema.fields().len()).collect(),
        }
        .into_iter()
        .map(|i| positions[self.schema.field(i).name().as_str()])
        .collect();
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.is_partition_filter(f))
            .cloned()
            .collect();
        let files = self.files_matching(state, &partition_filters)?;
        if files.is_empty() {
            let projected = Arc::new(scan_schema.project(&projection)?);
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let statistics = scan_statistics(&files, &scan_schema);
        let files: Vec<PartitionedFile> = files
            .into_iter()
            .map(|file| {
                let mut scanned = PartitionedFile::new(file.path.to_string(), file.size);
                scanned.partition_values = file.partition_values.clone();
                match &file.statistics {
                    Some(statistics) => scanned.with_statistics(Arc::clone(statistics)),
                    None => scanned,
                }
            })
            .collect();
        state
            .runtime_env()
            .register_object_store(self.store_url.as_ref(), Arc::clone(&self.store));
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let table_schema = TableSchema::builder(Arc::new(Schema::new(self.file_fields.clone())))
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let config =
            FileScanConfigBuilder::new(self.store_url.clone(), format.file_source(table_schema))
                .with_file_groups(file_groups(files, state.config().target_partitions()))
                .with_projection_indices(Some(projection))?
                .with_limit(limit)
                .with_output_ordering(self.output_ordering(&scan_schema))
                .with_statistics(statistics)
                .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.is_partition_filter(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.delta.insert_into(state, input, insert_op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    #[test]
    fn delta_statistics_become_bounds_of_numbers_and_times_only() {
        let fields: Vec<FieldRef> = vec![
            Arc::new(Field::new("event", DataType::Utf8View, true)),
            Arc::new(Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            )),
            Arc::new(Field::new("n", DataType::Int64, true)),
        ];
        let stats = r#"{"numRecords": 3, "minValues": {"event": "a", "timestamp": "2026-01-04T00:00:18.799Z", "n": -2},
            "maxValues": {"event": "zz", "timestamp": "2026-01-04T23:59:59.999Z", "n": 7},
            "nullCount": {"event": 0, "timestamp": 0, "n": 1}}"#;
        let statistics = file_statistics(Some(stats), &fields).unwrap();
        assert_eq!(statistics.num_rows, Precision::Exact(3));
        let [event, time, n] = &statistics.column_statistics[..] else {
            panic!("three columns")
        };
        assert_eq!(
            event.min_value,
            Precision::Absent,
            "string bounds may be prefixes"
        );
        assert_eq!(event.null_count, Precision::Exact(0));
        let utc = Some("UTC".into());
        assert_eq!(
            time.min_value,
            Precision::Exact(ScalarValue::TimestampMicrosecond(
                Some(1_767_484_818_799_000),
                utc.clone()
            ))
        );
        assert_eq!(
            time.max_value,
            Precision::Exact(ScalarValue::TimestampMicrosecond(
                Some(1_767_571_199_999_999),
                utc
            )),
            "a millisecond maximum stands for every microsecond in it"
        );
        assert_eq!(n.min_value, Precision::Exact(ScalarValue::Int64(Some(-2))));
        assert_eq!(n.null_count, Precision::Exact(1));
        assert!(file_statistics(Some("not json"), &fields).is_none());
        assert!(file_statistics(None, &fields).is_none());
    }
}
