//! `explain_segment(definition, customer_id)` or `explain_segment(definition, id_type,
//! id_value)`: why a customer is (not) in a segment — one row per condition of the definition,
//! in order: its JSON `path` (`$` is the whole definition, whose `holds` is the answer), the
//! `condition` (its JSON), the customer's `value` (the trait, field, count, sum, time or funnel
//! step it read, as text; NULL for combinators and missing values) and whether it `holds`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::ExecutionPlan;
use tributary_segments::{Explained, condition_json, parse};

use super::args::{customer_arg, text_args};
use super::{
    Call, Compute, ComputedExec, LiveTable, Scan, TableFunction, external, live, projected,
};
use crate::identity::records::as_utf8;
use crate::segments::{explain_sql, segment_error, stored};

/// `explain_segment`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "explain_segment",
    call: explain_segment,
};

const USAGE: &str = "explain_segment(definition, customer_id) or \
                     explain_segment(definition, id_type, id_value)";

fn explain_segment(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let Some((first, rest)) = call.args.split_first() else {
        return plan_err!("{} takes {USAGE}", call.name);
    };
    let [text] = text_args(call.name, USAGE, std::slice::from_ref(first))?
        .try_into()
        .expect("one argument");
    parse(&text).map_err(segment_error)?;
    let customer = Call {
        name: call.name,
        tenant: call.tenant,
        identity: call.identity,
        args: rest,
    };
    let (_, customer) = customer_arg(&customer)?;
    let Some(customer) = customer else {
        return plan_err!("{}: no customer has that identifier", call.name);
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("condition", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("holds", DataType::Boolean, false),
    ]));
    Ok(live(
        schema,
        ExplainTable {
            text,
            customer: customer.to_string(),
        },
    ))
}

/// The explanation of one customer, computed when scanned.
#[derive(Debug, Clone)]
struct ExplainTable {
    text: String,
    customer: String,
}

impl ExplainTable {
    /// One row per condition, from the one row of `sql` (none for an unknown customer).
    fn rows(
        &self,
        schema: SchemaRef,
        conditions: &[Explained],
        answer: &[RecordBatch],
    ) -> DfResult<RecordBatch> {
        let Some(row) = answer.iter().find(|b| b.num_rows() > 0) else {
            return Ok(RecordBatch::new_empty(schema));
        };
        let column = |name: &str| {
            row.column_by_name(name)
                .cloned()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("no {name}")))
        };
        let mut paths: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut values: Vec<Option<String>> = Vec::new();
        let mut holds: Vec<bool> = Vec::new();
        for explained in conditions {
            paths.push(explained.path.clone());
            texts.push(
                condition_json(&self.text, &explained.path)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            );
            values.push(match &explained.value {
                Some(name) => {
                    let value = as_utf8(&column(name)?)?;
                    value.is_valid(0).then(|| value.value(0).to_string())
                }
                None => None,
            });
            let answer = column(&explained.holds)?;
            let answer = answer
                .as_any()
                .downcast_ref::<BooleanArray>()
                .filter(|a| a.is_valid(0))
                .is_some_and(|a| a.value(0));
            holds.push(answer);
        }
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(paths)),
                Arc::new(StringArray::from(texts)),
                Arc::new(StringArray::from(values)),
                Arc::new(BooleanArray::from(holds)),
            ],
        )?)
    }
}

#[async_trait]
impl LiveTable for ExplainTable {
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = scan.projected_schema()?;
        let (table, ctx) = (self.clone(), scan.ctx);
        let (full, projection) = (Arc::clone(scan.schema), scan.projection.cloned());
        let compute: Compute = Arc::new(move || {
            let (table, ctx, full, projection) = (
                table.clone(),
                ctx.clone(),
                Arc::clone(&full),
                projection.clone(),
            );
            Box::pin(async move {
                let stored = stored(&ctx).await.map_err(external)?;
                let (sql, conditions) =
                    explain_sql(&table.text, &stored, &table.customer).map_err(segment_error)?;
                let answer = ctx.sql(&sql).await?.collect().await?;
                let rows = table.rows(full, &conditions, &answer)?;
                Ok(vec![projected(rows, projection.as_deref())?])
            })
        });
        Ok(Arc::new(ComputedExec::new(
            "explain_segment",
            schema,
            compute,
        )))
    }
}
