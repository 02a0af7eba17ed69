//! The users of a data root and their grants: one JSON document, `_tributary/users.json`, that
//! `tributary user …` (on the data root directly) and a running server (through SQL) both change.
//! The server reads it again at most once a second, so a change made by either is seen by the
//! other within a second. Every rule about who may change whom is here, once, for both.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tributary_catalog::{SYSTEM_DIRECTORY, Storage, validate_name};

use crate::access::Access;
use crate::credential::Credential;
use crate::error::{Error, Result};
use crate::password;
use crate::role::Role;
use crate::tokens::TokenStore;

const USERS_FILE: &str = "users.json";
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One user as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Login name (`[a-z_][a-z0-9_]*`).
    pub name: String,
    /// Argon2id hash in PHC format.
    pub password_hash: String,
    /// Every right on every tenant, tenants and users included.
    #[serde(default)]
    pub superuser: bool,
    /// Tenant → role.
    #[serde(default)]
    pub grants: BTreeMap<String, Role>,
    /// Bumped to revoke every token of the user (a new password does it too).
    #[serde(default)]
    pub token_generation: u64,
    /// When the user was made (RFC 3339).
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: Vec<User>,
}

type Users = Arc<BTreeMap<String, User>>;

/// The users of a data root, and the live logins of this process.
#[derive(Debug)]
pub struct Directory {
    storage: Storage,
    loaded: RwLock<(Users, Option<Instant>)>,
    tokens: TokenStore,
}

impl Directory {
    /// Reads the users of a data root.
    pub async fn open(storage: Storage) -> Result<Self> {
        let directory = Self {
            storage,
            loaded: RwLock::new((Arc::default(), None)),
            tokens: TokenStore::default(),
        };
        directory.reload().await?;
        Ok(directory)
    }

    async fn reload(&self) -> Result<Users> {
        let users = Arc::new(read(&self.storage).await?);
        *self.loaded.write().expect("directory poisoned") =
            (Arc::clone(&users), Some(Instant::now()));
        Ok(users)
    }

    /// Every user, read again from the data root when the last read is over a second old.
    pub async fn users(&self) -> Result<Users> {
        let (users, at) = self.loaded.read().expect("directory poisoned").clone();
        if at.is_some_and(|at| at.elapsed() < RELOAD_EVERY) {
            return Ok(users);
        }
        match self.reload().await {
            Ok(users) => Ok(users),
            Err(e) => {
                tracing::warn!("cannot read the users; using the last ones read: {e}");
                Ok(users)
            }
        }
    }

    /// True when no user exists: the server then lets every local client in (see the docs).
    pub async fn is_open(&self) -> Result<bool> {
        Ok(self.users().await?.is_empty())
    }

    /// As [`Self::is_open`], reading the users again first: for a client that sends a login,
    /// which a user made a moment ago by `tributary user add` must answer.
    pub async fn is_open_now(&self) -> Result<bool> {
        Ok(self.reload().await?.is_empty())
    }

    /// Checks a user's password. An unknown user and a wrong password get the same answer.
    pub async fn login(&self, name: &str, password: &str) -> Result<Access> {
        Ok(access_of(&self.verify(name, password).await?, None))
    }

    /// Logs in with user and password and returns a token for the following calls.
    pub async fn login_for_token(
        &self,
        name: &str,
        password: &str,
        lifetime: Duration,
    ) -> Result<String> {
        let user = self.verify(name, password).await?;
        Ok(self
            .tokens
            .issue(&user.name, user.token_generation, lifetime))
    }

