//! Bearer tokens: what a client gets for its user and password at the Flight SQL handshake and
//! sends with every later call. Kept in memory only: a restart logs everyone out (clients log in
//! again), and nothing secret is written to the data root.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Default lifetime of a token.
pub const TOKEN_LIFETIME_DEFAULT: Duration = Duration::from_secs(12 * 3600);

/// One login: who, until when, and the tenant picked with `USE`.
#[derive(Debug)]
pub struct TokenSession {
    /// The user logged in.
    pub user: String,
    /// The user's token generation at login: bumped to revoke every token of the user.
    pub generation: u64,
    /// When the token stops working.
    pub expires_at: SystemTime,
    tenant: Mutex<Option<String>>,
}

impl TokenSession {
    /// The tenant chosen with `USE`, if any.
    pub fn tenant(&self) -> Option<String> {
        self.tenant.lock().expect("token session poisoned").clone()
    }

    /// Remembers the tenant chosen with `USE` for the following calls of this login.
    pub fn set_tenant(&self, tenant: &str) {
        *self.tenant.lock().expect("token session poisoned") = Some(tenant.to_string());
    }
}

/// The live tokens of one server.
#[derive(Debug, Default)]
pub struct TokenStore {
    sessions: Mutex<HashMap<String, Arc<TokenSession>>>,
}

impl TokenStore {
    /// A new token for `user`, valid for `lifetime`.
    pub fn issue(&self, user: &str, generation: u64, lifetime: Duration) -> String {
        let secret = format!(
            "trt_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let session = TokenSession {
            user: user.to_string(),
            generation,
            expires_at: SystemTime::now() + lifetime,
            tenant: Mutex::new(None),
        };
        let mut sessions = self.sessions.lock().expect("token store poisoned");
        let now = SystemTime::now();
        sessions.retain(|_, s| s.expires_at > now);
        sessions.insert(secret.clone(), Arc::new(session));
        secret
    }

    /// The login of a token; an unknown or expired token is refused (and forgotten).
    pub fn session(&self, secret: &str) -> Result<Arc<TokenSession>> {
        let mut sessions = self.sessions.lock().expect("token store poisoned");
        let Some(session) = sessions.get(secret).cloned() else {
            return Err(Error::Unauthenticated(
                "unknown or revoked token: log in again with user and password".into(),
            ));
        };
        if session.expires_at <= SystemTime::now() {
            sessions.remove(secret);
            let at: DateTime<Utc> = session.expires_at.into();
            return Err(Error::Unauthenticated(format!(
                "the token expired at {}: log in again with user and password",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        Ok(session)
    }

    /// Ends one login (a client's `CloseSession`).
    pub fn revoke(&self, secret: &str) -> bool {
        self.sessions
            .lock()
            .expect("token store poisoned")
            .remove(secret)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_work_until_revoked_or_expired() {
        let store = TokenStore::default();
        let token = store.issue("ana", 0, Duration::from_secs(60));
        assert_eq!(store.session(&token).unwrap().user, "ana");
        assert!(store.revoke(&token));
        assert!(store.session(&token).is_err());
        let short = store.issue("ana", 0, Duration::ZERO);
        let error = store.session(&short).unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");
        assert!(store.session("trt_guess").is_err());
    }

    #[test]
    fn use_is_remembered_per_login() {
        let store = TokenStore::default();
        let one = store.issue("ana", 0, Duration::from_secs(60));
        let two = store.issue("ana", 0, Duration::from_secs(60));
        store.session(&one).unwrap().set_tenant("brand_b");
        assert_eq!(
            store.session(&one).unwrap().tenant().as_deref(),
            Some("brand_b")
        );
        assert_eq!(store.session(&two).unwrap().tenant(), None);
    }
}
