//! The SQL face of identity resolution, for the tenant of the session that calls it:
//! - table `identity_map` (id_type, id_value, customer_id, updated_at), read from the live graph;
//! - `resolve_customer(id_type, id_value)`: the customer id, or NULL when unknown or blocked;
//! - `customer_identities(id_type, id_value)` or `customer_identities(customer_id)`;
//! - `explain_merge(type1, value1, type2, value2)`: the chain of pairs that joined two ids;
//! - `explain_identity(customer_id)` (or `(id_type, id_value)`): every pair of the customer's
//!   identifiers, merged, refused (with the reason) or unbound;
//! - `customer_journey(id_type, id_value [, limit])`: the events of all the customer's ids,
//!   latest first.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use tributary_catalog::builtin::timestamp_type;
use tributary_identity::{CustomerId, EdgeView, IdentityGraph};

use super::{IdentityService, TenantIdentity};

/// Name of the live identity map table.
pub const IDENTITY_MAP: &str = "identity_map";

/// `identity_map`'s columns.
pub fn identity_map_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("updated_at", timestamp_type(), false),
    ]))
}

/// Every identifier of the graph with its customer (blocked identifiers have none).
pub fn identity_map_batch(graph: &IdentityGraph) -> datafusion::error::Result<RecordBatch> {
    let mut id_type = StringBuilder::new();
    let mut id_value = StringBuilder::new();
    let mut customer_id = StringBuilder::new();
    let mut updated_at = TimestampMicrosecondBuilder::new();
    for (customer, members, updated) in graph.customers() {
        let customer = customer.to_string();
        for (kind, value) in members {
            id_type.append_value(kind);
            id_value.append_value(value);
            customer_id.append_value(&customer);
            updated_at.append_value(updated);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id_type.finish()),
        Arc::new(id_value.finish()),
        Arc::new(customer_id.finish()),
        Arc::new(updated_at.finish().with_timezone("UTC")),
    ];
    Ok(RecordBatch::try_new(identity_map_schema(), columns)?)
}

/// `identity_map` of one tenant.
#[derive(Debug)]
pub struct IdentityMapTable {
    identity: Arc<TenantIdentity>,
}

impl IdentityMapTable {
    /// The table over a tenant's live graph.
    pub fn new(identity: Arc<TenantIdentity>) -> Self {
        Self { identity }
    }
}

#[async_trait]
impl TableProvider for IdentityMapTable {
    fn schema(&self) -> SchemaRef {
        identity_map_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self
            .identity
            .map_batch()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            identity_map_schema(),
            projection.cloned(),
        )?)
    }
}

fn tenant_of(options: &datafusion::config::ConfigOptions) -> &str {
    &options.catalog.default_catalog
}

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
    service: Arc<IdentityService>,
    signature: Signature,
}

impl ResolveCustomer {
    /// The function over `service`'s graphs.
    pub fn new(service: Arc<IdentityService>) -> Self {
        Self {
            service,
            signature: Signature::string(2, Volatility::Stable),
        }
    }
}

impl PartialEq for ResolveCustomer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.service, &other.service)
    }
}

impl Eq for ResolveCustomer {}

impl Hash for ResolveCustomer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "resolve_customer".hash(state);
    }
}

fn utf8(value: &ColumnarValue, rows: usize) -> DfResult<StringArray> {
    Ok(super::records::as_utf8(&value.to_array(rows)?)?)
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
        let identity = self.service.tenant(tenant_of(&args.config_options));
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
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
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &resolved, 0,
            )?));
        }
        Ok(ColumnarValue::Array(Arc::new(resolved)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&RESOLVE_DOC)
    }
}

/// The text literals a table function was called with.
pub(super) fn text_args(name: &str, usage: &str, exprs: &[Expr]) -> DfResult<Vec<String>> {
    exprs
        .iter()
        .map(|expr| match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Ok(s.clone()),
            other => plan_err!("{name} takes text literals: {usage}; got {other}"),
        })
        .collect()
}

/// The customer a table function's arguments name: `(customer_id)` or `(id_type, id_value)`.
fn customer_arg(
    name: &str,
    identity: &TenantIdentity,
    args: &[String],
) -> DfResult<Option<CustomerId>> {
    match args {
        [customer] => customer
            .parse::<CustomerId>()
            .map(Some)
            .map_err(|e| DataFusionError::Plan(format!("{name}: {e}"))),
        [id_type, value] => Ok(identity.read(|g| g.customer_of(id_type, value))),
        _ => plan_err!("{name} takes (customer_id) or (id_type, id_value)"),
    }
}

fn table(schema: SchemaRef, columns: Vec<ArrayRef>) -> DfResult<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One of the identity table functions.
#[derive(Debug)]
pub struct IdentityTableFunction {
    service: Arc<IdentityService>,
    kind: TableFunctionKind,
}

