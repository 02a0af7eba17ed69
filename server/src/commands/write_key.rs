//! `tributary write-key`: makes, lists and revokes the write keys SDKs send to the HTTP
//! collection API. Works on the data root directly; a running server sees changes within a
//! second.

use clap::{Args, Subcommand};
use tributary_catalog::{Catalog, DEFAULT_TENANT};

use crate::commands::DataRootArgs;
use crate::error::{Error, Result};
use crate::http::write_keys::{self, WriteKey};

/// Options of `tributary write-key`.
#[derive(Debug, Args)]
pub struct WriteKeyArgs {
    /// The data root.
    #[command(flatten)]
    pub root: DataRootArgs,

    /// What to do with write keys.
    #[command(subcommand)]
    pub action: WriteKeyAction,
}

/// What to do with write keys.
#[derive(Debug, Subcommand)]
pub enum WriteKeyAction {
    /// Make a key whose events go to a tenant; prints the key.
    Create {
        /// The tenant the key's events go to (it must exist: CREATE DATABASE makes one).
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// The channel's name, stored in events.source (e.g. web, ios, wechat).
        #[arg(long, default_value = "http")]
        source: String,
    },
    /// List every key with its tenant and source.
    List,
    /// Remove a key: its requests are refused from then on.
    Revoke {
        /// The key to remove.
        key: String,
    },
}

/// Runs `tributary write-key`.
pub async fn run(args: WriteKeyArgs) -> Result<()> {
    let storage = args.root.storage()?;
    let mut keys = write_keys::load(&storage).await?;
    match args.action {
        WriteKeyAction::Create { tenant, source } => {
            let catalog = Catalog::open(storage.clone()).await?;
            catalog.require_tenant(&tenant).map_err(|_| {
                Error::BadInput(format!(
                    "tenant '{tenant}' does not exist: create it with `CREATE DATABASE {tenant}`"
                ))
            })?;
            let key = WriteKey {
                key: write_keys::new_key(),
                tenant,
                source,
                created_at: chrono::Utc::now().to_rfc3339(),
            };
            println!("{}", key.key);
            keys.push(key);
            write_keys::save(&storage, keys).await
        }
        WriteKeyAction::List => {
            if keys.is_empty() {
                println!("no write keys: any key sends events to tenant '{DEFAULT_TENANT}'");
            }
            for key in keys {
                println!(
                    "{}\ttenant={}\tsource={}\tcreated={}",
                    key.key, key.tenant, key.source, key.created_at
                );
            }
            Ok(())
        }
        WriteKeyAction::Revoke { key } => {
            let before = keys.len();
            keys.retain(|k| k.key != key);
            if keys.len() == before {
                return Err(Error::BadInput(format!("no such write key: {key}")));
            }
            write_keys::save(&storage, keys).await?;
            println!("revoked");
            Ok(())
        }
    }
}
