//! Customer profiles (the 360 view): per customer, its identifiers, traits merged by precedence
//! (the tenant's `trait_source_priority`, then the latest value), first and last seen, and
//! computed traits (events, purchases, last purchase, revenue) and the value models' answers
//! (RFM segment, lifecycle stage, CLV over the next year and the probability of being alive).
//!
//! Traits come from `identify` events (their `source` is the channel) and from the imported
//! tables named in `trait_tables`. The `profiles` table is rebuilt whole by
//! [`refresh_profiles`] (in the background when data changed, or by `CALL refresh_profiles()`);
//! `customer_profile(id_type, id_value)` computes one customer's profile live, and
//! `customer_journey(id_type, id_value)` lists its events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use tributary_catalog::builtin::{EVENTS, PROFILES, profiles_schema};
use tributary_identity::{IdentityGraph, Rules};

use super::IdentityService;
use super::map::IDENTITY_MAP;
use super::records::{ANONYMOUS_ID, USER_ID, as_micros, as_utf8};
use crate::error::{Error, ErrorClass, Result};
use crate::sql_text::{identifier, string_literal};
use crate::write::{IfTableMissing, WriteMode, now_micros};

/// One customer's identifiers, strongest first.
type Members = Vec<(String, String)>;

/// Which customers a profile computation covers.
enum Scope {
    All,
    One(String, Members),
}

impl Scope {
    /// SQL condition on `events e` for this scope.
    fn event_filter(&self) -> String {
        let Scope::One(_, members) = self else {
            return "TRUE".to_string();
        };
        let list = |kind: &str| {
            let quoted: Vec<String> = members
                .iter()
                .filter(|(t, _)| t == kind)
                .map(|(_, v)| string_literal(v))
                .collect();
            if quoted.is_empty() {
                "NULL".to_string()
            } else {
                quoted.join(", ")
            }
        };
        format!(
            "(e.anonymous_id IN ({}) OR e.user_id IN ({}))",
            list(ANONYMOUS_ID),
            list(USER_ID)
        )
    }
}

fn sorted_members(rules: &Rules, members: Vec<(&str, &str)>) -> Members {
    let mut members: Members = members
        .into_iter()
        .map(|(t, v)| (t.to_string(), v.to_string()))
        .collect();
    members.sort_by(|a, b| (rules.rank(&a.0), &a.0, &a.1).cmp(&(rules.rank(&b.0), &b.0, &b.1)));
    members
}

/// The customer of each event, preferring its user id: a join on `identity_map`.
pub(crate) fn resolved_events(filter: &str, columns: &str, condition: &str) -> String {
    resolved_rows(EVENTS, filter, columns, condition)
}

/// The customer of each row of `source` (a table or a parenthesized query with `user_id` and
/// `anonymous_id` columns, named `e`), as [`resolved_events`] resolves events.
pub(crate) fn resolved_rows(source: &str, filter: &str, columns: &str, condition: &str) -> String {
    format!(
        "SELECT coalesce(u.customer_id, a.customer_id) AS customer_id, {columns} FROM {source} e \
         LEFT JOIN {IDENTITY_MAP} u ON u.id_type = '{USER_ID}' AND u.id_value = e.user_id \
         LEFT JOIN {IDENTITY_MAP} a ON a.id_type = '{ANONYMOUS_ID}' AND a.id_value = e.anonymous_id \
         WHERE {filter} AND ({condition})"
    )
}

fn texts(batch: &RecordBatch, index: usize) -> Result<StringArray> {
    Ok(as_utf8(batch.column(index))?)
}

fn micros(batch: &RecordBatch, index: usize) -> Result<TimestampMicrosecondArray> {
    Ok(as_micros(batch.column(index))?)
}

#[derive(Default, Clone, Copy)]
struct Stats {
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    events: i64,
    purchases: i64,
    last_purchase: Option<i64>,
    revenue: f64,
}

