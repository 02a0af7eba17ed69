//! A segment definition read from its JSON: every key known, every operator valid for its
//! value, every value of the type its subject needs — or an [`Error`] naming the JSON path.
//! The grammar is docs/segments.md's.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::test::{Kind, Test, time};

/// A whole definition: its condition and the "now" of its relative windows, when fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The root key `as_of`, when given.
    pub as_of: Option<DateTime<Utc>>,
    /// The condition a member meets.
    pub condition: Condition,
}

impl Definition {
    /// The names of the segments it refers to.
    pub fn references(&self) -> Vec<&str> {
        fn walk<'a>(condition: &'a Condition, names: &mut Vec<&'a str>) {
            match condition {
                Condition::All(list) | Condition::Any(list) => {
                    list.iter().for_each(|c| walk(c, names));
                }
                Condition::Not(inner) => walk(inner, names),
                Condition::Segment { name, .. } => names.push(name),
                _ => {}
            }
        }
        let mut names = Vec::new();
        walk(&self.condition, &mut names);
        names
    }
}

/// One condition of a definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every one holds (`{"all": [...]}`; an empty list holds for everyone).
    All(Vec<Condition>),
    /// At least one holds (`{"any": [...]}`; an empty list holds for no one).
    Any(Vec<Condition>),
    /// It does not hold.
    Not(Box<Condition>),
    /// A trait of the profile (a key of `profiles.traits`).
    Trait {
        /// The trait's key.
        key: String,
        /// What its value must be.
        test: Test,
    },
    /// A column of `profiles` (a computed trait or a value model's answer).
    Field {
        /// The column.
        field: ProfileField,
        /// What its value must be.
        test: Test,
    },
    /// A measure of the customer's events.
    Behaviour(Behaviour),
    /// The deepest step of a funnel the customer reached.
    Funnel(Funnel),
    /// Membership of a stored segment.
    Segment {
        /// The segment's name.
        name: String,
        /// True: a member; false: not a member.
        member: bool,
    },
    /// The customers a SQL query answers in its `customer_id` column: a segment stored
    /// `AS SELECT …`. Never read from JSON.
    Query(String),
}

impl Definition {
    /// A segment defined by a SQL query rather than conditions.
    pub fn query(sql: &str) -> Self {
        Self {
            as_of: None,
            condition: Condition::Query(sql.to_string()),
        }
    }
}

/// A column of `profiles` a condition can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileField {
    /// Its name in `profiles`.
    pub column: &'static str,
    /// The type of its values.
    pub kind: Kind,
}

/// `field` conditions: the profile's computed traits.
const FIELDS: &[ProfileField] = &[
    ProfileField {
        column: "event_count",
        kind: Kind::Number,
    },
    ProfileField {
        column: "purchase_count",
        kind: Kind::Number,
    },
    ProfileField {
        column: "total_revenue",
        kind: Kind::Number,
    },
    ProfileField {
        column: "first_seen",
        kind: Kind::Time,
    },
    ProfileField {
        column: "last_seen",
        kind: Kind::Time,
    },
    ProfileField {
        column: "last_purchase_at",
        kind: Kind::Time,
    },
];

/// `model` conditions: the value models' answers in `profiles`.
const MODELS: &[ProfileField] = &[
    ProfileField {
        column: "rfm_segment",
        kind: Kind::Text,
    },
    ProfileField {
        column: "lifecycle_stage",
        kind: Kind::Text,
    },
    ProfileField {
        column: "clv",
        kind: Kind::Number,
    },
    ProfileField {
        column: "p_alive",
        kind: Kind::Number,
    },
];

/// A measure of a customer's events named `event`, compared by `test`.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// The event's name.
    pub event: String,
    /// Conditions on the events' properties, all of which must hold.
    pub filters: Vec<PropertyTest>,
    /// What is measured.
    pub measure: Measure,
    /// What the measure must be.
    pub test: Test,
    /// Which events count.
    pub window: Window,
}

/// A condition on an event property.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyTest {
    /// The property's key in `properties`.
    pub property: String,
    /// What its value must be.
    pub test: Test,
}

/// What a behaviour condition measures over the matching events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// How many (0 without any).
    Count,
    /// The sum of a numeric property (0 without any).
    Sum(String),
    /// The mean of a numeric property (none without any).
    Avg(String),
    /// The least value of a numeric property.
    Min(String),
    /// The greatest value of a numeric property.
    Max(String),
    /// The time of the first.
    FirstTime,
    /// The time of the last.
    LastTime,
    /// On how many UTC days (0 without any).
    DistinctDays,
}

impl Measure {
    /// The type of the measure's values.
    pub fn kind(&self) -> Kind {
        match self {
            Measure::FirstTime | Measure::LastTime => Kind::Time,
            _ => Kind::Number,
        }
    }
}

