//! Stored segments (docs/segments.md):
//! - `CREATE SEGMENT name [SCHEDULE 'manual' | 'realtime' | '<interval>'] AS '<definition>'`: stores the segment and records
//!   its first members as entered; answers how many;
//! - `REFRESH SEGMENT name`: records who entered and who left since the last refresh; answers
//!   how many did;
//! - `DROP SEGMENT name`: removes it and its history (refused while another segment uses it);
//! - `SHOW SEGMENTS`: `name, schedule, size, refreshed_at, definition`, by name.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use tributary_catalog::builtin::SEGMENTS;

use super::{Statement, StatementClass, Syntax, name, next_is, skip_leading, sql_error};
use crate::Engine;
use crate::error::{Error, Result};
use crate::segments::{self, Schedule};
use crate::sql_text::{identifier, string_literal};

/// `CREATE SEGMENT`.
pub const CREATE: Syntax = Syntax {
    leading: &["CREATE", "SEGMENT"],
    parse: parse_create,
};

/// `REFRESH SEGMENT`.
pub const REFRESH: Syntax = Syntax {
    leading: &["REFRESH", "SEGMENT"],
    parse: parse_refresh,
};

/// `DROP SEGMENT`.
pub const DROP: Syntax = Syntax {
    leading: &["DROP", "SEGMENT"],
    parse: parse_drop,
};

/// `SHOW SEGMENTS`.
pub const SHOW: Syntax = Syntax {
    leading: &["SHOW", "SEGMENTS"],
    parse: parse_show,
};

/// A statement about stored segments.
#[derive(Debug)]
pub enum SegmentStatement {
    /// Store a segment and compute its first members.
    Create {
        /// Its name.
        name: String,
        /// When it is refreshed.
        schedule: Schedule,
        /// Its definition (JSON text).
        definition: String,
    },
    /// Record who entered and who left.
    Refresh {
        /// The segment.
        name: String,
    },
    /// Remove a segment and its history.
    Drop {
        /// The segment.
        name: String,
    },
    /// List the segments.
    Show,
}

fn parse_create(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    skip_leading(parser, 2);
    let name = name(parser)?;
    let mut schedule = Schedule::Manual;
    if next_is(parser, "SCHEDULE") {
        parser.next_token();
        let text = parser.parse_literal_string().map_err(sql_error)?;
        schedule = Schedule::parse(&text).map_err(|e| match e {
            Error::InvalidInput(message) => {
                Error::InvalidInput(format!("CREATE SEGMENT {name}: {message}"))
            }
            other => other,
        })?;
    }
    parser.expect_keyword_is(Keyword::AS).map_err(sql_error)?;
    let definition = match parser.peek_token().token {
        Token::SingleQuotedString(_) => {
            let definition = parser.parse_literal_string().map_err(sql_error)?;
            // A bad definition is refused now, with its JSON path.
            tributary_segments::parse(&definition)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            definition
        }
        // `AS SELECT …`: the analyst's own query, stored as SQL text.
        _ => parser.parse_query().map_err(sql_error)?.to_string(),
    };
    Ok(Arc::new(SegmentStatement::Create {
        name,
        schedule,
        definition,
    }))
}

fn parse_refresh(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    skip_leading(parser, 2);
    Ok(Arc::new(SegmentStatement::Refresh {
        name: name(parser)?,
    }))
}

fn parse_drop(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    skip_leading(parser, 2);
    Ok(Arc::new(SegmentStatement::Drop {
        name: name(parser)?,
    }))
}

fn parse_show(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    skip_leading(parser, 2);
    Ok(Arc::new(SegmentStatement::Show))
}

const SHOW_SQL: &str = "SELECT name, schedule, size, refreshed_at, definition FROM";

#[async_trait]
impl Statement for SegmentStatement {
    fn sql(&self) -> String {
        match self {
            Self::Create {
                name,
                schedule,
                definition,
            } => format!(
                "CREATE SEGMENT {} SCHEDULE {} AS {}",
                identifier(name),
                string_literal(&schedule.to_string()),
                if segments::is_query(definition) {
                    definition.clone()
                } else {
                    string_literal(definition)
                }
            ),
            Self::Refresh { name } => format!("REFRESH SEGMENT {}", identifier(name)),
            Self::Drop { name } => format!("DROP SEGMENT {}", identifier(name)),
            Self::Show => "SHOW SEGMENTS".into(),
        }
    }

    fn class(&self) -> StatementClass {
        match self {
            Self::Show => StatementClass::Read,
            _ => StatementClass::Write,
        }
    }

    fn changes_data(&self) -> bool {
        !matches!(self, Self::Show)
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Self::Show => {
                let columns = ["name", "schedule", "size", "refreshed_at", "definition"];
                let segments = tributary_catalog::builtin::segments_schema();
                let fields: Vec<_> = columns
                    .iter()
                    .map(|column| {
                        segments
                            .field_with_name(column)
                            .expect("a column of segments")
                            .clone()
                    })
                    .collect();
                Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
            }
            _ => crate::dml::count_schema(),
        }
    }

    async fn execute(&self, engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let count = match self {
            Self::Create {
                name,
                schedule,
                definition,
            } => segments::create(engine, ctx, name, *schedule, definition).await?,
            Self::Refresh { name } => segments::refresh(engine, ctx, name).await?,
            Self::Drop { name } => {
                let receivers = crate::activation::destinations_of(ctx, name).await?;
                if !receivers.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "segment '{name}' is activated to {}; DEACTIVATE SEGMENT {name} FROM … \
                         first",
                        receivers.join(", ")
                    )));
                }
                segments::drop(engine, ctx, name).await?
            }
            Self::Show => {
                let sql = format!("{SHOW_SQL} {SEGMENTS} ORDER BY name");
                return Ok(ctx.sql(&sql).await?.collect().await?);
            }
        };
        Ok(vec![crate::dml::count_batch(count)])
    }
}
