//! Identity resolution inside the database: one [`IdentityGraph`] per tenant, built in batch from
//! the `identities` and `events` tables when the engine opens, and kept current from then on by
//! every acknowledged write ([`WriteHook`]). What it changes (merges, splits, refusals) is
//! appended to `identity_changes`; SQL reads it through `identity_map` ([`map`]) and the
//! functions in [`crate::functions`] (`resolve_customer`, `explain_merge`, …).
//!
//! Rules are per tenant, in `_tributary/identity/<tenant>.json` under the data root (defaults
//! when absent; see the `tributary_identity` crate). They are read when a tenant's graph is
//! built: at start, or by `CALL rebuild_identity()`.

pub mod customer_events;
pub mod customer_profiles;
pub mod forget;
pub mod keys;
pub mod map;
pub mod profiles;
pub mod records;
mod suppression;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use datafusion::arrow::array::{RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tributary_catalog::builtin::{EVENTS, IDENTITIES, IDENTITY_CHANGES, identity_changes_schema};
use tributary_catalog::{Catalog, SYSTEM_DIRECTORY};
use tributary_identity::{Change, IdentityGraph, Rules};

use crate::error::{Error, Result};
use crate::write::IfTableMissing;
use crate::write::{WriteHook, WriteMode, Writer, now_micros};
pub use suppression::Suppression;

/// The identity state of one tenant.
#[derive(Debug)]
pub struct TenantIdentity {
    tenant: String,
    state: Mutex<TenantState>,
    /// Bumped by every write to `events` or `identities` and every rebuild.
    changes: std::sync::atomic::AtomicU64,
    /// The value of `changes` the last profile refresh saw.
    profiled: std::sync::atomic::AtomicU64,
    /// The committed events `customer_events` serves.
    events_index: customer_events::EventIndex,
    /// The committed profiles `customer_profiles` serves.
    profiles_index: customer_profiles::ProfileIndex,
}

#[derive(Debug)]
struct TenantState {
    graph: IdentityGraph,
    /// While a batch rebuild runs, acknowledged rows wait here for the new graph.
    loading: bool,
    pending: Vec<(String, RecordBatch)>,
    /// Bumped on every change; each [`map::GraphView`] caches its batch per version.
    version: u64,
    /// Bumped when a rebuild replaces the graph (its node numbers start afresh).
    generation: u64,
    view_cache: [Option<(u64, RecordBatch)>; map::GraphView::ALL.len()],
    /// The `customer_key` of every customer seen.
    keys: keys::CustomerKeys,
}

impl TenantIdentity {
    fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            state: Mutex::new(TenantState {
                graph: IdentityGraph::new(Rules::default()),
                loading: false,
                pending: Vec::new(),
                version: 0,
                generation: 0,
                view_cache: Default::default(),
                keys: keys::CustomerKeys::default(),
            }),
            changes: std::sync::atomic::AtomicU64::new(1),
            profiled: std::sync::atomic::AtomicU64::new(0),
            events_index: customer_events::EventIndex::default(),
            profiles_index: customer_profiles::ProfileIndex::default(),
        }
    }

    fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A counter that every acknowledged write of events or identities moves.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when data changed since the last profile refresh; marks it seen.
    pub(crate) fn take_profile_due(&self) -> bool {
        let now = self.changes.load(std::sync::atomic::Ordering::Relaxed);
        self.profiled
            .swap(now, std::sync::atomic::Ordering::Relaxed)
            != now
    }

    /// Runs `read` on the current graph.
    pub fn read<T>(&self, read: impl FnOnce(&IdentityGraph) -> T) -> T {
        read(&self.state.lock().expect("identity state poisoned").graph)
    }

    /// Runs `read` on the current graph, its version (which every change moves, and a rebuild
    /// in its own way) and the customers' keys.
    pub(crate) fn read_keyed<T>(
        &self,
        read: impl FnOnce(customer_events::GraphVersion, &IdentityGraph, &mut keys::CustomerKeys) -> T,
    ) -> T {
        let state = &mut *self.state.lock().expect("identity state poisoned");
        let at = customer_events::GraphVersion {
            generation: state.generation,
            version: state.version,
        };
        read(at, &state.graph, &mut state.keys)
    }

    /// The committed events as `customer_events` keeps them.
    pub(crate) fn events_index(&self) -> &customer_events::EventIndex {
        &self.events_index
    }

    /// The committed profiles as `customer_profiles` keeps them.
    pub(crate) fn profiles_index(&self) -> &customer_profiles::ProfileIndex {
        &self.profiles_index
    }

    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// `view` as one batch, rebuilt only when the graph changed.
    pub fn view_batch(&self, view: map::GraphView) -> Result<RecordBatch> {
        let mut state = self.state.lock().expect("identity state poisoned");
        if let Some((version, batch)) = &state.view_cache[view as usize]
            && *version == state.version
        {
            return Ok(batch.clone());
        }
        let state = &mut *state;
        let batch = view.batch(&state.graph, state.generation, &mut state.keys)?;
        state.view_cache[view as usize] = Some((state.version, batch.clone()));
        Ok(batch)
    }
}

