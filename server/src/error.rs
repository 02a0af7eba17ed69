//! The server crate's errors: [`Error`] for the command line, and the one place engine errors
//! become gRPC statuses ([`status_of`]): the user's mistakes (bad SQL, unknown tables, bad input)
//! are `InvalidArgument` with the engine's message; everything else is `Internal`.

use tonic::Status;

/// What a `tributary` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data root could not be opened.
    #[error(transparent)]
    Catalog(#[from] tributary_catalog::Error),

    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] tributary_engine::Error),

    /// The server answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Server(Box<Status>),

    /// The server could not be reached.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why it failed.
        reason: String,
    },

    /// The gRPC transport failed while serving.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),

    /// Arrow failed (decoding, formatting).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A file's contents are not valid for the import (with the line or row at fault).
    #[error("{0}")]
    BadInput(String),

    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// The data generator failed.
    #[error(transparent)]
    Generate(#[from] tributary_datagen::Error),
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Self::Server(Box::new(status))
    }
}

impl From<arrow_flight::error::FlightError> for Error {
    fn from(error: arrow_flight::error::FlightError) -> Self {
        match error {
            arrow_flight::error::FlightError::Tonic(status) => Self::Server(status),
            arrow_flight::error::FlightError::Arrow(e) => Self::Arrow(e),
            other => Self::BadInput(other.to_string()),
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "error",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::Unavailable => "server unavailable",
        tonic::Code::Internal => "internal error",
        _ => "server error",
    }
}

/// The command line's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an engine error to the status a Flight SQL client receives.
pub(crate) fn status_of(error: tributary_engine::Error) -> Status {
    if matches!(error, tributary_engine::Error::Overloaded(_)) {
        Status::unavailable(error.to_string())
    } else if error.is_user_error() {
        Status::invalid_argument(error.to_string())
    } else {
        tracing::error!(%error, "internal error");
        Status::internal(error.to_string())
    }
}

/// Maps a DataFusion error met while streaming results.
pub(crate) fn status_of_datafusion(error: datafusion::error::DataFusionError) -> Status {
    status_of(error.into())
}
