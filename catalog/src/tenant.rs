//! A tenant's tables: the Delta tables under `<root>/<tenant>/`, exposed to DataFusion as the
//! `public` schema of the tenant's catalog.
//!
//! Every table is held open with its latest snapshot; queries get the cached provider, and every
//! write made through the engine calls [`TenantSchema::refresh`] once it has committed, so readers
//! see it without re-reading the log on every query.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::builtin::{built_in_tables, is_built_in, storage_order};
use crate::error::{Error, Result};
use crate::names::validate_name;
use crate::scan::SnapshotTable;
use crate::storage::Storage;

/// The one schema of every tenant.
pub const PUBLIC_SCHEMA: &str = "public";

#[derive(Clone)]
struct OpenTable {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
}

/// A table's latest snapshot, read but not yet shown to queries: see
/// [`TenantSchema::load_latest`] and [`TenantSchema::install`].
pub struct LoadedTable(OpenTable);

impl std::fmt::Debug for LoadedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LoadedTable")
            .field(&self.0.table.version())
            .finish()
    }
}

/// The tables of one tenant.
pub struct TenantSchema {
    tenant: String,
    storage: Storage,
    tables: RwLock<BTreeMap<String, OpenTable>>,
    /// Tables this process is dropping (see [`Self::moved_tables`]).
    dropping: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for TenantSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSchema")
            .field("tenant", &self.tenant)
            .field("tables", &self.table_names())
            .finish()
    }
}

