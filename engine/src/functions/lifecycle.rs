//! `lifecycle([as_of])`: where every customer seen up to `as_of` (now by default) is in its life
//! with the brand: `customer_id, stage, first_purchase_at, last_purchase_at, purchases`.
//!
//! Stages, first match wins, in whole days before `as_of`'s day (thresholds from the tenant's
//! `identity.json` `lifecycle` settings; defaults in brackets): `prospect` (seen, never
//! purchased), `new` (first purchase within `new_days` [30]), `reactivated` (last purchase within
//! `active_days` [90], more than `reactivation_gap_days` [180] after the purchase before it),
//! `active` (last purchase within `active_days`), `at_risk` (within `at_risk_days` [180]),
//! `dormant` (within `dormant_days` [365]), `churned` (longer ago).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;
use tributary_catalog::builtin::timestamp_type;

use super::purchases::Purchases;
use super::{Call, TableFunction, live};

/// `lifecycle`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "lifecycle",
    call: lifecycle,
};

fn lifecycle(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "lifecycle([as_of])";
    let purchases = Purchases::of(call, usage, 1, 0)?;
    let limits = &purchases.config.lifecycle;
    let sql = format!(
        "WITH days AS (SELECT * FROM purchase_days), \
         c AS (SELECT customer_id, min(day) AS first_day, max(day) AS last_day, \
               min(first_at) AS first_at, max(last_at) AS last_at, sum(purchases) AS purchases \
               FROM days GROUP BY customer_id), \
         previous AS (SELECT d.customer_id, max(d.day) AS previous_day FROM days d \
                      JOIN c ON d.customer_id = c.customer_id AND d.day < c.last_day \
                      GROUP BY d.customer_id) \
         SELECT s.customer_id, \
           CASE WHEN c.customer_id IS NULL THEN 'prospect' \
                WHEN {today} - c.first_day <= {new} THEN 'new' \
                WHEN {today} - c.last_day <= {active} \
                     AND c.last_day - p.previous_day > {gap} THEN 'reactivated' \
                WHEN {today} - c.last_day <= {active} THEN 'active' \
                WHEN {today} - c.last_day <= {at_risk} THEN 'at_risk' \
                WHEN {today} - c.last_day <= {dormant} THEN 'dormant' \
                ELSE 'churned' END AS stage, \
           c.first_at AS first_purchase_at, c.last_at AS last_purchase_at, \
           coalesce(c.purchases, 0) AS purchases \
         FROM seen_customers s LEFT JOIN c ON c.customer_id = s.customer_id \
         LEFT JOIN previous p ON p.customer_id = s.customer_id",
        today = purchases.as_of_day(),
        new = limits.new_days,
        active = limits.active_days,
        gap = limits.reactivation_gap_days,
        at_risk = limits.at_risk_days,
        dormant = limits.dormant_days,
    );
    let fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("first_purchase_at", timestamp_type(), true),
        Field::new("last_purchase_at", timestamp_type(), true),
        Field::new("purchases", DataType::Int64, false),
    ];
    Ok(live(
        Arc::new(Schema::new(fields)),
        purchases.table(sql, true),
    ))
}
