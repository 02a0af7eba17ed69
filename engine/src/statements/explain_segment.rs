//! `EXPLAIN SEGMENT '<definition>'`: the SQL a segment definition compiles to (what
//! `segment_preview` and `segment_size` run now), as one row with one column, `sql`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::parser::Parser;

use super::{Statement, StatementClass, Syntax, sql_error};
use crate::Engine;
use crate::error::{Error, Result};
use crate::segments::{members_sql, stored};
use crate::sql_text::string_literal;

/// `EXPLAIN SEGMENT '<definition>'`.
pub const SYNTAX: Syntax = Syntax {
    leading: &["EXPLAIN", "SEGMENT"],
    parse,
};

fn parse(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    parser.next_token();
    parser.next_token();
    let definition = parser.parse_literal_string().map_err(sql_error)?;
    // Refuse a bad definition when the statement is planned, not when it is fetched.
    tributary_segments::parse(&definition).map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(Arc::new(ExplainSegment { definition }))
}

/// A parsed `EXPLAIN SEGMENT`.
#[derive(Debug)]
pub struct ExplainSegment {
    definition: String,
}

#[async_trait]
impl Statement for ExplainSegment {
    fn sql(&self) -> String {
        format!("EXPLAIN SEGMENT {}", string_literal(&self.definition))
    }

    fn class(&self) -> StatementClass {
        StatementClass::Read
    }

    fn changes_data(&self) -> bool {
        false
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("sql", DataType::Utf8, false)]))
    }

    async fn execute(&self, _engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let stored = stored(ctx).await?;
        let sql = members_sql(&self.definition, &stored)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        Ok(vec![RecordBatch::try_new(
            self.schema(),
            vec![Arc::new(StringArray::from(vec![sql]))],
        )?])
    }
}
