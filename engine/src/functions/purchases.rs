//! The purchases of a tenant's customers, as the value-model table functions (`clv_summary`,
//! `clv`, `clv_params`, `rfm`, `lifecycle`) read them: events named by the tenant's
//! `purchase_event`, worth their `revenue_property`, up to a time `as_of` (now by default), each
//! attributed to its stitched customer through `identity_map` (a person's purchases on every
//! device count once, for one `customer_id`). Days are UTC calendar days numbered from the Unix
//! epoch, as `lifetimes` counts periods with `freq='D'`.

use chrono::{DateTime, Utc};
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use tributary_catalog::builtin::EVENTS;
use tributary_identity::RulesConfig;

use super::args::time_literal;
use super::{Call, SqlTable};

use crate::identity::profiles::{resolved_events, resolved_rows};
use crate::sql_text::string_literal;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The name the models' SQL reads [`Purchases::days_sql`] by.
const PURCHASE_DAYS: &str = "purchase_days";
/// The name the models' SQL reads [`Purchases::seen_sql`] by.
const SEEN_CUSTOMERS: &str = "seen_customers";

/// What a value-model function reads: the tenant's settings and the time of the question.
pub(super) struct Purchases {
    pub(super) config: RulesConfig,
    /// Microseconds since the epoch.
    pub(super) as_of: i64,
}

impl Purchases {
    /// The tenant's settings, and `as_of` from the argument at `index` (a timestamp, a date or
    /// an RFC 3339 text), now without it; refuses more than `arguments` arguments.
    pub(super) fn of(
        call: &Call<'_>,
        usage: &str,
        arguments: usize,
        index: usize,
    ) -> DfResult<Self> {
        if call.args.len() > arguments {
            return plan_err!("{} takes {usage}", call.name);
        }
        let config = call
            .identity
            .tenant(call.tenant)
            .read(|g| g.rules().config().clone());
        let as_of = match call.args.get(index) {
            None => Utc::now().timestamp_micros(),
            Some(expr) => match time_literal(call.name, "as_of", expr)? {
                Some(micros) => micros,
                None => return plan_err!("{} takes {usage}: as_of must not be NULL", call.name),
            },
        };
        Ok(Self { config, as_of })
    }

    /// The day number of `as_of`.
    pub(super) fn as_of_day(&self) -> i64 {
        self.as_of.div_euclid(MICROS_PER_DAY)
    }

    /// `as_of` as a SQL timestamp literal.
    pub(super) fn as_of_sql(&self) -> String {
        let time = DateTime::<Utc>::from_timestamp_micros(self.as_of).unwrap_or_default();
        format!("TIMESTAMP '{}'", time.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }

    /// One row per purchase: `customer_id, at (timestamp), day (day number), value`.
    fn purchases_sql(&self) -> String {
        let purchase = string_literal(&self.config.purchase_event);
        let revenue = string_literal(&self.config.revenue_property);
        let events = resolved_events(
            &format!("e.timestamp <= {}", self.as_of_sql()),
            &format!(
                "e.timestamp AS at, \
                 CAST(floor(CAST(arrow_cast(e.timestamp, 'Int64') AS DOUBLE) / {MICROS_PER_DAY}.0) AS BIGINT) AS day, \
                 json_get_float(e.properties, {revenue}) AS value"
            ),
            &format!("e.event = {purchase}"),
        );
        format!("SELECT * FROM ({events}) WHERE customer_id IS NOT NULL")
    }

    /// The table `sql` answers, reading the tenant's purchase days as `purchase_days` (one row
    /// per customer and purchase day: `customer_id, day, value` — the day's revenue, missing
    /// revenue counting 0 — `purchases, first_at, last_at`) and, with `seen`, the customers with
    /// any event up to `as_of` as `seen_customers (customer_id)`. Each is computed once.
    pub(super) fn table(&self, sql: String, seen: bool) -> SqlTable {
        let mut inputs = vec![(PURCHASE_DAYS, self.days_sql())];
        if seen {
            inputs.push((SEEN_CUSTOMERS, self.seen_sql()));
        }
        SqlTable { inputs, sql }
    }

    /// The customers with any event up to `as_of`; each distinct pair of an event's identifiers
    /// is resolved once.
    fn seen_sql(&self) -> String {
        let pairs = format!(
            "(SELECT user_id, anonymous_id, min(timestamp) AS timestamp FROM {EVENTS} \
             WHERE timestamp <= {as_of} GROUP BY user_id, anonymous_id)",
            as_of = self.as_of_sql()
        );
        let events = resolved_rows(&pairs, "TRUE", "e.timestamp", "TRUE");
        format!("SELECT DISTINCT customer_id FROM ({events}) WHERE customer_id IS NOT NULL")
    }

    fn days_sql(&self) -> String {
        format!(
            "SELECT customer_id, day, coalesce(sum(value), 0.0) AS value, count(*) AS purchases, \
             min(at) AS first_at, max(at) AS last_at \
             FROM ({}) GROUP BY customer_id, day",
            self.purchases_sql()
        )
    }

    /// `lifetimes`' `summary_data_from_transaction_data(freq='D', monetary_value_col=…)`: per
    /// customer with a purchase, repeat purchase days (`frequency`), days from the first to the
    /// last (`recency`) and from the first to `as_of` (`t`), and the mean revenue of the repeat
    /// days (`monetary_value`, 0 without repeat days).
    pub(super) fn summary_sql(&self) -> String {
        format!(
            "WITH days AS (SELECT * FROM {PURCHASE_DAYS}), \
             spans AS (SELECT customer_id, min(day) AS first_day, max(day) AS last_day, \
                       count(*) AS n FROM days GROUP BY customer_id) \
             SELECT s.customer_id, s.n - 1 AS frequency, \
                    CAST(s.last_day - s.first_day AS DOUBLE) AS recency, \
                    CAST({as_of_day} - s.first_day AS DOUBLE) AS t, \
                    coalesce(avg(d.value) FILTER (WHERE d.day > s.first_day), 0.0) AS monetary_value \
             FROM spans s JOIN days d ON d.customer_id = s.customer_id \
             GROUP BY s.customer_id, s.n, s.first_day, s.last_day",
            as_of_day = self.as_of_day(),
        )
    }
}

/// One row: BG/NBD (`bg`) and Gamma-Gamma (`gg`) fitted in one pass over `summary` (a relation
/// with the columns of [`Purchases::summary_sql`]), and how many `customers` it has.
pub(super) fn fits_sql(summary: &str) -> String {
    format!(
        "SELECT bg_nbd_fit(frequency, recency, t) AS bg, \
                gamma_gamma_fit(frequency, monetary_value) AS gg, count(*) AS customers \
         FROM {summary}"
    )
}
