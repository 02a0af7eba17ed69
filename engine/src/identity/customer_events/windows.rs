//! Which rows of `customer_events` a query's filters may keep: a union of windows, each a set
//! of event names (or every event) and an inclusive time range, read off the filters DataFusion
//! offers the scan. The windows only ever admit more rows than the filters do (an unknown
//! expression admits everything), so DataFusion filters again above the scan and the answer
//! never depends on how much is pruned here.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// More windows than this from one `AND` are replaced by one admitting everything.
const MAX_WINDOWS: usize = 256;

/// Events with one of `events` (every event, NULL included, when `None`) whose time lies in
/// `from..=to` (microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) events: Option<BTreeSet<String>>,
    pub(super) from: i64,
    pub(super) to: i64,
}

impl Window {
    const ALL: Window = Window {
        events: None,
        from: i64::MIN,
        to: i64::MAX,
    };

    fn events(names: BTreeSet<String>) -> Self {
        Window {
            events: Some(names),
            ..Self::ALL
        }
    }

    fn times(from: i64, to: i64) -> Self {
        Window {
            from,
            to,
            ..Self::ALL
        }
    }

    /// The rows both admit; `None` when none.
    fn and(&self, other: &Window) -> Option<Window> {
        let events = match (&self.events, &other.events) {
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect::<BTreeSet<_>>()),
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let window = Window {
            events,
            from: self.from.max(other.from),
            to: self.to.min(other.to),
        };
        let empty = window.from > window.to || window.events.as_ref().is_some_and(|e| e.is_empty());
        (!empty).then_some(window)
    }

    fn admits(&self, event: Option<&str>) -> bool {
        match (&self.events, event) {
            (None, _) => true,
            (Some(names), Some(event)) => names.contains(event),
            (Some(_), None) => false,
        }
    }
}

/// The rows a conjunction of filters may keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Windows(Vec<Window>);

impl Windows {
    /// The windows of every filter together (their `AND`).
    pub(super) fn of(filters: &[Expr]) -> Self {
        let all = filters
            .iter()
            .fold(vec![Window::ALL], |acc, filter| and(&acc, &windows(filter)));
        Windows(all)
    }

    /// Exactly the rows of `event` in `from..=to`.
    pub(super) fn one(event: &str, from: i64, to: i64) -> Self {
        Windows(vec![Window {
            events: Some(BTreeSet::from([event.to_string()])),
            from,
            to,
        }])
    }

    /// Whether a row of `event` at `time` lies in a window.
    pub(super) fn admits_row(&self, event: Option<&str>, time: i64) -> bool {
        self.0
            .iter()
            .any(|w| w.admits(event) && (w.from..=w.to).contains(&time))
    }

    /// The inclusive time ranges in which rows of `event` may be kept (none: skip the event).
    pub(super) fn ranges(&self, event: Option<&str>) -> Vec<(i64, i64)> {
        self.0
            .iter()
            .filter(|w| w.admits(event))
            .map(|w| (w.from, w.to))
            .collect()
    }
}

fn and(left: &[Window], right: &[Window]) -> Vec<Window> {
    if left.len() * right.len() > MAX_WINDOWS {
        return vec![Window::ALL];
    }
    left.iter()
        .flat_map(|l| right.iter().filter_map(move |r| l.and(r)))
        .collect()
}

/// The windows of one filter.
fn windows(filter: &Expr) -> Vec<Window> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => and(&windows(left), &windows(right)),
            Operator::Or => {
                let mut union = windows(left);
                union.extend(windows(right));
                union
            }
            _ => comparison(left, *op, right)
                .or_else(|| comparison(right, op.swap()?, left))
                .unwrap_or_else(|| vec![Window::ALL]),
        },
        Expr::InList(list) if !list.negated && is_column(&list.expr, "event") => list
            .list
            .iter()
            .map(text)
            .collect::<Option<BTreeSet<_>>>()
            .map_or_else(|| vec![Window::ALL], |names| vec![Window::events(names)]),
        Expr::Between(between) if !between.negated && is_column(&between.expr, "timestamp") => {
            match (micros(&between.low), micros(&between.high)) {
                (Some(from), Some(to)) => vec![Window::times(from, to)],
                _ => vec![Window::ALL],
            }
        }
        _ => vec![Window::ALL],
    }
}

/// `column op literal` on `event` or `timestamp`.
fn comparison(column: &Expr, op: Operator, value: &Expr) -> Option<Vec<Window>> {
    if is_column(column, "event") && op == Operator::Eq {
        let name = text(value)?;
        return Some(vec![Window::events(BTreeSet::from([name]))]);
    }
    if !is_column(column, "timestamp") {
        return None;
    }
    let at = micros(value)?;
    // Bounds are kept inclusive: a window may admit more than the filter, never less.
    let window = match op {
        Operator::Eq => Window::times(at, at),
        Operator::Gt | Operator::GtEq => Window::times(at, i64::MAX),
        Operator::Lt | Operator::LtEq => Window::times(i64::MIN, at),
        _ => return None,
    };
    Some(vec![window])
}

fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(column) if column.name == name)
}

fn text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(value, _) => value.try_as_str().flatten().map(str::to_string),
        _ => None,
    }
}

/// A timestamp literal in microseconds, rounded so that the window only grows: down, and a
/// finer unit's remainder is covered by the inclusive bounds of whole microseconds around it.
fn micros(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn at(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn measures_of_a_segment_become_one_window_each() {
        // The shape the segment compiler gives: an upper bound, then one OR branch per measure.
        let filters = [
            col("timestamp").lt_eq(at(100)),
            col("event")
                .eq(lit("purchase"))
                .and(col("timestamp").gt(at(10)))
                .or(col("event")
                    .eq(lit("view"))
                    .and(at(50).lt(col("timestamp")))),
        ];
        let windows = Windows::of(&filters);
        assert_eq!(windows.ranges(Some("purchase")), vec![(10, 100)]);
        assert_eq!(windows.ranges(Some("view")), vec![(50, 100)]);
        assert!(windows.ranges(Some("page")).is_empty());
        assert!(windows.ranges(None).is_empty());
    }

    #[test]
    fn unknown_filters_admit_everything() {
        let windows = Windows::of(&[col("customer_id").eq(lit("c1"))]);
        assert_eq!(windows.ranges(None), vec![(i64::MIN, i64::MAX)]);
        let windows = Windows::of(&[col("event").eq(lit("a")).or(col("customer_id").is_null())]);
        assert_eq!(windows.ranges(Some("b")), vec![(i64::MIN, i64::MAX)]);
    }

    #[test]
    fn in_lists_between_and_contradictions() {
        let filters = [
            col("event").in_list(vec![lit("a"), lit("b")], false),
            col("timestamp").between(at(5), at(9)),
        ];
        let windows = Windows::of(&filters);
        assert_eq!(windows.ranges(Some("b")), vec![(5, 9)]);
        assert!(windows.ranges(Some("c")).is_empty());
        let none = Windows::of(&[col("event").eq(lit("a")), col("event").eq(lit("b"))]);
        assert!(none.ranges(Some("a")).is_empty() && none.ranges(Some("b")).is_empty());
        let negated = Windows::of(&[col("event").in_list(vec![lit("a")], true)]);
        assert_eq!(negated.ranges(Some("a")), vec![(i64::MIN, i64::MAX)]);
    }
}
