//! `tributary user`: makes and removes users, sets passwords and grants roles on tenants, on the
//! data root directly (the first superuser is made this way); a running server sees changes
//! within a second. Admins do the same in SQL (`CREATE USER`, `GRANT`…: docs/security.md).

use std::io::BufRead;

use clap::{Args, Subcommand};
use tributary_auth::{Directory, Role};
use tributary_catalog::Catalog;

use crate::commands::DataRootArgs;
use crate::error::{Error, Result};

/// Options of `tributary user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The data root.
    #[command(flatten)]
    pub root: DataRootArgs,

    /// What to do with users.
    #[command(subcommand)]
    pub action: UserAction,
}

/// What to do with users.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Make a user (asks for the password, or reads it from TRIBUTARY_PASSWORD or stdin).
    Add {
        /// Login name ([a-z_][a-z0-9_]*).
        name: String,
        /// Every right on every tenant, users and tenants included.
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user; their logins end.
    Remove {
        /// Login name.
        name: String,
    },
    /// Set a user's password; their logins end.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user a role (analyst, writer, admin) on a tenant.
    Grant {
        /// Login name.
        name: String,
        /// analyst (read), writer (read and change data) or admin (everything in the tenant).
        role: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Take a user's role on a tenant away.
    Revoke {
        /// Login name.
        name: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// End every login (token) of a user.
    RevokeTokens {
        /// Login name.
        name: String,
    },
    /// List users and their grants.
    List,
}

/// Runs `tributary user`.
pub async fn run(args: UserArgs) -> Result<()> {
    let storage = args.root.storage()?;
    let users = Directory::open(storage.clone())
        .await
        .map_err(tributary_engine::Error::from)?;
    let done = match args.action {
        UserAction::Add {
            name,
            superuser,
            password_stdin,
        } => {
            let password = read_password(&name, password_stdin)?;
            users.create_user(None, &name, &password, superuser).await
        }
        UserAction::Remove { name } => users.drop_user(None, &name).await,
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(&name, password_stdin)?;
            users.set_password(None, &name, &password).await
        }
        UserAction::Grant { name, role, tenant } => {
            let role: Role = role.parse().map_err(tributary_engine::Error::from)?;
            Catalog::open(storage).await?.require_tenant(&tenant)?;
            users.grant(None, &name, &tenant, role).await
        }
        UserAction::Revoke { name, tenant } => users.revoke(None, &name, &tenant).await,
        UserAction::RevokeTokens { name } => users.revoke_tokens(None, &name).await,
        UserAction::List => {
            let list = users
                .visible_users(None)
                .await
                .map_err(tributary_engine::Error::from)?;
            if list.is_empty() {
                println!("no users: the server lets every local client in");
            }
            for user in list {
                let grants: Vec<String> = user
                    .grants
                    .iter()
                    .map(|(tenant, role)| format!("{tenant}={role}"))
                    .collect();
                println!(
                    "{}\t{}\tgrants={}\tcreated={}",
                    user.name,
                    if user.superuser { "superuser" } else { "user" },
                    grants.join(","),
                    user.created_at
                );
            }
            return Ok(());
        }
    };
    done.map_err(tributary_engine::Error::from)?;
    println!("ok");
    Ok(())
}

/// The password: TRIBUTARY_PASSWORD, the first line of stdin, or asked twice at the terminal.
pub fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    if let Ok(password) = std::env::var("TRIBUTARY_PASSWORD") {
        return Ok(password);
    }
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password(format!("password for {name}: "))?;
    let again = rpassword::prompt_password("again: ")?;
    if first != again {
        return Err(Error::BadInput("the passwords differ".into()));
    }
    Ok(first)
}
