//! The `tributary` subcommands.

pub mod client;
pub mod generate;
pub mod identity;
pub mod import;
pub mod serve;
pub mod sql;
pub mod write_key;
