//! Users and grants in SQL (docs/security.md), for admins; the same changes as `tributary user`:
//! - `CREATE USER name PASSWORD 'secret' [SUPERUSER]`, `DROP USER name`;
//! - `ALTER USER name PASSWORD 'secret'`, `ALTER USER name REVOKE TOKENS`;
//! - `GRANT analyst|writer|admin ON TENANT t TO name`, `REVOKE [role|ALL] ON TENANT t FROM name`;
//! - `SHOW USERS`, `SHOW GRANTS [FOR name]`;
//! - `USE tenant`: the tenant of the login's following calls.
//!
//! Who may change whom is decided by [`tributary_auth::Directory`], the one home of those rules.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use tributary_auth::Role;

use super::{
    Statement, StatementClass, Syntax, expect_word, name, next_is, skip_leading, sql_error,
};
use crate::error::{Error, Result};
use crate::sql_text::identifier;
use crate::{Engine, access_of, tenant_of};

/// `CREATE USER`.
pub const CREATE_USER: Syntax = Syntax {
    leading: &["CREATE", "USER"],
    parse: |parser| {
        skip_leading(parser, 2);
        let name = name(parser)?;
        let password = password(parser)?;
        let superuser = next_is(parser, "SUPERUSER");
        if superuser {
            parser.next_token();
        }
        Ok(Arc::new(UserStatement::Create {
            name,
            password,
            superuser,
        }))
    },
};

/// `DROP USER`.
pub const DROP_USER: Syntax = Syntax {
    leading: &["DROP", "USER"],
    parse: |parser| {
        skip_leading(parser, 2);
        Ok(Arc::new(UserStatement::Drop {
            name: name(parser)?,
        }))
    },
};

/// `ALTER USER … PASSWORD | REVOKE TOKENS`.
pub const ALTER_USER: Syntax = Syntax {
    leading: &["ALTER", "USER"],
    parse: |parser| {
        skip_leading(parser, 2);
        let name = name(parser)?;
        if next_is(parser, "REVOKE") {
            parser.next_token();
            expect_word(
                parser,
                "TOKENS",
                &format!("TOKENS after ALTER USER {name} REVOKE"),
            )?;
            return Ok(Arc::new(UserStatement::RevokeTokens { name }));
        }
        Ok(Arc::new(UserStatement::SetPassword {
            password: password(parser)?,
            name,
        }))
    },
};

/// `GRANT role ON TENANT t TO user`.
pub const GRANT: Syntax = Syntax {
    leading: &["GRANT"],
    parse: |parser| {
        skip_leading(parser, 1);
        let role: Role = name(parser)?.parse()?;
        let tenant = on_tenant(parser)?;
        parser.expect_keyword_is(Keyword::TO).map_err(sql_error)?;
        Ok(Arc::new(UserStatement::Grant {
            role,
            tenant,
            name: name(parser)?,
        }))
    },
};

/// `REVOKE [role | ALL] ON TENANT t FROM user`.
pub const REVOKE: Syntax = Syntax {
    leading: &["REVOKE"],
    parse: |parser| {
        skip_leading(parser, 1);
        if !parser.parse_keyword(Keyword::ALL) {
            let _: Role = name(parser)?.parse()?;
        }
        let tenant = on_tenant(parser)?;
        parser.expect_keyword_is(Keyword::FROM).map_err(sql_error)?;
        Ok(Arc::new(UserStatement::Revoke {
            tenant,
            name: name(parser)?,
        }))
    },
};

/// `SHOW USERS`.
pub const SHOW_USERS: Syntax = Syntax {
    leading: &["SHOW", "USERS"],
    parse: |parser| {
        skip_leading(parser, 2);
        Ok(Arc::new(UserStatement::ShowUsers))
    },
};

/// `SHOW GRANTS [FOR user]`.
pub const SHOW_GRANTS: Syntax = Syntax {
    leading: &["SHOW", "GRANTS"],
    parse: |parser| {
        skip_leading(parser, 2);
        let name = if parser.parse_keyword(Keyword::FOR) {
            Some(name(parser)?)
        } else {
            None
        };
        Ok(Arc::new(UserStatement::ShowGrants { name }))
    },
};

