//! The one place a DataFusion session is built. Every query path (Flight SQL, the SQL logic
//! tests, and later a Ballista executor) goes through [`build_session_state`], so they all see
//! the same functions, configuration and tenants.

use std::sync::{Arc, Weak};

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionConfig;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use tributary_catalog::{Catalog, DEFAULT_TENANT, PUBLIC_SCHEMA};

use crate::identity::IdentityService;
use crate::write::buffer::WriteBuffer;
use crate::write::overlay::BufferedCatalogList;

use crate::error::Result;

/// Session settings that are not DataFusion's defaults, and why.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        // BI tools and SHOW TABLES read the catalog through information_schema.
        .with_information_schema(true)
        // Tenants are created by the catalog; DataFusion must not add an in-memory one.
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(DEFAULT_TENANT, PUBLIC_SCHEMA)
}

/// Builds a session state over `catalog` (with the rows of `buffer` visible) and every
/// Tributary function registered; with `identity`, its tables and functions too (held weakly:
/// the service keeps this state as its own template).
pub fn build_session_state(
    catalog: Arc<Catalog>,
    buffer: Arc<WriteBuffer>,
    identity: Option<Weak<IdentityService>>,
) -> Result<SessionState> {
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    let virtual_tables = identity
        .as_ref()
        .map(|i| Weak::clone(i) as Weak<dyn crate::write::overlay::VirtualTables>);
    let builder = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime)
        .with_catalog_list(Arc::new(BufferedCatalogList::new(
            catalog,
            buffer,
            virtual_tables,
        )))
        .with_default_features()
        // Delta's DELETE/UPDATE/MERGE plan custom nodes that only its planner lowers.
        .with_query_planner(DeltaPlanner::new());
    let mut state = builder.build();
    register_functions(&mut state)?;
    if let Some(identity) = identity {
        crate::functions::register_all(&mut state, identity)?;
    }
    Ok(state)
}

/// Registers the JSON functions (for `properties` and `context`) and Tributary's own.
pub fn register_functions(registry: &mut dyn FunctionRegistry) -> Result<()> {
    tributary_udfs::register_all(registry)?;
    Ok(())
}
