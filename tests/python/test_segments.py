"""Segment definitions against an independent evaluation: random definitions (combinators,
traits, profile fields, behaviour with windows, filters and every measure) are answered by
`segment_preview` through Flight SQL and by a plain Python reading of docs/segments.md over the
same data, exported from the server (identity_map, profiles, events). The sets must be equal."""

import datetime as dt
import json
import random
import time

import pyarrow as pa
import pytest

AS_OF = dt.datetime(2026, 3, 31, tzinfo=dt.timezone.utc)
CITIES = ["Shanghai", "Beijing", "Shenzhen", "O'Hara"]
EVENTS = ["purchase", "product_view", "add_to_cart"]


def connect_to(server):
    from adbc_driver_flightsql import dbapi

    return dbapi.connect(server.uri, autocommit=True)


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def generated_events(rng):
    """60 customers: identify traits (some missing), and events around AS_OF — some after it."""
    start = AS_OF - dt.timedelta(days=200)
    events = []
    for c in range(60):
        traits = {}
        if rng.random() < 0.8:
            traits["city"] = rng.choice(CITIES)
        if rng.random() < 0.7:
            traits["age"] = rng.randint(18, 70)
        if rng.random() < 0.5:
            traits["tier"] = rng.choice(["gold", "silver"])
        traits["sms_opt_in"] = rng.random() < 0.5
        events.append(("identify", None, f"u{c}", start, traits))
        for _ in range(rng.randint(0, 12)):
            at = start + dt.timedelta(seconds=rng.randint(0, 230 * 86400))
            name = rng.choice(EVENTS)
            properties = {"channel": rng.choice(["app", "web"])}
            if name == "purchase" and rng.random() < 0.9:
                properties["revenue"] = rng.randint(1, 300)
            events.append(("track", name, f"u{c}", at, properties))
    return events


@pytest.fixture
def shop(server, connect):
    rng = random.Random(20261127)
    events = generated_events(rng)
    table = pa.table({
        "message_id": pa.array([f"m{i}" for i in range(len(events))]),
        "type": pa.array([e[0] for e in events]),
        "event": pa.array([e[1] for e in events], pa.string()),
        "anonymous_id": pa.array([f"a-{e[2]}" for e in events]),
        "user_id": pa.array([e[2] for e in events]),
        "timestamp": pa.array([e[3] for e in events], pa.timestamp("us", tz="UTC")),
        "event_date": pa.array([e[3].date() for e in events], pa.date32()),
        "properties": pa.array([json.dumps(e[4]) for e in events]),
    })
    conn = connect(server)
    with conn.cursor() as cur:
        cur.adbc_ingest("events", table, mode="append")
        cur.execute("CALL refresh_profiles()")
        cur.fetchall()
    customers = {r["customer_id"] for r in rows(conn, "SELECT customer_id FROM identity_map")}
    by_user = {r["id_value"]: r["customer_id"] for r in rows(
        conn, "SELECT id_value, customer_id FROM identity_map WHERE id_type = 'user_id'")}
    profiles = {r["customer_id"]: r for r in rows(conn, "SELECT * FROM profiles")}
    for profile in profiles.values():
        profile["traits"] = json.loads(profile["traits"] or "{}")
    exported = rows(conn, "SELECT user_id, timestamp, event, properties FROM events")
    history = {c: [] for c in customers}
    for e in exported:
        history[by_user[e["user_id"]]].append(
            (e["timestamp"], e["event"], json.loads(e["properties"])))
    return conn, customers, profiles, history


# ---- A plain reading of the definition language ----

def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def typed(value, example):
    """The subject's value read as the type of the definition's value (None when it is not)."""
    if value is None:
        return None
    if is_number(example):
        return float(value) if is_number(value) else None
    if isinstance(example, bool):
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else None


def check(test, value):
    op, expected = test["op"], test.get("value")
    if op == "exists":
        return value is not None
    if op == "not_exists":
        return value is None
    example = expected[0] if isinstance(expected, list) and expected else expected
    value = typed(value, example)
    if value is None:
        return False
    if op in ("in", "not_in"):
        return (value in expected) == (op == "in")
    if op == "contains":
        return expected in value
    if op == "starts_with":
        return value.startswith(expected)
    if op == "between":
        return expected[0] <= value <= expected[1]
    return {"=": value == expected, "!=": value != expected, "<": value < expected,
            "<=": value <= expected, ">": value > expected, ">=": value >= expected}[op]


