//! Tributary's own SQL statements: the one home for every statement DataFusion does not know
//! (`CALL`, `EXPLAIN SEGMENT`, segments, destinations and activations, users and grants, `USE`).
//!
//! A statement lives in one file of this module, which gives:
//! - its [`Syntax`]: the leading keywords that pick it and a parser over sqlparser's [`Parser`]
//!   (the same tokenizer and dialect as DataFusion's own statements);
//! - a type implementing [`Statement`]: what it needs to run ([`StatementClass`], for role checks),
//!   whether it changes data, the schema of its answer and how it runs against the [`Engine`].
//!
//! [`parse`] tries every syntax in [`SYNTAXES`] before DataFusion sees the text; a match plans to
//! a [`StatementNode`] (a DataFusion extension node, so EXPLAIN, prepared statements and the
//! Flight SQL edge handle it like any plan), and [`crate::Engine::execute`] runs it.

pub mod activation;
pub mod call;
pub mod explain_segment;
pub mod segment;
pub mod users;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    DdlStatement, Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::Engine;
use crate::error::{Error, Result};

pub use tributary_auth::StatementClass;

/// One of Tributary's own statements, parsed and ready to run.
#[async_trait]
pub trait Statement: fmt::Debug + Send + Sync {
    /// The statement as SQL, for EXPLAIN and logs.
    fn sql(&self) -> String;

    /// What it needs to be allowed.
    fn class(&self) -> StatementClass;

    /// True when it changes data: it then runs once, at once (as DDL and DML do), and answers
    /// one row with the `count` of rows it changed. Otherwise it answers rows of
    /// [`Statement::schema`] and may run again each time its result is fetched.
    fn changes_data(&self) -> bool {
        true
    }

    /// The schema of the answer.
    fn schema(&self) -> SchemaRef {
        crate::dml::count_schema()
    }

    /// Runs the statement for the session's tenant.
    async fn execute(&self, engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>>;
}

/// How a statement is recognised and parsed.
pub struct Syntax {
    /// The keywords it starts with, upper case (`["CALL"]`, `["CREATE", "SEGMENT"]`).
    pub leading: &'static [&'static str],
    /// Parses the whole statement, leading keywords included; the parser stops at its end.
    pub parse: fn(&mut Parser) -> Result<Arc<dyn Statement>>,
}

/// Every statement of our own, tried in order before DataFusion parses the text.
pub const SYNTAXES: &[Syntax] = &[
    call::SYNTAX,
    explain_segment::SYNTAX,
    segment::CREATE,
    segment::REFRESH,
    segment::DROP,
    segment::SHOW,
    activation::CREATE_DESTINATION,
    activation::DROP_DESTINATION,
    activation::SHOW_DESTINATIONS,
    activation::ACTIVATE,
    activation::DEACTIVATE,
    activation::SHOW_ACTIVATIONS,
    users::CREATE_USER,
    users::DROP_USER,
    users::ALTER_USER,
    users::GRANT,
    users::REVOKE,
    users::SHOW_USERS,
    users::SHOW_GRANTS,
    users::USE,
];

/// Parses `sql` as one of our statements; `None` when it is not one (DataFusion takes it).
pub fn parse(sql: &str, dialect_name: &str) -> Result<Option<Arc<dyn Statement>>> {
    let dialect = dialect_from_str(dialect_name)
        .ok_or_else(|| Error::InvalidInput(format!("unsupported SQL dialect '{dialect_name}'")))?;
    let mut parser = Parser::new(dialect.as_ref())
        .try_with_sql(sql)
        .map_err(sql_error)?;
    let Some(syntax) = SYNTAXES.iter().find(|s| starts_with(&parser, s.leading)) else {
        return Ok(None);
    };
    let statement = (syntax.parse)(&mut parser)?;
    while parser.consume_token(&Token::SemiColon) {}
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(sql_error(ParserError::ParserError(format!(
            "expected the end of the statement after {}, found {rest}",
            statement.sql()
        ))));
    }
    Ok(Some(statement))
}

fn starts_with(parser: &Parser, leading: &[&str]) -> bool {
    leading
        .iter()
        .enumerate()
        .all(|(n, keyword)| match parser.peek_nth_token(n).token {
            Token::Word(word) => word.value.eq_ignore_ascii_case(keyword),
            _ => false,
        })
}

/// A syntax error, reported as DataFusion reports its own.
pub fn sql_error(error: ParserError) -> Error {
    DataFusionError::SQL(Box::new(error), None).into()
}

/// Steps over a statement's leading keywords.
fn skip_leading(parser: &mut Parser, words: usize) {
    for _ in 0..words {
        parser.next_token();
    }
}

