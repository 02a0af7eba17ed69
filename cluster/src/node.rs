//! The scheduler and executor processes (`tributary scheduler`, `tributary executor`): Ballista's
//! own, started with Tributary's session so that plans naming our functions decode on every node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;

use crate::error::{Error, Result};
use crate::{DataStore, GRPC_MESSAGE_BYTES, node_session_state};

/// Runs a scheduler on `bind` until the process ends; `store` is the data root's (it decodes
/// the scans of the plans it is sent).
pub async fn run_scheduler(bind: SocketAddr, store: Option<DataStore>) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        external_host: bind.ip().to_string(),
        bind_port: bind.port(),
        override_session_builder: Some(Arc::new(move |config| {
            node_session_state(config, store.as_ref())
        })),
        grpc_server_max_decoding_message_size: GRPC_MESSAGE_BYTES as u32,
        grpc_server_max_encoding_message_size: GRPC_MESSAGE_BYTES as u32,
        // Tasks sent to executors carry the plan's in-memory rows too.
        grpc_client_max_message_size: GRPC_MESSAGE_BYTES as u32,
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, bind, Arc::new(config)).await?;
    Ok(())
}

/// How an executor joins the cluster.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's gRPC address.
    pub scheduler: SocketAddr,
    /// Where the executor serves shuffle data (Arrow Flight); its own gRPC service listens on
    /// the next port.
    pub bind: SocketAddr,
    /// How many tasks it runs at once.
    pub slots: usize,
    /// Where shuffle files go (a temporary directory when `None`).
    pub work_dir: Option<PathBuf>,
    /// The data root's store, when not a local directory: scans read table files through it.
    pub store: Option<DataStore>,
}

/// Runs an executor until it is stopped (SIGTERM or Ctrl-C).
pub async fn run_executor(options: ExecutorOptions) -> Result<()> {
    let grpc_port = options
        .bind
        .port()
        .checked_add(1)
        .ok_or_else(|| Error::InvalidAddress {
            what: "executor address",
            value: options.bind.to_string(),
            reason: "its gRPC service needs the next port, and there is none".into(),
        })?;
    let registry = node_session_state(SessionConfig::new(), None)?;
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(options.bind.ip().to_string()),
        port: options.bind.port(),
        grpc_port,
        scheduler_host: options.scheduler.ip().to_string(),
        scheduler_port: options.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        vcores: options.slots.max(1),
        work_dir: options
            .work_dir
            .map(|dir| dir.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: 5,
        grpc_max_decoding_message_size: GRPC_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: GRPC_MESSAGE_BYTES as u32,
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&registry))),
        override_runtime_producer: options.store.map(|(url, store)| {
            let producer: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
                let runtime = RuntimeEnvBuilder::new().build_arc()?;
                runtime.register_object_store(&url, Arc::clone(&store));
                Ok(runtime)
            });
            producer
        }),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
