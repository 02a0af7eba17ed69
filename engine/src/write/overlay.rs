//! How queries see buffered rows: the session's tenants are the catalog's, with every table that
//! has rows in the [`WriteBuffer`] read as the union of its Delta snapshot and those rows.
//! A table with no buffered rows is the Delta provider itself, at no cost.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use tributary_catalog::scan::SnapshotTable;
use tributary_catalog::{Catalog, PUBLIC_SCHEMA, TenantSchema};

use super::buffer::WriteBuffer;
use super::conform::cast_batch;

/// Tables every tenant has that are computed, not stored (`identity_map`, `customer_events`).
pub trait VirtualTables: Send + Sync + std::fmt::Debug {
    /// Their names.
    fn names(&self) -> Vec<String>;
    /// One of them, for `tenant`; `stored` reads one of the tenant's stored tables as a query
    /// would see it now.
    fn table(
        &self,
        tenant: &str,
        name: &str,
        stored: &dyn Fn(&str) -> Option<StoredTable>,
    ) -> Option<Arc<dyn TableProvider>>;
}

/// A stored table as a query sees it at one moment: its Delta snapshot's provider and the rows
/// buffered for it, taken together (no row in both, none missing).
#[derive(Debug, Clone)]
pub struct StoredTable {
    /// The Delta snapshot (`tributary_catalog::SnapshotTable`).
    pub committed: Arc<dyn TableProvider>,
    /// Acknowledged rows not yet in that snapshot.
    pub buffered: Vec<RecordBatch>,
}

impl StoredTable {
    /// The committed snapshot as Tributary's own Delta scan (its files), for the virtual table
    /// `reader` that reads the table `name` from it.
    pub fn snapshot(
        &self,
        reader: &str,
        name: &str,
    ) -> DfResult<&tributary_catalog::scan::SnapshotTable> {
        self.committed
            .downcast_ref::<SnapshotTable>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "{reader} needs the Delta scan of {name}"
                ))
            })
    }
}

/// The tenants, as DataFusion catalogs whose tables include buffered rows.
#[derive(Debug)]
pub struct BufferedCatalogList {
    catalog: Arc<Catalog>,
    buffer: Arc<WriteBuffer>,
    virtual_tables: Option<Weak<dyn VirtualTables>>,
    /// The tenants a restricted session may see (`None`: all): the others do not exist for it,
    /// in any name form, `information_schema` included.
    visible: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl BufferedCatalogList {
    /// Wraps `catalog` so that its tables show `buffer`'s rows, plus the virtual tables (held
    /// weakly: their owner owns the sessions built over this list, not the other way round).
    pub fn new(
        catalog: Arc<Catalog>,
        buffer: Arc<WriteBuffer>,
        virtual_tables: Option<Weak<dyn VirtualTables>>,
    ) -> Self {
        Self {
            catalog,
            buffer,
            virtual_tables,
            visible: None,
        }
    }

    /// These tenants, restricted to `visible`.
    pub fn restricted_to(&self, visible: std::collections::BTreeSet<String>) -> Self {
        Self {
            catalog: Arc::clone(&self.catalog),
            buffer: Arc::clone(&self.buffer),
            virtual_tables: self.virtual_tables.clone(),
            visible: Some(Arc::new(visible)),
        }
    }

    fn is_visible(&self, tenant: &str) -> bool {
        self.visible.as_ref().is_none_or(|v| v.contains(tenant))
    }
}

impl CatalogProviderList for BufferedCatalogList {
    fn register_catalog(
        &self,
        name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        tracing::warn!(
            name,
            "ignored: tenants are created by Tributary, not registered"
        );
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = self.catalog.tenant_names();
        names.retain(|name| self.is_visible(name));
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if !self.is_visible(name) {
            return None;
        }
        let tenant = self.catalog.tenant(name)?;
        Some(Arc::new(BufferedCatalog {
            schema: Arc::new(BufferedSchema {
                tenant,
                buffer: Arc::clone(&self.buffer),
                virtual_tables: self.virtual_tables.clone(),
            }),
        }))
    }
}

#[derive(Debug)]
struct BufferedCatalog {
    schema: Arc<BufferedSchema>,
}

impl CatalogProvider for BufferedCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![PUBLIC_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == PUBLIC_SCHEMA).then(|| Arc::clone(&self.schema) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
struct BufferedSchema {
    tenant: Arc<TenantSchema>,
    buffer: Arc<WriteBuffer>,
    virtual_tables: Option<Weak<dyn VirtualTables>>,
}

#[async_trait]
impl SchemaProvider for BufferedSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.tenant.table_names();
        if let Some(computed) = self.virtual_tables() {
            names.extend(computed.names());
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let stored = |name: &str| self.stored(name);
        if let Some(computed) = self
            .virtual_tables()
            .and_then(|v| v.table(self.tenant.tenant(), name, &stored))
        {
            return Ok(Some(computed));
        }
        Ok(self.stored(name).map(|table| {
            if table.buffered.is_empty() {
                table.committed
            } else {
                Arc::new(BufferedTable {
                    inner: table.committed,
                    rows: table.buffered,
                }) as Arc<dyn TableProvider>
            }
        }))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.tenant.register_table(name, table)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tenant.has_table(name)
            || self
                .virtual_tables()
                .is_some_and(|v| v.names().iter().any(|n| n == name))
    }
}

impl BufferedSchema {
    fn virtual_tables(&self) -> Option<Arc<dyn VirtualTables>> {
        self.virtual_tables.as_ref().and_then(Weak::upgrade)
    }

    /// The stored table `name` and its buffered rows, read under the buffer's lock.
    fn stored(&self, name: &str) -> Option<StoredTable> {
        let (provider, buffered) = self.buffer.read(self.tenant.tenant(), name, |rows| {
            (self.tenant.provider(name), rows)
        });
        provider.map(|committed| StoredTable {
            committed,
            buffered,
        })
    }
}

/// A Delta table plus rows not yet committed to it.
#[derive(Debug)]
struct BufferedTable {
    inner: Arc<dyn TableProvider>,
    rows: Vec<RecordBatch>,
}

#[async_trait]
impl TableProvider for BufferedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let committed = self.inner.scan(state, projection, filters, limit).await?;
        // The Delta scan may read strings as views: the buffered rows take its exact types.
        let output = committed.schema();
        let rows = self
            .rows
            .iter()
            .map(|batch| match projection {
                Some(columns) => batch.project(columns).map_err(Into::into),
                None => Ok(batch.clone()),
            })
            .map(|batch| batch.and_then(|batch| Ok(cast_batch(&batch, &output)?)))
            .collect::<DfResult<Vec<_>>>()?;
        let buffered = MemorySourceConfig::try_new_exec(&[rows], output, None)?;
        UnionExec::try_new(vec![committed, buffered])
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The Delta scan may prune with them, but the buffered rows are not filtered at the
        // scan: DataFusion must filter above it.
        Ok(self
            .inner
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|support| match support {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}