/// An object name (a segment, a destination): an identifier, quoted or not.
fn name(parser: &mut Parser) -> Result<String> {
    Ok(parser.parse_identifier().map_err(sql_error)?.value)
}

/// True when the next token is the word `word` (any case).
fn next_is(parser: &Parser, word: &str) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// Steps over the word `word` (any case), or refuses: "expected {expected}, found …".
fn expect_word(parser: &mut Parser, word: &str, expected: &str) -> Result<()> {
    if !next_is(parser, word) {
        return Err(sql_error(ParserError::ParserError(format!(
            "expected {expected}, found {}",
            parser.peek_token()
        ))));
    }
    parser.next_token();
    Ok(())
}

/// The logical plan node of one of our statements.
#[derive(Debug, Clone)]
pub struct StatementNode {
    /// The statement to run.
    pub statement: Arc<dyn Statement>,
    schema: DFSchemaRef,
}

impl StatementNode {
    /// The plan of `statement`.
    pub fn plan(statement: Arc<dyn Statement>) -> Result<LogicalPlan> {
        let schema = Arc::new(DFSchema::try_from(statement.schema().as_ref().clone())?);
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(Self { statement, schema }),
        }))
    }
}

impl PartialEq for StatementNode {
    fn eq(&self, other: &Self) -> bool {
        self.statement.sql() == other.statement.sql()
    }
}

impl Eq for StatementNode {}

impl PartialOrd for StatementNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.statement.sql().partial_cmp(&other.statement.sql())
    }
}

impl Hash for StatementNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.statement.sql().hash(state);
    }
}

impl UserDefinedLogicalNodeCore for StatementNode {
    fn name(&self) -> &str {
        "TributaryStatement"
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
        write!(f, "TributaryStatement: {}", self.statement.sql())
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        Ok(self.clone())
    }
}

/// The statement of our own a plan runs, if it is one.
pub fn statement_of(plan: &LogicalPlan) -> Option<&Arc<dyn Statement>> {
    match plan {
        LogicalPlan::Extension(Extension { node }) => node
            .as_any()
            .downcast_ref::<StatementNode>()
            .map(|n| &n.statement),
        _ => None,
    }
}

/// What any plan needs to be allowed: ours say so themselves; DataFusion's DML and table DDL
/// write, making or dropping a tenant is for a superuser, everything else reads.
pub fn class_of(plan: &LogicalPlan) -> StatementClass {
    if let Some(statement) = statement_of(plan) {
        return statement.class();
    }
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateCatalog(_) | DdlStatement::DropCatalogSchema(_)) => {
            StatementClass::Superuser
        }
        LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => StatementClass::Write,
        // EXPLAIN ANALYZE runs what it explains.
        LogicalPlan::Analyze(analyze) => class_of(&analyze.input),
        _ => StatementClass::Read,
    }
}

/// True for plans that change data or tables: they run once, at once (Flight SQL clients expect
/// DDL to have happened when `execute` returns), and answer a row count.
pub fn is_write(plan: &LogicalPlan) -> bool {
    match statement_of(plan) {
        Some(statement) => statement.changes_data(),
        None => matches!(
            plan,
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIALECT: &str = "generic";

    #[test]
    fn other_statements_are_left_to_datafusion() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "call_me_maybe",
            "",
            "  ",
        ] {
            assert!(parse(sql, DIALECT).unwrap().is_none(), "{sql}");
        }
    }

    #[test]
    fn leading_keywords_match_in_any_case() {
        for sql in [
            "CALL refresh_profiles()",
            "call Refresh_Profiles();",
            "  CaLl refresh_profiles() ;;",
        ] {
            let statement = parse(sql, DIALECT).unwrap().expect(sql);
            assert_eq!(statement.sql(), "CALL refresh_profiles()");
        }
    }

    #[test]
    fn text_after_the_statement_is_refused() {
        let error = parse("CALL refresh_profiles() SELECT 1", DIALECT).unwrap_err();
        assert!(error.is_user_error());
        assert!(
            error
                .to_string()
                .contains("expected the end of the statement"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_dialect_is_named() {
        let error = parse("CALL refresh_profiles()", "klingon").unwrap_err();
        assert!(error.to_string().contains("klingon"), "{error}");
    }

    #[test]
    fn plans_are_classified() {
        let call = StatementNode::plan(parse("CALL rebuild_identity()", DIALECT).unwrap().unwrap())
            .unwrap();
        assert_eq!(class_of(&call), StatementClass::Write);
        assert!(is_write(&call));
        let query = datafusion::logical_expr::LogicalPlanBuilder::empty(true)
            .build()
            .unwrap();
        assert_eq!(class_of(&query), StatementClass::Read);
        assert!(!is_write(&query));
    }
}