/// `USE tenant`.
pub const USE: Syntax = Syntax {
    leading: &["USE"],
    parse: |parser| {
        skip_leading(parser, 1);
        Ok(Arc::new(UserStatement::Use {
            tenant: name(parser)?,
        }))
    },
};

fn password(parser: &mut Parser) -> Result<String> {
    expect_word(parser, "PASSWORD", "PASSWORD '…'")?;
    parser.parse_literal_string().map_err(sql_error)
}

fn on_tenant(parser: &mut Parser) -> Result<String> {
    parser.expect_keyword_is(Keyword::ON).map_err(sql_error)?;
    expect_word(parser, "TENANT", "TENANT after ON")?;
    name(parser)
}

/// A statement about users, grants or the login's tenant.
#[derive(Debug)]
pub enum UserStatement {
    /// Make a user.
    Create {
        /// Login name.
        name: String,
        /// Password (never shown back).
        password: String,
        /// Every right everywhere.
        superuser: bool,
    },
    /// Remove a user.
    Drop {
        /// Login name.
        name: String,
    },
    /// Set a user's password (ends their logins).
    SetPassword {
        /// Login name.
        name: String,
        /// The new password.
        password: String,
    },
    /// End every login of a user.
    RevokeTokens {
        /// Login name.
        name: String,
    },
    /// Give a user a role on a tenant.
    Grant {
        /// The role.
        role: Role,
        /// The tenant.
        tenant: String,
        /// Login name.
        name: String,
    },
    /// Take a user's role on a tenant away.
    Revoke {
        /// The tenant.
        tenant: String,
        /// Login name.
        name: String,
    },
    /// List the users the caller may see.
    ShowUsers,
    /// List grants: the caller's, or a user's.
    ShowGrants {
        /// The user (default: the caller).
        name: Option<String>,
    },
    /// Pick the login's tenant.
    Use {
        /// The tenant.
        tenant: String,
    },
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

#[async_trait]
impl Statement for UserStatement {
    fn sql(&self) -> String {
        match self {
            Self::Create {
                name, superuser, ..
            } => format!(
                "CREATE USER {} PASSWORD '********'{}",
                identifier(name),
                if *superuser { " SUPERUSER" } else { "" }
            ),
            Self::Drop { name } => format!("DROP USER {}", identifier(name)),
            Self::SetPassword { name, .. } => {
                format!("ALTER USER {} PASSWORD '********'", identifier(name))
            }
            Self::RevokeTokens { name } => format!("ALTER USER {} REVOKE TOKENS", identifier(name)),
            Self::Grant { role, tenant, name } => format!(
                "GRANT {role} ON TENANT {} TO {}",
                identifier(tenant),
                identifier(name)
            ),
            Self::Revoke { tenant, name } => format!(
                "REVOKE ALL ON TENANT {} FROM {}",
                identifier(tenant),
                identifier(name)
            ),
            Self::ShowUsers => "SHOW USERS".into(),
            Self::ShowGrants { name: None } => "SHOW GRANTS".into(),
            Self::ShowGrants { name: Some(name) } => {
                format!("SHOW GRANTS FOR {}", identifier(name))
            }
            Self::Use { tenant } => format!("USE {}", identifier(tenant)),
        }
    }

    fn class(&self) -> StatementClass {
        match self {
            Self::ShowUsers | Self::ShowGrants { .. } | Self::Use { .. } => StatementClass::Read,
            _ => StatementClass::Users,
        }
    }

    fn changes_data(&self) -> bool {
        !matches!(self, Self::ShowUsers | Self::ShowGrants { .. })
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Self::ShowUsers => Arc::new(Schema::new(vec![
                text("name"),
                Field::new("superuser", DataType::Boolean, false),
                text("grants"),
            ])),
            Self::ShowGrants { .. } => Arc::new(Schema::new(vec![
                text("user"),
                text("tenant"),
                text("role"),
            ])),
            _ => crate::dml::count_schema(),
        }
    }