/// Identity resolution for every tenant of an engine.
pub struct IdentityService {
    catalog: Arc<Catalog>,
    writer: Weak<Writer>,
    template: OnceLock<Arc<SessionState>>,
    tenants: Mutex<HashMap<String, Arc<TenantIdentity>>>,
    suppression: Suppression,
    me: Weak<IdentityService>,
    /// Changes waiting to be appended to `identity_changes`, per tenant.
    pending_changes: Mutex<HashMap<String, Vec<Change>>>,
    /// One change-log write at a time, so that [`IdentityService::flush_changes`] returning
    /// means every change made before it is stored.
    change_writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for IdentityService {
    // Not derived: every tenant's graph would be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("tenants", &self.catalog.tenant_names())
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// A service over `catalog`, writing its change log through `writer`.
    pub fn new(catalog: Arc<Catalog>, writer: &Arc<Writer>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            suppression: Suppression::new(catalog.storage().clone()),
            catalog,
            writer: Arc::downgrade(writer),
            template: OnceLock::new(),
            tenants: Mutex::default(),
            me: Weak::clone(me),
            pending_changes: Mutex::default(),
            change_writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Names of the tenants with identity state.
    pub fn tenant_names(&self) -> Vec<String> {
        self.catalog.tenant_names()
    }

    /// Gives the service the session template it reads tables with; then builds every tenant.
    pub async fn start(&self, template: Arc<SessionState>) -> Result<()> {
        let _ = self.template.set(template);
        for tenant in self.catalog.tenant_names() {
            self.rebuild(&tenant).await?;
        }
        Ok(())
    }

    /// The identity state of `tenant` (empty until built).
    pub fn tenant(&self, tenant: &str) -> Arc<TenantIdentity> {
        let mut tenants = self.tenants.lock().expect("identity tenants poisoned");
        Arc::clone(
            tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(TenantIdentity::new(tenant))),
        )
    }

    /// The suppression list (identifiers erased by `forget`).
    pub fn suppression(&self) -> &Suppression {
        &self.suppression
    }

    pub(crate) fn writer(&self) -> Result<Arc<Writer>> {
        self.writer
            .upgrade()
            .ok_or_else(|| Error::Overloaded("the engine is shutting down".into()))
    }

    /// The tenants and their tables.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A session on `tenant` for the service's own queries.
    pub(crate) fn session(&self, tenant: &str) -> Result<SessionContext> {
        let template = self
            .template
            .get()
            .ok_or_else(|| Error::Internal("identity resolution has not started".into()))?;
        let mut state = template.as_ref().clone();
        state.config_mut().options_mut().catalog.default_catalog = tenant.to_string();
        Ok(SessionContext::new_with_state(state))
    }

    /// Reads the tenant's rules file; the defaults when there is none.
    pub async fn rules(&self, tenant: &str) -> Result<Rules> {
        let path = Path::from(format!("{SYSTEM_DIRECTORY}/identity/{tenant}.json"));
        let store = self.catalog.storage().root_store()?;
        match store.get(&path).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(storage_error)?;
                let text = String::from_utf8_lossy(&bytes);
                Rules::from_json(&text).map_err(|e| {
                    Error::InvalidInput(format!("{SYSTEM_DIRECTORY}/identity/{tenant}.json: {e}"))
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Rules::default()),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Builds a tenant's graph again in batch from its tables (at start, after a statement
    /// changed `identities` or `events`, after a rules change). Acknowledged writes that arrive
    /// meanwhile are applied to the new graph.
    pub async fn rebuild(&self, tenant: &str) -> Result<()> {
        let identity = self.tenant(tenant);
        self.suppression.load(tenant).await?;
        identity
            .state
            .lock()
            .expect("identity state poisoned")
            .loading = true;
        let built = self.build(tenant).await;
        let changes = {
            let mut state = identity.state.lock().expect("identity state poisoned");
            state.loading = false;
            let pending = std::mem::take(&mut state.pending);
            let mut graph = built?;
            for (table, batch) in &pending {
                apply_batch(&mut graph, table, batch)?;
            }
            let changes = if state.graph.identifier_count() == 0 {
                Vec::new()
            } else {
                graph.changes_since(&state.graph)
            };
            state.graph = graph;
            state.version += 1;
            state.generation += 1;
            changes
        };
        identity.changed();
        self.queue_changes(tenant, changes);
        self.flush_changes(tenant).await;
        Ok(())
    }

    async fn build(&self, tenant: &str) -> Result<IdentityGraph> {
        let started = std::time::Instant::now();
        let rules = self.rules(tenant).await?;
        let ctx = self.session(tenant)?;
        let identities = ctx
            .sql(&format!("SELECT * FROM {IDENTITIES}"))
            .await?
            .collect()
            .await?;
        // One row per pair of ids (the earliest), plus the events whose payload names ids.
        let events = ctx
            .sql(&format!(
                "SELECT 'track' AS type, anonymous_id, user_id, min(timestamp) AS timestamp, \
                 min(source) AS source, CAST(NULL AS VARCHAR) AS properties FROM {EVENTS} \
                 WHERE anonymous_id IS NOT NULL OR user_id IS NOT NULL \
                 GROUP BY anonymous_id, user_id \
                 UNION ALL \
                 SELECT type, anonymous_id, user_id, timestamp, source, properties FROM {EVENTS} \
                 WHERE type = 'alias' OR (type = 'identify' AND properties NOT IN ('{{}}', 'null'))"
            ))
            .await?
            .collect()
            .await?;
        let mut graph = IdentityGraph::deferred(rules);
        graph.reserve(
            identities
                .iter()
                .chain(&events)
                .map(RecordBatch::num_rows)
                .sum(),
        );
        for batch in &identities {
            apply_batch(&mut graph, IDENTITIES, batch)?;
        }
        for batch in &events {
            apply_batch(&mut graph, EVENTS, batch)?;
        }
        graph.resolve_all();
        tracing::info!(
            tenant,
            identifiers = graph.identifier_count(),
            pairs = graph.edge_count(),
            customers = graph.customer_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "resolved identities"
        );
        Ok(graph)
    }

    /// Queues changes for `identity_changes` and writes them in the background.
    fn log_changes(&self, tenant: &str, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        self.queue_changes(tenant, changes);
        let Some(service) = self.me.upgrade() else {
            return;
        };
        let tenant = tenant.to_string();
        tokio::spawn(async move { service.flush_changes(&tenant).await });
    }

    fn queue_changes(&self, tenant: &str, changes: Vec<Change>) {
        self.pending_changes
            .lock()
            .expect("pending changes poisoned")
            .entry(tenant.to_string())
            .or_default()
            .extend(changes);
    }

    /// Appends every queued change of `tenant` to `identity_changes`. A failure is logged, not
    /// returned: the change itself has happened.
    pub async fn flush_changes(&self, tenant: &str) {
        let _one_at_a_time = self.change_writer.lock().await;
        let changes = self
            .pending_changes
            .lock()
            .expect("pending changes poisoned")
            .remove(tenant)
            .unwrap_or_default();
        if changes.is_empty() {
            return;
        }
        let written = match (self.writer(), changes_batch(&changes)) {
            (Ok(writer), Ok(batch)) => {
                writer
                    .write(
                        tenant,
                        IDENTITY_CHANGES,
                        vec![batch],
                        IfTableMissing::Fail,
                        WriteMode::Append,
                    )
                    .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(tenant, "cannot log identity changes: {e}");
        }
    }
}

fn storage_error(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Applies the rows of one batch of `table` to `graph`; returns the changes.
fn apply_batch(graph: &mut IdentityGraph, table: &str, batch: &RecordBatch) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    match table {
        IDENTITIES => records::identity_records(batch, |edge| changes.extend(graph.apply(edge)))?,
        EVENTS => records::event_records(batch, |found| match found {
            records::EventIdentity::Edge(edge) => changes.extend(graph.apply(edge)),
            records::EventIdentity::Seen(id, at) => graph.observe(id, at),
        })?,
        _ => {}
    }
    Ok(changes)
}

/// `identity_changes` rows.
fn changes_batch(changes: &[Change]) -> Result<RecordBatch> {
    let now = now_micros();
    let mut changed_at = TimestampMicrosecondBuilder::new();
    let mut observed_at = TimestampMicrosecondBuilder::new();
    let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    for change in changes {
        changed_at.append_value(now);
        observed_at.append_option((change.observed_at != i64::MIN).then_some(change.observed_at));
        text[0].append_value(change.kind.as_str());
        text[1].append_option(change.customer.map(|c| c.to_string()));
        text[2].append_option(change.other.map(|c| c.to_string()));
        text[3].append_value(&change.edge.0.id_type);
        text[4].append_value(&change.edge.0.value);
        text[5].append_value(&change.edge.1.id_type);
        text[6].append_value(&change.edge.1.value);
    }
    let mut reason = StringBuilder::new();
    for change in changes {
        reason.append_value(&change.reason);
    }
    let mut text = text.into_iter().map(|mut b| Arc::new(b.finish()) as _);
    let mut next = || text.next().expect("seven text columns");
    let columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
        Arc::new(changed_at.finish().with_timezone("UTC")),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        Arc::new(observed_at.finish().with_timezone("UTC")),
        Arc::new(reason.finish()),
    ];
    Ok(RecordBatch::try_new(identity_changes_schema(), columns)?)
}

impl crate::write::overlay::VirtualTables for IdentityService {
    fn names(&self) -> Vec<String> {
        map::GraphView::ALL
            .iter()
            .map(|view| view.name())
            .chain([
                customer_events::CUSTOMER_EVENTS,
                customer_profiles::CUSTOMER_PROFILES,
            ])
            .map(String::from)
            .collect()
    }

    fn table(
        &self,
        tenant: &str,
        name: &str,
        stored: &dyn Fn(&str) -> Option<crate::write::overlay::StoredTable>,
    ) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
        if let Some(view) = map::GraphView::named(name) {
            return Some(Arc::new(map::GraphTable::new(self.tenant(tenant), view)));
        }
        match name {
            customer_events::CUSTOMER_EVENTS => {
                let events = stored(tributary_catalog::builtin::EVENTS)?;
                Some(Arc::new(customer_events::CustomerEventsTable::new(
                    self.tenant(tenant),
                    events,
                )))
            }
            customer_profiles::CUSTOMER_PROFILES => {
                let profiles = stored(tributary_catalog::builtin::PROFILES)?;
                Some(Arc::new(customer_profiles::CustomerProfilesTable::new(
                    self.tenant(tenant),
                    profiles,
                )))
            }
            _ => None,
        }
    }
}

impl WriteHook for IdentityService {
    fn keep(&self, tenant: &str, table: &str, batch: RecordBatch) -> Result<RecordBatch> {
        if table == IDENTITIES {
            records::check_identities(&batch)?;
        }
        self.suppression.keep(tenant, table, batch)
    }

    fn written(&self, tenant: &str, table: &str, batch: &RecordBatch, mode: WriteMode) {
        if table != IDENTITIES && table != EVENTS {
            return;
        }
        let identity = self.tenant(tenant);
        identity.changed();
        if mode == WriteMode::Replace {
            identity
                .state
                .lock()
                .expect("identity state poisoned")
                .loading = true;
            let Some(service) = self.me.upgrade() else {
                return;
            };
            let tenant = tenant.to_string();
            tokio::spawn(async move {
                if let Err(e) = service.rebuild(&tenant).await {
                    tracing::warn!(tenant, "cannot rebuild identities after a replace: {e}");
                }
            });
            return;
        }
        let mut state = identity.state.lock().expect("identity state poisoned");
        if state.loading {
            state.pending.push((table.to_string(), batch.clone()));
            return;
        }
        match apply_batch(&mut state.graph, table, batch) {
            Ok(changes) => {
                state.version += 1;
                drop(state);
                self.log_changes(tenant, changes);
            }
            Err(e) => tracing::warn!(tenant, table, "identity resolution skipped a write: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tributary_catalog::Storage;

    use crate::Engine;

    #[tokio::test]
    async fn closing_the_engine_frees_identity_resolution() {
        // The sessions hold the service weakly: no reference cycle through the template keeps
        // it (and every tenant's graph) alive after the engine is gone.
        let engine = Engine::open(Storage::in_memory()).await.unwrap();
        let ctx = engine.session("default").unwrap();
        let rows = ctx.sql("SELECT * FROM identity_map").await.unwrap();
        rows.collect().await.unwrap();
        let _printable = format!("{:?}", ctx.state());
        let service = engine.identity_weak();
        drop(ctx);
        drop(engine);
        assert!(
            service.upgrade().is_none(),
            "the identity service outlived its engine"
        );
    }

    #[tokio::test]
    async fn functions_of_a_closed_engine_say_so() {
        let engine = Engine::open(Storage::in_memory()).await.unwrap();
        let ctx = engine.session("default").unwrap();
        drop(engine);
        let error = ctx
            .sql("SELECT * FROM customer_identities('user_id', 'u1')")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
    }
}
