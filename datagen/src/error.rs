//! The data generator's one error type.

/// What can fail while generating data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing an output file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Encoding Parquet failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow arrays failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A configuration value is out of range.
    #[error("{0}")]
    InvalidConfig(String),
}

/// The data generator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
