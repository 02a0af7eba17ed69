//! Tributary's network faces and its command line.
//!
//! `tributary serve` opens the data root through the engine and answers Arrow Flight SQL
//! ([`flight`]) and the Segment-compatible HTTP collection API ([`http`]). The other commands are clients of a running server (`sql`, `import`) or work
//! on files (`generate`). Engine errors become gRPC statuses in one place, [`error`].

pub mod commands;
pub mod error;
pub mod flight;
pub mod http;
pub mod tls;
