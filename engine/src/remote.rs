//! Where a read query's physical plan runs when not in this process: a cluster the server was
//! started with (`tributary serve --cluster`, the `tributary-cluster` crate). The engine knows
//! only this narrow interface, so it does not depend on the cluster's crates.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;

/// Somewhere else physical plans can run.
#[async_trait]
pub trait RemotePlans: Send + Sync + std::fmt::Debug {
    /// True when `plan` should run there (it is worth sending and can be decoded there).
    fn takes(&self, plan: &Arc<dyn ExecutionPlan>) -> bool;

    /// Runs `plan` there with the session's settings; its results stream back.
    async fn execute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
        session_id: String,
    ) -> crate::Result<SendableRecordBatchStream>;
}
