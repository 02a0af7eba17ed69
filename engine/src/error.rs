//! The engine's one error type, and its one classification ([`ErrorClass`]): the line between
//! the user's mistakes and the system's failures that every network face (Flight SQL statuses,
//! HTTP codes) maps from, in one place each.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

/// What can go wrong while planning or running a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement Tributary does not run (with what to do instead).
    #[error("{0}")]
    Unsupported(String),

    /// Input that does not fit the target table (missing columns, wrong types, NULLs in
    /// required columns).
    #[error("{0}")]
    InvalidInput(String),

    /// What the statement names does not exist (a tenant, table, user, segment…).
    #[error("{0}")]
    NotFound(String),

    /// What the statement would make exists already.
    #[error("{0}")]
    AlreadyExists(String),

    /// The session may not do this.
    #[error("{0}")]
    PermissionDenied(String),

    /// The write path cannot take more now (its buffer is full, or it is shutting down): retry
    /// later.
    #[error("{0}")]
    Overloaded(String),

    /// The write-ahead log or another local store failed.
    #[error("{0}")]
    Storage(String),

    /// An invariant of the engine does not hold: a bug, never the user's doing.
    #[error("internal error: {0}")]
    Internal(String),

    /// DataFusion planning or execution failed.
    #[error(transparent)]
    DataFusion(Box<DataFusionError>),

    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] tributary_catalog::Error),

    /// Delta Lake refused or failed a write.
    #[error(transparent)]
    Delta(Box<DeltaTableError>),

    /// A login or a right was refused, or users could not be changed.
    #[error(transparent)]
    Auth(#[from] tributary_auth::Error),

    /// The query ran past its time limit.
    #[error("{0}")]
    Timeout(String),

    /// The query was cancelled by its client.
    #[error("{0}")]
    Cancelled(String),

    /// Another writer committed to the table first; the statement changed nothing.
    #[error("{0}")]
    Conflict(String),
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        Self::DataFusion(Box::new(error))
    }
}

impl From<DeltaTableError> for Error {
    fn from(error: DeltaTableError) -> Self {
        Self::Delta(Box::new(error))
    }
}

impl From<ArrowError> for Error {
    fn from(error: ArrowError) -> Self {
        Self::DataFusion(Box::new(DataFusionError::ArrowError(Box::new(error), None)))
    }
}

/// How a failure is reported: what the user can do about it. Every network face maps a class to
/// its status (gRPC code, HTTP status) in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The user's statement or data is wrong: fix it and retry.
    InvalidInput,
    /// What the statement names does not exist (for the session: another tenant's table is
    /// not found either).
    NotFound,
    /// What the statement would make exists already.
    AlreadyExists,
    /// The session may not do this.
    PermissionDenied,
    /// No valid login: a missing, wrong, expired or revoked credential.
    Unauthenticated,
    /// The query ran past its time limit.
    Timeout,
    /// The client cancelled the query.
    Cancelled,
    /// The server cannot take it now: retry later.
    Overloaded,
    /// Another writer changed the data first; nothing was changed: run the statement again.
    Conflict,
    /// Storage or the engine failed: not the user's doing.
    Internal,
}

impl ErrorClass {
    /// True for the classes the user can fix by changing the request.
    pub fn is_user_error(self) -> bool {
        matches!(
            self,
            Self::InvalidInput
                | Self::NotFound
                | Self::AlreadyExists
                | Self::PermissionDenied
                | Self::Unauthenticated
                | Self::Cancelled
        )
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unsupported(_) | Self::InvalidInput(_) => ErrorClass::InvalidInput,
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::AlreadyExists(_) => ErrorClass::AlreadyExists,
            Self::PermissionDenied(_) => ErrorClass::PermissionDenied,
            Self::Overloaded(_) => ErrorClass::Overloaded,
            Self::Storage(_) | Self::Internal(_) => ErrorClass::Internal,
            Self::Catalog(e) => catalog_class(e),
            Self::DataFusion(e) => datafusion_class(e),
            Self::Delta(e) => delta_class(e),
            Self::Auth(e) => auth_class(e),
            Self::Timeout(_) => ErrorClass::Timeout,
            Self::Cancelled(_) => ErrorClass::Cancelled,
            Self::Conflict(_) => ErrorClass::Conflict,
        }
    }

    /// True when the user can fix it (bad SQL, unknown table, bad input data); false for failures
    /// of storage or of the engine itself.
    pub fn is_user_error(&self) -> bool {
        self.class().is_user_error()
    }
}

