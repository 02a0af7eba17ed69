//! The engine's one error type, and the line between the user's mistakes and the system's
//! failures that the network faces turn into status codes.

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

    /// The write path cannot take more now (its buffer is full): retry later.
    #[error("{0}")]
    Overloaded(String),

    /// The write-ahead log or another local store failed.
    #[error("{0}")]
    Storage(String),

    /// DataFusion planning or execution failed.
    #[error(transparent)]
    DataFusion(Box<DataFusionError>),

    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] tributary_catalog::Error),

    /// Delta Lake refused or failed a write.
    #[error(transparent)]
    Delta(Box<DeltaTableError>),
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

impl Error {
    /// True when the user can fix it (bad SQL, unknown table, bad input data); false for failures
    /// of storage or of the engine itself.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Unsupported(_) | Self::InvalidInput(_) => true,
            Self::Overloaded(_) | Self::Storage(_) => false,
            Self::Catalog(e) => e.is_user_error(),
            Self::DataFusion(e) => datafusion_is_user_error(e),
            Self::Delta(e) => delta_is_user_error(e),
        }
    }
}

fn datafusion_is_user_error(error: &DataFusionError) -> bool {
    match error.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => true,
        DataFusionError::ArrowError(arrow, _) => arrow_is_user_error(arrow),
        DataFusionError::External(inner) => {
            if let Some(catalog) = inner.downcast_ref::<tributary_catalog::Error>() {
                catalog.is_user_error()
            } else if let Some(delta) = inner.downcast_ref::<DeltaTableError>() {
                delta_is_user_error(delta)
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_is_user_error(arrow)
            } else {
                false
            }
        }
        _ => false,
    }
}

fn arrow_is_user_error(error: &ArrowError) -> bool {
    matches!(
        error,
        ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::InvalidArgumentError(_)
            | ArrowError::ComputeError(_)
            | ArrowError::DivideByZero
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::SchemaError(_)
            | ArrowError::JsonError(_)
            | ArrowError::CsvError(_)
    )
}

fn delta_is_user_error(error: &DeltaTableError) -> bool {
    match error {
        DeltaTableError::InvalidData { .. }
        | DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::PartitionError { .. }
        | DeltaTableError::InvalidPartitionFilter { .. }
        | DeltaTableError::NotATable(_)
        | DeltaTableError::InvalidTableLocation(_)
        | DeltaTableError::InvalidDateTimeString { .. }
        | DeltaTableError::MissingFeature { .. } => true,
        DeltaTableError::Arrow { source } => arrow_is_user_error(source),
        _ => false,
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