/// Trait values per customer: key → (source rank, time, value).
type Traits = HashMap<String, BTreeMap<String, (usize, i64, serde_json::Value)>>;

fn offer(traits: &mut Traits, customer: &str, rank: usize, at: i64, object: serde_json::Value) {
    let serde_json::Value::Object(object) = object else {
        return;
    };
    let entry = traits.entry(customer.to_string()).or_default();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let wins = entry
            .get(&key)
            .is_none_or(|(r, t, _)| rank < *r || (rank == *r && at >= *t));
        if wins {
            entry.insert(key, (rank, at, value));
        }
    }
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Computes the profiles of `scope` from the tenant's tables and live graph.
async fn compute(
    ctx: &SessionContext,
    rules: &Rules,
    customers: Vec<(String, Members, i64)>,
    scope: &Scope,
) -> Result<RecordBatch> {
    let config = rules.config();
    let filter = scope.event_filter();
    let purchase = string_literal(&config.purchase_event);
    let revenue = string_literal(&config.revenue_property);
    let stats_sql = format!(
        "SELECT customer_id, min(timestamp), max(timestamp), count(*), \
         count(*) FILTER (WHERE event = {purchase}), \
         max(timestamp) FILTER (WHERE event = {purchase}), \
         coalesce(sum(json_get_float(properties, {revenue})) FILTER (WHERE event = {purchase}), 0) \
         FROM ({}) GROUP BY customer_id",
        resolved_events(&filter, "e.timestamp, e.event, e.properties", "TRUE")
    );
    let mut stats: HashMap<String, Stats> = HashMap::new();
    for batch in collect(ctx, &stats_sql).await? {
        let ids = texts(&batch, 0)?;
        let (first, last, last_purchase) =
            (micros(&batch, 1)?, micros(&batch, 2)?, micros(&batch, 5)?);
        let count = |i: usize| -> Result<Int64Array> {
            Ok(cast(batch.column(i), &DataType::Int64)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .expect("cast to Int64"))
        };
        let (events, purchases) = (count(3)?, count(4)?);
        let revenue = floats(&batch, 6)?;
        for row in 0..batch.num_rows() {
            if ids.is_null(row) {
                continue;
            }
            let option = |a: &TimestampMicrosecondArray| a.is_valid(row).then(|| a.value(row));
            stats.insert(
                ids.value(row).to_string(),
                Stats {
                    first_seen: option(&first),
                    last_seen: option(&last),
                    events: events.value(row),
                    purchases: purchases.value(row),
                    last_purchase: option(&last_purchase),
                    revenue: revenue.value(row),
                },
            );
        }
    }
    let mut traits: Traits = HashMap::new();
    let identify_sql = resolved_events(
        &filter,
        "e.source, e.timestamp, e.properties",
        "e.type = 'identify' AND e.properties NOT IN ('{}', 'null')",
    );
    for batch in collect(ctx, &identify_sql).await? {
        let (ids, sources, properties) = (texts(&batch, 0)?, texts(&batch, 1)?, texts(&batch, 3)?);
        let at = micros(&batch, 2)?;
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || properties.is_null(row) {
                continue;
            }
            let Ok(object) = serde_json::from_str(properties.value(row)) else {
                continue;
            };
            let source = if sources.is_valid(row) {
                sources.value(row)
            } else {
                ""
            };
            offer(
                &mut traits,
                ids.value(row),
                rules.source_rank(source),
                at.value(row),
                object,
            );
        }
    }
    for imported in &config.trait_tables {
        trait_table_traits(ctx, rules, imported, scope, &mut traits).await?;
    }
    let models = match scope {
        Scope::All => models_now(ctx).await?,
        Scope::One(customer, _) => stored_models(ctx, customer).await?,
    };
    build_batch(customers, &stats, &traits, &models)
}

/// The value models' answers for one customer.
#[derive(Default, Clone)]
struct Models {
    rfm_segment: Option<String>,
    lifecycle_stage: Option<String>,
    clv: Option<f64>,
    p_alive: Option<f64>,
}

