"""Conformance with ClickHouse: the same edge-case event streams go through ClickHouse's
windowFunnel and retention (in-process, through chDB) and through Tributary's window_funnel and
retention (over Flight SQL, with ADBC); every answer must be equal. Expected answers come from
chDB, never typed by hand.

Each case is a small event stream (one person); rows are (case, person, time, event), where
`event` 1..3 are funnel steps, 4 is some other event, and NULLs are allowed in time and event."""

import itertools
import random

import pyarrow as pa
import pytest

chdb = pytest.importorskip("chdb")

# (time, event) streams chosen for the rules they exercise.
EDGE_CASES = [
    [(1, 1), (2, 2), (3, 3)],                      # the whole funnel
    [(3, 3), (1, 1), (2, 2)],                      # rows out of time order
    [(1, 1), (1, 2), (1, 3)],                      # all steps tied
    [(1, 2), (1, 1), (2, 3)],                      # tie with the later step listed first
    [(1, 1), (2, 2), (2, 2), (3, 3)],              # a step repeated
    [(1, 1), (2, 1), (3, 2), (4, 3)],              # first step repeated
    [(0, 1), (10, 2), (10, 3)],                    # last step exactly at the window edge (10)
    [(0, 1), (10, 2), (11, 3)],                    # one past the window edge
    [(0, 1), (11, 2)],                             # second step outside the window
    [(1, 2), (2, 3), (3, 1)],                      # later steps before the first
    [(1, 2), (2, 3), (3, 1), (4, 2), (5, 3)],      # steps before the first, then the funnel
    [(None, 1), (2, 2), (3, 3)],                   # NULL time on the first step
    [(1, None), (2, 1), (3, 2)],                   # NULL event
    [(None, None)],                                # nothing usable: NULL
    [(None, 1), (2, None)],                        # nothing usable: NULL
    [(1, 4), (2, 4)],                              # only other events
    [(1, 4)],                                      # one other event
    [(1, 1)],                                      # only the first step
    [(1, 1), (2, 4), (3, 2), (4, 3)],              # another event between steps
    [(1, 1), (2, 2), (3, 4), (4, 3)],              # another event before the last step
    [(1, 1), (2, 3), (3, 2), (4, 3)],              # step 3 early, then 2, then 3
    [(1, 1), (2, 2), (3, 1), (4, 2), (5, 3)],      # re-entry into the funnel
    [(1, 1), (2, 2), (3, 2), (4, 3)],              # duplicate step 2 (strict_deduplication)
    [(1, 1), (2, 1), (3, 2)],                      # duplicate step 1
    [(5, 1), (5, 2), (6, 3)],                      # tie between steps 1 and 2 (strict_increase)
    [(5, 1), (6, 2), (6, 3)],                      # tie between steps 2 and 3
    [(1, 1), (20, 1), (25, 2), (28, 3)],           # a later first step starts a window that fits
    [(1, 1), (5, 2), (20, 1), (40, 3)],            # windows that do not join
    [(1, 1), (2, 2), (100, 1), (101, 2), (102, 3)],  # second attempt completes
    [(3, 1), (3, 4), (3, 2), (3, 3)],              # ties with another event
    [(1, 1), (1, 4), (2, 2)],                      # other event tied with the first step
    [(2, 1), (1, 2), (3, 2), (4, 3)],              # step 2 both before and after step 1
    [(1, 1), (2, 2), (3, 3), (4, 3)],              # completed, then extra
    [(1, 3), (2, 3), (3, 3)],                      # only the last step
    [(1, 1), (2, 3)],                              # skipped step 2
    [(0, 1), (0, 2), (0, 3), (0, 4)],              # everything at time 0
    [(7, 1), (7, 1), (7, 2), (7, 2), (7, 3)],      # duplicates at one time
    [(1, 1), (2, 2), (3, None), (4, 3)],           # NULL event between steps
    [(1, 1), (2, 2), (None, 4), (4, 3)],           # NULL time between steps
    [(10, 1), (12, 4), (13, 2), (14, 4), (15, 3)],  # others interleaved
    [(1, 1), (3, 2), (2, 3)],                      # last step between by time
    [(1, 1), (9, 2), (10, 2), (11, 3)],            # repeated step near the edge
    [(1, 2), (1, 1), (1, 3), (1, 4)],              # one time, every kind
    [(100, 1), (50, 2), (150, 3), (160, 2), (170, 3)],
]

