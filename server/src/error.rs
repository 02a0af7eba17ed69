//! The server crate's errors: [`Error`] for the command line, and the one place engine errors
//! become what a client receives: gRPC statuses ([`status_of`]) and HTTP statuses
//! ([`http_status_of`]), both from the engine's [`ErrorClass`] with the engine's message.

use axum::http::StatusCode;
use tonic::{Code, Status};
use tributary_engine::ErrorClass;

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

    /// A cluster node failed to start, or the cluster cannot be used.
    #[error(transparent)]
    Cluster(#[from] tributary_cluster::Error),
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

/// The gRPC code of each class of engine error.
pub(crate) fn grpc_code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::InvalidInput => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::Timeout => Code::DeadlineExceeded,
        ErrorClass::Cancelled => Code::Cancelled,
        ErrorClass::Overloaded => Code::Unavailable,
        ErrorClass::Conflict => Code::Aborted,
        ErrorClass::Internal => Code::Internal,
    }
}

/// The HTTP status of each class of engine error.
pub(crate) fn http_status(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::AlreadyExists => StatusCode::CONFLICT,
        ErrorClass::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // 499 "client closed request": the caller cancelled it.
        ErrorClass::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorClass::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn log_if_internal(class: ErrorClass, error: &tributary_engine::Error) {
    if class == ErrorClass::Internal {
        tracing::error!(%error, "internal error");
    }
}

/// Maps an engine error to the status a Flight SQL client receives.
pub(crate) fn status_of(error: tributary_engine::Error) -> Status {
    let class = error.class();
    log_if_internal(class, &error);
    Status::new(grpc_code(class), error.to_string())
}

/// Maps an engine error to the HTTP status and message an HTTP client receives.
pub(crate) fn http_status_of(error: tributary_engine::Error) -> (StatusCode, String) {
    let class = error.class();
    log_if_internal(class, &error);
    (http_status(class), error.to_string())
}

/// Maps a DataFusion error met while streaming results.
pub(crate) fn status_of_datafusion(error: datafusion::error::DataFusionError) -> Status {
    status_of(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_CLASS: [ErrorClass; 10] = [
        ErrorClass::InvalidInput,
        ErrorClass::NotFound,
        ErrorClass::AlreadyExists,
        ErrorClass::PermissionDenied,
        ErrorClass::Unauthenticated,
        ErrorClass::Timeout,
        ErrorClass::Cancelled,
        ErrorClass::Overloaded,
        ErrorClass::Conflict,
        ErrorClass::Internal,
    ];

    #[test]
    fn each_class_has_its_own_code_on_both_faces() {
        let codes: std::collections::HashSet<_> =
            EVERY_CLASS.iter().map(|c| grpc_code(*c)).collect();
        let statuses: std::collections::HashSet<_> =
            EVERY_CLASS.iter().map(|c| http_status(*c)).collect();
        assert_eq!(codes.len(), EVERY_CLASS.len());
        // HTTP has one "conflict with the current state": 409 for both AlreadyExists and
        // Conflict (gRPC tells them apart: ALREADY_EXISTS, ABORTED).
        assert_eq!(statuses.len(), EVERY_CLASS.len() - 1);
        assert_eq!(
            http_status(ErrorClass::Conflict),
            http_status(ErrorClass::AlreadyExists)
        );
        for class in EVERY_CLASS {
            // The user's mistakes are 4xx; the server's failures are 5xx; a write that lost a
            // race with another writer is 409, to be sent again.
            assert_eq!(
                class.is_user_error() || class == ErrorClass::Conflict,
                http_status(class).is_client_error(),
                "{class:?}"
            );
        }
    }

    #[test]
    fn a_missing_table_is_not_found() {
        let missing = tributary_engine::Error::Catalog(tributary_catalog::Error::TableNotFound {
            tenant: "acme".into(),
            table: "nope".into(),
        });
        let status = status_of(missing);
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("nope"), "{}", status.message());
    }
}