/// Records one text model's answer.
type SetText = fn(&mut Models, String);

/// How far ahead the profiles' `clv` looks, in days.
const PROFILE_CLV_HORIZON_DAYS: u32 = 365;

/// Every customer's models now, through the tenant's `rfm`, `lifecycle` and `clv` functions.
/// A CLV the models cannot fit (too little history, nobody seen to drop out) leaves `clv` and
/// `p_alive` NULL rather than failing the refresh.
async fn models_now(ctx: &SessionContext) -> Result<HashMap<String, Models>> {
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(now_micros())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut models: HashMap<String, Models> = HashMap::new();
    // Each answers one text per customer: the RFM segment, the lifecycle stage.
    let texts_per_customer: [(String, SetText); 2] = [
        (
            format!("SELECT customer_id, rfm_segment FROM rfm('{now}')"),
            |models, segment| models.rfm_segment = Some(segment),
        ),
        (
            format!("SELECT customer_id, stage FROM lifecycle('{now}')"),
            |models, stage| models.lifecycle_stage = Some(stage),
        ),
    ];
    for (sql, set) in texts_per_customer {
        for batch in collect(ctx, &sql).await? {
            let (ids, values) = (texts(&batch, 0)?, texts(&batch, 1)?);
            for row in 0..batch.num_rows() {
                let entry = models.entry(ids.value(row).to_string()).or_default();
                set(entry, values.value(row).to_string());
            }
        }
    }
    let clv =
        format!("SELECT customer_id, clv, p_alive FROM clv({PROFILE_CLV_HORIZON_DAYS}, '{now}')");
    match collect(ctx, &clv).await {
        Ok(batches) => {
            for batch in batches {
                let ids = texts(&batch, 0)?;
                let (clv, p_alive) = (floats(&batch, 1)?, floats(&batch, 2)?);
                for row in 0..batch.num_rows() {
                    let entry = models.entry(ids.value(row).to_string()).or_default();
                    entry.clv = clv.is_valid(row).then(|| clv.value(row));
                    entry.p_alive = p_alive.is_valid(row).then(|| p_alive.value(row));
                }
            }
        }
        Err(e) if e.class() == ErrorClass::InvalidInput => {
            tracing::info!("profiles: no clv or p_alive: {e}");
        }
        Err(e) => return Err(e),
    }
    Ok(models)
}

/// One customer's models as the last refresh of `profiles` computed them (they rank a customer
/// among all others, so one profile alone cannot compute them).
async fn stored_models(ctx: &SessionContext, customer: &str) -> Result<HashMap<String, Models>> {
    let table = ctx.table(PROFILES).await?;
    if !table.schema().has_column_with_unqualified_name("p_alive") {
        // Written before the models were profiled; the next refresh adds them.
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT rfm_segment, lifecycle_stage, clv, p_alive FROM {PROFILES} \
         WHERE customer_id = {}",
        string_literal(customer)
    );
    let mut models = HashMap::new();
    for batch in collect(ctx, &sql).await? {
        let (segments, stages) = (texts(&batch, 0)?, texts(&batch, 1)?);
        let (clv, p_alive) = (floats(&batch, 2)?, floats(&batch, 3)?);
        for row in 0..batch.num_rows() {
            let text = |a: &StringArray| a.is_valid(row).then(|| a.value(row).to_string());
            let float = |a: &Float64Array| a.is_valid(row).then(|| a.value(row));
            models.insert(
                customer.to_string(),
                Models {
                    rfm_segment: text(&segments),
                    lifecycle_stage: text(&stages),
                    clv: float(&clv),
                    p_alive: float(&p_alive),
                },
            );
        }
    }
    Ok(models)
}

fn floats(batch: &RecordBatch, index: usize) -> Result<Float64Array> {
    let column = cast(batch.column(index), &DataType::Float64)?;
    Ok(column
        .as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .expect("cast to Float64"))
}

