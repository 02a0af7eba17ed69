"""The value-model benchmark: `rfm()`, `lifecycle()` and `clv(365)` end to end over Flight SQL
(ADBC), next to the same computations by peers on the same purchases in the same run: DuckDB
SQL (RFM, lifecycle; the purchases handed to it already stitched to customers) and the Python
`lifetimes` package (CLV: summary, BG/NBD and Gamma-Gamma fits, predictions).

Data: `tributary generate --history-days 730` (each customer a shop's two-year purchase
history, BG/NBD-like), imported with identities so purchases are stitched per customer. Prints
the best of N runs of each and the ratios (Tributary / peer; below 1 is faster).

Run it with benchmarks/run.sh models [--customers N] [--runs N] (see docs/benchmarks.md)."""

import time
import warnings

import duckdb
import numpy as np
import pandas as pd
from adbc_driver_flightsql import dbapi
from tributary_server import history_benchmark

warnings.filterwarnings("ignore")

# The end of the generated history (the event period that follows is left out).
AS_OF = "2026-01-01T00:00:00Z"
TODAY = (pd.Timestamp(AS_OF).tz_convert(None) - pd.Timestamp("1970-01-01")).days

DUCKDB_RFM = f"""
WITH c AS (SELECT customer_id, {TODAY} - max(day) AS recency_days, count(*) AS frequency,
                  sum(revenue) AS monetary FROM purchases GROUP BY customer_id),
s AS (SELECT *,
  1 + floor(5 * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ())::BIGINT AS r,
  1 + floor(5 * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ())::BIGINT AS f,
  1 + floor(5 * (rank() OVER (ORDER BY monetary) - 1) / count(*) OVER ())::BIGINT AS m
  FROM c)
SELECT customer_id, recency_days, frequency, monetary, r, f, m,
  CASE WHEN r = 5 AND f >= 4 THEN 'Champions' WHEN r >= 3 AND f >= 4 THEN 'Loyal'
       WHEN r >= 4 AND f >= 2 THEN 'Potential Loyalist' WHEN r = 5 AND f = 1 THEN 'New Customers'
       WHEN r = 4 AND f = 1 THEN 'Promising' WHEN r = 3 AND f = 3 THEN 'Need Attention'
       WHEN r = 3 AND f <= 2 THEN 'About To Sleep' WHEN r <= 2 AND f = 5 THEN 'Cannot Lose Them'
       WHEN r <= 2 AND f >= 3 THEN 'At Risk' WHEN r = 2 AND f <= 2 THEN 'Hibernating'
       ELSE 'Lost' END AS rfm_segment
FROM s
"""

DUCKDB_LIFECYCLE = f"""
WITH days AS (SELECT DISTINCT customer_id, day FROM purchases),
c AS (SELECT customer_id, min(day) AS first_day, max(day) AS last_day, min(bought_at) AS first_at,
             max(bought_at) AS last_at, count(*) AS purchases FROM purchases GROUP BY customer_id),
prev AS (SELECT d.customer_id, max(d.day) AS previous_day FROM days d JOIN c USING (customer_id)
         WHERE d.day < c.last_day GROUP BY d.customer_id)
SELECT s.customer_id,
  CASE WHEN c.customer_id IS NULL THEN 'prospect'
       WHEN {TODAY} - first_day <= 30 THEN 'new'
       WHEN {TODAY} - last_day <= 90 AND last_day - previous_day > 180 THEN 'reactivated'
       WHEN {TODAY} - last_day <= 90 THEN 'active'
       WHEN {TODAY} - last_day <= 180 THEN 'at_risk'
       WHEN {TODAY} - last_day <= 365 THEN 'dormant'
       ELSE 'churned' END AS stage, c.first_at, c.last_at, coalesce(c.purchases, 0) AS purchases
FROM seen s LEFT JOIN c USING (customer_id) LEFT JOIN prev USING (customer_id)
"""


def best(call, runs):
    times, rows = [], None
    for _ in range(runs):
        start = time.perf_counter()
        rows = call()
        times.append(time.perf_counter() - start)
    return min(times), rows


def lifetimes_clv(purchases):
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    summary = summary_data_from_transaction_data(
        purchases, "customer_id", "bought_at", monetary_value_col="revenue",
        observation_period_end=pd.Timestamp(AS_OF).tz_convert(None), freq="D")
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    f, r, t, m = summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"]
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(365, f, r, t)
    value = ggf.conditional_expected_average_profit(f, m)
    summary["clv"] = expected * value
    summary["p_alive"] = bgf.conditional_probability_alive(f, r, t)
    return summary


