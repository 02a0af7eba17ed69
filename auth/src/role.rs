//! Roles and what they allow. A role is granted to a user on one tenant; a statement or call
//! needs one [`StatementClass`], and [`Role::allows`] is the whole rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What a statement or call needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatementClass {
    /// Reads data or metadata (queries, `SHOW`, `EXPLAIN`, previews).
    Read,
    /// Changes a tenant's data (DML, table DDL, ingest, procedures, segments, activations).
    Write,
    /// Changes who may do what in a tenant (users and grants, destinations).
    Admin,
    /// Makes or drops tenants: only a superuser.
    Superuser,
    /// Changes users and grants: allowed to reach the [`crate::Directory`], which decides per
    /// target user and tenant.
    Users,
}

/// A user's role on one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: queries, metadata, previews.
    Analyst,
    /// Reads and changes data: DML, ingest, procedures, segments.
    Writer,
    /// Everything in the tenant, its users' grants included.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Analyst, Role::Writer, Role::Admin];

    /// True when this role may run statements of `class`.
    pub fn allows(self, class: StatementClass) -> bool {
        match class {
            StatementClass::Read => true,
            StatementClass::Write => self >= Role::Writer,
            StatementClass::Admin => self == Role::Admin,
            StatementClass::Superuser => false,
            StatementClass::Users => true,
        }
    }

    /// The role's name, as SQL and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown role '{text}': roles are analyst, writer and admin"
                ))
            })
    }
}

impl fmt::Display for StatementClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatementClass::Read => "read",
            StatementClass::Write => "change data",
            StatementClass::Admin => "administer",
            StatementClass::Superuser => "create or drop tenants",
            StatementClass::Users => "manage users",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_what_it_says() {
        use StatementClass::*;
        let table = [
            (Role::Analyst, [true, false, false, false]),
            (Role::Writer, [true, true, false, false]),
            (Role::Admin, [true, true, true, false]),
        ];
        for (role, expected) in table {
            for (class, allowed) in [Read, Write, Admin, Superuser].into_iter().zip(expected) {
                assert_eq!(role.allows(class), allowed, "{role} {class:?}");
            }
        }
    }

    #[test]
    fn roles_parse_in_any_case_and_unknown_ones_are_named() {
        assert_eq!("WRITER".parse::<Role>().unwrap(), Role::Writer);
        let error = "owner".parse::<Role>().unwrap_err();
        assert!(error.to_string().contains("'owner'"), "{error}");
    }
}
