//! Arrow Flight SQL: how BI tools, ADBC, JDBC and `tributary sql` talk to Tributary.

mod actions;
mod auth;
mod edge;
mod handle;
mod metadata;
mod queries;
mod service;
mod statements;
mod upload;

pub use auth::AUTHORIZATION;
pub use queries::QueryLimits;
pub use service::{FlightOptions, TENANT_HEADER, TributaryFlightSql};
pub use upload::EXPECTED_ROWS;