    async fn execute(&self, engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let access = access_of(ctx);
        let actor = access.as_deref();
        let users = engine.directory();
        match self {
            Self::Create {
                name,
                password,
                superuser,
            } => users.create_user(actor, name, password, *superuser).await?,
            Self::Drop { name } => users.drop_user(actor, name).await?,
            Self::SetPassword { name, password } => {
                users.set_password(actor, name, password).await?
            }
            Self::RevokeTokens { name } => users.revoke_tokens(actor, name).await?,
            Self::Grant { role, tenant, name } => {
                // The right first, then existence: a tenant the caller may not administer is
                // refused alike whether it exists or not (the directory checks again).
                if let Some(actor) = actor {
                    actor.require(tenant, StatementClass::Admin)?;
                }
                engine.catalog().require_tenant(tenant)?;
                users.grant(actor, name, tenant, *role).await?;
            }
            Self::Revoke { tenant, name } => users.revoke(actor, name, tenant).await?,
            Self::Use { tenant } => match actor {
                Some(actor) => actor.use_tenant(tenant)?,
                None => {
                    return Err(Error::InvalidInput(
                        "USE needs a login (this server has no users): name the tenant with \
                         the x-tributary-tenant header instead"
                            .into(),
                    ));
                }
            },
            Self::ShowUsers => return show_users(engine, actor, self.schema()).await,
            Self::ShowGrants { name } => {
                let caller = actor.map(|a| a.user().to_string());
                let who = name.clone().or(caller);
                return show_grants(engine, ctx, actor, who.as_deref(), self.schema()).await;
            }
        }
        Ok(vec![crate::dml::count_batch(1)])
    }
}

async fn show_users(
    engine: &Engine,
    actor: Option<&tributary_auth::Access>,
    schema: SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let users = engine.directory().visible_users(actor).await?;
    let grants: Vec<String> = users
        .iter()
        .map(|u| {
            u.grants
                .iter()
                .map(|(tenant, role)| format!("{tenant}={role}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(users.iter().map(|u| &u.name))),
            Arc::new(BooleanArray::from_iter(
                users.iter().map(|u| Some(u.superuser)),
            )),
            Arc::new(StringArray::from_iter_values(grants)),
        ],
    )?])
}

async fn show_grants(
    engine: &Engine,
    ctx: &SessionContext,
    actor: Option<&tributary_auth::Access>,
    who: Option<&str>,
    schema: SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let users = engine.directory().visible_users(actor).await?;
    let rows: Vec<(String, String, String)> = users
        .iter()
        .filter(|u| who.is_none_or(|w| w == u.name))
        .flat_map(|u| {
            u.grants
                .iter()
                .map(|(tenant, role)| (u.name.clone(), tenant.clone(), role.to_string()))
                .chain(
                    u.superuser
                        .then(|| (u.name.clone(), "*".to_string(), "superuser".to_string())),
                )
        })
        .collect();
    if let Some(who) = who
        && !users.iter().any(|u| u.name == who)
    {
        return Err(Error::NotFound(format!(
            "user '{who}' does not exist (or is not one you manage in tenant '{}')",
            tenant_of(ctx)
        )));
    }
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.2))),
        ],
    )?])
}

#[cfg(test)]
mod tests {
    use crate::statements::parse;

    #[test]
    fn passwords_never_appear_in_the_statement_text() {
        for sql in [
            "CREATE USER carol PASSWORD 'do not print me' SUPERUSER",
            "ALTER USER carol PASSWORD 'do not print me'",
        ] {
            let statement = parse(sql, "generic").unwrap().unwrap();
            assert!(!statement.sql().contains("print"), "{}", statement.sql());
            assert!(
                statement.sql().contains("'********'"),
                "{}",
                statement.sql()
            );
        }
    }
}
