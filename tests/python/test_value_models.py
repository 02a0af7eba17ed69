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
