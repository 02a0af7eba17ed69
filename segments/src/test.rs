//! What a value must be: `{"op": ..., "value": ...}` read into a [`Test`], and written as a SQL
//! condition on a value expression. Every user value becomes a SQL literal through
//! [`crate::sql`]; nothing the user wrote is pasted into the SQL as text.

use chrono::{DateTime, Datelike, Days, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sql;

/// The type of a value: what a JSON value is read as, and what a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON number.
    Number,
    /// A JSON string that is not an RFC 3339 time.
    Text,
    /// A JSON boolean.
    Bool,
    /// A JSON string in RFC 3339.
    Time,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Bool => "true or false",
            Kind::Time => "an RFC 3339 time",
        }
    }
}

/// One value of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A finite number.
    Number(f64),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A time.
    Time(DateTime<Utc>),
}

impl Scalar {
    fn read(value: &Value, path: &str) -> Result<Self> {
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Scalar::Number(f)),
                _ => Err(Error::at(path, "the number is out of range")),
            },
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            Value::String(text) => Ok(match time(value, path) {
                Ok(t) => Scalar::Time(t),
                Err(_) => Scalar::Text(text.clone()),
            }),
            _ => Err(Error::at(
                path,
                "must be a number, text, true/false or an RFC 3339 time",
            )),
        }
    }

    /// The value's type.
    pub fn kind(&self) -> Kind {
        match self {
            Scalar::Number(_) => Kind::Number,
            Scalar::Text(_) => Kind::Text,
            Scalar::Bool(_) => Kind::Bool,
            Scalar::Time(_) => Kind::Time,
        }
    }

    /// The value as a SQL literal.
    pub fn literal(&self) -> String {
        match self {
            Scalar::Number(n) => sql::number(*n),
            Scalar::Text(t) => sql::text(t),
            Scalar::Bool(b) => sql::boolean(*b),
            Scalar::Time(t) => sql::timestamp(*t),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Compare {
    fn sql(self) -> &'static str {
        match self {
            Compare::Eq => "=",
            Compare::Ne => "<>",
            Compare::Lt => "<",
            Compare::Le => "<=",
            Compare::Gt => ">",
            Compare::Ge => ">=",
        }
    }
}

/// What a value must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `= != < <= > >=` a value.
    Compare(Compare, Scalar),
    /// `in` (or, negated, `not_in`) a list of values of one type.
    In(Vec<Scalar>, bool),
    /// `contains` a text.
    Contains(String),
    /// `starts_with` a text.
    StartsWith(String),
    /// `exists` (true) or `not_exists` (false).
    Exists(bool),
    /// `between` two values, both included.
    Between(Scalar, Scalar),
    /// `anniversary_within_days`: a date whose month and day come within the next `n` days
    /// (today included).
    AnniversaryWithinDays(u32),
}

/// The operators, for messages.
const OPS: &str = "=, !=, <, <=, >, >=, in, not_in, contains, starts_with, exists, not_exists, \
                   between, anniversary_within_days";

