//! How a Tributary aggregate is declared. A function says what it is ([`AggregateDefinition`]:
//! name, documentation, return type, state fields, its grouped state, planning-time checks);
//! [`Aggregate`] turns that into DataFusion's `AggregateUDFImpl` once for all of them, with the
//! grouped fast path always on (see [`crate::grouped`]).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::LazyLock;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Expr, GroupsAccumulator, Signature,
    Volatility, aggregate_doc_sections::DOC_SECTION_GENERAL,
};

use crate::doc_ref::DocRef;
use crate::grouped::{GroupState, accumulator, groups_accumulator};

/// How every event aggregate documents its time argument.
pub(crate) const TIMESTAMP_ARGUMENT: &str = "TIMESTAMP, DATE or integer time of the event";

/// The documentation of an aggregate: what it returns, its syntax, an example and each
/// argument. Families whose members share arguments (funnels, sequences) pass them once.
pub(crate) fn documentation(
    description: &str,
    syntax: &str,
    example: &str,
    arguments: &[(&str, &str)],
) -> Documentation {
    let builder = Documentation::builder(DOC_SECTION_GENERAL, description, syntax);
    arguments
        .iter()
        .fold(
            builder.with_sql_example(example),
            |builder, (name, text)| builder.with_argument(*name, *text),
        )
        .build()
}

/// What one aggregate function is.
pub(crate) trait AggregateDefinition:
    Clone + Debug + PartialEq + Eq + Hash + Send + Sync + 'static
{
    /// The grouped state its accumulators keep.
    type State: GroupState;

    /// The answer's type for these argument types; refuses arguments that do not fit.
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType>;

    /// The partial state's fields, named after the aggregate expression `name`.
    fn state_fields(&self, name: &str) -> Vec<FieldRef>;

    /// A new, empty state for these arguments.
    fn new_state(&self, args: &AccumulatorArgs) -> Result<Self::State>;

    /// Checks constant arguments (modes, patterns) while the query is planned, so a bad one
    /// fails the statement before any result is fetched.
    fn check_constants(&self, _args: &[Expr]) -> Result<()> {
        Ok(())
    }

    /// The answer over no rows when it is never NULL (as `count` answers 0); `None` if the
    /// answer may be NULL.
    fn answer_without_rows(&self) -> Option<ScalarValue> {
        None
    }
}

/// A SQL function's name, ClickHouse's camelCase name as it arrives unquoted (folded to
/// lowercase) if it has one, and its user documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naming {
    pub(crate) name: &'static str,
    pub(crate) alias: Option<&'static str>,
    pub(crate) documentation: &'static LazyLock<Documentation>,
}

impl Naming {
    pub(crate) fn new(
        name: &'static str,
        alias: Option<&'static str>,
        documentation: &'static LazyLock<Documentation>,
    ) -> Self {
        Self {
            name,
            alias,
            documentation,
        }
    }
}

/// DataFusion's aggregate over a definition.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Aggregate<D> {
    name: &'static str,
    aliases: Vec<String>,
    documentation: DocRef,
    signature: Signature,
    definition: D,
}

impl<D: AggregateDefinition> Aggregate<D> {
    /// The SQL function `naming` for `definition`.
    pub(crate) fn udf(naming: Naming, definition: D) -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            name: naming.name,
            aliases: naming.alias.into_iter().map(String::from).collect(),
            documentation: DocRef(naming.documentation),
            signature: Signature::variadic_any(Volatility::Immutable),
            definition,
        })
    }
}

impl<D: AggregateDefinition> AggregateUDFImpl for Aggregate<D> {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.definition.return_type(arg_types)
    }

    fn is_nullable(&self) -> bool {
        self.definition.answer_without_rows().is_none()
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match self.definition.answer_without_rows() {
            Some(answer) => Ok(answer),
            None => ScalarValue::try_from(data_type),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(self.definition.state_fields(args.name))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(accumulator(self.definition.new_state(&args)?))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(groups_accumulator(self.definition.new_state(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }

    /// Runs the definition's planning-time checks; the expression itself is left unchanged.
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let definition = self.definition.clone();
        Some(Box::new(move |function, _context| {
            definition.check_constants(&function.params.args)?;
            Ok(Expr::AggregateFunction(function))
        }))
    }
}
