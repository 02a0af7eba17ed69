//! `resolve_customer(id_type, id_value)`: the customer id an identifier resolves to now, or NULL
//! when it is unknown or blocked — the same lookup as a join on `identity_map`, for one value.

use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Weak};

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use tributary_udfs::columnar::{answer, rows_to_compute};

use super::upgrade;
use crate::identity::IdentityService;
use crate::identity::records::as_utf8;

static RESOLVE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_OTHER,
        "Returns the customer id an identifier resolves to now, or NULL when the identifier is \
         unknown or blocked. The same lookup as a join on identity_map.",
        "resolve_customer(id_type, id_value)",
    )
    .with_sql_example(
        "SELECT coalesce(resolve_customer('user_id', user_id), \
         resolve_customer('anonymous_id', anonymous_id)) AS customer_id, count(*) \
         FROM events GROUP BY 1",
    )
    .with_argument(
        "id_type",
        "identifier type: user_id, anonymous_id, phone, email...",
    )
    .with_argument("id_value", "identifier value")
    .build()
});

/// `resolve_customer(id_type, id_value)`.
#[derive(Debug)]
pub struct ResolveCustomer {
    service: Weak<IdentityService>,
    signature: Signature,
}

impl ResolveCustomer {
    /// The function over `service`'s graphs.
    pub fn new(service: Weak<IdentityService>) -> Self {
        Self {
            service,
            signature: Signature::string(2, Volatility::Stable),
        }
    }
}

impl PartialEq for ResolveCustomer {
    fn eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.service, &other.service)
    }
}

impl Eq for ResolveCustomer {}

impl Hash for ResolveCustomer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "resolve_customer".hash(state);
    }
}

fn utf8(value: &ColumnarValue, rows: usize) -> DfResult<StringArray> {
    Ok(as_utf8(&value.to_array(rows)?)?)
}

impl ScalarUDFImpl for ResolveCustomer {
    fn name(&self) -> &str {
        "resolve_customer"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let identity = upgrade(&self.service)?.tenant(&args.config_options.catalog.default_catalog);
        let (rows, constant) = rows_to_compute(&args);
        let types = utf8(&args.args[0], rows)?;
        let values = utf8(&args.args[1], rows)?;
        let resolved: StringArray = identity.read(|graph| {
            (0..rows)
                .map(|row| {
                    if types.is_null(row) || values.is_null(row) {
                        return None;
                    }
                    graph
                        .customer_of(types.value(row), values.value(row))
                        .map(|c| c.to_string())
                })
                .collect()
        });
        answer(resolved, constant)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&RESOLVE_DOC)
    }
}
