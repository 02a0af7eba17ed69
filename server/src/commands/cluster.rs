//! `tributary scheduler` and `tributary executor`: the nodes of a Ballista cluster that
//! `tributary serve --cluster df://host:port` sends read queries to (docs/distributed.md).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Args;
use tributary_catalog::{S3Options, Storage};
use tributary_cluster::DataStore;
use tributary_cluster::node::{ExecutorOptions, run_executor, run_scheduler};

use crate::commands::DataRootArgs;
use crate::error::{Error, Result};

/// `tributary scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address the scheduler listens on (executors and `serve --cluster` connect to it).
    #[arg(
        long,
        env = "TRIBUTARY_SCHEDULER_BIND",
        default_value = "127.0.0.1:50050"
    )]
    pub bind: SocketAddr,

    /// The data root the servers use (the scheduler decodes the scans of the plans it gets).
    #[command(flatten)]
    pub data: DataRootArgs,
}

/// `tributary executor`.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to join, host:port.
    #[arg(long, env = "TRIBUTARY_SCHEDULER", default_value = "127.0.0.1:50050")]
    pub scheduler: String,

    /// Address the executor serves shuffle data on; its gRPC service takes the next port.
    #[arg(
        long,
        env = "TRIBUTARY_EXECUTOR_BIND",
        default_value = "127.0.0.1:50060"
    )]
    pub bind: SocketAddr,

    /// Tasks run at once (default: the machine's cores).
    #[arg(long, env = "TRIBUTARY_EXECUTOR_SLOTS")]
    pub slots: Option<usize>,

    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long, env = "TRIBUTARY_EXECUTOR_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// The data root the servers use, so that table files can be read from here (S3
    /// credentials included).
    #[command(flatten)]
    pub data: DataRootArgs,
}

/// Runs a scheduler until the process is stopped.
pub async fn scheduler(args: SchedulerArgs) -> Result<()> {
    let store = data_store(&args.data)?;
    eprintln!("tributary scheduler listening on {}", args.bind);
    run_scheduler(args.bind, store).await?;
    Ok(())
}

/// Runs an executor until it is stopped.
pub async fn executor(args: ExecutorArgs) -> Result<()> {
    let scheduler = args
        .scheduler
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::BadInput(format!(
                "invalid scheduler address '{}': expected host:port",
                args.scheduler
            ))
        })?;
    let store = data_store(&args.data)?;
    let slots = args.slots.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    eprintln!(
        "tributary executor on {} ({slots} slots), scheduler {scheduler}",
        args.bind
    );
    run_executor(ExecutorOptions {
        scheduler,
        bind: args.bind,
        slots,
        work_dir: args.work_dir,
        store,
    })
    .await?;
    Ok(())
}

/// The data root's store as cluster nodes need it (none for a local directory).
pub fn data_store(data: &DataRootArgs) -> Result<Option<DataStore>> {
    let storage = Storage::parse(&data.data, &S3Options::from(&data.s3))?;
    store_of(&storage)
}

/// The store of `storage` as cluster nodes need it (none for a local directory).
pub fn store_of(storage: &Storage) -> Result<Option<DataStore>> {
    Ok((storage.root().scheme() != "file")
        .then(|| storage.bucket_store())
        .transpose()?)
}
