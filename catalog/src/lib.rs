//! Where Tributary's tables live and what they are.
//!
//! A [`Catalog`] owns one data root on an object store ([`Storage`]: a local directory, S3 or an
//! in-memory store). Under the root each tenant is a directory, and each of its tables a Delta
//! Lake table: `<root>/<tenant>/<table>/_delta_log/…`. Each tenant's tables are a
//! [`TenantSchema`] (DataFusion's `public` schema of the tenant's catalog; the engine lists the
//! tenants as catalogs, so `SHOW TABLES`, `information_schema` and Flight SQL metadata see
//! them). Every tenant has the built-in tables of [`builtin`].

pub mod builtin;
mod error;
mod names;
pub mod scan;
mod storage;
mod tenant;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use object_store::path::Path;

pub use error::{Error, Result};
pub use names::{NAME_LENGTH_MAX, validate_name};
pub use storage::{S3Options, Storage};
pub use tenant::{LoadedTable, PUBLIC_SCHEMA, TenantSchema, storage_schema};

/// The tenant that exists on every installation.
pub const DEFAULT_TENANT: &str = "default";

/// The directory under the data root that holds Tributary's own state (write keys, and for a
/// local root the write-ahead log). It is never a tenant.
pub const SYSTEM_DIRECTORY: &str = "_tributary";

/// Every tenant of one data root.
#[derive(Debug)]
pub struct Catalog {
    storage: Storage,
    tenants: RwLock<BTreeMap<String, Arc<TenantSchema>>>,
    /// Held while a tenant is opened or created: `CREATE DATABASE` and following the data root
    /// (which opens tenants found there) must not both create its built-in tables.
    opening: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Opens the data root: every tenant directory found, plus the default tenant, each with its
    /// built-in tables.
    pub async fn open(storage: Storage) -> Result<Arc<Self>> {
        let catalog = Arc::new(Self {
            storage,
            tenants: RwLock::new(BTreeMap::new()),
            opening: tokio::sync::Mutex::new(()),
        });
        let mut names = catalog.tenant_directories().await?;
        if !names.iter().any(|n| n == DEFAULT_TENANT) {
            names.push(DEFAULT_TENANT.to_string());
        }
        for name in names {
            catalog.create_tenant(&name).await?;
        }
        Ok(catalog)
    }

    /// The tenants' directories under the data root.
    async fn tenant_directories(&self) -> Result<Vec<String>> {
        let listing = self
            .storage
            .root_store()?
            .list_with_delimiter(None::<&Path>)
            .await?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|name| name != SYSTEM_DIRECTORY && validate_name("tenant", name).is_ok())
            .collect())
    }

    /// Opens the tenants another process created since this catalog was opened.
    pub async fn open_new_tenants(&self) -> Result<()> {
        for name in self.tenant_directories().await? {
            if self.tenant(&name).is_none() {
                self.create_tenant(&name).await?;
            }
        }
        Ok(())
    }

    /// The storage this catalog lives on.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Creates a tenant with its built-in tables (or opens it if it exists).
    pub async fn create_tenant(&self, name: &str) -> Result<Arc<TenantSchema>> {
        if let Some(existing) = self.tenant(name) {
            return Ok(existing);
        }
        let _opening = self.opening.lock().await;
        if let Some(existing) = self.tenant(name) {
            return Ok(existing);
        }
        if name == SYSTEM_DIRECTORY {
            return Err(Error::InvalidName {
                kind: "tenant",
                name: name.to_string(),
            });
        }
        let schema = Arc::new(TenantSchema::open(self.storage.clone(), name).await?);
        let mut tenants = self.tenants.write().expect("tenant map poisoned");
        Ok(Arc::clone(
            tenants.entry(name.to_string()).or_insert(schema),
        ))
    }

    /// A tenant's tables, if the tenant exists.
    pub fn tenant(&self, name: &str) -> Option<Arc<TenantSchema>> {
        self.tenants
            .read()
            .expect("tenant map poisoned")
            .get(name)
            .cloned()
    }

    /// A tenant's tables, or [`Error::TenantNotFound`].
    pub fn require_tenant(&self, name: &str) -> Result<Arc<TenantSchema>> {
        self.tenant(name)
            .ok_or_else(|| Error::TenantNotFound(name.to_string()))
    }

    /// Names of all tenants, sorted.
    pub fn tenant_names(&self) -> Vec<String> {
        self.tenants
            .read()
            .expect("tenant map poisoned")
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::catalog::SchemaProvider;

    #[tokio::test]
    async fn default_tenant_has_built_in_tables_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap();
        let catalog = Catalog::open(Storage::parse(location, &S3Options::default()).unwrap())
            .await
            .unwrap();
        let tenant = catalog.require_tenant(DEFAULT_TENANT).unwrap();
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        assert!(
            tenant
                .create_table("orders", &schema, &[], false)
                .await
                .unwrap()
        );
        assert!(
            !tenant
                .create_table("orders", &schema, &[], true)
                .await
                .unwrap()
        );
        let err = tenant
            .create_table("orders", &schema, &[], false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TableExists { .. }), "{err}");
        drop(catalog);

        let reopened = Catalog::open(Storage::parse(location, &S3Options::default()).unwrap())
            .await
            .unwrap();
        let mut names = reopened
            .require_tenant(DEFAULT_TENANT)
            .unwrap()
            .table_names();
        names.sort();
        assert_eq!(
            names,
            [
                "activation_log",
                "activations",
                "destinations",
                "events",
                "identities",
                "identity_changes",
                "orders",
                "profiles",
                "segment_members",
                "segments"
            ]
        );
    }

    #[tokio::test]
    async fn drop_removes_files_and_refuses_built_ins() {
        let catalog = Catalog::open(Storage::in_memory()).await.unwrap();
        let tenant = catalog.require_tenant(DEFAULT_TENANT).unwrap();
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        tenant
            .create_table("tmp", &schema, &[], false)
            .await
            .unwrap();
        assert!(tenant.drop_table("tmp", false).await.unwrap());
        assert!(!tenant.drop_table("tmp", true).await.unwrap());
        assert!(matches!(
            tenant.drop_table("tmp", false).await.unwrap_err(),
            Error::TableNotFound { .. }
        ));
        assert!(matches!(
            tenant.drop_table("events", false).await.unwrap_err(),
            Error::BuiltInTable(_)
        ));
        let store = catalog.storage().root_store().unwrap();
        let listing = store
            .list_with_delimiter(Some(&Path::from("default")))
            .await
            .unwrap();
        let dirs: Vec<_> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        assert!(!dirs.contains(&"tmp".to_string()), "{dirs:?}");
    }
}