impl TenantSchema {
    /// Opens every Delta table under `<root>/<tenant>/` and creates the built-in tables that are
    /// missing.
    pub(crate) async fn open(storage: Storage, tenant: &str) -> Result<Self> {
        validate_name("tenant", tenant)?;
        let schema = Self {
            tenant: tenant.to_string(),
            storage,
            tables: RwLock::new(BTreeMap::new()),
            dropping: Default::default(),
        };
        let store = schema.storage.root_store()?;
        let listing = store.list_with_delimiter(Some(&Path::from(tenant))).await?;
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            if validate_name("table", name).is_err() {
                tracing::warn!(
                    tenant,
                    name,
                    "ignoring a directory that is not a table name"
                );
                continue;
            }
            match schema.load(name).await {
                Ok(open) => schema.insert(name, open),
                Err(Error::Delta(e)) if matches!(*e, DeltaTableError::NotATable(_)) => {
                    tracing::warn!(tenant, name, "ignoring a directory without a Delta log");
                }
                Err(e) => return Err(e),
            }
        }
        for table in built_in_tables() {
            if !schema.has_table(table.name) {
                let partitions: Vec<String> = table
                    .partition_columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                schema
                    .create_table(table.name, &table.schema, &partitions, true)
                    .await?;
            }
        }
        Ok(schema)
    }

    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// True if the table exists.
    pub fn has_table(&self, name: &str) -> bool {
        self.tables
            .read()
            .expect("table map poisoned")
            .contains_key(name)
    }

    /// Creates a Delta table. Returns `false` (and changes nothing) if it exists and
    /// `if_not_exists` is set.
    pub async fn create_table(
        &self,
        name: &str,
        schema: &Schema,
        partition_columns: &[String],
        if_not_exists: bool,
    ) -> Result<bool> {
        validate_name("table", name)?;
        if self.has_table(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(self.exists_error(name))
            };
        }
        let storage_schema = storage_schema(schema);
        let columns = StructType::try_from_arrow(&storage_schema).map_err(DeltaTableError::from)?;
        let table = self.storage.delta_builder(self.table_url(name)?)?.build()?;
        let created = table
            .create()
            .with_table_name(name)
            .with_columns(columns.fields().cloned())
            .with_partition_columns(partition_columns.iter().cloned())
            .with_save_mode(SaveMode::ErrorIfExists)
            .await;
        let table = match created {
            Ok(table) => table,
            Err(DeltaTableError::Generic(msg)) if msg.contains("already exists") => {
                return Err(self.exists_error(name));
            }
            Err(e) => return Err(e.into()),
        };
        let open = open_table(name, table).await?;
        self.insert(name, open);
        Ok(true)
    }

    /// Drops a table: forgets it, then deletes its log and its data files. Returns `false` if it
    /// did not exist and `if_exists` is set.
    pub async fn drop_table(&self, name: &str, if_exists: bool) -> Result<bool> {
        if is_built_in(name) {
            return Err(Error::BuiltInTable(name.to_string()));
        }
        // Marked before it leaves the map, so that following the data root never sees it
        // neither shown nor being dropped (and opens it again from its files).
        self.dropping_table(name, true);
        let removed = self
            .tables
            .write()
            .expect("table map poisoned")
            .remove(name);
        if removed.is_none() {
            self.dropping_table(name, false);
            return if if_exists {
                Ok(false)
            } else {
                Err(self.not_found(name))
            };
        }
        let deleted = self.delete_table_files(name).await;
        self.dropping_table(name, false);
        deleted?;
        Ok(true)
    }

    /// The open Delta table (its latest snapshot known here), for write operations.
    pub fn delta_table(&self, name: &str) -> Result<DeltaTable> {
        self.tables
            .read()
            .expect("table map poisoned")
            .get(name)
            .map(|open| open.table.clone())
            .ok_or_else(|| self.not_found(name))
    }

    /// Deletes a dropped table's files, the log first.
    async fn delete_table_files(&self, name: &str) -> Result<()> {
        let store = self.storage.root_store()?;
        let table_dir = Path::from(format!("{}/{name}", self.tenant));
        let mut files: Vec<Path> = store
            .list(Some(&table_dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        // The log goes first: a crash half-way leaves files that are no longer a table.
        files.sort_by_key(|path| !path.as_ref().contains("/_delta_log/"));
        for path in files {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Marks a table as being dropped by this process (or no longer), so that following the
    /// data root does not open it again from its half-deleted files.
    fn dropping_table(&self, name: &str, dropping: bool) {
        let mut names = self.dropping.lock().expect("dropping set poisoned");
        if dropping {
            names.insert(name.to_string());
        } else {
            names.remove(name);
        }
    }

    /// Re-reads a table's log (after a commit, or to see another process's), so later queries
    /// see it — unless a newer snapshot is shown already (a flush may commit and show one while
    /// the log is read).
    pub async fn refresh(&self, name: &str) -> Result<()> {
        let loaded = self.load_latest(name).await?;
        self.install_if_newer(name, loaded);
        Ok(())
    }

    /// Reads a table's latest snapshot without showing it to queries yet, so that a writer can
    /// swap it in at the same moment as it drops the rows it just committed from its buffer.
    pub async fn load_latest(&self, name: &str) -> Result<LoadedTable> {
        let mut table = self.delta_table(name)?;
        table.update_incremental(None).await?;
        Ok(LoadedTable(open_table(name, table).await?))
    }

    /// Shows a snapshot read by [`Self::load_latest`] to later queries.
    pub fn install(&self, name: &str, loaded: LoadedTable) {
        self.insert(name, loaded.0);
    }

    /// Shows `loaded` unless the table is gone or the snapshot shown is at least as new (a
    /// writer of this process may have shown a later one meanwhile); true when shown.
    pub fn install_if_newer(&self, name: &str, loaded: LoadedTable) -> bool {
        let mut tables = self.tables.write().expect("table map poisoned");
        match tables.get(name) {
            Some(shown) if shown.table.version() < loaded.0.table.version() => {
                tables.insert(name.to_string(), loaded.0);
                true
            }
            _ => false,
        }
    }

    /// What other processes changed in this tenant since its tables were read: the tables
    /// whose Delta log moved on, with their latest snapshots loaded but not shown (the caller
    /// shows them with [`Self::install_if_newer`] when no commit of its own is under way), and
    /// tables created meanwhile, which are shown at once. Dropped tables are not noticed.
    pub async fn moved_tables(&self) -> Result<Vec<(String, LoadedTable)>> {
        let mut moved = Vec::new();
        for name in self.table_names() {
            let Ok(table) = self.delta_table(&name) else {
                continue;
            };
            let shown = table.version().unwrap_or(0);
            if table.log_store().get_latest_version(shown).await? > shown {
                moved.push((name.clone(), self.load_latest(&name).await?));
            }
        }
        let listing = self
            .storage
            .root_store()?
            .list_with_delimiter(Some(&Path::from(self.tenant.as_str())))
            .await?;
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let dropping = self
                .dropping
                .lock()
                .expect("dropping set poisoned")
                .contains(name);
            if dropping || self.has_table(name) || validate_name("table", name).is_err() {
                continue;
            }
            match self.load(name).await {
                Ok(open) => self.insert_if_new(name, open),
                // A table being created (no log yet) or a stray directory.
                Err(Error::Delta(e)) if matches!(*e, DeltaTableError::NotATable(_)) => {}
                Err(e) => {
                    tracing::warn!(tenant = self.tenant, name, "cannot open a new table: {e}")
                }
            }
        }
        Ok(moved)
    }

    /// The provider queries use for a table (its latest installed snapshot).
    pub fn provider(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.tables
            .read()
            .expect("table map poisoned")
            .get(name)
            .map(|open| Arc::clone(&open.provider))
    }

    /// The table's Arrow schema as queries see it.
    pub fn table_schema(&self, name: &str) -> Result<SchemaRef> {
        self.tables
            .read()
            .expect("table map poisoned")
            .get(name)
            .map(|open| open.provider.schema())
            .ok_or_else(|| self.not_found(name))
    }

    /// The table's partition columns.
    pub fn partition_columns(&self, name: &str) -> Result<Vec<String>> {
        let table = self.delta_table(name)?;
        Ok(table.snapshot()?.metadata().partition_columns().to_vec())
    }

    async fn load(&self, name: &str) -> Result<OpenTable> {
        let mut table = self.storage.delta_builder(self.table_url(name)?)?.build()?;
        table.load().await?;
        open_table(name, table).await
    }

    /// Shows a table another process created, unless this process made or dropped one of that
    /// name meanwhile.
    fn insert_if_new(&self, name: &str, open: OpenTable) {
        let dropping = self.dropping.lock().expect("dropping set poisoned");
        let mut tables = self.tables.write().expect("table map poisoned");
        if !dropping.contains(name) && !tables.contains_key(name) {
            tables.insert(name.to_string(), open);
        }
    }

    fn insert(&self, name: &str, open: OpenTable) {
        self.tables
            .write()
            .expect("table map poisoned")
            .insert(name.to_string(), open);
    }

    fn table_url(&self, name: &str) -> Result<url::Url> {
        self.storage.url_of(&format!("{}/{name}", self.tenant))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::TableNotFound {
            tenant: self.tenant.clone(),
            table: name.to_string(),
        }
    }

    fn exists_error(&self, name: &str) -> Error {
        Error::TableExists {
            tenant: self.tenant.clone(),
            table: name.to_string(),
        }
    }
}

async fn open_table(name: &str, table: DeltaTable) -> Result<OpenTable> {
    let delta = table.table_provider().await?;
    let provider = SnapshotTable::new(name, &table, delta, storage_order(name))?;
    Ok(OpenTable {
        table,
        provider: Arc::new(provider),
    })
}

/// The schema a table is stored with: view and dictionary types become their plain Arrow
/// equivalents (Delta has one string type), timestamps become microseconds (Delta's unit), field
/// metadata is dropped.
pub fn storage_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), storage_type(f.data_type()), f.is_nullable()))
        .collect();
    Schema::new(fields)
}

fn storage_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, value) => storage_type(value),
        // Delta stores times as microseconds.
        DataType::Timestamp(_, tz) => DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            tz.clone(),
        ),
        other => other.clone(),
    }
}

#[async_trait]
impl SchemaProvider for TenantSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables
            .read()
            .expect("table map poisoned")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.provider(name))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        datafusion::common::plan_err!(
            "cannot register '{name}': Tributary tables are Delta tables made with CREATE TABLE"
        )
    }

    fn table_exist(&self, name: &str) -> bool {
        self.has_table(name)
    }
}
