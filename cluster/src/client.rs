//! The front door's side of the cluster: whether a physical plan can travel, and sending it.
//!
//! A plan travels when the scheduler can decode it: that is checked here by encoding it and
//! decoding it against a node's session (the same functions, the same codec) before it is sent.
//! Plans that read no table (`SELECT 1`, metadata) stay on the front door: sending them costs
//! more than running them.

use std::sync::Arc;

use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;

use crate::error::{Error, Result};
use crate::{DataStore, GRPC_MESSAGE_BYTES, MAX_PLAN_BYTES, node_session_state};

/// A Ballista cluster the front door sends read queries to.
#[derive(Debug)]
pub struct Cluster {
    /// `http://host:port` of the scheduler.
    scheduler: String,
    /// A node's view of the world, to check that a plan decodes there.
    node: Arc<TaskContext>,
    codec: BallistaPhysicalExtensionCodec,
}

impl Cluster {
    /// The cluster whose scheduler is at `url` (`df://host:port`), reading the data root whose
    /// store is `store` (none for a local directory). Nothing is contacted yet: an unreachable
    /// scheduler shows as an error of the first query sent.
    pub fn new(url: &str, store: Option<DataStore>) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidAddress {
            what: "cluster URL",
            value: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected df://host:port"))?;
        if scheme != "df" {
            return Err(invalid("expected the scheme df://"));
        }
        let authority = rest.trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected df://host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid("expected df://host:port"));
        }
        let node = node_session_state(SessionConfig::new(), store.as_ref())?;
        Ok(Self {
            scheduler: format!("http://{authority}"),
            node: node.task_ctx(),
            codec: BallistaPhysicalExtensionCodec::default(),
        })
    }

    /// True when `plan` should run on the cluster: it reads a table, and the nodes can decode
    /// every part of it.
    pub fn takes(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        if !reads_files(plan) {
            return false;
        }
        let encoded = match PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), &self.codec)
        {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::debug!("runs on the front door, it cannot be encoded: {e}");
                return false;
            }
        };
        let bytes = encoded.encoded_len();
        if bytes > MAX_PLAN_BYTES {
            tracing::debug!(
                bytes,
                "runs on the front door, its plan is too large to send"
            );
            return false;
        }
        match encoded.try_into_physical_plan(&self.node, &self.codec) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("runs on the front door, the cluster cannot decode it: {e}");
                false
            }
        }
    }

    /// Runs `plan` on the cluster with the session settings `config`; its results stream back.
    pub async fn execute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
        session_id: String,
    ) -> Result<SendableRecordBatchStream> {
        let mut config = config.clone().upgrade_for_ballista();
        config.options_mut().set(
            "ballista.client.grpc_max_message_size",
            &GRPC_MESSAGE_BYTES.to_string(),
        )?;
        let ballista = config.ballista_config();
        execute_physical_plan::<PhysicalPlanNode>(
            self.scheduler.clone(),
            &ballista,
            plan,
            &self.codec,
            session_id,
            config,
        )
        .await
        .map_err(|e| {
            Error::Ballista(format!(
                "the cluster at {} could not run the query: {e}",
                self.scheduler
            ))
        })
    }
}

#[async_trait::async_trait]
impl tributary_engine::remote::RemotePlans for Cluster {
    fn takes(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        Cluster::takes(self, plan)
    }

    async fn execute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
        session_id: String,
    ) -> tributary_engine::Result<SendableRecordBatchStream> {
        Cluster::execute(self, plan, config, session_id)
            .await
            .map_err(|e| match e {
                Error::DataFusion(e) => e.into(),
                other => datafusion::error::DataFusionError::External(Box::new(other)).into(),
            })
    }
}

/// True when the plan scans files somewhere.
fn reads_files(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<DataSourceExec>().is_some_and(|source| {
        source
            .data_source()
            .downcast_ref::<datafusion::datasource::physical_plan::FileScanConfig>()
            .is_some()
    }) || plan.children().into_iter().any(reads_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_checked() {
        assert!(Cluster::new("df://127.0.0.1:50050", None).is_ok());
        for bad in [
            "127.0.0.1:50050",
            "http://h:1",
            "df://h",
            "df://:1",
            "df://h:x",
        ] {
            let error = Cluster::new(bad, None).unwrap_err().to_string();
            assert!(error.contains("invalid cluster URL"), "{bad}: {error}");
        }
    }
}
