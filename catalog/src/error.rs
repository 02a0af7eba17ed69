//! The catalog's one error type.

use deltalake::DeltaTableError;

/// What can go wrong while locating, creating or opening tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--data` location is not a directory path or a supported URL.
    #[error("invalid data location '{location}': {reason}")]
    InvalidDataLocation {
        /// What the user gave.
        location: String,
        /// Why it was refused.
        reason: String,
    },

    /// A tenant or table name that cannot be used as a directory and SQL identifier.
    #[error(
        "invalid {kind} name '{name}': use lowercase letters, digits and '_', starting with a letter or '_' (at most 64 characters)"
    )]
    InvalidName {
        /// "tenant" or "table".
        kind: &'static str,
        /// The refused name.
        name: String,
    },

    /// The tenant (catalog) does not exist.
    #[error("tenant '{0}' does not exist")]
    TenantNotFound(String),

    /// Tables live only in schema `public` of a tenant.
    #[error("schema '{0}' does not exist: every tenant has one schema, 'public'")]
    SchemaNotFound(String),

    /// The table does not exist.
    #[error("table '{tenant}.public.{table}' does not exist")]
    TableNotFound {
        /// The tenant searched.
        tenant: String,
        /// The missing table.
        table: String,
    },

    /// A table of that name exists already.
    #[error("table '{tenant}.public.{table}' already exists")]
    TableExists {
        /// The tenant.
        tenant: String,
        /// The existing table.
        table: String,
    },

    /// A built-in table cannot be dropped: the engine relies on it.
    #[error("table '{0}' is built in and cannot be dropped")]
    BuiltInTable(String),

    /// Delta Lake failed (log, commit, schema conversion).
    #[error(transparent)]
    Delta(#[from] Box<DeltaTableError>),

    /// The object store failed (list, delete).
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),

    /// A data file's location is not a valid object-store path.
    #[error(transparent)]
    ObjectStorePath(#[from] object_store::path::Error),

    /// DataFusion failed while building a table provider.
    #[error(transparent)]
    DataFusion(#[from] Box<datafusion::error::DataFusionError>),
}

impl Error {
    /// True when the error is the user's to fix (a name, a missing or duplicate table), not a
    /// failure of storage.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidDataLocation { .. }
                | Self::InvalidName { .. }
                | Self::TenantNotFound(_)
                | Self::SchemaNotFound(_)
                | Self::TableNotFound { .. }
                | Self::TableExists { .. }
                | Self::BuiltInTable(_)
        )
    }
}

impl From<DeltaTableError> for Error {
    fn from(error: DeltaTableError) -> Self {
        Self::Delta(Box::new(error))
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        Self::DataFusion(Box::new(error))
    }
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(error: Error) -> Self {
        if error.is_user_error() {
            datafusion::error::DataFusionError::Plan(error.to_string())
        } else {
            datafusion::error::DataFusionError::External(Box::new(error))
        }
    }
}

/// The catalog's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
