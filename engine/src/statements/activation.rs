//! Activation statements (docs/segments.md#activation):
//! - `CREATE DESTINATION name AS '<json>'`, `DROP DESTINATION name`, `SHOW DESTINATIONS`;
//! - `ACTIVATE SEGMENT s TO d [WITH] [TRAITS (a, b)] [IDENTIFIERS (email, phone)]`: answers how
//!   many members the first delivery enters;
//! - `DEACTIVATE SEGMENT s FROM d`, `SHOW ACTIVATIONS`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use tributary_catalog::builtin::{
    ACTIVATIONS, DESTINATIONS, activations_schema, destinations_schema,
};

use super::{Statement, StatementClass, Syntax, name, next_is, skip_leading, sql_error};
use crate::Engine;
use crate::activation::{self, Destination};
use crate::error::{Error, Result};
use crate::sql_text::{identifier, string_literal};

/// `CREATE DESTINATION`.
pub const CREATE_DESTINATION: Syntax = Syntax {
    leading: &["CREATE", "DESTINATION"],
    parse: |parser| {
        skip_leading(parser, 2);
        let name = name(parser)?;
        parser.expect_keyword_is(Keyword::AS).map_err(sql_error)?;
        let config = parser.parse_literal_string().map_err(sql_error)?;
        Destination::parse(&config)?;
        Ok(Arc::new(ActivationStatement::CreateDestination {
            name,
            config,
        }))
    },
};

/// `DROP DESTINATION`.
pub const DROP_DESTINATION: Syntax = Syntax {
    leading: &["DROP", "DESTINATION"],
    parse: |parser| {
        skip_leading(parser, 2);
        Ok(Arc::new(ActivationStatement::DropDestination {
            name: name(parser)?,
        }))
    },
};

/// `SHOW DESTINATIONS`.
pub const SHOW_DESTINATIONS: Syntax = Syntax {
    leading: &["SHOW", "DESTINATIONS"],
    parse: |parser| {
        skip_leading(parser, 2);
        Ok(Arc::new(ActivationStatement::ShowDestinations))
    },
};

/// `ACTIVATE SEGMENT`.
pub const ACTIVATE: Syntax = Syntax {
    leading: &["ACTIVATE", "SEGMENT"],
    parse: parse_activate,
};

/// `DEACTIVATE SEGMENT`.
pub const DEACTIVATE: Syntax = Syntax {
    leading: &["DEACTIVATE", "SEGMENT"],
    parse: |parser| {
        skip_leading(parser, 2);
        let segment = name(parser)?;
        parser.expect_keyword_is(Keyword::FROM).map_err(sql_error)?;
        Ok(Arc::new(ActivationStatement::Deactivate {
            segment,
            destination: name(parser)?,
        }))
    },
};

/// `SHOW ACTIVATIONS`.
pub const SHOW_ACTIVATIONS: Syntax = Syntax {
    leading: &["SHOW", "ACTIVATIONS"],
    parse: |parser| {
        skip_leading(parser, 2);
        Ok(Arc::new(ActivationStatement::ShowActivations))
    },
};

/// A statement about destinations and activations.
#[derive(Debug)]
pub enum ActivationStatement {
    /// Store a destination.
    CreateDestination {
        /// Its name.
        name: String,
        /// Its JSON.
        config: String,
    },
    /// Remove a destination.
    DropDestination {
        /// Its name.
        name: String,
    },
    /// List the destinations.
    ShowDestinations,
    /// Deliver a segment to a destination.
    Activate {
        /// The stored segment.
        segment: String,
        /// The destination.
        destination: String,
        /// Profile traits each member carries.
        traits: Vec<String>,
        /// Identifier types each member carries.
        identifiers: Vec<String>,
    },
    /// Stop delivering.
    Deactivate {
        /// The stored segment.
        segment: String,
        /// The destination.
        destination: String,
    },
    /// List the activations.
    ShowActivations,
}

/// `(a, b, c)`: names.
fn name_list(parser: &mut Parser) -> Result<Vec<String>> {
    parser.expect_token(&Token::LParen).map_err(sql_error)?;
    let mut names = vec![name(parser)?];
    while parser.consume_token(&Token::Comma) {
        names.push(name(parser)?);
    }
    parser.expect_token(&Token::RParen).map_err(sql_error)?;
    Ok(names)
}

fn parse_activate(parser: &mut Parser) -> Result<Arc<dyn Statement>> {
    skip_leading(parser, 2);
    let segment = name(parser)?;
    parser.expect_keyword_is(Keyword::TO).map_err(sql_error)?;
    let destination = name(parser)?;
    let (mut traits, mut identifiers) = (None, None);
    if next_is(parser, "WITH") {
        parser.next_token();
    }
    loop {
        let slot = if next_is(parser, "TRAITS") {
            &mut traits
        } else if next_is(parser, "IDENTIFIERS") {
            &mut identifiers
        } else {
            break;
        };
        let word = parser.next_token().to_string();
        if slot.is_some() {
            return Err(Error::InvalidInput(format!(
                "ACTIVATE SEGMENT {segment}: {word} is given twice"
            )));
        }
        *slot = Some(name_list(parser)?);
    }
    Ok(Arc::new(ActivationStatement::Activate {
        segment,
        destination,
        traits: traits.unwrap_or_default(),
        identifiers: identifiers.unwrap_or_default(),
    }))
}