/// Which events a behaviour or funnel counts, besides being at or before `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// All of them.
    Always,
    /// Those of the last `n` days before `as_of`.
    WithinDays(u32),
    /// Those from the first time to the second, both included.
    Between(DateTime<Utc>, DateTime<Utc>),
}

/// The deepest step of `steps` reached with every step within `window_seconds` of the first
/// (`window_funnel`'s semantics), compared by `test`.
#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    /// The steps' event names, in order.
    pub steps: Vec<String>,
    /// How long, from the first step, the others may follow.
    pub window_seconds: u64,
    /// What the step reached must be.
    pub test: Test,
    /// Which events count.
    pub window: Window,
}

/// The most days a relative window may span (about 100 years).
const MAX_DAYS: u64 = 36_600;
/// The most steps of a funnel (`window_funnel`'s limit).
const MAX_STEPS: usize = 32;

/// Reads a definition from its JSON text.
pub fn parse(text: &str) -> Result<Definition> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::at("$", format!("not valid JSON: {e}")))?;
    let Value::Object(mut root) = value else {
        return Err(Error::at("$", "a definition is one JSON object"));
    };
    let as_of = match root.remove("as_of") {
        None => None,
        Some(value) => Some(time(&value, "$.as_of")?),
    };
    let condition = condition(&Value::Object(root), "$")?;
    Ok(Definition { as_of, condition })
}

/// The JSON of the condition at `path` (a path of this crate's errors and explanations, `$` the
/// whole definition) in the definition `text`.
pub fn condition_json(text: &str, path: &str) -> Option<Value> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    let mut rest = path.strip_prefix('$')?;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            value = value.get(&after[..end])?.clone();
            rest = &after[end..];
        } else {
            let after = rest.strip_prefix('[')?;
            let end = after.find(']')?;
            value = value.get(after[..end].parse::<usize>().ok()?)?.clone();
            rest = &after[end + 1..];
        }
    }
    Some(value)
}

/// The keys that say what kind of condition an object is.
const KINDS: &[&str] = &[
    "all", "any", "not", "trait", "field", "model", "event", "funnel", "segment",
];

fn condition(value: &Value, path: &str) -> Result<Condition> {
    let Value::Object(object) = value else {
        return Err(Error::at(path, "a condition is a JSON object"));
    };
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| object.contains_key(*k))
        .collect();
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => {
            return Err(Error::at(
                path,
                format!("a condition needs one of the keys {}", KINDS.join(", ")),
            ));
        }
        many => {
            return Err(Error::at(
                path,
                format!(
                    "a condition has one of the keys {}, not several",
                    many.join(", ")
                ),
            ));
        }
    };
    let fields = Fields { object, path };
    match kind {
        "all" | "any" => {
            fields.only(&[kind])?;
            let list = fields.array(kind)?;
            let conditions = list
                .iter()
                .enumerate()
                .map(|(i, c)| condition(c, &format!("{path}.{kind}[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            Ok(if kind == "all" {
                Condition::All(conditions)
            } else {
                Condition::Any(conditions)
            })
        }
        "not" => {
            fields.only(&["not"])?;
            Ok(Condition::Not(Box::new(condition(
                &object["not"],
                &format!("{path}.not"),
            )?)))
        }
        "trait" => {
            fields.only(&["trait", "op", "value"])?;
            Ok(Condition::Trait {
                key: fields.text("trait")?,
                test: Test::parse(object, path, None)?,
            })
        }
        "field" | "model" => {
            fields.only(&[kind, "op", "value"])?;
            let name = fields.text(kind)?;
            let known = if kind == "field" { FIELDS } else { MODELS };
            let field = known.iter().find(|f| f.column == name).ok_or_else(|| {
                let names: Vec<&str> = known.iter().map(|f| f.column).collect();
                Error::at(
                    &format!("{path}.{kind}"),
                    format!("unknown {kind} '{name}' (known: {})", names.join(", ")),
                )
            })?;
            Ok(Condition::Field {
                field: *field,
                test: Test::parse(object, path, Some(field.kind))?,
            })
        }
        "event" => behaviour(&fields),
        "funnel" => funnel(&fields),
        _ => {
            fields.only(&["segment", "member"])?;
            let member = match object.get("member") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Error::at(
                        &format!("{path}.member"),
                        "must be true or false",
                    ));
                }
            };
            Ok(Condition::Segment {
                name: fields.text("segment")?,
                member,
            })
        }
    }
}

/// The keys of a condition that measures events: the test and the window.
const MEASURED: &[&str] = &["op", "value", "within_days", "between"];

