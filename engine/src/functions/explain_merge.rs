//! `explain_merge(id_type1, id_value1, id_type2, id_value2)`: the chain of identifier pairs that
//! joined two identifiers into one customer, step by step (no rows when they are apart).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;

use super::args::text_args;
use super::edges::{EdgeListing, edges_table};
use super::{Call, TableFunction};

/// `explain_merge`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "explain_merge",
    call: explain_merge,
};

fn explain_merge(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "explain_merge(id_type1, id_value1, id_type2, id_value2)";
    let texts = text_args(call.name, usage, call.args)?;
    let [t1, v1, t2, v2] = texts.as_slice() else {
        return plan_err!("{} takes four arguments: {usage}", call.name);
    };
    let chain = call
        .identity
        .tenant(call.tenant)
        .read(|g| g.explain_merge((t1, v1), (t2, v2)))
        .unwrap_or_default();
    edges_table(&chain, EdgeListing::Steps)
}
