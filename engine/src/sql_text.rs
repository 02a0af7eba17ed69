//! Values and names pasted into SQL text the engine (or a client command) writes itself: quoted
//! so that any text stays one literal or one identifier, whatever quotes it holds.

/// `text` as a SQL string literal: `'o''hara'`.
pub fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as a quoted SQL identifier: `"my ""table"""`.
pub fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(string_literal("o'hara"), "'o''hara'");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
    }
}