def in_window(condition, at):
    if at > AS_OF:
        return False
    if "within_days" in condition:
        return at > AS_OF - dt.timedelta(days=condition["within_days"])
    return True


def behaviour(condition, events):
    chosen = [(at, props) for at, name, props in events
              if name == condition["event"] and in_window(condition, at)
              and all(check(f, props.get(f["property"])) for f in condition.get("where", []))]
    measure = condition.get("measure", "count")
    revenues = [float(p["revenue"]) for _, p in chosen if is_number(p.get("revenue"))]
    if measure == "count":
        return len(chosen)
    if measure == "sum:revenue":
        return sum(revenues)
    if measure == "max:revenue":
        return max(revenues) if revenues else None
    if measure == "distinct_days":
        return len({at.date() for at, _ in chosen})
    if measure == "last_time":
        return max((at for at, _ in chosen), default=None)
    raise AssertionError(measure)


def holds(condition, customer, profiles, history):
    if "all" in condition:
        return all(holds(c, customer, profiles, history) for c in condition["all"])
    if "any" in condition:
        return any(holds(c, customer, profiles, history) for c in condition["any"])
    if "not" in condition:
        return not holds(condition["not"], customer, profiles, history)
    profile = profiles.get(customer, {"traits": {}})
    if "trait" in condition:
        return check(condition, profile["traits"].get(condition["trait"]))
    if "field" in condition:
        return check(condition, profile.get(condition["field"]))
    value = behaviour(condition, history[customer])
    if condition.get("measure") == "last_time":
        if value is None:
            return False
        expected = dt.datetime.fromisoformat(condition["value"].replace("Z", "+00:00"))
        return {">=": value >= expected, "<": value < expected}[condition["op"]]
    return check(condition, value)


# ---- Random definitions ----

def random_leaf(rng):
    kind = rng.choice(["city", "age", "tier", "opt", "field", "behaviour", "behaviour"])
    if kind == "city":
        op = rng.choice(["=", "!=", "in", "not_in", "starts_with", "contains"])
        value = {"in": CITIES[:2], "not_in": [rng.choice(CITIES)], "starts_with": "Sh",
                 "contains": "'"}.get(op, rng.choice(CITIES))
        return {"trait": "city", "op": op, "value": value}
    if kind == "age":
        op = rng.choice(["<", ">=", "between", "exists"])
        if op == "exists":
            return {"trait": "age", "op": "exists"}
        value = [25, 45] if op == "between" else rng.randint(20, 60)
        return {"trait": "age", "op": op, "value": value}
    if kind == "tier":
        return rng.choice([{"trait": "tier", "op": "not_exists"},
                           {"trait": "tier", "op": "=", "value": "gold"}])
    if kind == "opt":
        return {"trait": "sms_opt_in", "op": "=", "value": rng.random() < 0.5}
    if kind == "field":
        return rng.choice([{"field": "purchase_count", "op": ">=", "value": rng.randint(0, 4)},
                           {"field": "total_revenue", "op": ">", "value": rng.randint(0, 600)}])
    condition = {"event": rng.choice(EVENTS)}
    measure = rng.choice(["count", "sum:revenue", "max:revenue", "distinct_days", "last_time"])
    condition["measure"] = measure
    if measure == "last_time":
        day = AS_OF - dt.timedelta(days=rng.randint(1, 120))
        condition.update(op=rng.choice([">=", "<"]), value=day.strftime("%Y-%m-%dT%H:%M:%SZ"))
    else:
        condition.update(op=rng.choice([">=", "=", "<"]), value=rng.randint(0, 3 if measure in (
            "count", "distinct_days") else 300))
    if rng.random() < 0.6:
        condition["within_days"] = rng.choice([7, 30, 90])
    if rng.random() < 0.4:
        condition["where"] = [{"property": "channel", "op": "=", "value": rng.choice(["app", "web"])}]
    return condition