fn auth_class(error: &tributary_auth::Error) -> ErrorClass {
    use tributary_auth::Error as Auth;
    match error {
        Auth::Unauthenticated(_) => ErrorClass::Unauthenticated,
        Auth::PermissionDenied(_) => ErrorClass::PermissionDenied,
        Auth::InvalidInput(_) => ErrorClass::InvalidInput,
        Auth::NotFound(_) => ErrorClass::NotFound,
        Auth::AlreadyExists(_) => ErrorClass::AlreadyExists,
        Auth::Damaged(_) => ErrorClass::Internal,
        Auth::Storage(e) => catalog_class(e),
    }
}

fn catalog_class(error: &tributary_catalog::Error) -> ErrorClass {
    use tributary_catalog::Error as Catalog;
    match error {
        Catalog::TenantNotFound(_) | Catalog::SchemaNotFound(_) | Catalog::TableNotFound { .. } => {
            ErrorClass::NotFound
        }
        Catalog::TableExists { .. } => ErrorClass::AlreadyExists,
        Catalog::DataFusion(e) => datafusion_class(e),
        Catalog::Delta(e) => delta_class(e),
        other if other.is_user_error() => ErrorClass::InvalidInput,
        _ => ErrorClass::Internal,
    }
}

fn datafusion_class(error: &DataFusionError) -> ErrorClass {
    match error.find_root() {
        DataFusionError::Plan(message) if names_something_missing(message) => ErrorClass::NotFound,
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => ErrorClass::InvalidInput,
        DataFusionError::ResourcesExhausted(_) => ErrorClass::Overloaded,
        DataFusionError::ArrowError(arrow, _) => arrow_class(arrow),
        DataFusionError::External(inner) => {
            if let Some(engine) = inner.downcast_ref::<Error>() {
                engine.class()
            } else if let Some(catalog) = inner.downcast_ref::<tributary_catalog::Error>() {
                catalog_class(catalog)
            } else if let Some(delta) = inner.downcast_ref::<DeltaTableError>() {
                delta_class(delta)
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_class(arrow)
            } else {
                ErrorClass::Internal
            }
        }
        _ => ErrorClass::Internal,
    }
}

/// DataFusion reports an unknown table as a planning error ("table 'a.b.c' not found"), and the
/// catalog's own not-found errors reach it as planning errors with the catalog's message.
fn names_something_missing(message: &str) -> bool {
    let missing_table = message.starts_with("table '") && message.ends_with("' not found");
    let catalog_missing = ["table '", "tenant '", "schema '"]
        .iter()
        .any(|kind| message.starts_with(kind))
        && message.contains("' does not exist");
    missing_table || catalog_missing
}

fn arrow_class(error: &ArrowError) -> ErrorClass {
    match error {
        ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::ComputeError(_)
        | ArrowError::DivideByZero
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::SchemaError(_)
        | ArrowError::JsonError(_)
        | ArrowError::CsvError(_) => ErrorClass::InvalidInput,
        _ => ErrorClass::Internal,
    }
}

