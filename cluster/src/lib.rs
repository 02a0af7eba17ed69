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

use std::sync::Arc;

use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;

pub use error::{Error, Result};

/// The largest encoded plan sent to the cluster. Plans carry in-memory rows (the write buffer's,
/// `identity_map`): a larger one runs on the front door rather than load every task with it.
pub const MAX_PLAN_BYTES: usize = 64 * 1024 * 1024;

/// The gRPC message limit of every node and of the front door's client: a plan of
/// [`MAX_PLAN_BYTES`] with room for its task descriptions (Ballista's default is 16 MiB).
pub const GRPC_MESSAGE_BYTES: usize = 2 * MAX_PLAN_BYTES;

/// A data root's object store and the URL plans name it by (`s3://bucket`): nodes that decode
/// or run plans reading an object store need it; local directories need none (`file://` is
/// known everywhere).
pub type DataStore = (url::Url, Arc<dyn ObjectStore>);

/// The session state of a cluster node: Ballista's defaults plus every Tributary function that
/// needs nothing of the front door (JSON, behaviour, attribution, model functions), and the data
/// root's store when it is not a local directory.
pub fn node_session_state(
    config: SessionConfig,
    store: Option<&DataStore>,
) -> datafusion::error::Result<SessionState> {
    let mut state = ballista_core::utils::default_session_builder(config)?;
    tributary_engine::session::register_functions(&mut state)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    if let Some((url, store)) = store {
        state
            .runtime_env()
            .register_object_store(url, Arc::clone(store));
    }
    Ok(state)
}
