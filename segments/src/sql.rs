//! SQL literals for the values of a definition: a value can only ever be read back as the same
//! value (the property tests in `compile.rs` parse the SQL back with sqlparser and check).

use chrono::{DateTime, Utc};
use sqlparser::ast::Value;

/// A text literal: every quote doubled. (sqlparser's `Value` display leaves a `''` pair as it is,
/// taking it for an escape already made, so the text `''` would read back as `'`.)
pub(crate) fn text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A finite number as a DOUBLE literal (`3.0`, `1e300`).
pub(crate) fn number(value: f64) -> String {
    // Debug writes every finite f64 with a '.' or an exponent, so SQL reads it as a double.
    format!("{value:?}")
}

/// A boolean literal.
pub(crate) fn boolean(value: bool) -> String {
    Value::Boolean(value).to_string()
}

/// A timestamp literal (UTC, microseconds).
pub(crate) fn timestamp(value: DateTime<Utc>) -> String {
    let text = value.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    format!("TIMESTAMP {}", self::text(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(text("it's"), "'it''s'");
        assert_eq!(text("''"), "''''''");
        assert_eq!(number(3.0), "3.0");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(boolean(true), "true");
    }
}