fn delta_class(error: &DeltaTableError) -> ErrorClass {
    match error {
        DeltaTableError::InvalidData { .. }
        | DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::PartitionError { .. }
        | DeltaTableError::InvalidPartitionFilter { .. }
        | DeltaTableError::NotATable(_)
        | DeltaTableError::InvalidTableLocation(_)
        | DeltaTableError::InvalidDateTimeString { .. }
        | DeltaTableError::MissingFeature { .. } => ErrorClass::InvalidInput,
        DeltaTableError::Arrow { source } => arrow_class(source),
        error if is_commit_conflict(error) => ErrorClass::Conflict,
        _ => ErrorClass::Internal,
    }
}

/// True when Delta refused a commit because another writer committed first (the optimistic
/// concurrency of the Delta log).
pub(crate) fn is_commit_conflict(error: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        error,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
            }
    )
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn planning_error(sql: &str) -> Error {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT)").await.unwrap();
        match ctx.sql(sql).await {
            Err(e) => e.into(),
            Ok(frame) => frame.collect().await.expect_err(sql).into(),
        }
    }

    #[tokio::test]
    async fn datafusion_errors_are_classified() {
        for (sql, class) in [
            ("SELECT * FROM nope", ErrorClass::NotFound),
            ("SELECT * FROM other.public.nope", ErrorClass::NotFound),
            ("SELECT nope FROM t", ErrorClass::InvalidInput),
            ("SELEC 1", ErrorClass::InvalidInput),
            ("SELECT no_such_function(1)", ErrorClass::InvalidInput),
            ("SELECT CAST('x' AS INT)", ErrorClass::InvalidInput),
            ("SELECT 1/0", ErrorClass::InvalidInput),
            ("CREATE TABLE t (b INT)", ErrorClass::InvalidInput),
        ] {
            let error = planning_error(sql).await;
            assert_eq!(error.class(), class, "{sql}: {error}");
        }
    }

    #[test]
    fn every_engine_variant_has_its_class() {
        let table = || tributary_catalog::Error::TableNotFound {
            tenant: "acme".into(),
            table: "t".into(),
        };
        for (error, class) in [
            (Error::Unsupported("x".into()), ErrorClass::InvalidInput),
            (Error::InvalidInput("x".into()), ErrorClass::InvalidInput),
            (Error::NotFound("x".into()), ErrorClass::NotFound),
            (Error::AlreadyExists("x".into()), ErrorClass::AlreadyExists),
            (
                Error::PermissionDenied("x".into()),
                ErrorClass::PermissionDenied,
            ),
            (Error::Overloaded("x".into()), ErrorClass::Overloaded),
            (Error::Conflict("x".into()), ErrorClass::Conflict),
            (
                Error::from(DeltaTableError::VersionAlreadyExists(3)),
                ErrorClass::Conflict,
            ),
            (Error::Storage("x".into()), ErrorClass::Internal),
            (Error::Internal("x".into()), ErrorClass::Internal),
            (Error::Catalog(table()), ErrorClass::NotFound),
            (
                Error::Catalog(tributary_catalog::Error::TenantNotFound("x".into())),
                ErrorClass::NotFound,
            ),
            (
                Error::Catalog(tributary_catalog::Error::TableExists {
                    tenant: "acme".into(),
                    table: "t".into(),
                }),
                ErrorClass::AlreadyExists,
            ),
            (
                Error::Catalog(tributary_catalog::Error::BuiltInTable("events".into())),
                ErrorClass::InvalidInput,
            ),
            // The catalog's errors reach DataFusion as planning errors with the same message.
            (
                Error::from(DataFusionError::from(table())),
                ErrorClass::NotFound,
            ),
            (
                Error::from(DataFusionError::External(Box::new(Error::Overloaded(
                    "x".into(),
                )))),
                ErrorClass::Overloaded,
            ),
            (
                Error::from(DataFusionError::Internal("x".into())),
                ErrorClass::Internal,
            ),
            (
                Error::from(DeltaTableError::Generic("x".into())),
                ErrorClass::Internal,
            ),
            (
                Error::from(ArrowError::CastError("x".into())),
                ErrorClass::InvalidInput,
            ),
        ] {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }
}
