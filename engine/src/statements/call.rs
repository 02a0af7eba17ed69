//! `CALL name(args)`: procedures, statements that are neither queries nor DML.
//! - `CALL forget(id_type, id_value)`: erase a person (see [`crate::identity::forget`]);
//! - `CALL refresh_profiles()`: rebuild the `profiles` table now;
//! - `CALL rebuild_identity()`: resolve identities again in batch (after a rules change).
//!
//! Each changes data: it runs once, at once, and answers a row count like DML (rows erased,
//! profiles written, customers resolved).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement as SqlStatement,
    Value,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::{Statement, StatementClass, Syntax, sql_error};
use crate::Engine;
use crate::dml::count_batch;
use crate::error::{Error, Result};
use crate::identity;
use crate::segments;
use crate::sql_text::string_literal;
use crate::tenant_of;
use tributary_catalog::builtin::SEGMENT_MEMBERS;

/// `CALL …`.
pub const SYNTAX: Syntax = Syntax {
    leading: &["CALL"],
    parse,
};

/// A procedure and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Procedure {
    /// Erase the person an identifier belongs to.
    Forget {
        /// Identifier type.
        id_type: String,
        /// Identifier value.
        value: String,
    },
    /// Rebuild `profiles`.
    RefreshProfiles,
    /// Resolve identities again in batch.
    RebuildIdentity,
}

const USAGE: &str = "procedures: forget(id_type, id_value), refresh_profiles(), rebuild_identity()";

fn parse(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    let SqlStatement::Call(function) = parser.parse_statement().map_err(sql_error)? else {
        return Err(Error::InvalidInput(format!("expected CALL ({USAGE})")));
    };
    let name = function.name.to_string().to_lowercase();
    let bad_argument = |got: &dyn std::fmt::Display| {
        Error::InvalidInput(format!(
            "CALL {name}: arguments are text literals, got {got}"
        ))
    };
    let args: Vec<String> = match &function.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value))) => {
                    match &value.value {
                        Value::SingleQuotedString(s) => Ok(s.clone()),
                        Value::Number(n, _) => Ok(n.clone()),
                        other => Err(bad_argument(other)),
                    }
                }
                other => Err(bad_argument(other)),
            })
            .collect::<Result<_>>()?,
        FunctionArguments::Subquery(query) => return Err(bad_argument(query)),
    };
    let procedure = match (name.as_str(), args.as_slice()) {
        ("forget", [id_type, value]) => Procedure::Forget {
            id_type: id_type.clone(),
            value: value.clone(),
        },
        ("refresh_profiles", []) => Procedure::RefreshProfiles,
        ("rebuild_identity", []) => Procedure::RebuildIdentity,
        ("forget" | "refresh_profiles" | "rebuild_identity", _) => {
            return Err(Error::InvalidInput(format!(
                "CALL {name}: wrong number of arguments ({USAGE})"
            )));
        }
        _ => {
            return Err(Error::InvalidInput(format!(
                "unknown procedure '{name}' ({USAGE})"
            )));
        }
    };
    Ok(Arc::new(procedure))
}

#[async_trait]
impl Statement for Procedure {
    fn sql(&self) -> String {
        match self {
            Self::Forget { id_type, value } => {
                format!(
                    "CALL forget({}, {})",
                    string_literal(id_type),
                    string_literal(value)
                )
            }
            Self::RefreshProfiles => "CALL refresh_profiles()".into(),
            Self::RebuildIdentity => "CALL rebuild_identity()".into(),
        }
    }

    fn class(&self) -> StatementClass {
        StatementClass::Write
    }

    async fn execute(&self, engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let tenant = tenant_of(ctx);
        engine.catalog().require_tenant(&tenant)?;
        let rows = match self {
            Self::Forget { id_type, value } => {
                let mut report = identity::forget::forget(engine, &tenant, id_type, value).await?;
                // Segments sit above identity: their history of the person goes here.
                if let Some(customer) = &report.customer_id {
                    let memberships = segments::erase_customer(engine, &tenant, customer).await?;
                    report
                        .deleted
                        .push((SEGMENT_MEMBERS.to_string(), memberships));
                }
                report.rows()
            }
            Self::RefreshProfiles => {
                identity::profiles::refresh_profiles(engine.identity(), &tenant).await?
            }
            Self::RebuildIdentity => {
                engine.identity().rebuild(&tenant).await?;
                engine
                    .identity()
                    .tenant(&tenant)
                    .read(|g| g.customer_count()) as u64
            }
        };
        Ok(vec![count_batch(rows)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<Arc<dyn Statement>> {
        super::super::parse(sql, "generic").map(|s| s.expect("a CALL"))
    }

    #[test]
    fn procedures_parse_with_their_arguments() {
        let forget = parsed("CALL forget('email', 'o''hara@example.com')").unwrap();
        assert_eq!(forget.sql(), "CALL forget('email', 'o''hara@example.com')");
        assert_eq!(
            parsed("call rebuild_identity()").unwrap().sql(),
            "CALL rebuild_identity()"
        );
    }

    #[test]
    fn bad_calls_name_the_problem() {
        for (sql, expected) in [
            ("CALL forget('email')", "wrong number of arguments"),
            ("CALL refresh_profiles(1)", "wrong number of arguments"),
            (
                "CALL vacuum_everything()",
                "unknown procedure 'vacuum_everything'",
            ),
            (
                "CALL forget('email', lower('A'))",
                "arguments are text literals",
            ),
            ("CALL forget('email', NULL)", "arguments are text literals"),
        ] {
            let error = parsed(sql).unwrap_err();
            assert!(error.is_user_error(), "{sql}");
            assert!(error.to_string().contains(expected), "{sql}: {error}");
        }
    }
}