/// Traits from an imported table: every column but the identifier and time columns.
async fn trait_table_traits(
    ctx: &SessionContext,
    rules: &Rules,
    imported: &tributary_identity::TraitTable,
    scope: &Scope,
    traits: &mut Traits,
) -> Result<()> {
    let mut sql = format!(
        "SELECT resolve_customer({}, CAST({} AS VARCHAR)) AS tributary_customer, * FROM {}",
        string_literal(&imported.id_type),
        identifier(&imported.id_column),
        identifier(&imported.table)
    );
    if let Scope::One(customer, _) = scope {
        sql = format!("SELECT * FROM ({sql}) WHERE tributary_customer = '{customer}'");
    }
    let rank = rules.source_rank(&imported.source);
    for batch in collect(ctx, &sql).await? {
        let customers = texts(&batch, 0)?;
        let time = match &imported.time_column {
            Some(column) => {
                let index = batch.schema().index_of(column).map_err(|_| {
                    Error::InvalidInput(format!(
                        "trait table '{}' has no time column '{column}'",
                        imported.table
                    ))
                })?;
                Some(micros(&batch, index)?)
            }
            None => None,
        };
        let skip = [
            Some("tributary_customer"),
            Some(imported.id_column.as_str()),
            imported.time_column.as_deref(),
        ];
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| !skip.contains(&Some(batch.schema().field(i).name().as_str())))
            .collect();
        let values = batch.project(&keep)?;
        let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        writer.write(&values)?;
        writer.finish()?;
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&writer.into_inner())
            .map_err(|e| Error::Storage(format!("trait table '{}': {e}", imported.table)))?;
        for (row, object) in rows.into_iter().enumerate() {
            if customers.is_null(row) {
                continue;
            }
            let at = time
                .as_ref()
                .filter(|t| t.is_valid(row))
                .map_or(i64::MIN, |t| t.value(row));
            offer(traits, customers.value(row), rank, at, object);
        }
    }
    Ok(())
}

