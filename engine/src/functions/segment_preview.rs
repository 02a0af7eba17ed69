//! `segment_preview(definition [, limit])`: the customers a segment definition selects now —
//! `customer_id` rows in order, at most `limit` (all without). The definition is the JSON of
//! docs/segments.md, checked when the query is planned; it is compiled (its references to stored
//! segments resolved) when the query runs, to the SQL `EXPLAIN SEGMENT` shows and
//! `segment_size(definition)` counts.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::ExecutionPlan;
use tributary_segments::parse;

use super::args::{count_literal, text_args};
use super::{Call, Compute, ComputedExec, LiveTable, Scan, TableFunction, external, live};
use crate::segments::{members_sql, segment_error, stored_for};

/// `segment_preview`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "segment_preview",
    call: segment_preview,
};

const USAGE: &str = "segment_preview(definition [, limit])";

fn segment_preview(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let Some(first) = call.args.first() else {
        return plan_err!("{} takes {USAGE}", call.name);
    };
    if call.args.len() > 2 {
        return plan_err!("{} takes {USAGE}", call.name);
    }
    let [definition] = text_args(call.name, USAGE, std::slice::from_ref(first))?
        .try_into()
        .expect("one argument");
    parse(&definition).map_err(segment_error)?;
    let limit = match call.args.get(1) {
        Some(_) => Some(count_literal(call.name, "limit", call.args.get(1), 0)?),
        None => None,
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        "customer_id",
        DataType::Utf8,
        false,
    )]));
    Ok(live(schema, Members { definition, limit }))
}

/// The members of a definition, computed when scanned.
#[derive(Debug, Clone)]
struct Members {
    definition: String,
    limit: Option<i64>,
}

#[async_trait]
impl LiveTable for Members {
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = scan.projected_schema()?;
        let (members, ctx, columns) = (self.clone(), scan.ctx.clone(), scan.columns());
        let compute: Compute = Arc::new(move || {
            let (members, ctx, columns) = (members.clone(), ctx.clone(), columns.clone());
            Box::pin(async move {
                let stored = stored_for(&ctx, &members.definition)
                    .await
                    .map_err(external)?;
                let sql = members_sql(&members.definition, &stored).map_err(segment_error)?;
                if columns.is_empty() && members.limit.is_none() {
                    // Only counted (`segment_size`): no ids to sort or hand on.
                    let rows = ctx.sql(&sql).await?.count().await?;
                    let options = RecordBatchOptions::new().with_row_count(Some(rows));
                    let empty = Arc::new(Schema::empty());
                    return Ok(vec![RecordBatch::try_new_with_options(
                        empty,
                        Vec::new(),
                        &options,
                    )?]);
                }
                let mut frame = ctx
                    .sql(&sql)
                    .await?
                    .sort_by(vec![datafusion::prelude::col("customer_id")])?;
                if let Some(limit) = members.limit {
                    frame = frame.limit(0, Some(limit as usize))?;
                }
                frame.select(columns)?.collect().await
            })
        });
        Ok(Arc::new(ComputedExec::new(
            "segment_preview",
            schema,
            compute,
        )))
    }
}
