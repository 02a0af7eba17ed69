//! The `tributary` subcommands.

pub mod client;
pub mod cluster;
pub mod generate;
pub mod identity;
pub mod import;
pub mod serve;
pub mod sql;
pub mod user;
pub mod write_key;

use clap::Args;
use tributary_catalog::{S3Options, Storage};

/// Where the data root is, for commands that work on it directly (`write-key`, `user`).
#[derive(Debug, Args)]
pub struct DataRootArgs {
    /// The data root the server uses: a directory, file://…, s3://bucket/prefix.
    #[arg(
        long,
        env = "TRIBUTARY_DATA",
        default_value = "./tributary-data",
        global = true
    )]
    pub data: String,

    /// S3-compatible store settings.
    #[command(flatten)]
    pub s3: serve::S3Args,
}

impl DataRootArgs {
    /// The data root.
    pub fn storage(&self) -> crate::error::Result<Storage> {
        Ok(Storage::parse(&self.data, &S3Options::from(&self.s3))?)
    }
}