    /// The user whose password this is (as read once, for the check and the token alike).
    async fn verify(&self, name: &str, password: &str) -> Result<User> {
        let users = self.users().await?;
        let user = users.get(name).cloned();
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_string();
        // Argon2 takes tens of milliseconds of CPU: off the async workers.
        let matches = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => password::verify(&password, &hash),
            None => {
                // As slow for an unknown user as for a known one.
                let _ = password::verify(&password, DUMMY_HASH);
                false
            }
        })
        .await
        .unwrap_or(false);
        match user {
            Some(user) if matches => Ok(user),
            _ => Err(Error::Unauthenticated("wrong user name or password".into())),
        }
    }

    /// The rights of a token's user, as they are now (a revoked grant is gone at once).
    pub async fn login_with_token(&self, secret: &str) -> Result<Access> {
        let login = self.tokens.session(secret)?;
        let users = self.users().await?;
        match users.get(&login.user) {
            Some(user) if user.token_generation == login.generation => {
                Ok(access_of(user, Some(login)))
            }
            _ => {
                self.tokens.revoke(secret);
                Err(Error::Unauthenticated(
                    "the token was revoked: log in again with user and password".into(),
                ))
            }
        }
    }

    /// Ends a token's login.
    pub fn log_out(&self, secret: &str) -> bool {
        self.tokens.revoke(secret)
    }

    /// The caller of a request from its `authorization` header (`Bearer <token>` or `Basic
    /// <base64 user:password>`, padded or not); `None` while no user exists (open server).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Option<Access>> {
        if self.is_open().await? {
            return Ok(None);
        }
        let Some(header) = authorization.map(str::trim) else {
            return Err(Error::Unauthenticated(
                "this server needs a login: send user and password (the Flight SQL handshake, \
                 HTTP basic auth) or a bearer token"
                    .into(),
            ));
        };
        match Credential::parse(header)? {
            Credential::Bearer(token) => self.login_with_token(&token).await.map(Some),
            Credential::Basic { name, password } => self.login(&name, &password).await.map(Some),
        }
    }

    /// Applies a change to the users and stores it (read, change, write: the file as it is
    /// now, not as this process last saw it).
    async fn change<T>(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, User>) -> Result<T>,
    ) -> Result<T> {
        let mut users = read(&self.storage).await?;
        let answer = edit(&mut users)?;
        write(&self.storage, &users).await?;
        self.reload().await?;
        Ok(answer)
    }

    /// Makes a user. `actor` is the caller (`None`: the local command line, which may do
    /// anything); only a superuser makes superusers, an admin of some tenant makes others.
    pub async fn create_user(
        &self,
        actor: Option<&Access>,
        name: &str,
        password: &str,
        superuser: bool,
    ) -> Result<()> {
        validate_name("user", name).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if let Some(actor) = actor
            && !(actor.is_superuser()
                || (!superuser && actor.grants().values().any(|r| *r == Role::Admin)))
        {
            return Err(Error::PermissionDenied(format!(
                "user '{}' may not create {}users",
                actor.user(),
                if superuser { "super" } else { "" }
            )));
        }
        let password_hash = hash_off_thread(password).await?;
        self.change(|users| {
            if users.contains_key(name) {
                return Err(Error::AlreadyExists(format!(
                    "user '{name}' already exists"
                )));
            }
            users.insert(
                name.to_string(),
                User {
                    name: name.to_string(),
                    password_hash,
                    superuser,
                    grants: BTreeMap::new(),
                    token_generation: 0,
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            );
            Ok(())
        })
        .await
    }

    /// Removes a user; their tokens stop working.
    pub async fn drop_user(&self, actor: Option<&Access>, name: &str) -> Result<()> {
        self.change(|users| {
            let target = find(users, name)?;
            may_manage(actor, target)?;
            let superusers = users.values().filter(|u| u.superuser).count();
            if target.superuser && superusers == 1 && users.len() > 1 {
                return Err(Error::InvalidInput(format!(
                    "'{name}' is the last superuser: make another one before dropping it"
                )));
            }
            users.remove(name);
            Ok(())
        })
        .await
    }

    /// Sets a user's password (the user themselves may); their tokens stop working.
    pub async fn set_password(
        &self,
        actor: Option<&Access>,
        name: &str,
        password: &str,
    ) -> Result<()> {
        let password_hash = hash_off_thread(password).await?;
        self.change(|users| {
            let target = find_mut(users, name)?;
            may_manage_or_is(actor, target)?;
            target.password_hash = password_hash;
            target.token_generation += 1;
            Ok(())
        })
        .await
    }

    /// Ends every login of a user (the user themselves may).
    pub async fn revoke_tokens(&self, actor: Option<&Access>, name: &str) -> Result<()> {
        self.change(|users| {
            let target = find_mut(users, name)?;
            may_manage_or_is(actor, target)?;
            target.token_generation += 1;
            Ok(())
        })
        .await
    }

    /// Grants `role` on `tenant` (which the caller has checked exists) to a user, replacing the
    /// role they had there.
    pub async fn grant(
        &self,
        actor: Option<&Access>,
        name: &str,
        tenant: &str,
        role: Role,
    ) -> Result<()> {
        administers(actor, tenant)?;
        self.change(|users| {
            let target = find_mut(users, name)?;
            target.grants.insert(tenant.to_string(), role);
            Ok(())
        })
        .await
    }

    /// Takes away a user's role on `tenant`.
    pub async fn revoke(&self, actor: Option<&Access>, name: &str, tenant: &str) -> Result<()> {
        administers(actor, tenant)?;
        self.change(|users| {
            let target = find_mut(users, name)?;
            if target.grants.remove(tenant).is_none() {
                return Err(Error::NotFound(format!(
                    "user '{name}' has no role on tenant '{tenant}'"
                )));
            }
            Ok(())
        })
        .await
    }

    /// The users `actor` may see: all for a superuser (and the command line); for others
    /// themselves and the users of the tenants they administer, with only those grants shown.
    pub async fn visible_users(&self, actor: Option<&Access>) -> Result<Vec<User>> {
        let users = self.users().await?;
        let Some(actor) = actor.filter(|a| !a.is_superuser()) else {
            return Ok(users.values().cloned().collect());
        };
        let administered = |tenant: &str| actor.role_on(tenant) == Some(Role::Admin);
        Ok(users
            .values()
            .filter(|u| u.name == actor.user() || u.grants.keys().any(|t| administered(t)))
            .map(|u| {
                let mut shown = u.clone();
                if u.name != actor.user() {
                    shown.grants.retain(|t, _| administered(t));
                }
                shown.password_hash = String::new();
                shown
            })
            .collect())
    }
}

