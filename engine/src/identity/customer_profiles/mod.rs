//! `customer_profiles`: the `profiles` table with each customer's `customer_key`, served from
//! memory — what segment conditions on traits and profile columns read, joined to
//! `customer_ids` and to `customer_events`' measures by the key rather than by the 25-character
//! `customer_id`.
//!
//! `profiles` is rewritten whole by each profile refresh, so it is read once per snapshot (its
//! list of files) and kept until the next. A segment builder asks about the same few traits
//! again and again (`json_get_str(traits, 'city')` on every click), so the value of every
//! deterministic expression a query computes from the profile's columns is kept with the
//! snapshot too: the scan takes over the projection DataFusion places above it ([`exec`]) and
//! parses each row's `traits` for a given key once per refresh, not once per query. Acknowledged
//! rows not yet committed (an `INSERT INTO profiles`) are read and computed on every query.
//!
//! Memory, per tenant from its first query: the decoded table, plus one column per distinct
//! expression asked for (at most [`exec::MAX_KEPT_VALUES`]).

mod exec;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use object_store::path::Path;
use tributary_catalog::builtin::PROFILES;
use tributary_identity::CustomerId;

use self::exec::CustomerProfilesExec;
use super::TenantIdentity;
use crate::write::conform::cast_batch;
use crate::write::overlay::StoredTable;

/// The table's name.
pub const CUSTOMER_PROFILES: &str = "customer_profiles";

/// `customer_profiles`' columns: those of `profiles` (as `profiles` declares them), then
/// `customer_key`.
fn schema_of(profiles: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = profiles
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("customer_key", DataType::UInt32, true));
    Arc::new(Schema::new(fields))
}

/// One tenant's committed profiles as last read.
#[derive(Debug, Default)]
pub struct ProfileIndex {
    state: tokio::sync::Mutex<Option<Arc<Profiles>>>,
}

/// The rows of one snapshot of `profiles`, keyed, and the expressions computed over them.
#[derive(Debug)]
pub(crate) struct Profiles {
    files: Vec<Path>,
    /// Every row, with `customer_profiles`' columns.
    rows: RecordBatch,
    /// The value over `rows` of each expression computed so far.
    values: tokio::sync::Mutex<HashMap<Arc<dyn PhysicalExpr>, ArrayRef>>,
}

impl ProfileIndex {
    /// The number of rows kept, if they are those of `files` (without waiting for a load).
    fn rows_of(&self, files: &[Path]) -> Option<usize> {
        let state = self.state.try_lock().ok()?;
        let kept = state.as_ref()?;
        (kept.files == files).then(|| kept.rows.num_rows())
    }

