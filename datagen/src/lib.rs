//! Deterministic synthetic customer data for `tributary generate`, Tributary's tests, demos and
//! benchmarks: a product feature of its own, so the server does not depend on the benchmarks.
//!
//! [`generate`] writes `events.parquet`, `identities.parquet` and `orders.parquet` with the
//! columns of the built-in tables, loadable with `tributary import`. The same seed always gives
//! the same bytes of data, so tests can compare engines on it. With a history length, each
//! customer also gets years of purchases ([`purchase_history`]) for the value models.

mod error;
pub mod generator;
pub mod purchase_history;
pub mod traits;

pub use error::{Error, Result};
pub use generator::{GenerateConfig, GenerateSummary, generate};
