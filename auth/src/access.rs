//! [`Access`]: the rights of the caller of one request, resolved from their login. The engine
//! keeps it in the session and asks it before planning anything; the server asks it for
//! ingest and for the tenant a call runs in.

use std::collections::BTreeMap;
use std::sync::Arc;

use tributary_catalog::DEFAULT_TENANT;

use crate::error::{Error, Result};
use crate::role::{Role, StatementClass};
use crate::tokens::TokenSession;

/// What the caller of one request may do.
#[derive(Debug, Clone)]
pub struct Access {
    user: String,
    superuser: bool,
    grants: BTreeMap<String, Role>,
    login: Option<Arc<TokenSession>>,
}

impl Access {
    /// The rights of `user`, logged in with `login` (a token) or with credentials on this call.
    pub fn new(
        user: &str,
        superuser: bool,
        grants: BTreeMap<String, Role>,
        login: Option<Arc<TokenSession>>,
    ) -> Self {
        Self {
            user: user.to_string(),
            superuser,
            grants,
            login,
        }
    }

    /// The user's name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// True for a superuser (every tenant, every right).
    pub fn is_superuser(&self) -> bool {
        self.superuser
    }

    /// The user's grants: tenant → role.
    pub fn grants(&self) -> &BTreeMap<String, Role> {
        &self.grants
    }

    /// The user's role on `tenant` (admin everywhere for a superuser).
    pub fn role_on(&self, tenant: &str) -> Option<Role> {
        if self.superuser {
            return Some(Role::Admin);
        }
        self.grants.get(tenant).copied()
    }

    /// True when the user may see `tenant` at all.
    pub fn sees(&self, tenant: &str) -> bool {
        self.role_on(tenant).is_some()
    }

    /// Refuses what the user may not do in `tenant`. A tenant the user may not see is refused
    /// with the same words whether it exists or not.
    pub fn require(&self, tenant: &str, class: StatementClass) -> Result<()> {
        if class == StatementClass::Superuser {
            return if self.superuser {
                Ok(())
            } else {
                Err(Error::PermissionDenied(format!(
                    "user '{}' may not {class}: only a superuser may",
                    self.user
                )))
            };
        }
        match self.role_on(tenant) {
            Some(role) if role.allows(class) => Ok(()),
            Some(role) => Err(Error::PermissionDenied(format!(
                "user '{}' is {} on tenant '{tenant}' and may not {class} there",
                self.user,
                article(role)
            ))),
            None => Err(self.not_granted(tenant)),
        }
    }

    /// The refusal of a tenant the user may not see.
    pub fn not_granted(&self, tenant: &str) -> Error {
        Error::PermissionDenied(format!(
            "tenant '{tenant}' is not available to user '{}'",
            self.user
        ))
    }

    /// The tenant a call runs in: the one asked for (if the user may see it), else the one
    /// chosen with `USE`, else the user's only (or first) tenant.
    pub fn tenant(&self, asked: Option<&str>) -> Result<String> {
        if let Some(tenant) = asked {
            return if self.sees(tenant) {
                Ok(tenant.to_string())
            } else {
                Err(self.not_granted(tenant))
            };
        }
        if let Some(chosen) = self.login.as_ref().and_then(|l| l.tenant())
            && self.sees(&chosen)
        {
            return Ok(chosen);
        }
        if self.superuser || self.grants.contains_key(DEFAULT_TENANT) {
            return Ok(DEFAULT_TENANT.to_string());
        }
        self.grants.keys().next().cloned().ok_or_else(|| {
            Error::PermissionDenied(format!(
                "user '{}' has no tenant: an admin grants one with GRANT analyst ON TENANT t TO {}",
                self.user, self.user
            ))
        })
    }

    /// `USE tenant`: the tenant of this login's following calls.
    pub fn use_tenant(&self, tenant: &str) -> Result<()> {
        if !self.sees(tenant) {
            return Err(self.not_granted(tenant));
        }
        match &self.login {
            Some(login) => {
                login.set_tenant(tenant);
                Ok(())
            }
            None => Err(Error::InvalidInput(
                "USE needs a login that lasts (a bearer token from the handshake); \
                 name the tenant with the x-tributary-tenant header instead"
                    .into(),
            )),
        }
    }
}

fn article(role: Role) -> String {
    match role {
        Role::Admin | Role::Analyst => format!("an {role}"),
        Role::Writer => format!("a {role}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyst_of_a() -> Access {
        Access::new(
            "ana",
            false,
            BTreeMap::from([("brand_a".to_string(), Role::Analyst)]),
            None,
        )
    }

    #[test]
    fn a_hidden_tenant_is_refused_with_the_same_words_as_a_missing_one() {
        let access = analyst_of_a();
        let hidden = access.require("brand_b", StatementClass::Read).unwrap_err();
        let missing = access.require("nowhere", StatementClass::Read).unwrap_err();
        assert_eq!(
            hidden.to_string().replace("brand_b", "X"),
            missing.to_string().replace("nowhere", "X")
        );
    }

    #[test]
    fn roles_decide_within_a_granted_tenant() {
        let access = analyst_of_a();
        access.require("brand_a", StatementClass::Read).unwrap();
        let error = access
            .require("brand_a", StatementClass::Write)
            .unwrap_err();
        assert!(error.to_string().contains("is an analyst"), "{error}");
        assert!(
            access
                .require("brand_a", StatementClass::Superuser)
                .is_err()
        );
    }

    #[test]
    fn the_tenant_defaults_to_the_only_grant_and_asked_ones_are_checked() {
        let access = analyst_of_a();
        assert_eq!(access.tenant(None).unwrap(), "brand_a");
        assert!(access.tenant(Some("brand_b")).is_err());
        let nobody = Access::new("x", false, BTreeMap::new(), None);
        assert!(nobody.tenant(None).is_err());
        let root = Access::new("root", true, BTreeMap::new(), None);
        assert_eq!(root.tenant(None).unwrap(), "default");
        assert_eq!(root.tenant(Some("brand_b")).unwrap(), "brand_b");
    }
}