fn build_batch(
    customers: Vec<(String, Members, i64)>,
    stats: &HashMap<String, Stats>,
    traits: &Traits,
    models: &HashMap<String, Models>,
) -> Result<RecordBatch> {
    let now = now_micros();
    let (mut id, mut trait_text, mut identifiers) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut times: Vec<TimestampMicrosecondBuilder> =
        (0..4).map(|_| TimestampMicrosecondBuilder::new()).collect();
    let (mut events, mut purchases) = (Int64Builder::new(), Int64Builder::new());
    let mut revenue = Float64Builder::new();
    let (mut segment, mut stage) = (StringBuilder::new(), StringBuilder::new());
    let (mut clv, mut p_alive) = (Float64Builder::new(), Float64Builder::new());
    for (customer, members, _) in customers {
        let model = models.get(&customer).cloned().unwrap_or_default();
        segment.append_option(model.rfm_segment);
        stage.append_option(model.lifecycle_stage);
        clv.append_option(model.clv);
        p_alive.append_option(model.p_alive);
        let stat = stats.get(&customer).copied().unwrap_or_default();
        let merged: serde_json::Map<String, serde_json::Value> = traits
            .get(&customer)
            .map(|t| {
                t.iter()
                    .map(|(k, (_, _, v))| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let ids: Vec<serde_json::Value> = members
            .iter()
            .map(|(t, v)| serde_json::json!({"type": t, "value": v}))
            .collect();
        id.append_value(&customer);
        trait_text.append_value(serde_json::Value::Object(merged).to_string());
        identifiers.append_value(serde_json::Value::Array(ids).to_string());
        times[0].append_option(stat.first_seen);
        times[1].append_option(stat.last_seen);
        times[2].append_option(stat.last_purchase);
        times[3].append_value(now);
        events.append_value(stat.events);
        purchases.append_value(stat.purchases);
        revenue.append_value(stat.revenue);
    }
    let mut times = times
        .into_iter()
        .map(|mut b| Arc::new(b.finish().with_timezone("UTC")) as ArrayRef);
    let mut time = || times.next().expect("four time columns");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(trait_text.finish()),
        time(),
        time(),
        Arc::new(identifiers.finish()),
        Arc::new(events.finish()),
        Arc::new(purchases.finish()),
        time(),
        Arc::new(revenue.finish()),
        time(),
        Arc::new(segment.finish()),
        Arc::new(stage.finish()),
        Arc::new(clv.finish()),
        Arc::new(p_alive.finish()),
    ];
    Ok(RecordBatch::try_new(profiles_schema(), columns)?)
}

fn all_customers(graph: &IdentityGraph) -> Vec<(String, Members, i64)> {
    let mut customers: Vec<(String, Members, i64)> = graph
        .customers()
        .map(|(c, members, updated)| {
            (
                c.to_string(),
                sorted_members(graph.rules(), members),
                updated,
            )
        })
        .collect();
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    customers
}

/// Rebuilds a tenant's `profiles` table; returns the number of profiles.
pub async fn refresh_profiles(service: &IdentityService, tenant: &str) -> Result<u64> {
    let started = std::time::Instant::now();
    let identity = service.tenant(tenant);
    let (customers, rules) = identity.read(|g| (all_customers(g), g.rules().clone()));
    let ctx = service.session(tenant)?;
    let batch = compute(&ctx, &rules, customers, &Scope::All).await?;
    let rows = batch.num_rows() as u64;
    service
        .writer()?
        .write(
            tenant,
            PROFILES,
            vec![batch],
            IfTableMissing::Fail,
            WriteMode::Replace,
        )
        .await?;
    tracing::info!(
        tenant,
        rows,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "refreshed profiles"
    );
    Ok(rows)
}

/// Rebuilds the profiles of tenants whose data changed, every `interval`, while the service lives.
pub async fn run_refresher(
    service: std::sync::Weak<IdentityService>,
    interval: std::time::Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(service) = service.upgrade() else {
            return;
        };
        for tenant in service.tenant_names() {
            if !service.tenant(&tenant).take_profile_due() {
                continue;
            }
            if let Err(e) = refresh_profiles(&service, &tenant).await {
                tracing::warn!(tenant, "profile refresh failed: {e}");
            }
        }
    }
}

/// One customer as the live table functions see it: its id, its identifiers (strongest first),
/// and what computing its profile needs.
#[derive(Debug, Clone)]
pub struct CustomerScope {
    /// The customer's id; empty when the identifier is unknown or blocked.
    pub customer_id: String,
    /// The customer's identifiers, strongest first (none when unknown).
    pub members: Vec<(String, String)>,
    customers: Vec<(String, Members, i64)>,
    rules: Rules,
}

/// The customer `(id_type, value)` belongs to in `tenant` now.
pub fn customer_scope(
    service: &IdentityService,
    tenant: &str,
    id_type: &str,
    value: &str,
) -> CustomerScope {
    service.tenant(tenant).read(|graph| {
        let rules = graph.rules().clone();
        let Some(customer) = graph.customer_of(id_type, value) else {
            return CustomerScope {
                customer_id: String::new(),
                members: Vec::new(),
                customers: Vec::new(),
                rules,
            };
        };
        let members: Members = graph
            .identifiers_of(customer)
            .into_iter()
            .map(|i| (i.id_type, i.value))
            .collect();
        let customer_id = customer.to_string();
        CustomerScope {
            customers: vec![(customer_id.clone(), members.clone(), 0)],
            customer_id,
            members,
            rules,
        }
    })
}

/// The profile of one customer, computed now from its events and traits (rows of
/// `profiles_schema()`; none when the customer is unknown).
pub async fn customer_profile(ctx: &SessionContext, scope: &CustomerScope) -> Result<RecordBatch> {
    let one = Scope::One(scope.customer_id.clone(), scope.members.clone());
    compute(ctx, &scope.rules, scope.customers.clone(), &one).await
}