fn names_sql(names: &[String]) -> String {
    names
        .iter()
        .map(|n| identifier(n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Statement for ActivationStatement {
    fn sql(&self) -> String {
        match self {
            Self::CreateDestination { name, config } => format!(
                "CREATE DESTINATION {} AS {}",
                identifier(name),
                string_literal(config)
            ),
            Self::DropDestination { name } => format!("DROP DESTINATION {}", identifier(name)),
            Self::ShowDestinations => "SHOW DESTINATIONS".into(),
            Self::Activate {
                segment,
                destination,
                traits,
                identifiers,
            } => format!(
                "ACTIVATE SEGMENT {} TO {} WITH TRAITS ({}) IDENTIFIERS ({})",
                identifier(segment),
                identifier(destination),
                names_sql(traits),
                names_sql(identifiers)
            ),
            Self::Deactivate {
                segment,
                destination,
            } => format!(
                "DEACTIVATE SEGMENT {} FROM {}",
                identifier(segment),
                identifier(destination)
            ),
            Self::ShowActivations => "SHOW ACTIVATIONS".into(),
        }
    }

    fn class(&self) -> StatementClass {
        match self {
            // A destination sends customers' data out of the database (to any URL, or files on
            // the server's disks): who may make one is an administrator's decision.
            Self::CreateDestination { .. } | Self::DropDestination { .. } => StatementClass::Admin,
            Self::Activate { .. } | Self::Deactivate { .. } => StatementClass::Write,
            Self::ShowDestinations | Self::ShowActivations => StatementClass::Read,
        }
    }

    fn changes_data(&self) -> bool {
        !matches!(self, Self::ShowDestinations | Self::ShowActivations)
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Self::ShowDestinations => destinations_schema(),
            Self::ShowActivations => activations_schema(),
            _ => crate::dml::count_schema(),
        }
    }

    async fn execute(&self, engine: &Engine, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        let count = match self {
            Self::CreateDestination { name, config } => {
                activation::create_destination(engine, ctx, name, config).await?
            }
            Self::DropDestination { name } => {
                activation::drop_destination(engine, ctx, name).await?
            }
            Self::Activate {
                segment,
                destination,
                traits,
                identifiers,
            } => {
                activation::activate(
                    engine,
                    ctx,
                    segment,
                    destination,
                    traits.clone(),
                    identifiers.clone(),
                )
                .await?
            }
            Self::Deactivate {
                segment,
                destination,
            } => activation::deactivate(engine, ctx, segment, destination).await?,
            Self::ShowDestinations | Self::ShowActivations => {
                let table = if matches!(self, Self::ShowDestinations) {
                    DESTINATIONS
                } else {
                    ACTIVATIONS
                };
                let sql = format!("SELECT * FROM {table} ORDER BY 1, 2");
                return Ok(ctx.sql(&sql).await?.collect().await?);
            }
        };
        Ok(vec![crate::dml::count_batch(count)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<Arc<dyn Statement>> {
        super::super::parse(sql, "generic").map(|s| s.expect("one of ours"))
    }

    #[test]
    fn activations_parse_with_their_lists() {
        let statement =
            parsed("ACTIVATE SEGMENT vip TO crm WITH TRAITS (city, tier) IDENTIFIERS (email)")
                .unwrap();
        assert_eq!(
            statement.sql(),
            r#"ACTIVATE SEGMENT "vip" TO "crm" WITH TRAITS ("city", "tier") IDENTIFIERS ("email")"#
        );
        let bare = parsed("activate segment vip to crm identifiers (phone, email)").unwrap();
        assert_eq!(
            bare.sql(),
            r#"ACTIVATE SEGMENT "vip" TO "crm" WITH TRAITS () IDENTIFIERS ("phone", "email")"#
        );
    }

    #[test]
    fn destinations_are_an_administrators_business() {
        let class = |sql: &str| parsed(sql).unwrap().class();
        let file = r#"CREATE DESTINATION d AS '{"type": "file", "uri": "/tmp/x"}'"#;
        assert_eq!(class(file), StatementClass::Admin);
        assert_eq!(class("DROP DESTINATION d"), StatementClass::Admin);
        assert_eq!(class("ACTIVATE SEGMENT s TO d"), StatementClass::Write);
        assert_eq!(class("DEACTIVATE SEGMENT s FROM d"), StatementClass::Write);
        assert_eq!(class("SHOW ACTIVATIONS"), StatementClass::Read);
    }

    #[test]
    fn bad_statements_name_the_problem() {
        for (sql, named) in [
            ("ACTIVATE SEGMENT vip crm", "TO"),
            (
                "ACTIVATE SEGMENT vip TO crm TRAITS (a) TRAITS (b)",
                "given twice",
            ),
            ("ACTIVATE SEGMENT vip TO crm TRAITS a", "("),
            (
                "CREATE DESTINATION d AS '{\"type\": \"pigeon\"}'",
                "unknown type 'pigeon'",
            ),
            ("DEACTIVATE SEGMENT vip TO crm", "FROM"),
        ] {
            let error = parsed(sql).unwrap_err().to_string();
            assert!(error.contains(named), "{sql}: {error}");
        }
    }
}