impl Test {
    /// Reads `op` and `value` of `object` (at `path`); `expected` is the type the subject holds,
    /// when it has one (a trait or property takes the type of the value).
    pub(crate) fn parse(
        object: &Map<String, Value>,
        path: &str,
        expected: Option<Kind>,
    ) -> Result<Self> {
        let op = match object.get("op") {
            Some(Value::String(op)) => op.as_str(),
            Some(_) => return Err(Error::at(&format!("{path}.op"), "must be text")),
            None => return Err(Error::at(path, format!("missing 'op' ({OPS})"))),
        };
        let value_path = format!("{path}.value");
        let value = object.get("value");
        let needs_value =
            || value.ok_or_else(|| Error::at(path, format!("'{op}' needs a 'value'")));
        let scalar = |value: &Value, path: &str| -> Result<Scalar> {
            let scalar = Scalar::read(value, path)?;
            match expected {
                Some(kind) if kind != scalar.kind() => Err(Error::at(
                    path,
                    format!("must be {}, not {}", kind.name(), scalar.kind().name()),
                )),
                _ => Ok(scalar),
            }
        };
        let text = |value: &Value| -> Result<String> {
            if expected.is_some_and(|k| k != Kind::Text) {
                return Err(Error::at(
                    &format!("{path}.op"),
                    format!("'{op}' applies to text"),
                ));
            }
            match value {
                Value::String(t) => Ok(t.clone()),
                _ => Err(Error::at(&value_path, format!("'{op}' takes text"))),
            }
        };
        let compare = |c| Ok(Test::Compare(c, scalar(needs_value()?, &value_path)?));
        let test = match op {
            "=" => compare(Compare::Eq)?,
            "!=" => compare(Compare::Ne)?,
            "<" => compare(Compare::Lt)?,
            "<=" => compare(Compare::Le)?,
            ">" => compare(Compare::Gt)?,
            ">=" => compare(Compare::Ge)?,
            "in" | "not_in" => {
                let Value::Array(list) = needs_value()? else {
                    return Err(Error::at(&value_path, format!("'{op}' takes a list")));
                };
                let values = list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| scalar(v, &format!("{value_path}[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                if let Some(first) = values.first()
                    && let Some(i) = values.iter().position(|v| v.kind() != first.kind())
                {
                    return Err(Error::at(
                        &format!("{value_path}[{i}]"),
                        format!(
                            "the list mixes types: {} after {}",
                            values[i].kind().name(),
                            first.kind().name()
                        ),
                    ));
                }
                Test::In(values, op == "not_in")
            }
            "contains" => Test::Contains(text(needs_value()?)?),
            "starts_with" => Test::StartsWith(text(needs_value()?)?),
            "exists" | "not_exists" => {
                if value.is_some() {
                    return Err(Error::at(&value_path, format!("'{op}' takes no value")));
                }
                Test::Exists(op == "exists")
            }
            "between" => {
                let pair = match needs_value()? {
                    Value::Array(pair) if pair.len() == 2 => pair,
                    _ => {
                        return Err(Error::at(
                            &value_path,
                            "'between' takes two values: [low, high]",
                        ));
                    }
                };
                let low = scalar(&pair[0], &format!("{value_path}[0]"))?;
                let high = scalar(&pair[1], &format!("{value_path}[1]"))?;
                if low.kind() != high.kind() || matches!(low.kind(), Kind::Bool) {
                    return Err(Error::at(
                        &value_path,
                        "'between' takes two numbers, texts or times",
                    ));
                }
                Test::Between(low, high)
            }
            "anniversary_within_days" => {
                if expected.is_some() {
                    return Err(Error::at(
                        &format!("{path}.op"),
                        "'anniversary_within_days' applies to traits",
                    ));
                }
                match needs_value()?.as_u64() {
                    Some(days) if days <= 366 => Test::AnniversaryWithinDays(days as u32),
                    _ => {
                        return Err(Error::at(
                            &value_path,
                            "must be a whole number of days from 0 to 366",
                        ));
                    }
                }
            }
            _ => {
                return Err(Error::at(
                    &format!("{path}.op"),
                    format!("unknown op '{op}' ({OPS})"),
                ));
            }
        };
        if let Test::Compare(c, Scalar::Bool(_)) = &test
            && !matches!(c, Compare::Eq | Compare::Ne)
        {
            return Err(Error::at(
                &format!("{path}.op"),
                "true/false compare with = or != only",
            ));
        }
        Ok(test)
    }

    /// The type of value this test reads, when it says (`exists` and `anniversary` do not).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Test::Compare(_, v) | Test::Between(v, _) => Some(v.kind()),
            Test::In(values, _) => Some(values.first().map_or(Kind::Text, Scalar::kind)),
            Test::Contains(_) | Test::StartsWith(_) => Some(Kind::Text),
            Test::Exists(_) | Test::AnniversaryWithinDays(_) => None,
        }
    }

    /// The SQL condition on `value` (an expression of this test's kind); NULL when `value` is.
    /// `now` is the day anniversaries count from.
    pub fn sql(&self, value: &str, now: DateTime<Utc>) -> String {
        match self {
            Test::Compare(c, v) => format!("{value} {} {}", c.sql(), v.literal()),
            Test::In(values, negated) if values.is_empty() => {
                // `x IN ()` is not SQL; nothing is in an empty list.
                format!("({value} IS NOT NULL AND {})", sql::boolean(*negated))
            }
            Test::In(values, negated) => {
                let list: Vec<String> = values.iter().map(Scalar::literal).collect();
                let not = if *negated { "NOT " } else { "" };
                format!("{value} {not}IN ({})", list.join(", "))
            }
            Test::Contains(t) => format!("strpos({value}, {}) > 0", sql::text(t)),
            Test::StartsWith(t) => format!("starts_with({value}, {})", sql::text(t)),
            Test::Exists(true) => format!("{value} IS NOT NULL"),
            Test::Exists(false) => format!("{value} IS NULL"),
            Test::Between(low, high) => {
                format!("{value} BETWEEN {} AND {}", low.literal(), high.literal())
            }
            Test::AnniversaryWithinDays(days) => {
                let today = now.date_naive();
                let dates: Vec<String> = (0..=u64::from(*days))
                    .filter_map(|d| today.checked_add_days(Days::new(d)))
                    .map(|d| sql::text(&format!("{:02}-{:02}", d.month(), d.day())))
                    .collect();
                format!("to_char({value}, '%m-%d') IN ({})", dates.join(", "))
            }
        }
    }
}

/// An RFC 3339 time.
pub(crate) fn time(value: &Value, path: &str) -> Result<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| Error::at(path, format!("'{text}' is not an RFC 3339 time"))),
        _ => Err(Error::at(
            path,
            "must be an RFC 3339 time such as \"2026-01-31T00:00:00Z\"",
        )),
    }
}
