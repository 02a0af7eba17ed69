//! Values and names pasted into SQL text the engine (or a client command) writes itself: quoted
//! so that any text stays one literal or one identifier, whatever quotes it holds; and the one
//! rewrite of client SQL before planning that is about spelling only ([`number_placeholders`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};

/// `text` as a SQL string literal: `'o''hara'`.
pub fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as a quoted SQL identifier: `"my ""table"""`.
pub fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Numbers `?` placeholders (what JDBC, ODBC and ADBC's DB-API send) in the order they appear:
/// `$1`, `$2`…, which DataFusion binds. A statement mixing `?` with `$n` keeps its `$n`.
pub fn number_placeholders(statement: &mut Statement) {
    let mut next = 0;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &mut value.value
            && name == "?"
        {
            next += 1;
            *name = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn question_marks_are_numbered_in_order() {
        let mut statement = Parser::parse_sql(
            &GenericDialect {},
            "SELECT CAST(? AS BIGINT) + 1 FROM t WHERE a = ? AND b IN (?, '?') LIMIT ?",
        )
        .unwrap()
        .remove(0);
        number_placeholders(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT CAST($1 AS BIGINT) + 1 FROM t WHERE a = $2 AND b IN ($3, '?') LIMIT $4"
        );
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(string_literal("o'hara"), "'o''hara'");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
    }
}
