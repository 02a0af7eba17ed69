//! Segments as marketers define them: a JSON rule language (docs/segments.md) read into a
//! [`Definition`] — every problem refused with the JSON path where it is — and compiled to one
//! SQL query over the tenant's customers, profiles and events ([`compile`]).
//!
//! The crate reads no data: the engine hands it the relations to read ([`Sources`]) and runs
//! the query. User values reach the SQL only as literals written by sqlparser's AST types.

mod compile;
mod definition;
mod error;
mod sql;
mod test;

pub use compile::{Explained, Sources, compile, explain};
pub use definition::{
    Behaviour, Condition, Definition, Funnel, Measure, ProfileField, PropertyTest, Window,
    condition_json, parse,
};
pub use error::{Error, Result};
pub use test::{Compare, Kind, Scalar, Test};
