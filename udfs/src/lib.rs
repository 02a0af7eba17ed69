//! Tributary's SQL functions for customer data: pure DataFusion functions with no I/O, one
//! function per module, so that any session (and any Ballista executor) can register them.
//!
//! [`register_all`] adds every function to a session. The behaviour-analytics, identity and
//! value-model families (funnels, retention, sequences, RFM, CLV) are added here as they land.

use datafusion::error::Result;
use datafusion::execution::registry::FunctionRegistry;

/// Registers every Tributary function with `registry`.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    let _ = registry;
    Ok(())
}
