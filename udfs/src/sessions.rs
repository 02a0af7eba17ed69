//! Sessions by inactivity gap, as window functions over `PARTITION BY <person> ORDER BY <time>`:
//! a new session starts at a row more than `gap` after the previous row. Shared by `session_id`
//! (the session's number, from 1) and `session_start` (the time of its first row).
//!
//! Rows with a NULL time get NULL and do not break a session.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, UInt64Array, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, Volatility, WindowUDFImpl,
};

use crate::args::{as_i64, is_time_type, times_as_i64, window_in_units};
use crate::doc_ref::DocRef;

/// What a session function answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SessionOutput {
    /// The session's number within the partition, from 1.
    Number,
    /// The time of the session's first row.
    Start,
}

/// `session_id` or `session_start`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionWindow {
    name: &'static str,
    output: SessionOutput,
    signature: Signature,
    documentation: DocRef,
}

impl SessionWindow {
    pub(crate) fn new(
        name: &'static str,
        output: SessionOutput,
        documentation: &'static LazyLock<Documentation>,
    ) -> Self {
        Self {
            name,
            output,
            signature: Signature::any(2, Volatility::Immutable),
            documentation: DocRef(documentation),
        }
    }
}

impl WindowUDFImpl for SessionWindow {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let time_type = args.input_fields()[0].data_type().clone();
        Ok(Box::new(SessionEvaluator {
            name: self.name,
            output: self.output,
            time_type,
        }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let time_type = args.input_fields()[0].data_type();
        if !is_time_type(time_type) {
            return plan_err!(
                "{}: the first argument must be a TIMESTAMP, DATE or integer time, got {time_type}",
                self.name
            );
        }
        let data_type = match self.output {
            SessionOutput::Number => DataType::UInt64,
            SessionOutput::Start => time_type.clone(),
        };
        Ok(Arc::new(Field::new(args.name(), data_type, true)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }
}

#[derive(Debug)]
struct SessionEvaluator {
    name: &'static str,
    output: SessionOutput,
    time_type: DataType,
}

impl PartitionEvaluator for SessionEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        if num_rows == 0 {
            return Ok(new_null_array(&self.time_type, 0));
        }
        let gap = window_in_units(
            self.name,
            &ScalarValue::try_from_array(&values[1], 0)?,
            &self.time_type,
        )?;
        let times = times_as_i64(&values[0])?;
        let times = as_i64(&times);
        let mut number = 0u64;
        let mut start = 0i64;
        let mut previous: Option<i64> = None;
        let mut numbers = Vec::with_capacity(num_rows);
        let mut starts = Vec::with_capacity(num_rows);
        for row in 0..num_rows {
            if times.is_null(row) {
                numbers.push(None);
                starts.push(None);
                continue;
            }
            let time = times.value(row);
            if previous.is_none_or(|p| time.saturating_sub(p) > gap) {
                number += 1;
                start = time;
            }
            previous = Some(time);
            numbers.push(Some(number));
            starts.push(Some(start));
        }
        Ok(match self.output {
            SessionOutput::Number => Arc::new(UInt64Array::from(numbers)),
            SessionOutput::Start => {
                let as_i64: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(starts));
                match &self.time_type {
                    DataType::Date32 => cast(&cast(&as_i64, &DataType::Int32)?, &DataType::Date32)?,
                    other => cast(&as_i64, other)?,
                }
            }
        })
    }
}