MODES = [
    [],
    ["strict_order"],
    ["strict_deduplication"],
    ["strict_increase"],
    ["strict_once"],
    ["strict_order", "allow_reentry"],
    ["strict_deduplication", "strict_increase"],
    ["strict_once", "strict_order"],
    ["strict_once", "strict_increase"],
]

WINDOWS = [0, 3, 10, 1000]

# Step conditions: disjoint (one step per event), and overlapping (an event can match several
# steps, which is where strict_once matters).
CONDITIONS = {
    "disjoint": "e = 1, e = 2, e = 3",
    "overlapping": "e = 1 OR e = 2, e = 2, e >= 2",
    "two_steps": "e = 1, e = 2",
    "one_step": "e = 1",
}


def cases():
    rows = []
    for case_id, stream in enumerate(EDGE_CASES):
        rows += [(case_id, 0, t, e) for t, e in stream]
    rng = random.Random(20261125)
    for case_id in range(len(EDGE_CASES), len(EDGE_CASES) + 300):
        for person in range(2):
            for _ in range(rng.randint(1, 9)):
                t = None if rng.random() < 0.05 else rng.randint(0, 30)
                e = None if rng.random() < 0.05 else rng.randint(1, 4)
                rows.append((case_id, person, t, e))
    return rows


def clickhouse(query, rows):
    values = ", ".join(
        f"({c}, {p}, {'NULL' if t is None else t}, {'NULL' if e is None else e})" for c, p, t, e in rows
    )
    sql = query.replace(
        "CASES",
        f"values('c UInt32, p UInt32, t Nullable(UInt64), e Nullable(UInt8)', {values})",
    )
    result = chdb.query(sql, "JSONCompact")
    import json
    return {(r[0], r[1]): r[2] for r in json.loads(result.bytes())["data"]}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from conftest import Server
    from adbc_driver_flightsql import dbapi

    server = Server(tmp_path_factory.mktemp("conformance") / "data").start()
    conn = dbapi.connect(server.uri, autocommit=True)
    rows = cases()
    table = pa.table({
        "c": pa.array([r[0] for r in rows], pa.int64()),
        "p": pa.array([r[1] for r in rows], pa.int64()),
        "t": pa.array([r[2] for r in rows], pa.int64()),
        "e": pa.array([r[3] for r in rows], pa.int64()),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest("cases", table, mode="create")
    yield conn, rows
    conn.close()
    server.stop()


def tributary(conn, query):
    with conn.cursor() as cur:
        cur.execute(query)
        return {(r[0], r[1]): r[2] for r in cur.fetchall()}


def normalise(value):
    return list(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize(
    "modes,window,conditions",
    [(m, w, c) for m, w, c in itertools.product(MODES, WINDOWS, CONDITIONS) if not (c == "one_step" and w == 1000)],
    ids=lambda v: ",".join(v) if isinstance(v, list) else str(v),
)
def test_window_funnel_matches_clickhouse(loaded, modes, window, conditions):
    conn, rows = loaded
    cond = CONDITIONS[conditions]
    ch_params = ", ".join([str(window)] + [f"'{m}'" for m in modes])
    expected = clickhouse(
        f"SELECT c, p, windowFunnel({ch_params})(t, {cond}) FROM CASES GROUP BY c, p", rows
    )
    mode_arg = f"'{','.join(modes)}', " if modes else ""
    got = tributary(conn, f"SELECT c, p, window_funnel({window}, {mode_arg}t, {cond}) FROM cases GROUP BY c, p")
    assert len(expected) > 300
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ (case, person): (clickhouse, tributary): {dict(list(differences.items())[:10])}"
    # window_funnel_steps gives one time per step reached: as many as ClickHouse's level.
    steps = tributary(conn, f"SELECT c, p, window_funnel_steps({window}, {mode_arg}t, {cond}) FROM cases GROUP BY c, p")
    lengths = {k: (None if v is None else len(v)) for k, v in steps.items()}
    differences = {k: (expected[k], lengths.get(k)) for k in expected if expected[k] != lengths.get(k)}
    assert not differences, f"window_funnel_steps lengths differ: {dict(list(differences.items())[:10])}"


@pytest.mark.parametrize("conditions", ["e = 1, e = 2, e = 3", "e = 1, e = 4", "e <= 2, e = 3, e = 4, e IS NULL"])
def test_retention_matches_clickhouse(loaded, conditions):
    conn, rows = loaded
    expected = clickhouse(f"SELECT c, p, retention({conditions}) FROM CASES GROUP BY c, p", rows)
    got = tributary(conn, f"SELECT c, p, retention({conditions}) FROM cases GROUP BY c, p")
    got = {k: normalise(v) for k, v in got.items()}
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ: {dict(list(differences.items())[:10])}"


def test_datetime_window_in_seconds_matches_clickhouse(loaded):
    """TIMESTAMP times with an integer window in seconds, against ClickHouse DateTime."""
    conn, rows = loaded
    expected = clickhouse(
        "SELECT c, p, windowFunnel(10)(toDateTime(t), e = 1, e = 2, e = 3) FROM CASES GROUP BY c, p", rows
    )
    got = tributary(
        conn,
        "SELECT c, p, window_funnel(INTERVAL '10 seconds', to_timestamp_seconds(t), e = 1, e = 2, e = 3) FROM cases GROUP BY c, p",
    )
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, dict(list(differences.items())[:10])


PATTERNS = [
    "(?1)(?2)", "(?1)(?2)(?3)", "(?1).*(?2)", "(?1).(?3)", "(?1).*(?3)", "(?2)", ".(?2)", "(?1)(?1)",
    ".*", "(?3).*(?1)", "(?1)(?t<=3)(?2)", "(?1)(?t<3)(?2)", "(?1)(?t>=3)(?2)", "(?1)(?t>3)(?2)",
    "(?1)(?t==2)(?2)", "(?1).*(?t>=5)(?3)", "(?1)(?t<=10).*(?2)", "(?1)(?t>=0)(?2)",
    "(?1)(?t<=5)(?2)(?t<=5)(?3)", ".(?t>2).", "(?1).*(?2).*(?3)",
]


@pytest.mark.parametrize("function", ["sequenceMatch", "sequenceCount"])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("conditions", ["disjoint", "overlapping"])
def test_sequence_functions_match_clickhouse(loaded, function, pattern, conditions):
    conn, rows = loaded
    cond = CONDITIONS[conditions]
    expected = clickhouse(f"SELECT c, p, {function}('{pattern}')(t, {cond}) FROM CASES GROUP BY c, p", rows)
    ours = {"sequenceMatch": "sequence_match", "sequenceCount": "sequence_count"}[function]
    got = tributary(conn, f"SELECT c, p, {ours}('{pattern}', t, {cond}) FROM cases GROUP BY c, p")
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ (case, person): (clickhouse, tributary): {dict(list(differences.items())[:10])}"


def test_invalid_pattern_is_a_clear_error(loaded):
    import adbc_driver_manager
    conn, _ = loaded
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="invalid pattern"):
            cur.execute("SELECT sequence_match('(?1)(?9)', t, e = 1, e = 2) FROM cases")


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("base", ["head", "tail", "first_match", "last_match"])
@pytest.mark.parametrize("events", ["e = 1", "e = 1, e = 2", "e = 2, e = 3, e = 1", "e >= 1, e >= 2"])
@pytest.mark.parametrize("base_condition", ["e <= 2", "e >= 1"])
def test_sequence_next_node_matches_clickhouse(loaded, direction, base, events, base_condition):
    conn, rows = loaded
    if (direction, base) in [("backward", "head"), ("forward", "tail")]:
        # ClickHouse refuses these combinations; so does Tributary, when the query is planned.
        import adbc_driver_manager
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error, match=f"'{base}' cannot go '{direction}'"):
                cur.execute(f"SELECT sequence_next_node('{direction}', '{base}', t, CAST(e AS VARCHAR), {base_condition}, {events}) FROM cases")
        return
    expected = clickhouse(
        f"SELECT c, p, sequenceNextNode('{direction}', '{base}')(t, toString(e), {base_condition}, {events}) "
        "FROM CASES GROUP BY c, p SETTINGS allow_experimental_funnel_functions = 1",
        rows,
    )
    got = tributary(
        conn,
        f"SELECT c, p, sequence_next_node('{direction}', '{base}', t, CAST(e AS VARCHAR), {base_condition}, {events}) "
        "FROM cases GROUP BY c, p",
    )
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ: {dict(list(differences.items())[:10])}"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("conditions", ["disjoint", "overlapping"])
def test_sequence_match_events_matches_clickhouse(loaded, pattern, conditions):
    """The matched (or longest partial) chain's times, group by group."""
    conn, rows = loaded
    cond = CONDITIONS[conditions]
    expected = clickhouse(f"SELECT c, p, sequenceMatchEvents('{pattern}')(t, {cond}) FROM CASES GROUP BY c, p", rows)
    got = tributary(conn, f"SELECT c, p, sequence_match_events('{pattern}', t, {cond}) FROM cases GROUP BY c, p")
    got = {k: normalise(v) for k, v in got.items()}
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ: {dict(list(differences.items())[:10])}"


@pytest.mark.parametrize(
    "clickhouse_call,tributary_call",
    [
        ("windowFunnel(5)(t, 1, e = 2, toUInt8(e >= 3))", "window_funnel(5, t, 1, e = 2, CAST(e >= 3 AS TINYINT UNSIGNED))"),
        ("sequenceMatch('(?1).*(?2)')(t, toUInt8(e), e = 3)", "sequence_match('(?1).*(?2)', t, CAST(e AS TINYINT UNSIGNED), e = 3)"),
        ("retention(1, e = 2, 0)", "retention(1, e = 2, 0)"),
        ("windowFunnel(6048000000000000)(toDateTime(t), e = 1, e = 2)", "window_funnel(6048000000000000, to_timestamp_seconds(t), e = 1, e = 2)"),
    ],
)
def test_integer_conditions_and_huge_windows_match_clickhouse(loaded, clickhouse_call, tributary_call):
    """Integer conditions (non-zero is true) and a window longer than the time unit can count."""
    conn, rows = loaded
    expected = clickhouse(f"SELECT c, p, {clickhouse_call} FROM CASES GROUP BY c, p", rows)
    got = {k: normalise(v) for k, v in tributary(conn, f"SELECT c, p, {tributary_call} FROM cases GROUP BY c, p").items()}
    differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
    assert not differences, f"{len(differences)} groups differ: {dict(list(differences.items())[:10])}"


def test_base_only_sequence_next_node_matches_clickhouse(loaded):
    conn, rows = loaded
    for direction, base in [("forward", "head"), ("backward", "tail")]:
        expected = clickhouse(
            f"SELECT c, p, sequenceNextNode('{direction}', '{base}')(t, toString(e), e <= 2) "
            "FROM CASES GROUP BY c, p SETTINGS allow_experimental_funnel_functions = 1",
            rows,
        )
        got = tributary(conn, f"SELECT c, p, sequence_next_node('{direction}', '{base}', t, CAST(e AS VARCHAR), e <= 2) FROM cases GROUP BY c, p")
        differences = {k: (expected[k], got.get(k)) for k in expected if expected[k] != got.get(k)}
        assert not differences, f"{direction} {base}: {dict(list(differences.items())[:10])}"
