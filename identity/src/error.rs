//! Errors of identity resolution.

/// An identity resolution error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `identity.json` could not be used.
    #[error("invalid identity rules: {reason}")]
    InvalidRules {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An edge record's action is neither `bind` nor `unbind`.
    #[error("invalid identity action '{0}': expected 'bind' or 'unbind'")]
    InvalidAction(String),
    /// A customer id that is not one this crate makes.
    #[error("invalid customer id '{0}': expected 'c' followed by 24 hexadecimal digits")]
    InvalidCustomerId(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
