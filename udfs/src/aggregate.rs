//! How a Tributary aggregate is declared. A function says what it is ([`AggregateDefinition`]:
//! name, documentation, return type, state fields, its grouped state, planning-time checks);
//! [`Aggregate`] turns that into DataFusion's `AggregateUDFImpl` once for all of them, with the
//! grouped fast path always on (see [`crate::grouped`]).

use std::fmt::Debug;
use std::hash::Hash;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Expr, GroupsAccumulator, Signature,
    Volatility,
};

use crate::grouped::{GroupState, accumulator, groups_accumulator};

/// What one aggregate function is.
pub(crate) trait AggregateDefinition:
    Clone + Debug + PartialEq + Eq + Hash + Send + Sync + 'static
{
    /// The grouped state its accumulators keep.
    type State: GroupState;

    /// SQL name (snake_case).
    fn name(&self) -> &'static str;

    /// ClickHouse's camelCase name as it arrives unquoted (folded to lowercase), if it has one.
    fn alias(&self) -> Option<&'static str>;

    /// User documentation.
    fn documentation(&self) -> &'static Documentation;

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

/// DataFusion's aggregate over a definition.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Aggregate<D> {
    definition: D,
    signature: Signature,
    aliases: Vec<String>,
}

impl<D: AggregateDefinition> Aggregate<D> {
    /// The SQL function for `definition`.
    pub(crate) fn udf(definition: D) -> AggregateUDF {
        let aliases = definition.alias().into_iter().map(String::from).collect();
        AggregateUDF::new_from_impl(Self {
            definition,
            signature: Signature::variadic_any(Volatility::Immutable),
            aliases,
        })
    }
}

impl<D: AggregateDefinition> AggregateUDFImpl for Aggregate<D> {
    fn name(&self) -> &str {
        self.definition.name()
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
        Some(self.definition.documentation())
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