def main():
    args, process, addresses = history_benchmark(__doc__, 3, "tributary-models-")
    address = addresses["flight"]
    try:
        conn = dbapi.connect(f"grpc://{address}", autocommit=True)
        cur = conn.cursor()

        def ours(sql):
            cur.execute(sql)
            return cur.fetch_arrow_table().num_rows

        # The peers get the same purchases, already stitched (not timed).
        cur.execute(f"""
            SELECT coalesce(u.customer_id, a.customer_id) AS customer_id, e.timestamp AS bought_at,
                   coalesce(json_get_float(e.properties, 'revenue'), 0.0) AS revenue
            FROM events e
            LEFT JOIN identity_map u ON u.id_type = 'user_id' AND u.id_value = e.user_id
            LEFT JOIN identity_map a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id
            WHERE e.event = 'purchase' AND e.timestamp <= TIMESTAMP '{AS_OF}'""")
        purchases = cur.fetch_arrow_table().to_pandas()
        cur.execute(f"""
            SELECT DISTINCT coalesce(u.customer_id, a.customer_id) AS customer_id FROM events e
            LEFT JOIN identity_map u ON u.id_type = 'user_id' AND u.id_value = e.user_id
            LEFT JOIN identity_map a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id
            WHERE e.timestamp <= TIMESTAMP '{AS_OF}'""")
        seen = cur.fetch_arrow_table().to_pandas()
        purchases["bought_at"] = purchases["bought_at"].dt.tz_convert(None)
        purchases["day"] = (purchases["bought_at"] - pd.Timestamp("1970-01-01")).dt.days
        duck = duckdb.connect()
        duck.register("purchases_df", purchases)
        duck.register("seen_df", seen)
        duck.execute("CREATE TABLE purchases AS SELECT * FROM purchases_df")
        duck.execute("CREATE TABLE seen AS SELECT * FROM seen_df")
        customers = purchases["customer_id"].nunique()
        print(f"{args.customers} generated customers, {len(purchases)} purchases of {customers} "
              f"stitched customers, {len(seen)} seen; best of {args.runs}")

        rows = []
        t_rfm, n_rfm = best(lambda: ours(f"SELECT * FROM rfm('{AS_OF}')"), args.runs)
        d_rfm, m_rfm = best(lambda: duck.execute(DUCKDB_RFM).to_arrow_table().num_rows, args.runs)
        rows.append(("rfm()", t_rfm, "DuckDB SQL", d_rfm, n_rfm, m_rfm))
        t_life, n_life = best(lambda: ours(f"SELECT * FROM lifecycle('{AS_OF}')"), args.runs)
        d_life, m_life = best(lambda: duck.execute(DUCKDB_LIFECYCLE).to_arrow_table().num_rows, args.runs)
        rows.append(("lifecycle()", t_life, "DuckDB SQL", d_life, n_life, m_life))
        t_clv, n_clv = best(lambda: ours(f"SELECT * FROM clv(365, '{AS_OF}')"), args.runs)
        l_clv, summary = best(lambda: lifetimes_clv(purchases), args.runs)
        rows.append(("clv(365): summary, fits, predictions", t_clv, "lifetimes", l_clv, n_clv,
                     len(summary)))
        print(f"{'work':40} {'tributary':>10} {'peer':>12} {'peer time':>10} {'ratio':>7} rows")
        for name, ours_time, peer, peer_time, n, m in rows:
            print(f"{name:40} {ours_time:9.3f}s {peer:>12} {peer_time:9.3f}s {ours_time / peer_time:6.2f}x"
                  f" {n}/{m}")
        # The answers agree (a benchmark of different answers would measure nothing).
        cur.execute(f"SELECT customer_id, clv FROM clv(365, '{AS_OF}') ORDER BY customer_id")
        ours_clv = cur.fetch_arrow_table().to_pandas().set_index("customer_id")["clv"]
        theirs = summary["clv"].sort_index()
        agree = np.allclose(ours_clv.loc[theirs.index].to_numpy(), theirs.to_numpy(), rtol=1e-3)
        print(f"clv agrees with lifetimes within 0.1% on every customer: {agree}")
        cur.close()
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
