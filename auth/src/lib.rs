//! Who may do what: users with Argon2id password hashes, roles granted per tenant, bearer
//! tokens for logged-in clients, and [`Access`], the rights of one caller that the engine checks
//! before it plans a statement. Kept apart from the engine so that the rules are in one small
//! place: the server, the engine's SQL statements (`CREATE USER`, `GRANT`…) and the
//! `tributary user` command all go through [`Directory`].

mod access;
mod credential;
mod directory;
mod error;
pub mod password;
mod role;
mod tokens;

pub use access::Access;
pub use credential::Credential;
pub use directory::{Directory, User};
pub use error::{Error, Result};
pub use role::{Role, StatementClass};
pub use tokens::{TOKEN_LIFETIME_DEFAULT, TokenSession, TokenStore};
