//! Tenant and table names double as directory names and SQL identifiers, so they are kept to a
//! portable set: lowercase ASCII letters, digits and `_`.

use crate::error::{Error, Result};

/// Longest accepted name; object-store keys and SQL tools both stay happy below this.
pub const NAME_LENGTH_MAX: usize = 64;

/// Accepts `[a-z_][a-z0-9_]*` of at most [`NAME_LENGTH_MAX`] characters.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= NAME_LENGTH_MAX {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifiers_and_refuses_the_rest() {
        for good in ["events", "_tmp", "orders_2024", "a"] {
            assert!(validate_name("table", good).is_ok(), "{good}");
        }
        for bad in ["", "Events", "9lives", "a-b", "a/b", "..", &"x".repeat(65)] {
            assert!(validate_name("table", bad).is_err(), "{bad}");
        }
    }
}
