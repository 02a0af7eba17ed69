//! `explain_identity(customer_id)` or `explain_identity(id_type, id_value)`: every pair of the
//! customer's identifiers, merged, refused (with the rule that refused it) or unbound.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::args::customer_arg;
use super::edges::{EdgeListing, edges_table};
use super::{Call, TableFunction};

/// `explain_identity`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "explain_identity",
    call: explain_identity,
};

fn explain_identity(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let (identity, customer) = customer_arg(call)?;
    let edges = customer.map_or_else(Vec::new, |c| identity.read(|g| g.explain_customer(c)));
    edges_table(&edges, EdgeListing::WithStatus)
}
