//! Reading the constant arguments of parametric functions (ClickHouse's `f(params)(args)`
//! becomes `f(params…, args…)`): windows, modes, and timestamps in a common unit.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

/// The literal value of a constant argument, or a plan error naming the argument.
pub(crate) fn literal<'a>(
    function: &str,
    position: &str,
    expr: &'a Arc<dyn PhysicalExpr>,
) -> Result<&'a ScalarValue> {
    match expr.downcast_ref::<Literal>() {
        Some(literal) => Ok(literal.value()),
        None => plan_err!("{function}: the {position} argument must be a constant"),
    }
}

/// The types of an aggregate's arguments.
pub(crate) fn argument_types(args: &AccumulatorArgs) -> Vec<DataType> {
    args.expr_fields
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

/// True for the types a timestamp argument may have.
pub(crate) fn is_time_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// Refuses argument `index` (0-based) unless it is a time.
pub(crate) fn check_time_argument(function: &str, types: &[DataType], index: usize) -> Result<()> {
    match types.get(index) {
        Some(data_type) if is_time_type(data_type) => Ok(()),
        Some(other) => plan_err!(
            "{function}: argument {} must be a TIMESTAMP, DATE or integer time, got {other}",
            index + 1
        ),
        None => plan_err!("{function}: missing the timestamp argument"),
    }
}

/// True for string types (a mode argument).
pub(crate) fn is_string_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    )
}

/// Units per second of a timestamp type; `None` for integers and dates, whose windows are given
/// in their own unit (as ClickHouse does for numbers and `Date`).
pub(crate) fn units_per_second(data_type: &DataType) -> Option<i64> {
    match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => Some(1),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some(1_000_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(1_000_000_000),
        _ => None,
    }
}

/// A window (an INTERVAL, or an integer: seconds for timestamps, the value's own unit for
/// integers and days for dates) in the unit of `time_type`.
pub(crate) fn window_in_units(
    function: &str,
    window: &ScalarValue,
    time_type: &DataType,
) -> Result<i64> {
    let per_second = units_per_second(time_type);
    let value = match window {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return plan_err!("{function}: a window in months has no fixed length; use days");
            }
            let nanos = i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds);
            interval_to_units(function, nanos, time_type, per_second)?
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            let nanos = (i128::from(v.days) * 86_400_000 + i128::from(v.milliseconds)) * 1_000_000;
            interval_to_units(function, nanos, time_type, per_second)?
        }
        ScalarValue::IntervalYearMonth(_) => {
            return plan_err!("{function}: a window in months has no fixed length; use days");
        }
        other => {
            let Some(number) = integer(other) else {
                return plan_err!(
                    "{function}: the window must be an INTERVAL or an integer number of seconds, got {other}"
                );
            };
            match per_second {
                // ClickHouse takes any window: one longer than the time type can count is no limit.
                Some(per_second) => number.saturating_mul(per_second),
                None => number,
            }
        }
    };
    if value < 0 {
        return plan_err!("{function}: the window must not be negative");
    }
    Ok(value)
}

fn interval_to_units(
    function: &str,
    nanos: i128,
    time_type: &DataType,
    per_second: Option<i64>,
) -> Result<i64> {
    let per_unit_nanos: i128 = match (per_second, time_type) {
        (Some(per_second), _) => 1_000_000_000 / i128::from(per_second),
        (None, DataType::Date32) => 86_400_000_000_000,
        (None, _) => {
            return plan_err!(
                "{function}: an INTERVAL window needs a TIMESTAMP or DATE time column; give integer times an integer window"
            );
        }
    };
    // A window longer than the time type can count is no limit, as in ClickHouse.
    Ok(i64::try_from(nanos / per_unit_nanos).unwrap_or(i64::MAX))
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A time column as `Int64` values in its own unit (timestamps keep their unit; dates are days).
pub(crate) fn times_as_i64(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Int64 => Ok(Arc::clone(array)),
        DataType::Date32 => Ok(cast(&cast(array, &DataType::Int32)?, &DataType::Int64)?),
        other if is_time_type(other) => Ok(cast(array, &DataType::Int64)?),
        other => exec_err!("unsupported time type {other}"),
    }
}

/// The `i64` view of an array produced by [`times_as_i64`].
pub(crate) fn as_i64(array: &ArrayRef) -> &datafusion::arrow::array::PrimitiveArray<Int64Type> {
    array.as_primitive::<Int64Type>()
}

/// Checks that condition arguments are conditions: booleans, or integers (non-zero is true) as
/// ClickHouse takes them (`1`, a `UInt8` expression).
pub(crate) fn check_conditions(function: &str, types: &[DataType], first: usize) -> Result<()> {
    for (i, data_type) in types.iter().enumerate() {
        if !(matches!(data_type, DataType::Boolean | DataType::Null) || data_type.is_integer()) {
            return plan_err!(
                "{function}: argument {} must be a condition (boolean, e.g. event = 'purchase', or integer), got {data_type}",
                first + i + 1
            );
        }
    }
    Ok(())
}

/// Condition columns as booleans (integers: non-zero is true; NULL stays NULL).
pub(crate) fn condition_columns(values: &[ArrayRef]) -> Result<Vec<BooleanArray>> {
    values
        .iter()
        .map(|v| Ok(cast(v, &DataType::Boolean)?.as_boolean().clone()))
        .collect()
}

/// The columns a row must have non-NULL to count: its time and its conditions.
pub(crate) fn required_columns<'a>(
    times: &'a dyn Array,
    conditions: &'a [BooleanArray],
) -> Vec<&'a dyn Array> {
    std::iter::once(times)
        .chain(conditions.iter().map(|c| c as &dyn Array))
        .collect()
}

/// `Int64` times (from [`times_as_i64`]) back as the time column's type.
pub(crate) fn times_as_type(times: Vec<i64>, time_type: &DataType) -> Result<ArrayRef> {
    let values: ArrayRef = Arc::new(Int64Array::from(times));
    Ok(match time_type {
        DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, &DataType::Date32)?,
        other => cast(&values, other)?,
    })
}

/// Longest list of conditions (ClickHouse's limit for funnels, sequences and retention;
/// `sequence_next_node` takes 64).
pub(crate) const CONDITIONS_MAX: usize = 32;

/// Rejects a condition list shorter than `min` or longer than `max`.
pub(crate) fn check_condition_count(
    function: &str,
    min: usize,
    max: usize,
    count: usize,
) -> Result<()> {
    if count < min || count > max {
        return plan_err!("{function}: give between {min} and {max} conditions, got {count}");
    }
    Ok(())
}

/// The text of a string literal expression (a mode or a pattern), if it is one.
pub(crate) fn string_literal(expr: &datafusion::logical_expr::Expr) -> Option<&str> {
    match expr {
        datafusion::logical_expr::Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}
