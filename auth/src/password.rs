//! Password hashes: Argon2id in the PHC string format (`$argon2id$v=19$…`), so the parameters
//! travel with each hash and can be raised later without breaking stored users.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{Error, Result};

/// Shortest password accepted.
pub const PASSWORD_LENGTH_MIN: usize = 8;

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> Result<String> {
    if password.chars().count() < PASSWORD_LENGTH_MIN {
        return Err(Error::InvalidInput(format!(
            "a password needs at least {PASSWORD_LENGTH_MIN} characters"
        )));
    }
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::InvalidInput(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::InvalidInput(format!("cannot hash the password: {e}")))
}

/// True when `password` matches the stored `hash`; a damaged hash matches nothing.
pub fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!("a stored password hash is damaged: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsf", &stored));
        assert_ne!(stored, hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn short_passwords_and_damaged_hashes_are_refused() {
        assert!(hash("short").is_err());
        assert!(!verify("anything", "not a hash"));
    }
}
