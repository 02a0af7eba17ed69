//! How a scalar function answers DataFusion: one value when every argument is a constant (so
//! the planner can fold it), an array of `number_rows` values otherwise. Shared by the
//! functions of this crate and of the engine.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

/// How many rows to compute, and whether the answer is one constant.
pub fn rows_to_compute(args: &ScalarFunctionArgs) -> (usize, bool) {
    let constant = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    (if constant { 1 } else { args.number_rows }, constant)
}

/// The computed rows as DataFusion's answer.
pub fn answer(rows: impl Array + 'static, constant: bool) -> Result<ColumnarValue> {
    if constant {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &rows, 0,
        )?));
    }
    Ok(ColumnarValue::Array(Arc::new(rows) as ArrayRef))
}