def random_condition(rng, depth=0):
    if depth < 3 and rng.random() < 0.5:
        kind = rng.choice(["all", "any", "not"])
        if kind == "not":
            return {"not": random_condition(rng, depth + 1)}
        return {kind: [random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    return random_leaf(rng)


def sql_text(text):
    return "'" + text.replace("'", "''") + "'"


def test_random_definitions_match_an_independent_evaluation(shop):
    conn, customers, profiles, history = shop
    rng = random.Random(7)
    sizes = []
    for _ in range(120):
        definition = {"as_of": "2026-03-31T00:00:00Z", **random_condition(rng)}
        text = json.dumps(definition)
        ours = {r["customer_id"] for r in rows(
            conn, f"SELECT customer_id FROM segment_preview({sql_text(text)})")}
        theirs = {c for c in customers if holds(definition, c, profiles, history)}
        assert ours == theirs, text
        [size] = rows(conn, f"SELECT segment_size({sql_text(text)}) AS n")
        assert size["n"] == len(theirs), text
        sizes.append(len(theirs))
    # The definitions are not all trivially empty or full.
    assert len(set(sizes)) > 10 and 0 < sum(sizes) < 120 * len(customers)


def documented_schema():
    """The JSON Schema of docs/segments.md."""
    import pathlib

    text = (pathlib.Path(__file__).parents[2] / "docs" / "segments.md").read_text()
    return json.loads(text.split("## JSON Schema")[1].split("```json")[1].split("```")[0])


def test_the_documented_schema_agrees_with_the_server(server, connect):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(documented_schema())
    rng = random.Random(11)
    for _ in range(200):
        definition = {"as_of": "2026-03-31T00:00:00Z", **random_condition(rng)}
        assert validator.is_valid(definition), validator.iter_errors(definition)
    conn = connect(server)
    refused = [
        {"trait": "city", "op": "~", "value": 1},
        {"trait": "city", "op": "=", "value": 1, "colour": "red"},
        {"funnel": [], "window_seconds": 60, "op": ">=", "value": 1},
        {"event": "purchase", "op": ">=", "value": 1, "within_days": 0},
        {"model": "shoe_size", "op": ">", "value": 1},
        {"all": [{"trait": "a", "op": "exists", "value": 1}]},
    ]
    for definition in refused:
        assert not validator.is_valid(definition), definition
        with pytest.raises(Exception, match="segment definition"):
            rows(conn, f"SELECT segment_size({sql_text(json.dumps(definition))})")


def test_stored_segments_survive_a_crash_and_keep_their_history(shop, server):
    """CREATE and REFRESH SEGMENT through Flight SQL; after `kill -9` and a restart, the segment,
    its members and its history are there, and the next refresh records exactly who left."""
    conn, customers, profiles, history = shop
    gold = {"trait": "tier", "op": "=", "value": "gold"}
    with conn.cursor() as cur:
        cur.execute(f"CREATE SEGMENT gold AS {sql_text(json.dumps(gold))}")
        entered = cur.fetchall()[0][0]
    expected = {c for c in customers if holds(gold, c, profiles, history)}
    assert entered == len(expected) > 0
    conn.close()
    server.kill()
    server.start()
    conn = connect_to(server)
    members = {r["customer_id"] for r in rows(
        conn, "SELECT customer_id FROM segment_members WHERE segment = 'gold' AND exited_at IS NULL")}
    assert members == expected
    [segment] = rows(conn, "SELECT name, size, schedule FROM segments")
    assert segment == {"name": "gold", "size": len(expected), "schedule": "manual"}
    # Everyone who was gold says they are silver now: all leave at the next refresh.
    leaving = sorted(expected)[:3]
    by_customer = {r["customer_id"]: r["id_value"] for r in rows(
        conn, "SELECT customer_id, id_value FROM identity_map WHERE id_type = 'user_id'")}
    moved = pa.table({
        "message_id": pa.array([f"silver-{c}" for c in leaving]),
        "type": pa.array(["identify"] * len(leaving)),
        "anonymous_id": pa.array([f"a-{by_customer[c]}" for c in leaving]),
        "user_id": pa.array([by_customer[c] for c in leaving]),
        "timestamp": pa.array([dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)] * len(leaving),
                              pa.timestamp("us", tz="UTC")),
        "event_date": pa.array([dt.date(2026, 4, 1)] * len(leaving), pa.date32()),
        "properties": pa.array(['{"tier": "silver"}'] * len(leaving)),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest("events", moved, mode="append")
        cur.execute("CALL refresh_profiles()")
        cur.fetchall()
        cur.execute("REFRESH SEGMENT gold")
        assert cur.fetchall()[0][0] == len(leaving)
    left = {r["customer_id"] for r in rows(
        conn, "SELECT customer_id FROM segment_members WHERE segment = 'gold' AND exited_at IS NOT NULL")}
    assert left == set(leaving)
    conn.close()


def test_scheduled_and_realtime_segments_refresh_themselves(server, connect):
    """A realtime segment follows each acknowledged event (HTTP collection) by itself, entry and
    exit; an interval segment catches up on its schedule; a manual one waits for REFRESH."""
    from collection import post, track

    conn = connect(server)
    buyers = {"all": [{"event": "purchase", "op": ">=", "value": 1},
                      {"not": {"event": "refund", "op": ">=", "value": 1}}]}
    with conn.cursor() as cur:
        for name, schedule in [("live", "realtime"), ("every_2s", "2 seconds"),
                               ("by_hand", "manual")]:
            cur.execute(f"CREATE SEGMENT {name} SCHEDULE '{schedule}' AS "
                        f"{sql_text(json.dumps(buyers))}")
            assert cur.fetchall()[0][0] == 0

    def members(segment, where="exited_at IS NULL"):
        return {r["customer_id"] for r in rows(
            conn, f"SELECT customer_id FROM segment_members WHERE segment = '{segment}' "
                  f"AND {where}")}

    def wait_until(test, timeout=60):
        deadline = time.monotonic() + timeout
        while not test():
            assert time.monotonic() < deadline, "the scheduler did not refresh in time"
            time.sleep(0.1)
        return time.monotonic()

    sent = time.monotonic()
    status, _, _ = post(server.http, "/v1/track", track("rt-buy", user="rt-1", event="purchase"))
    assert status == 200
    [customer] = {r["customer_id"] for r in rows(
        conn, "SELECT customer_id FROM identity_map WHERE id_value = 'rt-1'")}
    entered = wait_until(lambda: members("live") == {customer})
    wait_until(lambda: members("every_2s") == {customer})
    print(f"realtime entry after {entered - sent:.2f} s")
    assert members("by_hand") == set()

    status, _, _ = post(server.http, "/v1/track", track("rt-refund", user="rt-1", event="refund"))
    assert status == 200
    wait_until(lambda: members("live", "exited_at IS NOT NULL") == {customer})
    assert members("live") == set()
    wait_until(lambda: members("every_2s") == set())
    sizes = {r["name"]: r["size"] for r in rows(conn, "SELECT name, size FROM segments")}
    assert sizes == {"live": 0, "every_2s": 0, "by_hand": 0}
    with conn.cursor() as cur:
        cur.execute("REFRESH SEGMENT by_hand")
        assert cur.fetchall()[0][0] == 0


def call(base, method, path, body=None, headers=None):
    """One JSON call to the segment API: (status, parsed answer)."""
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else (
        None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_segment_api_over_http(shop, server):
    """The builder's endpoints: preview (size and first ids) against the independent
    evaluation, create / read / list / page members / refresh / delete, and clear errors."""
    conn, customers, profiles, history = shop
    base = server.http
    gold = {"trait": "tier", "op": "=", "value": "gold"}
    expected = sorted(c for c in customers if holds(gold, c, profiles, history))
    assert len(expected) > 4

    assert call(base, "POST", "/v1/segments/preview?limit=3", gold) == (
        200, {"size": len(expected), "customer_ids": expected[:3]})
    status, answer = call(base, "POST", "/v1/segments/preview",
                          {"trait": "tier", "op": "~", "value": "x"})
    assert status == 400 and "$.op" in answer["error"], answer
    status, answer = call(base, "POST", "/v1/segments/preview", b"{not json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = call(base, "POST", "/v1/segments/preview?limit=0", gold)
    assert status == 400 and "limit" in answer["error"]

    status, created = call(base, "POST", "/v1/segments",
                           {"name": "gold", "definition": gold, "schedule": "60 minutes"})
    assert status == 201, created
    assert (created["entered"], created["size"], created["schedule"]) == (
        len(expected), len(expected), "1 hour")
    assert created["definition"] == gold
    status, answer = call(base, "POST", "/v1/segments", {"name": "gold", "definition": gold})
    assert status == 409 and "already exists" in answer["error"]
    for bad, message in [({"definition": gold}, "'name'"),
                         ({"name": "x", "definition": "tier"}, "'definition'"),
                         ({"name": "x", "definition": gold, "schedule": "hourly"}, "hourly"),
                         ({"name": "x", "definition": gold, "colour": 1}, "unknown key")]:
        status, answer = call(base, "POST", "/v1/segments", bad)
        assert status == 400 and message in answer["error"], (bad, answer)

    status, listed = call(base, "GET", "/v1/segments")
    assert status == 200 and [s["name"] for s in listed] == ["gold"]
    assert call(base, "GET", "/v1/segments/gold")[1]["size"] == len(expected)
    assert call(base, "GET", "/v1/segments/silver")[0] == 404
    assert [r["name"] for r in rows(conn, "SELECT name FROM segments")] == ["gold"]

    paged, after = [], None
    while True:
        query = "limit=2" + (f"&after={after}" if after else "")
        status, page = call(base, "GET", f"/v1/segments/gold/members?{query}")
        assert status == 200
        paged += [m["customer_id"] for m in page["members"]]
        assert all(m["exited_at"] is None and m["entered_at"] for m in page["members"])
        after = page["next_after"]
        if after is None:
            break
    assert paged == expected
    assert call(base, "GET", "/v1/segments/silver/members")[0] == 404

    # Our reading statements answer over Flight SQL too (planned at GetFlightInfo, run at DoGet).
    assert [r["name"] for r in rows(conn, "SHOW SEGMENTS")] == ["gold"]
    [explained] = rows(conn, f"EXPLAIN SEGMENT {sql_text(json.dumps(gold))}")
    assert "profiles" in explained["sql"]
    assert rows(conn, "SHOW DESTINATIONS") == [] and rows(conn, "SHOW ACTIVATIONS") == []

    status, refreshed = call(base, "POST", "/v1/segments/gold/refresh")
    assert status == 200 and refreshed["changed"] == 0
    assert call(base, "DELETE", "/v1/segments/gold") == (200, {"dropped": "gold"})
    assert call(base, "GET", "/v1/segments/gold")[0] == 404
    assert call(base, "DELETE", "/v1/segments/gold")[0] == 404
    status, answer = call(base, "GET", "/v1/segments",
                          headers={"x-tributary-tenant": "nowhere"})
    assert status == 404 and "nowhere" in answer["error"]


def test_the_segment_api_off_loopback_takes_logins(tmp_path):
    """Off loopback, the segment API reads customers only for logged-in users (collection stays
    open to write keys); a server without users does not listen off loopback at all
    (test_security.py)."""
    import base64
    import os
    import socket
    import subprocess

    from collection import post, track
    from conftest import BINARY, Server

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        own = probe.getsockname()[0]
    except OSError:
        own = "127.0.0.1"
    finally:
        probe.close()
    if own.startswith("127."):
        pytest.skip("this machine has no address off loopback")
    data = tmp_path / "data"
    made = subprocess.run([BINARY, "user", "add", "seg", "--superuser", "--data", str(data)],
                          env=dict(os.environ, TRIBUTARY_PASSWORD="seg-pass-1"),
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    server = Server(data, http_addr="0.0.0.0:0")
    server.start()
    try:
        port = server.http_address.rsplit(":", 1)[1]
        outside = f"http://{own}:{port}"
        status, answer = call(outside, "GET", "/v1/segments")
        assert status == 401 and "needs a login" in answer["error"]
        assert call(outside, "POST", "/v1/segments/preview", {"all": []})[0] == 401
        basic = base64.b64encode(b"seg:seg-pass-1").decode()
        assert call(outside, "GET", "/v1/segments", headers={"Authorization": f"Basic {basic}"}) == (200, [])
        assert post(outside, "/v1/track", track("off-loopback"))[0] == 200
    finally:
        server.stop()
