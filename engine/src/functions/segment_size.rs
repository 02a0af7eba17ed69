//! `segment_size(definition)`: the exact number of customers a segment definition selects now.
//!
//! A count needs a query, which a scalar function cannot run; so before DataFusion plans a
//! statement, every `segment_size(x)` in it becomes the subquery
//! `(SELECT count(*) FROM segment_preview(x))`, which DataFusion plans and runs like any other.
//! A select item that calls it keeps the call's text as its name (DataFusion would name every
//! such subquery alike, and refuse two in one `SELECT`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// The function's SQL name.
pub const NAME: &str = "segment_size";

/// Rewrites every `segment_size(…)` call of `statement` into its counting subquery.
pub fn expand(statement: &mut Statement, dialect: &dyn Dialect) -> Result<(), ParserError> {
    let _ = statement.visit(&mut NameSelectItems);
    let mut calls = 0;
    let flow = visit_expressions_mut(statement, |expr| {
        if !is_call(expr) {
            return ControlFlow::Continue(());
        }
        let Expr::Function(function) = &*expr else {
            return ControlFlow::Continue(());
        };
        // DataFusion 55 takes two scans of one table function for the same plan whatever their
        // arguments (and would compute one count for both): each call's scan gets its own alias.
        calls += 1;
        let count = format!(
            "SELECT count(*) AS {NAME} FROM {}{} AS {NAME}_{calls}",
            super::segment_preview::FUNCTION.name,
            function.args
        );
        match Parser::new(dialect)
            .try_with_sql(&count)
            .and_then(|mut p| p.parse_query())
        {
            Ok(query) => {
                *expr = Expr::Subquery(query);
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    });
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

fn is_call(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(function) if matches!(function.name.0.as_slice(),
        [ObjectNamePart::Identifier(name)] if name.value.eq_ignore_ascii_case(NAME)))
}

/// Names each unnamed select item that calls `segment_size` after its text.
struct NameSelectItems;

impl VisitorMut for NameSelectItems {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item
                    && visit_expressions(expr, |e| {
                        if is_call(e) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .is_break()
                {
                    let alias = Ident::with_quote('"', expr.to_string());
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}