/// A valid hash of no password anyone has, to spend the same time on unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3c5Ue1a8h7j2xoJKT0E6sT4q3xkNN0pGo7JwGJ8Mf7s";

fn access_of(user: &User, login: Option<Arc<crate::tokens::TokenSession>>) -> Access {
    Access::new(&user.name, user.superuser, user.grants.clone(), login)
}

fn find<'a>(users: &'a BTreeMap<String, User>, name: &str) -> Result<&'a User> {
    users
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("user '{name}' does not exist")))
}

fn find_mut<'a>(users: &'a mut BTreeMap<String, User>, name: &str) -> Result<&'a mut User> {
    users
        .get_mut(name)
        .ok_or_else(|| Error::NotFound(format!("user '{name}' does not exist")))
}

/// As [`may_manage`], and a user may always act on themselves (a new password, their tokens).
fn may_manage_or_is(actor: Option<&Access>, target: &User) -> Result<()> {
    match actor {
        Some(actor) if actor.user() == target.name => Ok(()),
        _ => may_manage(actor, target),
    }
}

/// A caller may manage (drop, set the password of) a user when they are a superuser, or when
/// the user is no superuser and every tenant of the user is one the caller administers.
fn may_manage(actor: Option<&Access>, target: &User) -> Result<()> {
    let Some(actor) = actor else { return Ok(()) };
    let allowed = actor.is_superuser()
        || (!target.superuser
            && target
                .grants
                .keys()
                .all(|t| actor.role_on(t) == Some(Role::Admin))
            && actor.grants().values().any(|r| *r == Role::Admin));
    if allowed {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "user '{}' may not manage user '{}': that needs admin on each of their tenants",
            actor.user(),
            target.name
        )))
    }
}

fn administers(actor: Option<&Access>, tenant: &str) -> Result<()> {
    match actor {
        None => Ok(()),
        Some(actor) => actor.require(tenant, crate::role::StatementClass::Admin),
    }
}

async fn hash_off_thread(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot hash the password: {e}")))?
}

async fn read(storage: &Storage) -> Result<BTreeMap<String, User>> {
    let Some(bytes) = storage.read_system_file(USERS_FILE).await? else {
        return Ok(BTreeMap::new());
    };
    let file: UsersFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Damaged(format!("{SYSTEM_DIRECTORY}/{USERS_FILE} is damaged: {e}")))?;
    Ok(file
        .users
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect())
}

async fn write(storage: &Storage, users: &BTreeMap<String, User>) -> Result<()> {
    let file = UsersFile {
        users: users.values().cloned().collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Damaged(format!("cannot encode the users: {e}")))?;
    storage.write_system_file(USERS_FILE, bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
