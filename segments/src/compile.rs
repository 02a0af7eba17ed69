//! A [`Definition`] as one SQL query: the `customer_id` of every member.
//!
//! Shape: every customer (`customers`), joined to the profile values its conditions read (one
//! projection of `profiles`), to the tallies of each (event, window) a behaviour condition
//! counts or times (`event_measures`), and to one aggregate of its events holding the other
//! measures — funnels, property filters, sums (one scan of the events, each measure
//! `FILTER`ed to its own events); the condition tree becomes the `WHERE`
//! clause, each leaf `(…) IS TRUE` so that a missing value is "no" and `not` means
//! "everyone else". A customer with no matching event has count 0 / sum 0 / NULL time.
//!
//! [`explain`] compiles the same joins for one customer, with each condition's value and answer
//! as columns: "why is this person (not) in it?".

use chrono::{DateTime, Duration, Utc};

use crate::definition::{Behaviour, Condition, Definition, Funnel, Measure, Window};
use crate::error::{Error, Result};
use crate::sql;
use crate::test::{Kind, Test};

/// The relations a segment reads, as SQL a `FROM` takes (a table name or a parenthesized query).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// One row per customer: `customer_id, customer_key` (a number standing for the id).
    pub customers: &'a str,
    /// The `profiles` table with each row's `customer_key`.
    pub profiles: &'a str,
    /// Every event with its customer: `customer_id, timestamp, event, properties`.
    pub events: &'a str,
    /// The same events without their properties: `customer_key, timestamp, event` (read when
    /// no condition looks at a property; grouped and joined by the key, which is cheaper).
    pub event_times: &'a str,
    /// A table function `f(event, from, until)` (inclusive bounds, NULL: open) answering per
    /// customer with such events `customer_key, events, first_time, last_time, distinct_days`:
    /// what a behaviour condition that counts an event's rows or times reads.
    pub event_measures: &'a str,
}

/// Compiles `definition` over `sources`; relative windows count back from the definition's
/// `as_of`, or from `now` without one. `segment` resolves a segment reference to its
/// definition, or None when no segment has that name.
pub fn compile(
    definition: &Definition,
    sources: &Sources<'_>,
    now: DateTime<Utc>,
    segment: &dyn Fn(&str) -> Option<Definition>,
) -> Result<String> {
    let mut compiler = Compiler::new(definition, now, segment);
    let condition = compiler.condition(&definition.condition, "$")?;
    Ok(format!(
        "SELECT c.customer_id FROM {} WHERE {condition}",
        compiler.joins(sources)
    ))
}

/// One condition of a definition, as [`explain`] answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// Its JSON path (`$` is the whole definition).
    pub path: String,
    /// The column of the customer's value (`value_<i>`, text), for a condition that reads one.
    pub value: Option<String>,
    /// The column of its answer for the customer (`holds_<i>`, boolean).
    pub holds: String,
}

/// The SQL answering, for the customer `customer_id`, one row: the value and the answer of
/// every condition of `definition` (the columns of each [`Explained`], in the order the
/// conditions appear); no row when the customer is unknown. A referenced segment is one
/// condition.
pub fn explain(
    definition: &Definition,
    sources: &Sources<'_>,
    now: DateTime<Utc>,
    segment: &dyn Fn(&str) -> Option<Definition>,
    customer_id: &str,
) -> Result<(String, Vec<Explained>)> {
    let mut compiler = Compiler::new(definition, now, segment);
    compiler.condition(&definition.condition, "$")?;
    let mut columns = Vec::new();
    let mut explained = Vec::new();
    for (i, node) in compiler.nodes.iter().enumerate() {
        let value = node.value.as_ref().map(|value| {
            columns.push(format!("CAST({value} AS VARCHAR) AS value_{i}"));
            format!("value_{i}")
        });
        columns.push(format!("{} AS holds_{i}", node.holds));
        explained.push(Explained {
            path: node.path.clone(),
            value,
            holds: format!("holds_{i}"),
        });
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE c.customer_id = {}",
        columns.join(", "),
        compiler.joins(sources),
        sql::text(customer_id)
    );
    Ok((sql, explained))
}

