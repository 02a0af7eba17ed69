//! The state of the model-fitting aggregates (`bg_nbd_fit`, `gamma_gamma_fit`): per group, the
//! numeric rows (one per customer) the model is fitted on when the answer is due. Rows with a
//! NULL are skipped; a row the model refuses (a negative count, a recency after the age) fails
//! the query with the function's name and the row's values. The partial state is one list of
//! Float64 per column, named with `format_state_name`.

use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{AggregateUDF, Documentation, EmitTo, Expr};

use crate::aggregate::{Aggregate, AggregateDefinition, Naming};
use crate::grouped::{GroupState, Rows};

/// A model fitted on rows of `COLUMNS` numbers.
pub(crate) trait Model: Send + Sync + 'static {
    /// The SQL function's name, for messages.
    const NAME: &'static str;
    /// The numeric columns of a row, in argument order.
    const COLUMNS: &'static [&'static str];
    /// The fitted parameters' names (the fields of the answer).
    const PARAMETERS: &'static [&'static str];

    /// How the function documents itself.
    fn documentation() -> &'static LazyLock<Documentation>;

    /// Refuses a row the model cannot take (says why).
    fn check(row: &[f64]) -> Result<(), String>;

    /// Fits the model on `rows` (each `COLUMNS.len()` long) with an L2 `penalizer`; the
    /// parameters, in order.
    fn fit(rows: &[&[f64]], penalizer: f64) -> Result<Vec<f64>, String>;
}

/// The aggregate that fits `M`: `name(columns… [, penalizer])` to the struct of its parameters,
/// NULL over no rows.
pub(crate) struct ModelFit<M>(PhantomData<fn() -> M>);

impl<M: Model> ModelFit<M> {
    fn new() -> Self {
        Self(PhantomData)
    }

    /// The SQL aggregate.
    pub(crate) fn udf() -> AggregateUDF {
        Aggregate::udf(Naming::new(M::NAME, None, M::documentation()), Self::new())
    }
}

/// How a fit documents its optional last argument.
pub(crate) const PENALIZER_ARGUMENT: (&str, &str) = (
    "penalizer",
    "optional constant: L2 penalty on the parameters, as lifetimes' penalizer_coef (default 0)",
);

impl<M: Model> Clone for ModelFit<M> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<M> std::fmt::Debug for ModelFit<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<M>())
    }
}

impl<M> PartialEq for ModelFit<M> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<M> Eq for ModelFit<M> {}

impl<M> std::hash::Hash for ModelFit<M> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::any::type_name::<M>().hash(state);
    }
}

impl<M: Model> AggregateDefinition for ModelFit<M> {
    type State = ModelRows<M>;

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arguments::<M>(arg_types)?;
        Ok(parameters_type(M::PARAMETERS))
    }

    fn state_fields(&self, name: &str) -> Vec<FieldRef> {
        state_fields::<M>(name)
    }

    fn new_state(&self, args: &AccumulatorArgs) -> Result<ModelRows<M>> {
        let penalizer = penalizer(M::NAME, args, M::COLUMNS.len())?;
        Ok(ModelRows::new(penalizer))
    }

    fn check_constants(&self, args: &[Expr]) -> Result<()> {
        check_penalizer(M::NAME, args, M::COLUMNS.len())
    }
}

/// Refuses a frequency that is not a whole number of repeat purchases (as `lifetimes` does).
pub(crate) fn check_frequency(frequency: f64) -> Result<(), String> {
    if frequency < 0.0 || frequency.fract() != 0.0 {
        return Err("frequency must be a whole number of repeat purchases, 0 or more".into());
    }
    Ok(())
}

/// The fields of the answer: one per parameter.
fn parameter_fields(names: &[&str]) -> Fields {
    names
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect()
}

/// The answer's type: a struct of the parameters.
pub(crate) fn parameters_type(names: &[&str]) -> DataType {
    DataType::Struct(parameter_fields(names))
}

/// Checks the argument types: the model's numeric columns, then an optional constant penalizer.
fn check_arguments<M: Model>(types: &[DataType]) -> Result<()> {
    let columns = M::COLUMNS.len();
    if types.len() != columns && types.len() != columns + 1 {
        return plan_err!(
            "{} takes ({}[, penalizer]), got {} arguments",
            M::NAME,
            M::COLUMNS.join(", "),
            types.len()
        );
    }
    for (i, t) in types.iter().enumerate() {
        if !t.is_numeric() && !t.is_null() {
            let what = M::COLUMNS.get(i).copied().unwrap_or("penalizer");
            return plan_err!("{}: {what} must be a number, got {t}", M::NAME);
        }
    }
    Ok(())
}

/// The partial state's fields: one list per column.
fn state_fields<M: Model>(name: &str) -> Vec<FieldRef> {
    M::COLUMNS
        .iter()
        .map(|column| {
            Arc::new(Field::new(
                format_state_name(name, column),
                DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false))),
                true,
            ))
        })
        .collect()
}

/// Rows to fit, per group.
pub(crate) struct ModelRows<M> {
    penalizer: f64,
    /// Per group, its rows one after the other (`COLUMNS.len()` numbers each).
    groups: Vec<Vec<f64>>,
    model: PhantomData<fn() -> M>,
}

