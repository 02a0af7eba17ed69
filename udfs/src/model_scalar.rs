//! The scalar functions over a fitted model (`bg_nbd_p_alive`, `bg_nbd_expected_purchases`,
//! `gamma_gamma_expected_value`): the parameters struct a `*_fit` aggregate answered, then a
//! customer's numbers, to one Float64. Each function is a [`ModelFunction`] in its own file; this
//! is the one `ScalarUDFImpl` they share. The parameters may be a constant or a column (a CTE of
//! the fit joined to the customers); a NULL anywhere gives NULL.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;

use crate::columnar::{answer, rows_to_compute};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The documentation of a model function: syntax and arguments from the one table below.
pub(crate) fn model_documentation(
    name: &str,
    fit: &str,
    description: &str,
    example: &str,
    arguments: &[&str],
) -> Documentation {
    let syntax = format!("{name}(params, {})", arguments.join(", "));
    let params = format!("the parameters struct {fit} returns");
    let builder = Documentation::builder(DOC_SECTION_OTHER, description, syntax)
        .with_sql_example(example)
        .with_argument("params", params);
    arguments
        .iter()
        .fold(builder, |builder, name| {
            builder.with_argument(*name, argument_description(name))
        })
        .build()
}

/// What each argument of the model functions is, said once.
fn argument_description(name: &str) -> &'static str {
    match name {
        "frequency" => "repeat purchases",
        "recency" => "time from the first to the last purchase",
        "t" => "time from the first purchase to now, in the fit's unit",
        "horizon" => "the time ahead, in the fit's unit (days for clv_summary)",
        "monetary_value" => "mean value of the repeat purchases",
        _ => "",
    }
}

/// One function over fitted parameters.
#[derive(Debug)]
pub(crate) struct ModelFunction {
    name: &'static str,
    /// The fields read from the parameters struct, in the order `compute` takes them.
    parameters: &'static [&'static str],
    /// The numeric arguments after the parameters.
    arguments: &'static [&'static str],
    compute: fn(&[f64], &[f64]) -> f64,
    documentation: &'static LazyLock<Documentation>,
    signature: Signature,
}

impl ModelFunction {
    /// The SQL function `name(params, arguments…)`.
    pub(crate) fn udf(
        name: &'static str,
        parameters: &'static [&'static str],
        arguments: &'static [&'static str],
        compute: fn(&[f64], &[f64]) -> f64,
        documentation: &'static LazyLock<Documentation>,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            name,
            parameters,
            arguments,
            compute,
            documentation,
            signature: Signature::any(1 + arguments.len(), Volatility::Immutable),
        })
    }

    fn parameter_columns(&self, params: &ArrayRef) -> Result<Vec<Float64Array>> {
        let params = params.as_struct();
        self.parameters
            .iter()
            .map(|name| {
                let column = params.column_by_name(name).expect("checked when planned");
                let values = cast(column, &DataType::Float64)?;
                // A NULL struct is NULL in each of its fields.
                let nulls =
                    datafusion::arrow::buffer::NullBuffer::union(params.nulls(), values.nulls());
                Ok(Float64Array::new(
                    values.as_primitive::<Float64Type>().values().clone(),
                    nulls,
                ))
            })
            .collect()
    }
}

impl PartialEq for ModelFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ModelFunction {}

impl Hash for ModelFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for ModelFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let usage = format!("{}(params, {})", self.name, self.arguments.join(", "));
        let DataType::Struct(fields) = &arg_types[0] else {
            return plan_err!(
                "{usage}: params must be the struct a fit returns ({{{}}}), got {}",
                self.parameters.join(", "),
                arg_types[0]
            );
        };
        for name in self.parameters {
            let field = fields.iter().find(|f| f.name() == name);
            if !field.is_some_and(|f| f.data_type().is_numeric() || f.data_type().is_null()) {
                return plan_err!(
                    "{usage}: params must have the numeric fields {{{}}}, got {}",
                    self.parameters.join(", "),
                    arg_types[0]
                );
            }
        }
        for (name, t) in self.arguments.iter().zip(&arg_types[1..]) {
            if !t.is_numeric() && !t.is_null() {
                return plan_err!("{usage}: {name} must be a number, got {t}");
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (rows, constant) = rows_to_compute(&args);
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let parameters = self.parameter_columns(&arrays[0])?;
        let numbers: Vec<ArrayRef> = arrays[1..]
            .iter()
            .map(|a| cast(a, &DataType::Float64))
            .collect::<Result<_, _>>()?;
        let numbers: Vec<&Float64Array> = numbers
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let mut p = vec![0.0; parameters.len()];
        let mut x = vec![0.0; numbers.len()];
        let answers: Float64Array = (0..rows)
            .map(|row| {
                let any_null = parameters.iter().any(|c| c.is_null(row))
                    || numbers.iter().any(|c| c.is_null(row));
                if any_null {
                    return None;
                }
                for (value, column) in p.iter_mut().zip(&parameters) {
                    *value = column.value(row);
                }
                for (value, column) in x.iter_mut().zip(&numbers) {
                    *value = column.value(row);
                }
                Some((self.compute)(&p, &x))
            })
            .collect();
        answer(answers, constant)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation)
    }
}
