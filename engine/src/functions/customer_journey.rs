//! `customer_journey(id_type, id_value [, limit])`: the events of every identifier of the
//! customer (anonymous and known), latest first — one person's timeline across devices.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use tributary_catalog::builtin::EVENTS;

use super::args::customer_scope_arg;
use super::{Call, LiveTable, Scan, TableFunction, live};
use crate::identity::records::{ANONYMOUS_ID, USER_ID};

/// `customer_journey`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "customer_journey",
    call: customer_journey,
};

fn customer_journey(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let (scope, limit) = customer_scope_arg(call, true)?;
    let schema = call
        .identity
        .catalog()
        .require_tenant(call.tenant)
        .and_then(|t| t.table_schema(EVENTS))
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let journey = JourneyTable {
        members: scope.members,
        limit,
    };
    Ok(live(schema, journey))
}

/// The events of one customer's identifiers, read when scanned.
#[derive(Debug)]
struct JourneyTable {
    members: Vec<(String, String)>,
    limit: Option<usize>,
}

impl JourneyTable {
    /// Events of the customer: by `anonymous_id` or `user_id`.
    fn condition(&self) -> Expr {
        let ids = |kind: &str| -> Vec<Expr> {
            self.members
                .iter()
                .filter(|(t, _)| t == kind)
                .map(|(_, v)| lit(v.as_str()))
                .collect()
        };
        let (anonymous, users) = (ids(ANONYMOUS_ID), ids(USER_ID));
        let mut condition = lit(false);
        if !anonymous.is_empty() {
            condition = condition.or(col("anonymous_id").in_list(anonymous, false));
        }
        if !users.is_empty() {
            condition = condition.or(col("user_id").in_list(users, false));
        }
        condition
    }
}

#[async_trait]
impl LiveTable for JourneyTable {
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The buffered rows come back with the Delta scan's types; cast them to the table's.
        let columns = scan.columns();
        let mut frame = scan
            .ctx
            .table(EVENTS)
            .await?
            .filter(self.condition())?
            .sort(vec![
                col("timestamp").sort(false, true),
                col("message_id").sort(true, true),
            ])?;
        if let Some(n) = self.limit {
            frame = frame.limit(0, Some(n))?;
        }
        frame.select(columns)?.create_physical_plan().await
    }
}