/// Which identity table function.
#[derive(Debug, Clone, Copy)]
pub enum TableFunctionKind {
    /// `customer_identities`.
    CustomerIdentities,
    /// `explain_merge`.
    ExplainMerge,
    /// `explain_identity`.
    ExplainIdentity,
    /// `customer_journey`.
    CustomerJourney,
    /// `customer_profile`.
    CustomerProfile,
}

impl TableFunctionKind {
    /// Every table function, with its SQL name.
    pub const ALL: [(&'static str, Self); 5] = [
        ("customer_identities", Self::CustomerIdentities),
        ("explain_merge", Self::ExplainMerge),
        ("explain_identity", Self::ExplainIdentity),
        ("customer_journey", Self::CustomerJourney),
        ("customer_profile", Self::CustomerProfile),
    ];
}

impl IdentityTableFunction {
    /// The function `kind` over `service`'s graphs.
    pub fn new(service: Arc<IdentityService>, kind: TableFunctionKind) -> Self {
        Self { service, kind }
    }
}

fn edges_schema(with_step: bool) -> SchemaRef {
    let mut fields = Vec::new();
    if with_step {
        fields.push(Field::new("step", DataType::Int64, false));
    }
    for name in ["id_type", "id_value", "linked_type", "linked_value"] {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    fields.push(Field::new("observed_at", timestamp_type(), false));
    fields.push(Field::new("source", DataType::Utf8, false));
    if !with_step {
        fields.push(Field::new("status", DataType::Utf8, false));
        fields.push(Field::new("reason", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

fn edges_table(edges: &[EdgeView], with_step: bool) -> DfResult<Arc<dyn TableProvider>> {
    let mut step = Int64Builder::new();
    let mut text: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let mut observed = TimestampMicrosecondBuilder::new();
    let mut status = StringBuilder::new();
    let mut reason = StringBuilder::new();
    for (i, edge) in edges.iter().enumerate() {
        step.append_value(i as i64 + 1);
        text[0].append_value(&edge.from.id_type);
        text[1].append_value(&edge.from.value);
        text[2].append_value(&edge.to.id_type);
        text[3].append_value(&edge.to.value);
        text[4].append_value(&edge.source);
        observed.append_value(edge.observed_at);
        let (state, why) = match (&edge.refusal, edge.bound) {
            (_, false) => ("unbound", None),
            (Some(refusal), true) => ("refused", Some(refusal.to_string())),
            (None, true) => ("merged", None),
        };
        status.append_value(state);
        reason.append_option(why);
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    if with_step {
        columns.push(Arc::new(step.finish()));
    }
    let mut text: Vec<ArrayRef> = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let source = text.pop().expect("five text columns");
    columns.extend(text);
    columns.push(Arc::new(observed.finish().with_timezone("UTC")));
    columns.push(source);
    if !with_step {
        columns.push(Arc::new(status.finish()));
        columns.push(Arc::new(reason.finish()));
    }
    table(edges_schema(with_step), columns)
}

impl TableFunctionImpl for IdentityTableFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let tenant = tenant_of(args.session().config_options()).to_string();
        let identity = self.service.tenant(&tenant);
        match self.kind {
            TableFunctionKind::CustomerIdentities => {
                let usage = "customer_identities(customer_id) or (id_type, id_value)";
                let texts = text_args("customer_identities", usage, args.exprs())?;
                let customer = customer_arg("customer_identities", &identity, &texts)?;
                let ids =
                    customer.map_or_else(Vec::new, |c| identity.read(|g| g.identifiers_of(c)));
                let customer = customer.map(|c| c.to_string()).unwrap_or_default();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("customer_id", DataType::Utf8, false),
                    Field::new("id_type", DataType::Utf8, false),
                    Field::new("id_value", DataType::Utf8, false),
                ]));
                table(
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
            TableFunctionKind::ExplainMerge => {
                let usage = "explain_merge(id_type1, id_value1, id_type2, id_value2)";
                let texts = text_args("explain_merge", usage, args.exprs())?;
                let [t1, v1, t2, v2] = texts.as_slice() else {
                    return plan_err!("explain_merge takes four arguments: {usage}");
                };
                let chain = identity
                    .read(|g| g.explain_merge((t1, v1), (t2, v2)))
                    .unwrap_or_default();
                edges_table(&chain, true)
            }
            TableFunctionKind::ExplainIdentity => {
                let usage = "explain_identity(customer_id) or (id_type, id_value)";
                let texts = text_args("explain_identity", usage, args.exprs())?;
                let customer = customer_arg("explain_identity", &identity, &texts)?;
                let edges =
                    customer.map_or_else(Vec::new, |c| identity.read(|g| g.explain_customer(c)));
                edges_table(&edges, false)
            }
            TableFunctionKind::CustomerJourney => {
                super::profiles::journey_table(&self.service, &tenant, args.exprs())
            }
            TableFunctionKind::CustomerProfile => {
                super::profiles::profile_table(&self.service, &tenant, args.exprs())
            }
        }
    }
}
