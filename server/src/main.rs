//! The `tributary` command: the server and its clients in one binary.

use clap::{Parser, Subcommand};
use tributary_server::commands::{
    cluster, generate, identity, import, serve, sql, user, write_key,
};

/// Tributary: a customer data platform engine — collect, store, unify, analyse, serve.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SQL over Arrow Flight SQL on a data root (local directory by default).
    Serve(Box<serve::ServeArgs>),
    /// Run SQL against a server: one statement with -c, or an interactive prompt.
    Sql(sql::SqlArgs),
    /// Load a CSV, Parquet or NDJSON file into a table on a server.
    Import(import::ImportArgs),
    /// Show a customer's 360 view: identities, profile and recent events.
    Profile(identity::ProfileArgs),
    /// Erase a person: their events, edges and profile, and drop anything new for them.
    Forget(identity::ForgetArgs),
    /// Write deterministic synthetic customer data as Parquet files.
    Generate(generate::GenerateArgs),
    /// Create, list or revoke the write keys of the HTTP collection API.
    #[command(name = "write-key")]
    WriteKey(write_key::WriteKeyArgs),
    /// Make and remove users, set passwords, grant roles on tenants.
    User(user::UserArgs),
    /// Run a Ballista scheduler with Tributary's functions (the head of a cluster).
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor with Tributary's functions, joined to a scheduler.
    Executor(cluster::ExecutorArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tributary: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Sql(args) => sql::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Profile(args) => identity::profile(args).await,
            Command::Forget(args) => identity::forget(args).await,
            Command::Generate(args) => generate::run(args),
            Command::WriteKey(args) => write_key::run(args).await,
            Command::User(args) => user::run(args).await,
            Command::Scheduler(args) => cluster::scheduler(args).await,
            Command::Executor(args) => cluster::executor(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tributary: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