fn behaviour(fields: &Fields<'_>) -> Result<Condition> {
    fields.only(&[&["event", "where", "measure"], MEASURED].concat())?;
    let path = fields.path;
    let measure = match fields.object.get("measure") {
        None => Measure::Count,
        Some(Value::String(text)) => measure(text, &format!("{path}.measure"))?,
        Some(_) => return Err(Error::at(&format!("{path}.measure"), "must be text")),
    };
    let filters = match fields.object.get("where") {
        None => Vec::new(),
        Some(_) => fields
            .array("where")?
            .iter()
            .enumerate()
            .map(|(i, filter)| property_test(filter, &format!("{path}.where[{i}]")))
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(Condition::Behaviour(Behaviour {
        event: fields.text("event")?,
        filters,
        test: Test::parse(fields.object, path, Some(measure.kind()))?,
        measure,
        window: window(fields)?,
    }))
}

fn measure(text: &str, path: &str) -> Result<Measure> {
    let property = |name: &str| -> Result<String> {
        match text
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            Some(property) if !property.is_empty() => Ok(property.to_string()),
            _ => Err(Error::at(
                path,
                format!("'{name}' needs a property: '{name}:revenue'"),
            )),
        }
    };
    Ok(match text.split(':').next().unwrap_or_default() {
        "count" if text == "count" => Measure::Count,
        "first_time" if text == "first_time" => Measure::FirstTime,
        "last_time" if text == "last_time" => Measure::LastTime,
        "distinct_days" if text == "distinct_days" => Measure::DistinctDays,
        "sum" => Measure::Sum(property("sum")?),
        "avg" => Measure::Avg(property("avg")?),
        "min" => Measure::Min(property("min")?),
        "max" => Measure::Max(property("max")?),
        _ => {
            return Err(Error::at(
                path,
                format!(
                    "unknown measure '{text}' (count, sum:<property>, avg:<property>, \
                     min:<property>, max:<property>, first_time, last_time, distinct_days)"
                ),
            ));
        }
    })
}

fn property_test(value: &Value, path: &str) -> Result<PropertyTest> {
    let Value::Object(object) = value else {
        return Err(Error::at(path, "a property condition is a JSON object"));
    };
    let fields = Fields { object, path };
    fields.only(&["property", "op", "value"])?;
    Ok(PropertyTest {
        property: fields.text("property")?,
        test: Test::parse(object, path, None)?,
    })
}