/// One event's rows in an inclusive time window (`from` None: unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tally {
    event: String,
    from: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
}

/// A condition compiled: where it is, the SQL of its value (leaves) and of its answer.
struct Node {
    path: String,
    value: Option<String>,
    holds: String,
}

impl<'a> Compiler<'a> {
    fn new(
        definition: &Definition,
        now: DateTime<Utc>,
        segment: &'a dyn Fn(&str) -> Option<Definition>,
    ) -> Self {
        Compiler {
            as_of: definition.as_of.unwrap_or(now),
            measures: Vec::new(),
            tallies: Vec::new(),
            event_filters: Vec::new(),
            profile_values: Vec::new(),
            event_values: Vec::new(),
            segment,
            expanding: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Every customer, with the profile values and event measures the conditions read.
    fn joins(&self, sources: &Sources<'_>) -> String {
        let as_of = sql::timestamp(self.as_of);
        let mut sql = format!("{} c", sources.customers);
        if !self.profile_values.is_empty() {
            sql.push_str(&format!(
                " LEFT JOIN (SELECT customer_key, {} FROM {}) p ON p.customer_key = c.customer_key",
                self.profile_values.join(", "),
                sources.profiles
            ));
        }
        for (i, tally) in self.tallies.iter().enumerate() {
            sql.push_str(&format!(
                " LEFT JOIN {}({}, {}, {}) t{i} ON t{i}.customer_key = c.customer_key",
                sources.event_measures,
                sql::text(&tally.event),
                tally
                    .from
                    .map_or_else(|| "NULL".to_string(), sql::timestamp),
                sql::timestamp(tally.until),
            ));
        }
        if !self.measures.is_empty() {
            let (source, key) = if self.event_values.is_empty() {
                (sources.event_times, "customer_key")
            } else {
                (sources.events, "customer_id")
            };
            let mut columns = vec![key, "timestamp", "event"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            columns.extend(self.event_values.iter().cloned());
            let events = format!("(SELECT {} FROM {source})", columns.join(", "));
            sql.push_str(&format!(
                " LEFT JOIN (SELECT {key}, {measures} FROM {events} e \
                 WHERE e.timestamp <= {as_of} AND ({filters}) GROUP BY {key}) b \
                 ON b.{key} = c.{key}",
                measures = self.measures.join(", "),
                filters = self.event_filters.join(" OR "),
            ));
        }
        sql
    }
}

struct Compiler<'a> {
    as_of: DateTime<Utc>,
    /// `aggregate AS m<i>` over the events, one per behaviour or funnel leaf.
    measures: Vec<String>,
    /// The (event, window)s whose per-customer tallies are joined, as `t<i>`.
    tallies: Vec<Tally>,
    /// The events each measure reads; the scan keeps those matching any.
    event_filters: Vec<String>,
    /// `expression AS v<i>` over `profiles`, one per trait or field leaf.
    profile_values: Vec<String>,
    /// `expression AS x<i>` over the events' properties, read by measures and filters. (Read
    /// in a projection of their own: DataFusion 55's `push_down_leaf_projections` fails on a
    /// JSON function over a joined column inside an aggregate when the query is filtered.)
    event_values: Vec<String>,
    segment: &'a dyn Fn(&str) -> Option<Definition>,
    /// The segments being expanded, to refuse cycles.
    expanding: Vec<String>,
    /// The conditions of the definition itself (not those inside referenced segments).
    nodes: Vec<Node>,
}

impl Compiler<'_> {
    /// The SQL of `condition`'s answer, recording it as a node when it is the definition's own.
    fn condition(&mut self, condition: &Condition, path: &str) -> Result<String> {
        let index = self.nodes.len();
        let own = self.expanding.is_empty();
        if own {
            self.nodes.push(Node {
                path: path.to_string(),
                value: None,
                holds: String::new(),
            });
        }
        let (value, holds) = self.answer(condition, path)?;
        if own {
            self.nodes[index].value = value;
            self.nodes[index].holds = holds.clone();
        }
        Ok(holds)
    }

    /// The SQL of `condition`'s value (for a leaf) and answer.
    fn answer(&mut self, condition: &Condition, path: &str) -> Result<(Option<String>, String)> {
        Ok(match condition {
            Condition::All(list) | Condition::Any(list) => {
                let all = matches!(condition, Condition::All(_));
                let key = if all { "all" } else { "any" };
                if list.is_empty() {
                    return Ok((None, sql::boolean(all)));
                }
                let parts = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.condition(c, &format!("{path}.{key}[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                (
                    None,
                    format!("({})", parts.join(if all { " AND " } else { " OR " })),
                )
            }
            Condition::Not(inner) => (
                None,
                format!("(NOT {})", self.condition(inner, &format!("{path}.not"))?),
            ),
            Condition::Trait { key, test } => {
                let value = self.profile_value(json_value("traits", key, test));
                self.leaf(value, test)
            }
            Condition::Field { field, test } => {
                let value = self.profile_value(field.column.to_string());
                self.leaf(value, test)
            }
            Condition::Behaviour(behaviour) => self.behaviour(behaviour),
            Condition::Funnel(funnel) => self.funnel(funnel),
            Condition::Query(sql) => (
                None,
                format!(
                    "c.customer_id IN (SELECT q.customer_id FROM ({sql}) AS q \
                     WHERE q.customer_id IS NOT NULL)"
                ),
            ),
            Condition::Segment { name, member } => {
                let Some(definition) = (self.segment)(name) else {
                    return Err(Error::at(path, format!("unknown segment '{name}'")));
                };
                if self.expanding.contains(name) {
                    return Err(Error::at(
                        path,
                        format!(
                            "segment '{name}' refers to itself: {} -> {name}",
                            self.expanding.join(" -> ")
                        ),
                    ));
                }
                self.expanding.push(name.clone());
                let inner = self.condition(&definition.condition, path);
                let depth = self.expanding.len();
                self.expanding.pop();
                // A problem inside a stored segment is reported where the user refers to it.
                let inner = inner.map_err(|e| match depth {
                    1 => Error::at(path, format!("in segment '{name}': {}", e.message)),
                    _ => e,
                })?;
                let holds = if *member {
                    inner
                } else {
                    format!("(NOT {inner})")
                };
                (None, holds)
            }
        })
    }

    /// The events of `window` (always those at or before `as_of`).
    fn window(&self, window: Window) -> String {
        match window {
            Window::Always => "TRUE".to_string(),
            Window::WithinDays(days) => format!(
                "e.timestamp > {}",
                sql::timestamp(self.as_of - Duration::days(i64::from(days)))
            ),
            Window::Between(from, to) => format!(
                "e.timestamp BETWEEN {} AND {}",
                sql::timestamp(from),
                sql::timestamp(to)
            ),
        }
    }

    /// Adds a value read from the profile; its column name.
    fn profile_value(&mut self, expression: String) -> String {
        let name = format!("v{}", self.profile_values.len());
        self.profile_values.push(format!("{expression} AS {name}"));
        format!("p.{name}")
    }

    /// Adds a value read from each event's properties; its column name.
    fn event_value(&mut self, expression: String) -> String {
        let name = format!("x{}", self.event_values.len());
        self.event_values.push(format!("{expression} AS {name}"));
        format!("e.{name}")
    }

    /// Adds a measure over `events`; its column name.
    fn measure(&mut self, aggregate: String, events: String) -> String {
        let name = format!("m{}", self.measures.len());
        self.measures.push(format!("{aggregate} AS {name}"));
        self.event_filters.push(events);
        format!("b.{name}")
    }

    /// A leaf: its value, and `test` of it (false where SQL would say NULL).
    fn leaf(&self, value: String, test: &Test) -> (Option<String>, String) {
        let holds = leaf(&test.sql(&value, self.as_of));
        (Some(value), holds)
    }

    /// The column `column` of the tally of `event` in `window` (up to `as_of`), joined once
    /// however many conditions read it.
    fn tally(&mut self, event: &str, window: Window, column: &str) -> String {
        let (from, until) = match window {
            Window::Always => (None, self.as_of),
            // After the instant `as_of - days`: from the next microsecond, the events' unit.
            Window::WithinDays(days) => (
                Some(self.as_of - Duration::days(i64::from(days)) + Duration::microseconds(1)),
                self.as_of,
            ),
            Window::Between(from, to) => (Some(from), to.min(self.as_of)),
        };
        let tally = Tally {
            event: event.to_string(),
            from,
            until,
        };
        let index = match self.tallies.iter().position(|t| *t == tally) {
            Some(index) => index,
            None => {
                self.tallies.push(tally);
                self.tallies.len() - 1
            }
        };
        format!("t{index}.{column}")
    }

    fn behaviour(&mut self, behaviour: &Behaviour) -> (Option<String>, String) {
        if behaviour.filters.is_empty() {
            let (event, window) = (&behaviour.event, behaviour.window);
            let value = match &behaviour.measure {
                Measure::Count => Some(format!(
                    "coalesce({}, 0)",
                    self.tally(event, window, "events")
                )),
                Measure::DistinctDays => Some(format!(
                    "coalesce({}, 0)",
                    self.tally(event, window, "distinct_days")
                )),
                Measure::FirstTime => Some(self.tally(event, window, "first_time")),
                Measure::LastTime => Some(self.tally(event, window, "last_time")),
                _ => None,
            };
            if let Some(value) = value {
                return self.leaf(value, &behaviour.test);
            }
        }
        let mut events = vec![
            format!("e.event = {}", sql::text(&behaviour.event)),
            self.window(behaviour.window),
        ];
        for filter in &behaviour.filters {
            let value = self.event_value(json_value("properties", &filter.property, &filter.test));
            events.push(leaf(&filter.test.sql(&value, self.as_of)));
        }
        let events = format!("({})", events.join(" AND "));
        let mut number = |property: &str| {
            self.event_value(format!(
                "json_get_float(properties, {})",
                sql::text(property)
            ))
        };
        let (aggregate, zero) = match &behaviour.measure {
            Measure::Count => ("count(*)".to_string(), true),
            Measure::Sum(p) => (format!("sum({})", number(p)), true),
            Measure::Avg(p) => (format!("avg({})", number(p)), false),
            Measure::Min(p) => (format!("min({})", number(p)), false),
            Measure::Max(p) => (format!("max({})", number(p)), false),
            Measure::FirstTime => ("min(e.timestamp)".to_string(), false),
            Measure::LastTime => ("max(e.timestamp)".to_string(), false),
            Measure::DistinctDays => {
                // count(DISTINCT …) takes no FILTER: rows of other events count NULL.
                let day = format!(
                    "count(DISTINCT CASE WHEN {events} THEN date_trunc('day', e.timestamp) END)"
                );
                let column = self.measure(day, events);
                return self.leaf(format!("coalesce({column}, 0)"), &behaviour.test);
            }
        };
        let column = self.measure(format!("{aggregate} FILTER (WHERE {events})"), events);
        let value = if zero {
            format!("coalesce({column}, 0)")
        } else {
            column
        };
        self.leaf(value, &behaviour.test)
    }

    fn funnel(&mut self, funnel: &Funnel) -> (Option<String>, String) {
        let window = self.window(funnel.window);
        let steps: Vec<String> = funnel
            .steps
            .iter()
            .map(|step| format!("({window} AND e.event = {})", sql::text(step)))
            .collect();
        let aggregate = format!(
            "window_funnel({}, e.timestamp, {})",
            funnel.window_seconds,
            steps.join(", ")
        );
        let column = self.measure(aggregate, format!("({})", steps.join(" OR ")));
        self.leaf(format!("coalesce({column}, 0)"), &funnel.test)
    }
}

/// A leaf condition, false where SQL would say NULL. (`IS TRUE` rather than
/// `coalesce(…, false)`, which DataFusion rewrites to `x IS NOT NULL AND x`, evaluating `x` — a
/// JSON lookup for a trait — twice.)
fn leaf(condition: &str) -> String {
    format!("(({condition}) IS TRUE)")
}

/// The value at `key` of the JSON text column `json`, read as the type `test` compares.
fn json_value(json: &str, key: &str, test: &Test) -> String {
    let key = sql::text(key);
    match (test, test.kind()) {
        (Test::AnniversaryWithinDays(_), _) => {
            format!("TRY_CAST(json_get_str({json}, {key}) AS DATE)")
        }
        (_, None) => format!("json_as_text({json}, {key})"),
        (_, Some(Kind::Number)) => format!("json_get_float({json}, {key})"),
        (_, Some(Kind::Text)) => format!("json_get_str({json}, {key})"),
        (_, Some(Kind::Bool)) => format!("json_get_bool({json}, {key})"),
        (_, Some(Kind::Time)) => format!("TRY_CAST(json_get_str({json}, {key}) AS TIMESTAMP)"),
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use proptest::prelude::*;
    use sqlparser::ast::{Expr, Value, visit_expressions};
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    use super::*;
    use crate::definition::parse;

    const SOURCES: Sources<'static> = Sources {
        customers: "customers",
        profiles: "profiles",
        events: "events",
        event_times: "event_times",
        event_measures: "event_measures",
    };

    fn sql_of(definition: &serde_json::Value) -> String {
        let definition = parse(&definition.to_string()).expect("a valid definition");
        compile(&definition, &SOURCES, Utc::now(), &|_| None).expect("compiles")
    }

    /// The literals of `sql`, parsed back: it must be exactly one statement.
    fn literals(sql: &str) -> (Vec<String>, Vec<String>) {
        let statements = Parser::parse_sql(&GenericDialect {}, sql).expect("parses back");
        assert_eq!(statements.len(), 1, "{sql}");
        let (mut texts, mut numbers) = (Vec::new(), Vec::new());
        let _ = visit_expressions(&statements, |expr| {
            if let Expr::Value(value) = expr {
                match &value.value {
                    Value::SingleQuotedString(s) => texts.push(s.clone()),
                    Value::Number(n, _) => numbers.push(n.clone()),
                    _ => {}
                }
            }
            ControlFlow::<()>::Continue(())
        });
        (texts, numbers)
    }

    proptest! {
        #[test]
        fn hostile_text_stays_one_literal(value in ".*", key in ".+") {
            let sql = sql_of(&serde_json::json!({"all": [
                {"trait": key, "op": "=", "value": value},
                {"event": key, "where": [{"property": key, "op": "contains", "value": value}],
                 "op": ">=", "value": 1}
            ]}));
            let (texts, _) = literals(&sql);
            // A text that reads as an RFC 3339 time is compared as a time, written by us.
            if chrono::DateTime::parse_from_rfc3339(&value).is_err() {
                prop_assert!(texts.contains(&value), "{sql}");
            }
            prop_assert!(texts.contains(&key), "{sql}");
        }

        #[test]
        fn numbers_come_back_exactly(value in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let sql = sql_of(&serde_json::json!({"trait": "a", "op": "<", "value": value}));
            let (_, numbers) = literals(&sql);
            let back: Vec<f64> = numbers.iter().map(|n| n.parse().unwrap()).collect();
            prop_assert!(back.contains(&value.abs()), "{sql}");
        }
    }

    #[test]
    fn segment_references_expand_and_cycles_are_refused() {
        let vip = parse(r#"{"trait": "tier", "op": "=", "value": "gold"}"#).unwrap();
        let looping = parse(r#"{"any": [{"segment": "b"}]}"#).unwrap();
        let lookup = |name: &str| match name {
            "vip" => Some(vip.clone()),
            "a" | "b" => Some(looping.clone()),
            _ => None,
        };
        let outer = parse(r#"{"segment": "vip", "member": false}"#).unwrap();
        let sql = compile(&outer, &SOURCES, Utc::now(), &lookup).unwrap();
        assert!(sql.contains("(NOT ((p.v0 = 'gold') IS TRUE))"), "{sql}");
        let cycle = parse(r#"{"all": [{"segment": "a"}]}"#).unwrap();
        let error = compile(&cycle, &SOURCES, Utc::now(), &lookup).unwrap_err();
        assert_eq!(error.path, "$.all[0]");
        assert!(error.message.contains("refers to itself"), "{error}");
    }
}
