"""Value models against the Python `lifetimes` package on the CDNOW sample it ships: the fits
(`bg_nbd_fit`, `gamma_gamma_fit`, with and without a penalizer) agree to 4 significant digits,
and the predictions (`bg_nbd_p_alive`, `bg_nbd_expected_purchases`,
`gamma_gamma_expected_value`) per customer within 1e-6 relative — all through Flight SQL on the
real server."""

import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

lifetimes = pytest.importorskip("lifetimes")
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=RuntimeWarning)


@pytest.fixture(scope="module")
def cdnow():
    data = load_cdnow_summary_data_with_monetary_value()
    data["customer_id"] = data.index.astype(str)
    return data.reset_index(drop=True)


@pytest.fixture
def loaded(server, connect, cdnow):
    conn = connect(server)
    table = pa.table({
        "customer_id": pa.array(cdnow["customer_id"], pa.string()),
        "frequency": pa.array(cdnow["frequency"], pa.int64()),
        "recency": pa.array(cdnow["recency"], pa.float64()),
        "t": pa.array(cdnow["T"], pa.float64()),
        "monetary_value": pa.array(cdnow["monetary_value"], pa.float64()),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest("cdnow", table, mode="create")
    return conn


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def assert_significant(ours, theirs, digits=4):
    for name, expected in theirs.items():
        got = ours[name]
        assert math.isclose(got, expected, rel_tol=0.5 * 10 ** (1 - digits)), (name, got, expected)


@pytest.mark.parametrize("penalizer", [0.0, 0.1])
def test_bg_nbd_fit_matches_lifetimes(loaded, cdnow, penalizer):
    fitter = BetaGeoFitter(penalizer_coef=penalizer)
    fitter.fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    [row] = rows(loaded, f"SELECT bg_nbd_fit(frequency, recency, t, {penalizer}) AS p FROM cdnow")
    assert_significant(row["p"], fitter.params_.to_dict())


@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_gamma_gamma_fit_matches_lifetimes(loaded, cdnow, penalizer):
    repeat = cdnow[cdnow["frequency"] > 0]
    fitter = GammaGammaFitter(penalizer_coef=penalizer)
    fitter.fit(repeat["frequency"], repeat["monetary_value"])
    # Rows with frequency 0 are left out by the function itself.
    [row] = rows(
        loaded,
        f"SELECT gamma_gamma_fit(frequency, monetary_value, {penalizer}) AS p FROM cdnow",
    )
    assert_significant(row["p"], fitter.params_.to_dict())


def test_predictions_match_lifetimes_per_customer(loaded, cdnow):
    answer = rows(loaded, """
        WITH bg AS (SELECT bg_nbd_fit(frequency, recency, t) AS p FROM cdnow),
             gg AS (SELECT gamma_gamma_fit(frequency, monetary_value) AS p FROM cdnow)
        SELECT customer_id, bg.p AS bg, gg.p AS gg,
               bg_nbd_p_alive(bg.p, frequency, recency, t) AS p_alive,
               bg_nbd_expected_purchases(bg.p, 39, frequency, recency, t) AS purchases_39,
               bg_nbd_expected_purchases(bg.p, 365, frequency, recency, t) AS purchases_365,
               gamma_gamma_expected_value(gg.p, frequency, monetary_value) AS value
        FROM cdnow, bg, gg ORDER BY customer_id
    """)
    ours = pd.DataFrame(answer).set_index("customer_id")
    data = cdnow.set_index("customer_id").loc[ours.index]
    # lifetimes computes with the parameters Tributary fitted, so only the formulas are compared.
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(answer[0]["bg"])[["r", "alpha", "a", "b"]]
    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series(answer[0]["gg"])[["p", "q", "v"]]
    f, r, t, m = data["frequency"], data["recency"], data["T"], data["monetary_value"]
    expected = {
        "p_alive": bgf.conditional_probability_alive(f, r, t),
        "purchases_39": bgf.conditional_expected_number_of_purchases_up_to_time(39, f, r, t),
        "purchases_365": bgf.conditional_expected_number_of_purchases_up_to_time(365, f, r, t),
    }
    for column, values in expected.items():
        np.testing.assert_allclose(ours[column].to_numpy(), np.asarray(values), rtol=1e-6,
                                   err_msg=column)
    repeat = (f > 0).to_numpy()
    np.testing.assert_allclose(
        ours["value"].to_numpy()[repeat],
        np.asarray(ggf.conditional_expected_average_profit(f, m))[repeat],
        rtol=1e-6,
    )
    assert len(ours) == len(cdnow) == 2357


def test_bad_input_is_named_and_nothing_is_guessed(loaded):
    from adbc_driver_manager import Error

    with pytest.raises(Error, match="bg_nbd_fit: recency must not be after t"):
        rows(loaded, "SELECT bg_nbd_fit(frequency, t + 1, t) FROM cdnow WHERE frequency > 0")
    with pytest.raises(Error, match="bg_nbd_fit: no customer has a repeat purchase"):
        rows(loaded, "SELECT bg_nbd_fit(frequency, recency, t) FROM cdnow WHERE frequency = 0")
    # NULLs are skipped: the same fit with NULL rows added.
    [plain] = rows(loaded, "SELECT bg_nbd_fit(frequency, recency, t) AS p FROM cdnow")
    [with_nulls] = rows(loaded, """
        SELECT bg_nbd_fit(frequency, recency, t) AS p FROM (
          SELECT frequency, recency, t FROM cdnow
          UNION ALL SELECT NULL, 1.0, 2.0
          UNION ALL SELECT 1, NULL, 2.0)
    """)
    assert with_nulls["p"] == plain["p"]


# Per-customer models over events: the same purchases go to Tributary (as events, through the
# write path) and to lifetimes / DuckDB (as a DataFrame).

AS_OF = "2026-06-30T12:00:00Z"


@pytest.fixture(scope="module")
def shop():
    """Purchases of 400 customers over two years, BG/NBD-like: each buys at its own rate, may
    stop after any purchase, spends around its own mean; some buy twice a day. Plus visitors
    who never buy and purchases after AS_OF (to be left out)."""
    rng = np.random.default_rng(20261127)
    start = pd.Timestamp("2024-07-01T00:00:00Z")
    end = pd.Timestamp(AS_OF)
    rows = []
    for c in range(400):
        user = f"u{c}"
        first = start + pd.Timedelta(seconds=int(rng.integers(0, int((end - start).total_seconds()))))
        rate = np.exp(rng.uniform(np.log(1 / 120), np.log(1 / 5)))  # purchases per day
        dropout = rng.uniform(0.05, 0.4)
        spend = np.exp(rng.uniform(np.log(10), np.log(200)))
        at = first
        while at <= end + pd.Timedelta(days=20):
            rows.append((user, at, round(float(spend * rng.uniform(0.5, 1.5)), 2)))
            if rng.random() < 0.1:  # a second purchase the same day
                rows.append((user, at + pd.Timedelta(minutes=5), round(float(spend), 2)))
            if rng.random() < dropout:
                break
            at = at + pd.Timedelta(days=float(rng.exponential(1 / rate)))
    purchases = pd.DataFrame(rows, columns=["user_id", "timestamp", "revenue"])
    purchases["timestamp"] = purchases["timestamp"].dt.floor("s")
    visitors = [f"v{c}" for c in range(50)]
    return purchases, visitors


@pytest.fixture
def shop_loaded(server, connect, shop):
    purchases, visitors = shop
    conn = connect(server)
    n = len(purchases)
    times = list(purchases["timestamp"]) + [pd.Timestamp("2026-01-01T00:00:00Z")] * len(visitors)
    users = list(purchases["user_id"]) + visitors
    events = pa.table({
        "message_id": pa.array([f"m{i}" for i in range(len(times))]),
        "type": pa.array(["track"] * n + ["page"] * len(visitors)),
        "event": pa.array(["purchase"] * n + [None] * len(visitors), pa.string()),
        "anonymous_id": pa.array([f"a-{u}" for u in users]),
        "user_id": pa.array(users),
        "timestamp": pa.array([t.to_pydatetime() for t in times], pa.timestamp("us", tz="UTC")),
        "properties": pa.array([f'{{"revenue": {r}}}' for r in purchases["revenue"]]
                               + ["{}"] * len(visitors)),
        "event_date": pa.array([t.date() for t in times], pa.date32()),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest("events", events, mode="append")
    return conn


def by_user(conn, sql):
    """The rows of a per-customer table function, keyed by the customer's user id."""
    table = pd.DataFrame(rows(conn, f"""
        SELECT m.id_value AS user_id, f.* FROM ({sql}) f
        JOIN identity_map m ON m.customer_id = f.customer_id AND m.id_type = 'user_id'
    """))
    return table.drop(columns=["customer_id"]).set_index("user_id").sort_index()


def lifetimes_summary(purchases, as_of=AS_OF):
    from lifetimes.utils import summary_data_from_transaction_data

    end = pd.Timestamp(as_of).tz_convert(None)
    seen = purchases.copy()
    seen["timestamp"] = seen["timestamp"].dt.tz_convert(None)
    seen = seen[seen["timestamp"] <= end]
    return summary_data_from_transaction_data(
        seen, "user_id", "timestamp", monetary_value_col="revenue",
        observation_period_end=end, freq="D",
    ).sort_index()


def test_clv_summary_equals_lifetimes_summary(shop_loaded, shop):
    ours = by_user(shop_loaded, f"SELECT * FROM clv_summary('{AS_OF}')")
    theirs = lifetimes_summary(shop[0])
    assert list(ours.index) == list(theirs.index)
    for column, their_column in [("frequency", "frequency"), ("recency", "recency"), ("t", "T")]:
        np.testing.assert_array_equal(ours[column].to_numpy(dtype=float),
                                      theirs[their_column].to_numpy(dtype=float), err_msg=column)
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-9)


def test_clv_matches_lifetimes_fit_and_predictions(shop_loaded, shop):
    summary = lifetimes_summary(shop[0])
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    [params] = rows(shop_loaded, f"SELECT * FROM clv_params('{AS_OF}')")
    assert_significant(params, bgf.params_.to_dict())
    assert_significant(params, ggf.params_.to_dict())
    assert params["customers"] == len(summary)

    ours = by_user(shop_loaded, f"SELECT * FROM clv(365, '{AS_OF}')")
    # The formulas with Tributary's parameters (the fits agree to 4 digits above).
    bgf.params_ = pd.Series({k: params[k] for k in ["r", "alpha", "a", "b"]})
    ggf.params_ = pd.Series({k: params[k] for k in ["p", "q", "v"]})
    f, r, t, m = summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"]
    purchases = bgf.conditional_expected_number_of_purchases_up_to_time(365, f, r, t)
    value = ggf.conditional_expected_average_profit(f, m)
    np.testing.assert_allclose(ours["p_alive"], bgf.conditional_probability_alive(f, r, t),
                               rtol=1e-6)
    np.testing.assert_allclose(ours["expected_purchases"], purchases, rtol=1e-6)
    np.testing.assert_allclose(ours["expected_avg_value"], value, rtol=1e-6)
    np.testing.assert_allclose(ours["clv"], purchases * value, rtol=1e-6)


def test_profiles_carry_the_models_of_their_refresh(shop_loaded, shop):
    """`profiles.clv` (365 days) and `p_alive` are lifetimes' answers as of the refresh;
    `rfm_segment` and `lifecycle_stage` are rfm()'s and lifecycle()'s."""
    with shop_loaded.cursor() as cur:
        cur.execute("CALL refresh_profiles()")
        cur.fetchall()
    profiles = by_user(shop_loaded, "SELECT * FROM profiles")
    refreshed = profiles["updated_at"].max()
    summary = lifetimes_summary(shop[0], refreshed)
    bgf = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    f, r, t, m = summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"]
    clv = (bgf.conditional_expected_number_of_purchases_up_to_time(365, f, r, t)
           * ggf.conditional_expected_average_profit(f, m))
    buyers = profiles.loc[summary.index]
    np.testing.assert_allclose(buyers["p_alive"], bgf.conditional_probability_alive(f, r, t),
                               rtol=1e-3)
    np.testing.assert_allclose(buyers["clv"], clv, rtol=1e-3)
    visitors = profiles.drop(index=summary.index)
    assert len(visitors) == 50
    assert visitors["clv"].isna().all() and visitors["rfm_segment"].isna().all()
    assert (visitors["lifecycle_stage"] == "prospect").all()
    segments = by_user(shop_loaded, "SELECT customer_id, rfm_segment FROM rfm()")["rfm_segment"]
    assert buyers["rfm_segment"].to_dict() == segments.to_dict()
    stages = by_user(shop_loaded, "SELECT customer_id, stage FROM lifecycle()")["stage"]
    assert profiles["lifecycle_stage"].to_dict() == stages.to_dict()


SEGMENTS_DUCKDB = """
    CASE WHEN r = 5 AND f >= 4 THEN 'Champions'
         WHEN r >= 3 AND f >= 4 THEN 'Loyal'
         WHEN r >= 4 AND f >= 2 THEN 'Potential Loyalist'
         WHEN r = 5 AND f = 1 THEN 'New Customers'
         WHEN r = 4 AND f = 1 THEN 'Promising'
         WHEN r = 3 AND f = 3 THEN 'Need Attention'
         WHEN r = 3 AND f <= 2 THEN 'About To Sleep'
         WHEN r <= 2 AND f = 5 THEN 'Cannot Lose Them'
         WHEN r <= 2 AND f >= 3 THEN 'At Risk'
         WHEN r = 2 AND f <= 2 THEN 'Hibernating'
         ELSE 'Lost' END
"""


def duckdb_purchases(purchases):
    import duckdb

    db = duckdb.connect()
    seen = purchases[purchases["timestamp"] <= pd.Timestamp(AS_OF)].copy()
    seen["day"] = (seen["timestamp"].dt.tz_convert(None) - pd.Timestamp("1970-01-01")).dt.days
    db.register("p", seen)
    today = (pd.Timestamp(AS_OF).tz_convert(None) - pd.Timestamp("1970-01-01")).days
    return db, today


@pytest.mark.parametrize("bins", [5, 3])
def test_rfm_matches_duckdb(shop_loaded, shop, bins):
    db, today = duckdb_purchases(shop[0])
    theirs = db.execute(f"""
        WITH c AS (SELECT user_id, {today} - max(day) AS recency_days, count(*) AS frequency,
                          sum(revenue) AS monetary FROM p GROUP BY user_id),
        s AS (SELECT *,
          1 + floor({bins} * (rank() OVER (ORDER BY recency_days DESC) - 1) / count(*) OVER ())::BIGINT AS r_score,
          1 + floor({bins} * (rank() OVER (ORDER BY frequency) - 1) / count(*) OVER ())::BIGINT AS f_score,
          1 + floor({bins} * (rank() OVER (ORDER BY monetary) - 1) / count(*) OVER ())::BIGINT AS m_score
          FROM c)
        SELECT user_id, recency_days, frequency, monetary, r_score, f_score, m_score,
               {SEGMENTS_DUCKDB} AS rfm_segment
        FROM (SELECT *, ceil(r_score * 5.0 / {bins})::BIGINT AS r,
                        ceil(f_score * 5.0 / {bins})::BIGINT AS f FROM s)
        ORDER BY user_id
    """).df().set_index("user_id")
    ours = by_user(shop_loaded, f"SELECT * FROM rfm('{AS_OF}', {bins})")
    assert list(ours.index) == list(theirs.index)
    for column in ["recency_days", "frequency", "r_score", "f_score", "m_score", "rfm_segment"]:
        assert list(ours[column]) == list(theirs[column]), column
    np.testing.assert_allclose(ours["monetary"], theirs["monetary"], rtol=1e-9)
    assert ours["rfm_segment"].nunique() >= 6


def test_lifecycle_matches_duckdb(shop_loaded, shop):
    purchases, visitors = shop
    db, today = duckdb_purchases(purchases)
    theirs = db.execute(f"""
        WITH days AS (SELECT DISTINCT user_id, day FROM p),
        c AS (SELECT user_id, min(day) AS first_day, max(day) AS last_day, count(*) AS purchases
              FROM p GROUP BY user_id),
        prev AS (SELECT d.user_id, max(d.day) AS previous_day FROM days d JOIN c USING (user_id)
                 WHERE d.day < c.last_day GROUP BY d.user_id)
        SELECT c.user_id,
          CASE WHEN {today} - first_day <= 30 THEN 'new'
               WHEN {today} - last_day <= 90 AND last_day - previous_day > 180 THEN 'reactivated'
               WHEN {today} - last_day <= 90 THEN 'active'
               WHEN {today} - last_day <= 180 THEN 'at_risk'
               WHEN {today} - last_day <= 365 THEN 'dormant'
               ELSE 'churned' END AS stage, purchases
        FROM c LEFT JOIN prev USING (user_id) ORDER BY user_id
    """).df().set_index("user_id")
    ours = by_user(shop_loaded, f"SELECT * FROM lifecycle('{AS_OF}')")
    prospects = ours[ours["stage"] == "prospect"]
    assert sorted(prospects.index) == sorted(visitors)
    assert (prospects["purchases"] == 0).all()
    buyers = ours[ours["stage"] != "prospect"]
    assert list(buyers.index) == list(theirs.index)
    assert list(buyers["stage"]) == list(theirs["stage"])
    assert list(buyers["purchases"]) == list(theirs["purchases"])
    assert set(theirs["stage"]) >= {"new", "active", "at_risk", "dormant", "churned"}
