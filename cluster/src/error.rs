//! The cluster crate's one error type.

/// What can go wrong starting a node or reaching the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address or URL the user gave cannot be used.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidAddress {
        /// Which setting.
        what: &'static str,
        /// What the user gave.
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// Ballista failed (start-up, submission, a failed job).
    #[error("cluster: {0}")]
    Ballista(String),

    /// DataFusion failed (building a session, encoding a plan).
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl From<ballista_core::error::BallistaError> for Error {
    fn from(error: ballista_core::error::BallistaError) -> Self {
        Self::Ballista(error.to_string())
    }
}

/// The cluster crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
