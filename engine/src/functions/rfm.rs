//! `rfm([as_of [, bins]])`: recency, frequency and monetary value of every customer with a
//! purchase up to `as_of` (now by default), their scores 1..`bins` (5 by default) and the RFM
//! segment.
//!
//! - `recency_days`: whole days from the last purchase day to `as_of`'s day; `frequency`:
//!   purchases; `monetary`: their revenue (missing revenue counts 0).
//! - Scores by quantile: a customer's score is `1 + floor(bins · (rank − 1) / customers)`,
//!   where `rank` is SQL's `rank()` — the more recent, the more frequent, the more spent, the
//!   higher. Tied customers share the lowest rank of their tie, so they get the same score.
//! - `rfm_segment` from the R and F scores on a 1–5 scale (`ceil(score · 5 / bins)`), by the map
//!   in docs/sql.md, first match wins.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::error::Result as DfResult;

use super::args::count_literal;
use super::purchases::Purchases;
use super::{Call, TableFunction, live};

/// `rfm`.
pub const FUNCTION: TableFunction = TableFunction {
    name: "rfm",
    call: rfm,
};

/// The RFM segments by 1–5 recency (r) and frequency (f) scores, first match wins.
pub const SEGMENTS: &[(&str, &str)] = &[
    ("r = 5 AND f >= 4", "Champions"),
    ("r >= 3 AND f >= 4", "Loyal"),
    ("r >= 4 AND f >= 2", "Potential Loyalist"),
    ("r = 5 AND f = 1", "New Customers"),
    ("r = 4 AND f = 1", "Promising"),
    ("r = 3 AND f = 3", "Need Attention"),
    ("r = 3 AND f <= 2", "About To Sleep"),
    ("r <= 2 AND f = 5", "Cannot Lose Them"),
    ("r <= 2 AND f >= 3", "At Risk"),
    ("r = 2 AND f <= 2", "Hibernating"),
    ("r = 1 AND f <= 2", "Lost"),
];

fn rfm(call: &Call<'_>) -> DfResult<Arc<dyn TableProvider>> {
    let usage = "rfm([as_of [, bins]])";
    let purchases = Purchases::of(call, usage, 2, 0)?;
    let bins = count_literal(call.name, "bins", call.args.get(1), 5)?;
    let score = |column: &str, order: &str| {
        format!(
            "1 + CAST(floor({bins} * (rank() OVER (ORDER BY {column} {order}) - 1) \
             / CAST(count(*) OVER () AS DOUBLE)) AS BIGINT)"
        )
    };
    let on_five = |score: &str| format!("CAST(ceil({score} * 5.0 / {bins}) AS BIGINT)");
    let segment = SEGMENTS
        .iter()
        .map(|(condition, name)| format!("WHEN {condition} THEN '{name}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let sql = format!(
        "WITH c AS (SELECT customer_id, {as_of_day} - max(day) AS recency_days, \
                    sum(purchases) AS frequency, sum(value) AS monetary \
                    FROM purchase_days GROUP BY customer_id), \
         scored AS (SELECT *, {r} AS r_score, {f} AS f_score, {m} AS m_score FROM c) \
         SELECT customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, \
                CASE {segment} END AS rfm_segment \
         FROM (SELECT *, {r5} AS r, {f5} AS f FROM scored)",
        as_of_day = purchases.as_of_day(),
        r = score("recency_days", "DESC"),
        f = score("frequency", "ASC"),
        m = score("monetary", "ASC"),
        r5 = on_five("r_score"),
        f5 = on_five("f_score"),
    );
    let fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("recency_days", DataType::Int64, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary", DataType::Float64, false),
        Field::new("r_score", DataType::Int64, false),
        Field::new("f_score", DataType::Int64, false),
        Field::new("m_score", DataType::Int64, false),
        Field::new("rfm_segment", DataType::Utf8, false),
    ];
    Ok(live(
        Arc::new(Schema::new(fields)),
        purchases.table(sql, false),
    ))
}
