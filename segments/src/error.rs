//! The one error of this crate: what is wrong with a definition, and where (a JSON path).

/// A definition that cannot be compiled: the JSON path of the problem (`$` is the root) and
/// what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment definition: {path}: {message}")]
pub struct Error {
    /// Where: `$`, `$.all[1]`, `$.all[1].value`…
    pub path: String,
    /// What.
    pub message: String,
}

impl Error {
    pub(crate) fn at(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;
