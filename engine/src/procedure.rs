//! Procedures: statements that are neither queries nor DML, called as `CALL name(args)`.
//! - `CALL forget(id_type, id_value)`: erase a person (see [`crate::identity::forget`]);
//! - `CALL refresh_profiles()`: rebuild the `profiles` table now;
//! - `CALL rebuild_identity()`: resolve identities again in batch (after a rules change).
//!
//! A procedure plans to a [`ProcedureNode`], which [`crate::is_write`] counts as a write: it
//! runs once, at once, and answers a row count like DML.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value,
};

use crate::error::{Error, Result};
use crate::statement::count_schema;

/// A procedure and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
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

/// The logical plan node of a `CALL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcedureNode {
    /// What to run.
    pub procedure: Procedure,
    schema: DFSchemaRef,
}

impl PartialOrd for ProcedureNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.procedure.partial_cmp(&other.procedure)
    }
}

impl UserDefinedLogicalNodeCore for ProcedureNode {
    fn name(&self) -> &str {
        "Procedure"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Procedure: {:?}", self.procedure)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        Ok(self.clone())
    }
}

/// The procedure a plan runs, if it is one.
pub fn procedure_of(plan: &LogicalPlan) -> Option<&Procedure> {
    match plan {
        LogicalPlan::Extension(Extension { node }) => node
            .as_any()
            .downcast_ref::<ProcedureNode>()
            .map(|n| &n.procedure),
        _ => None,
    }
}

const USAGE: &str = "procedures: forget(id_type, id_value), refresh_profiles(), rebuild_identity()";

/// The plan of a `CALL` statement; `None` for any other statement.
pub fn plan_call(statement: &DfStatement) -> Result<Option<LogicalPlan>> {
    let DfStatement::Statement(statement) = statement else {
        return Ok(None);
    };
    let Statement::Call(function) = statement.as_ref() else {
        return Ok(None);
    };
    let name = function.name.to_string().to_lowercase();
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
                        other => Err(Error::InvalidInput(format!(
                            "CALL {name}: arguments are text literals, got {other}"
                        ))),
                    }
                }
                other => Err(Error::InvalidInput(format!(
                    "CALL {name}: arguments are text literals, got {other}"
                ))),
            })
            .collect::<Result<_>>()?,
        FunctionArguments::Subquery(_) => {
            return Err(Error::InvalidInput(format!(
                "CALL {name}: arguments are text literals"
            )));
        }
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
    let schema = Arc::new(DFSchema::try_from(count_schema().as_ref().clone())?);
    Ok(Some(LogicalPlan::Extension(Extension {
        node: Arc::new(ProcedureNode { procedure, schema }),
    })))
}
