//! A function's documentation held by reference, so that one struct can implement several SQL
//! functions (named variants with their own documentation) and still derive the `PartialEq`,
//! `Eq` and `Hash` DataFusion asks of a function: two references are equal when they point at
//! the same documentation.

use std::sync::LazyLock;

use datafusion::logical_expr::Documentation;

/// A reference to a function's documentation, compared by address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocRef(pub(crate) &'static LazyLock<Documentation>);

impl DocRef {
    /// The documentation.
    pub(crate) fn get(self) -> &'static Documentation {
        self.0
    }
}

impl PartialEq for DocRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for DocRef {}

impl std::hash::Hash for DocRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}
