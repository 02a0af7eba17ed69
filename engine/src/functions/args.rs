//! Reading the literal arguments of the table functions, with errors that show the usage.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use tributary_identity::CustomerId;

use super::Call;
use crate::identity::TenantIdentity;
use crate::identity::profiles::{CustomerScope, customer_scope};

/// The text literals a table function was called with.
pub(super) fn text_args(name: &str, usage: &str, exprs: &[Expr]) -> DfResult<Vec<String>> {
    exprs
        .iter()
        .map(|expr| match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Ok(s.clone()),
            other => plan_err!("{name} takes text literals: {usage}; got {other}"),
        })
        .collect()
}

/// The tenant's identity and the customer the arguments name: `(customer_id)` or
/// `(id_type, id_value)`; `None` when the identifier is unknown.
pub(super) fn customer_arg(call: &Call<'_>) -> DfResult<(Arc<TenantIdentity>, Option<CustomerId>)> {
    let (name, usage) = (call.name, "(customer_id) or (id_type, id_value)");
    let identity = call.identity.tenant(call.tenant);
    let customer = match text_args(name, usage, call.args)?.as_slice() {
        [customer] => customer
            .parse::<CustomerId>()
            .map(Some)
            .map_err(|e| DataFusionError::Plan(format!("{name}: {e}"))),
        [id_type, value] => Ok(identity.read(|g| g.customer_of(id_type, value))),
        _ => plan_err!("{name} takes {usage}"),
    }?;
    Ok((identity, customer))
}

/// The customer `(id_type, id_value)` (text literals) belongs to now, then (with
/// `takes_limit`) an optional positive limit.
pub(super) fn customer_scope_arg(
    call: &Call<'_>,
    takes_limit: bool,
) -> DfResult<(CustomerScope, Option<usize>)> {
    let (name, exprs) = (call.name, call.args);
    let usage = if takes_limit {
        "(id_type, id_value [, limit])"
    } else {
        "(id_type, id_value)"
    };
    let (texts, rest) = exprs.split_at(exprs.len().min(2));
    let texts = text_args(name, usage, texts)?;
    let limit = match rest {
        [] => None,
        [Expr::Literal(value, _)] if takes_limit => match value.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) if n > 0 => Some(n as usize),
            _ => return plan_err!("{name}: the limit must be a positive integer"),
        },
        _ => return plan_err!("{name} takes {usage}"),
    };
    let [id_type, value] = texts.as_slice() else {
        return plan_err!("{name} takes {usage}");
    };
    let scope = customer_scope(call.identity, call.tenant, id_type, value);
    Ok((scope, limit))
}

/// A constant positive whole number argument (a horizon, a number of bins).
pub(super) fn count_literal(
    name: &str,
    what: &str,
    expr: Option<&Expr>,
    default: i64,
) -> DfResult<i64> {
    let Some(expr) = expr else {
        return Ok(default);
    };
    match expr {
        Expr::Literal(value, _) => match value.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) if n > 0 => Ok(n),
            _ => plan_err!("{name}: {what} must be a positive whole number, got {value}"),
        },
        other => plan_err!("{name}: {what} must be a constant, got {other}"),
    }
}

/// A constant time argument (a timestamp, a date, or RFC 3339 text) in microseconds since the
/// epoch; `None` for NULL.
pub(super) fn time_literal(name: &str, what: &str, expr: &Expr) -> DfResult<Option<i64>> {
    let Expr::Literal(value, _) = expr else {
        return plan_err!("{name}: {what} must be a constant time, got {expr}");
    };
    if value.is_null() {
        return Ok(None);
    }
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    match value.cast_to(&utc) {
        Ok(ScalarValue::TimestampMicrosecond(Some(micros), _)) => Ok(Some(micros)),
        _ => plan_err!(
            "{name}: {what} must be a time (a TIMESTAMP, a DATE or RFC 3339 text such as \
             '2026-01-31T00:00:00Z'), got {value}"
        ),
    }
}
