//! The errors of authentication and authorisation. Each variant is one answer a client can get:
//! the server maps them to `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`… in one place.

/// What can go wrong when logging in, checking a right or changing users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credential, a wrong one, or an expired or revoked token.
    #[error("{0}")]
    Unauthenticated(String),

    /// A known user asked for something their roles do not allow.
    #[error("{0}")]
    PermissionDenied(String),

    /// A user name, role, password or tenant that is not valid.
    #[error("{0}")]
    InvalidInput(String),

    /// A user that does not exist.
    #[error("{0}")]
    NotFound(String),

    /// A user that exists already.
    #[error("{0}")]
    AlreadyExists(String),

    /// The users file is not what Tributary wrote.
    #[error("{0}")]
    Damaged(String),

    /// The users file could not be read or written.
    #[error(transparent)]
    Storage(#[from] tributary_catalog::Error),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
