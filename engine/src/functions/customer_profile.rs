//! `customer_profile(id_type, id_value)`: the customer's profile computed now (the same columns
//! and rules as the `profiles` table, which is refreshed in the background), so a profile is
//! current the moment an event arrives.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::ExecutionPlan;
use tributary_catalog::builtin::profiles_schema;

use super::args::customer_scope_arg;
use super::{
    Call, Compute, ComputedExec, LiveTable, Scan, TableFunction, external, live, projected,
};
use crate::identity::profiles::{self, CustomerScope};

/// `customer_profile`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "customer_profile",
    call: customer_profile,
};

fn customer_profile(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let (scope, _) = customer_scope_arg(call, false)?;
    Ok(live(profiles_schema(), ProfileTable { scope }))
}

/// One customer's profile, computed when scanned.
#[derive(Debug)]
struct ProfileTable {
    scope: CustomerScope,
}

#[async_trait]
impl LiveTable for ProfileTable {
    async fn plan(&self, scan: Scan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = scan.projected_schema()?;
        let (scope, ctx) = (self.scope.clone(), scan.ctx);
        let projection = scan.projection.cloned();
        let compute: Compute = Arc::new(move || {
            let (scope, ctx, projection) = (scope.clone(), ctx.clone(), projection.clone());
            Box::pin(async move {
                let batch = profiles::customer_profile(&ctx, &scope)
                    .await
                    .map_err(external)?;
                Ok(vec![projected(batch, projection.as_deref())?])
            })
        });
        Ok(Arc::new(ComputedExec::new(
            "customer_profile",
            schema,
            compute,
        )))
    }
}