impl<M> Clone for ModelRows<M> {
    fn clone(&self) -> Self {
        Self {
            penalizer: self.penalizer,
            groups: self.groups.clone(),
            model: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for ModelRows<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRows")
            .field("penalizer", &self.penalizer)
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl<M: Model> ModelRows<M> {
    pub(crate) fn new(penalizer: f64) -> Self {
        Self {
            penalizer,
            groups: Vec::new(),
            model: PhantomData,
        }
    }

    fn width() -> usize {
        M::COLUMNS.len()
    }

    pub(crate) fn add(&mut self, group: usize, row: &[f64]) -> Result<()> {
        if let Err(why) = M::check(row) {
            return exec_err!("{}: {why} (row {row:?})", M::NAME);
        }
        self.groups[group].extend_from_slice(row);
        Ok(())
    }

    fn fitted(&self, rows: &[f64]) -> Result<ScalarValue> {
        let fields = parameter_fields(M::PARAMETERS);
        if rows.is_empty() {
            return ScalarValue::try_new_null(&DataType::Struct(fields));
        }
        let rows: Vec<&[f64]> = rows.chunks(Self::width()).collect();
        let parameters = match M::fit(&rows, self.penalizer) {
            Ok(parameters) => parameters,
            Err(why) => return exec_err!("{}: {why}", M::NAME),
        };
        let columns: Vec<ArrayRef> = parameters
            .iter()
            .map(|p| Arc::new(Float64Array::from(vec![*p])) as ArrayRef)
            .collect();
        let array = datafusion::arrow::array::StructArray::try_new(fields, columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }
}

fn as_f64(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

impl<M: Model> GroupState for ModelRows<M> {
    fn update(&mut self, rows: Rows<'_>) -> Result<()> {
        let columns: Vec<Float64Array> = rows.values[..Self::width()]
            .iter()
            .map(as_f64)
            .collect::<Result<_>>()?;
        let required: Vec<&dyn Array> = columns.iter().map(|c| c as &dyn Array).collect();
        let mut row = vec![0.0; Self::width()];
        for (index, group) in rows.usable(&required) {
            for (value, column) in row.iter_mut().zip(&columns) {
                *value = column.value(index);
            }
            self.add(group, &row)?;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        let answers: Vec<ScalarValue> = groups
            .iter()
            .map(|rows| self.fitted(rows))
            .collect::<Result<_>>()?;
        if answers.is_empty() {
            return Ok(datafusion::arrow::array::new_empty_array(&parameters_type(
                M::PARAMETERS,
            )));
        }
        ScalarValue::iter_to_array(answers)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = emit_to.take_needed(&mut self.groups);
        let width = Self::width();
        let offsets = OffsetBuffer::from_lengths(groups.iter().map(|g| g.len() / width));
        Ok((0..width)
            .map(|column| {
                let values: Float64Array = groups
                    .iter()
                    .flat_map(|g| g.iter().skip(column).step_by(width).copied())
                    .collect();
                Arc::new(ListArray::new(
                    Arc::new(Field::new_list_field(DataType::Float64, false)),
                    offsets.clone(),
                    Arc::new(values),
                    None,
                )) as ArrayRef
            })
            .collect())
    }

    fn merge(&mut self, states: Rows<'_>) -> Result<()> {
        let lists: Vec<&ListArray> = states.values[..Self::width()]
            .iter()
            .map(|l| l.as_list::<i32>())
            .collect();
        let mut row = vec![0.0; Self::width()];
        for (index, &group) in states.group_indices.iter().enumerate() {
            if lists[0].is_null(index) {
                continue;
            }
            let columns: Vec<ArrayRef> = lists.iter().map(|l| l.value(index)).collect();
            let columns: Vec<&Float64Array> = columns
                .iter()
                .map(|c| c.as_primitive::<Float64Type>())
                .collect();
            for i in 0..columns[0].len() {
                for (value, column) in row.iter_mut().zip(&columns) {
                    *value = column.value(i);
                }
                self.groups[group].extend_from_slice(&row);
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.groups.iter().map(|g| g.capacity() * 8 + 24).sum()
    }

    fn ensure_groups(&mut self, groups: usize) {
        if self.groups.len() < groups {
            self.groups.resize(groups, Vec::new());
        }
    }
}

/// The penalizer argument (after the `columns` numeric ones) of a fit: a constant, 0 or more;
/// 0 when absent.
fn penalizer(function: &str, args: &AccumulatorArgs, columns: usize) -> Result<f64> {
    let Some(expr) = args.exprs.get(columns) else {
        return Ok(0.0);
    };
    let value = crate::args::literal(function, "penalizer", expr)?;
    penalizer_value(function, value)
}

/// Checks a constant penalizer while the query is planned.
fn check_penalizer(function: &str, args: &[Expr], columns: usize) -> Result<()> {
    match args.get(columns) {
        None => Ok(()),
        Some(Expr::Literal(value, _)) => penalizer_value(function, value).map(|_| ()),
        Some(_) => plan_err!("{function}: the penalizer argument must be a constant"),
    }
}

fn penalizer_value(function: &str, value: &ScalarValue) -> Result<f64> {
    match value.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(Some(p))) if p >= 0.0 && p.is_finite() => Ok(p),
        _ => plan_err!("{function}: the penalizer must be a number, 0 or more, got {value}"),
    }
}
