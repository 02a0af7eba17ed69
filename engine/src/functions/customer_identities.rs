//! `customer_identities(customer_id)` or `customer_identities(id_type, id_value)`: every
//! identifier of the customer, from the live graph (no rows when the identifier is unknown).

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::args::customer_arg;
use super::edges::memory_table;
use super::{Call, TableFunction};

/// `customer_identities`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "customer_identities",
    call: customer_identities,
};

fn customer_identities(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let (identity, customer) = customer_arg(call)?;
    let ids = customer.map_or_else(Vec::new, |c| identity.read(|g| g.identifiers_of(c)));
    let customer = customer.map(|c| c.to_string()).unwrap_or_default();
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
    ]));
    memory_table(
        schema,
        vec![
            Arc::new(StringArray::from(vec![customer.as_str(); ids.len()])),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| &i.id_type),
            )),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| &i.value))),
        ],
    )
}
