//! Tributary on an Apache DataFusion Ballista cluster.
//!
//! Tributary does not grow a distributed engine of its own: its binary embeds Ballista's
//! scheduler and executor processes ([`node`]), every node builds its sessions through
//! [`node_session_state`] so that Tributary's functions are known everywhere, and the Flight SQL
//! front door sends the physical plans of read queries to the scheduler ([`client`]).
//!
//! What travels is a plain DataFusion plan: tables are read by the catalog's own Parquet scan
//! (`tributary_catalog::scan`), buffered rows as an in-memory source, functions by name. A plan
//! that names anything the nodes do not know (a function bound to the front door's identity
//! service) does not travel and runs on the front door.

pub mod client;
mod error;
pub mod node;

use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;

pub use error::{Error, Result};

/// The session state of a cluster node: Ballista's defaults plus every Tributary function that
/// needs nothing of the front door (JSON, behaviour, attribution, model functions).
pub fn node_session_state(config: SessionConfig) -> datafusion::error::Result<SessionState> {
    let mut state = ballista_core::utils::default_session_builder(config)?;
    tributary_engine::session::register_functions(&mut state)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(state)
}