fn funnel(fields: &Fields<'_>) -> Result<Condition> {
    fields.only(&[&["funnel", "window_seconds"], MEASURED].concat())?;
    let path = fields.path;
    let steps = fields
        .array("funnel")?
        .iter()
        .enumerate()
        .map(|(i, step)| match step {
            Value::String(name) => Ok(name.clone()),
            _ => Err(Error::at(
                &format!("{path}.funnel[{i}]"),
                "a step is an event name",
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(Error::at(
            &format!("{path}.funnel"),
            format!("a funnel has 1 to {MAX_STEPS} steps"),
        ));
    }
    let window_seconds = fields
        .whole("window_seconds", 1, u64::from(u32::MAX))?
        .ok_or_else(|| Error::at(path, "a funnel needs 'window_seconds'"))?;
    Ok(Condition::Funnel(Funnel {
        steps,
        window_seconds,
        test: Test::parse(fields.object, path, Some(Kind::Number))?,
        window: window(fields)?,
    }))
}

fn window(fields: &Fields<'_>) -> Result<Window> {
    let path = fields.path;
    let within = fields.whole("within_days", 1, MAX_DAYS)?;
    match (within, fields.object.get("between")) {
        (Some(_), Some(_)) => Err(Error::at(path, "'within_days' or 'between', not both")),
        (Some(days), None) => Ok(Window::WithinDays(days as u32)),
        (None, None) => Ok(Window::Always),
        (None, Some(_)) => {
            let list = fields.array("between")?;
            let [from, to] = list.as_slice() else {
                return Err(Error::at(
                    &format!("{path}.between"),
                    "two times: [from, to]",
                ));
            };
            let from = time(from, &format!("{path}.between[0]"))?;
            let to = time(to, &format!("{path}.between[1]"))?;
            if from > to {
                return Err(Error::at(
                    &format!("{path}.between"),
                    "the first time is after the second",
                ));
            }
            Ok(Window::Between(from, to))
        }
    }
}

/// The keys of one JSON object, read with their path.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    /// Refuses keys other than `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        match self.object.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(Error::at(
                &format!("{}.{key}", self.path),
                format!("unknown key (this condition takes {})", allowed.join(", ")),
            )),
        }
    }

    fn text(&self, key: &str) -> Result<String> {
        match self.object.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(_) => Err(Error::at(
                &format!("{}.{key}", self.path),
                "must be non-empty text",
            )),
            None => Err(Error::at(self.path, format!("missing '{key}'"))),
        }
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>> {
        match self.object.get(key) {
            Some(Value::Array(list)) => Ok(list),
            Some(_) => Err(Error::at(&format!("{}.{key}", self.path), "must be a list")),
            None => Err(Error::at(self.path, format!("missing '{key}'"))),
        }
    }

    /// An optional whole number within `min..=max`.
    fn whole(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.object.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(Error::at(
                    &format!("{}.{key}", self.path),
                    format!("must be a whole number from {min} to {max}"),
                )),
            },
            Some(_) => Err(Error::at(
                &format!("{}.{key}", self.path),
                "must be a whole number",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> Error {
        parse(text).expect_err(text)
    }

    #[test]
    fn reads_every_kind_of_condition() {
        let definition = parse(
            r#"{"as_of": "2026-03-31T00:00:00Z", "all": [
                {"trait": "city", "op": "=", "value": "Shanghai"},
                {"not": {"field": "total_revenue", "op": ">", "value": 1000}},
                {"event": "purchase", "where": [{"property": "channel", "op": "=", "value": "app"}],
                 "measure": "sum:revenue", "op": ">=", "value": 3, "within_days": 90},
                {"funnel": ["view", "cart", "purchase"], "window_seconds": 86400, "op": ">=", "value": 2},
                {"model": "rfm_segment", "op": "in", "value": ["At Risk", "Lost"]},
                {"any": []}
            ]}"#,
        )
        .unwrap();
        assert!(definition.as_of.is_some());
        let Condition::All(conditions) = definition.condition else {
            panic!("all");
        };
        assert_eq!(conditions.len(), 6);
        assert!(matches!(&conditions[2], Condition::Behaviour(b)
            if b.measure == Measure::Sum("revenue".into()) && b.window == Window::WithinDays(90)));
    }

    #[test]
    fn problems_are_named_with_their_path() {
        let cases = [
            ("[1]", "$", "one JSON object"),
            ("{}", "$", "needs one of the keys"),
            (
                r#"{"all": [{"trait": "a", "op": "=", "value": 1, "x": 1}]}"#,
                "$.all[0].x",
                "unknown key",
            ),
            (
                r#"{"any": [{}, {"trait": "a", "op": "~", "value": 1}]}"#,
                "$.any[0]",
                "needs one of",
            ),
            (
                r#"{"trait": "a", "op": "~", "value": 1}"#,
                "$.op",
                "unknown op",
            ),
            (
                r#"{"field": "total_revenue", "op": ">", "value": "x"}"#,
                "$.value",
                "a number",
            ),
            (
                r#"{"field": "shoe_size", "op": ">", "value": 1}"#,
                "$.field",
                "unknown field",
            ),
            (
                r#"{"event": "e", "op": ">", "value": 1, "measure": "median"}"#,
                "$.measure",
                "unknown measure",
            ),
            (
                r#"{"event": "e", "op": ">", "value": 1, "measure": "sum"}"#,
                "$.measure",
                "needs a property",
            ),
            (
                r#"{"event": "e", "op": ">", "value": 1, "within_days": 0}"#,
                "$.within_days",
                "whole number",
            ),
            (
                r#"{"event": "e", "op": ">", "value": 1, "within_days": 2, "between": []}"#,
                "$",
                "not both",
            ),
            (
                r#"{"funnel": [], "window_seconds": 5, "op": ">", "value": 1}"#,
                "$.funnel",
                "1 to 32 steps",
            ),
            (
                r#"{"as_of": "yesterday", "trait": "a", "op": "exists"}"#,
                "$.as_of",
                "RFC 3339",
            ),
            (
                r#"{"trait": "a", "field": "clv", "op": "exists"}"#,
                "$",
                "not several",
            ),
        ];
        for (text, path, message) in cases {
            let e = error(text);
            assert_eq!(e.path, path, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }

    #[test]
    fn conditions_are_found_by_path() {
        let text = r#"{"all": [{"trait": "a", "op": "exists"}, {"not": {"any": [{"field": "clv", "op": ">", "value": 1}]}}]}"#;
        let found = condition_json(text, "$.all[1].not.any[0]").unwrap();
        assert_eq!(found["field"], "clv");
        assert_eq!(
            condition_json(text, "$").unwrap()["all"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(condition_json(text, "$.all[7]").is_none());
    }

    #[test]
    fn huge_numbers_are_refused_not_rounded_to_infinity() {
        let e = error(r#"{"trait": "a", "op": ">", "value": 1e999}"#);
        assert_eq!(e.path, "$");
        assert!(e.message.contains("not valid JSON"), "{e}");
    }
}