    /// The rows of `files`, read by `scan` (the Delta scan of exactly those files) when they are
    /// not the ones kept.
    async fn current(
        &self,
        identity: &TenantIdentity,
        files: &[Path],
        schema: &SchemaRef,
        scan: &Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> DfResult<Arc<Profiles>> {
        let mut state = self.state.lock().await;
        if let Some(kept) = state.as_ref()
            && kept.files == files
            && kept.rows.schema() == *schema
        {
            return Ok(Arc::clone(kept));
        }
        let batches = collect(Arc::clone(scan), context).await?;
        let rows = keyed(identity, schema, &batches)?;
        let profiles = Arc::new(Profiles {
            files: files.to_vec(),
            rows,
            values: tokio::sync::Mutex::new(HashMap::new()),
        });
        *state = Some(Arc::clone(&profiles));
        Ok(profiles)
    }
}

/// `batches` of `profiles` (its columns in its order, as its scan and its buffered rows have
/// them) as one batch of `schema` (`customer_profiles`' columns): each column cast to its
/// declared type, and the key of each row's `customer_id` (NULL for a text
/// that is no customer id).
fn keyed(
    identity: &TenantIdentity,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> DfResult<RecordBatch> {
    let key_position = schema.fields().len() - 1;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let table_schema = Arc::new(Schema::new(schema.fields()[..key_position].to_vec()));
    let parts: Vec<RecordBatch> = batches
        .iter()
        .map(|batch| cast_batch(batch, &table_schema))
        .collect::<Result<_, _>>()?;
    let table = concat_batches(&table_schema, &parts)?;
    columns.extend(table.columns().iter().cloned());
    let ids = cast(
        table
            .column_by_name("customer_id")
            .ok_or_else(|| DataFusionError::Internal(format!("{PROFILES} has no customer_id")))?,
        &DataType::Utf8,
    )?;
    let ids = ids.as_string::<i32>();
    let keys: UInt32Array = identity.read_keyed(|_, _, keys| {
        (0..ids.len())
            .map(|row| {
                let id = ids.is_valid(row).then(|| ids.value(row))?;
                Some(keys.key(id.parse::<CustomerId>().ok()?))
            })
            .collect()
    });
    columns.push(Arc::new(keys));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `customer_profiles` of one tenant, as one query sees it.
#[derive(Debug)]
pub struct CustomerProfilesTable {
    identity: Arc<TenantIdentity>,
    profiles: StoredTable,
    schema: SchemaRef,
}

impl CustomerProfilesTable {
    /// The table over `profiles` (the tenant's `profiles` as the query sees it).
    pub fn new(identity: Arc<TenantIdentity>, profiles: StoredTable) -> Self {
        let schema = schema_of(&profiles.committed.schema());
        Self {
            identity,
            profiles,
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for CustomerProfilesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (_, files) = self
            .profiles
            .snapshot(CUSTOMER_PROFILES, PROFILES)?
            .data_files()?;
        let committed = self.profiles.committed.scan(state, None, &[], None).await?;
        let buffered: usize = self.profiles.buffered.iter().map(|b| b.num_rows()).sum();
        let rows = self
            .identity
            .profiles_index()
            .rows_of(&files)
            .map(|n| n + buffered);
        let source = exec::Source {
            rows,
            identity: Arc::clone(&self.identity),
            files,
            committed,
            buffered: self.profiles.buffered.clone(),
            schema: Arc::clone(&self.schema),
        };
        let partitions = state.config().target_partitions().max(1);
        Ok(Arc::new(CustomerProfilesExec::new(
            Arc::new(source),
            projection.map(Vec::as_slice),
            partitions,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use tributary_catalog::Storage;

    use crate::Engine;

    #[tokio::test]
    async fn the_scan_answers_trait_expressions_and_keeps_their_values() {
        let engine = Engine::open(Storage::in_memory()).await.unwrap();
        let run = |sql: &'static str| {
            let engine = &engine;
            async move { engine.sql("default", sql).await.unwrap() }
        };
        run(
            "INSERT INTO events (message_id, type, anonymous_id, user_id, timestamp, event_date, \
             properties) VALUES ('i1', 'identify', 'a1', 'u1', TIMESTAMP '2026-01-01T00:00:00Z', \
             DATE '2026-01-01', '{\"city\": \"Shanghai\"}')",
        )
        .await;
        run("CALL refresh_profiles()").await;
        let explain = "EXPLAIN SELECT json_get_str(traits, 'city') AS city \
                       FROM customer_profiles WHERE total_revenue >= 0";
        let plan = pretty_format_batches(&run(explain).await)
            .unwrap()
            .to_string();
        assert!(
            plan.contains(
                "CustomerProfilesExec: outputs=[json_get_str(traits@1, city), total_revenue@"
            ),
            "{plan}"
        );
        let query = "SELECT json_get_str(traits, 'city') AS city FROM customer_profiles \
                     WHERE total_revenue >= 0";
        for _ in 0..2 {
            let rows = pretty_format_batches(&run(query).await)
                .unwrap()
                .to_string();
            assert!(rows.contains("Shanghai"), "{rows}");
        }
        let identity = engine.identity_weak().upgrade().unwrap();
        let kept = identity
            .tenant("default")
            .profiles_index()
            .state
            .lock()
            .await
            .clone();
        let kept = kept.expect("profiles kept after a query");
        assert_eq!(
            kept.values.lock().await.len(),
            1,
            "one trait expression kept"
        );
    }
}
