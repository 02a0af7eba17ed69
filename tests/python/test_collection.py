"""The HTTP collection API through real clients: the official Segment SDKs for Python and Node,
plus the API's limits, errors, write keys and tenants."""

import datetime
import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from collection import count, post, query, track
from conftest import BINARY, Server

NODE_MODULES = os.environ.get(
    "TRIBUTARY_NODE_MODULES", os.path.expanduser("~/.cache/tributary-node/node_modules")
)


def events_by_id(conn):
    rows = query(
        conn,
        "SELECT message_id, type, event, anonymous_id, user_id, timestamp, source, properties, "
        "context FROM events",
    )
    names = ["message_id", "type", "event", "anonymous_id", "user_id", "timestamp", "source",
             "properties", "context"]
    return {row[0]: dict(zip(names, row)) for row in rows}


def test_segment_python_sdk_events_arrive_with_their_columns(server, connect):
    from segment.analytics import Client

    errors = []
    client = Client(write_key="any-key", host=server.http, sync_mode=True,
                    on_error=lambda error, batch: errors.append(error))
    when = datetime.datetime(2026, 11, 20, 8, 30, 15, 250000, tzinfo=datetime.timezone.utc)
    client.track(user_id="py-1", event="Order Completed", properties={"revenue": 99.5},
                 timestamp=when, message_id="py-track")
    client.identify(user_id="py-1", traits={"email": "a@example.com"}, anonymous_id="anon-9",
                    message_id="py-identify")
    client.page(user_id="py-1", name="Home", properties={"url": "https://x.test/"},
                message_id="py-page")
    client.screen(user_id="py-1", name="Cart", message_id="py-screen")
    client.group(user_id="py-1", group_id="g-7", traits={"plan": "pro"}, message_id="py-group")
    client.alias(previous_id="anon-9", user_id="py-1", message_id="py-alias")
    client.flush()
    assert errors == []

    events = events_by_id(connect(server))
    assert set(events) == {"py-track", "py-identify", "py-page", "py-screen", "py-group",
                           "py-alias"}
    tracked = events["py-track"]
    assert (tracked["type"], tracked["event"], tracked["user_id"]) == (
        "track", "Order Completed", "py-1")
    assert json.loads(tracked["properties"]) == {"revenue": 99.5}
    assert tracked["timestamp"] == when
    assert json.loads(tracked["context"])["library"]["name"] == "analytics-python"
    assert tracked["source"] == "http"
    identify = events["py-identify"]
    assert (identify["type"], identify["anonymous_id"]) == ("identify", "anon-9")
    assert json.loads(identify["properties"]) == {"email": "a@example.com"}
    assert (events["py-page"]["event"], events["py-screen"]["event"]) == ("Home", "Cart")
    assert json.loads(events["py-group"]["properties"]) == {"groupId": "g-7",
                                                           "traits": {"plan": "pro"}}
    assert json.loads(events["py-alias"]["properties"]) == {"previousId": "anon-9"}


def test_segment_node_sdk_events_arrive_with_their_columns(server, connect, tmp_path):
    node = shutil.which("node")
    assert node, "Node.js is needed for the Node SDK test"
    assert os.path.isdir(os.path.join(NODE_MODULES, "@segment/analytics-node")), (
        "run tests/run.sh, which installs @segment/analytics-node")
    script = tmp_path / "send.js"
    script.write_text(textwrap.dedent("""
        const { Analytics } = require('@segment/analytics-node');
        const analytics = new Analytics({
          writeKey: 'node-key', host: process.argv[2], maxEventsInBatch: 3, flushInterval: 100,
        });
        analytics.on('error', (err) => { console.error('error', err); process.exitCode = 1; });
        analytics.track({ userId: 'js-1', event: 'Signed Up', messageId: 'js-track',
                          properties: { plan: 'free' }, timestamp: '2026-11-21T01:02:03.004Z' });
        analytics.identify({ anonymousId: 'js-anon', userId: 'js-1', messageId: 'js-identify',
                             traits: { name: 'Ada' } });
        analytics.page({ userId: 'js-1', name: 'Pricing', messageId: 'js-page' });
        analytics.screen({ userId: 'js-1', name: 'Settings', messageId: 'js-screen' });
        analytics.group({ userId: 'js-1', groupId: 'acme', messageId: 'js-group' });
        analytics.alias({ userId: 'js-1', previousId: 'js-anon', messageId: 'js-alias' });
        analytics.closeAndFlush().then(() => console.log('flushed'));
    """))
    result = subprocess.run([node, str(script), server.http], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, NODE_PATH=NODE_MODULES))
    assert result.returncode == 0, result.stderr
    assert "flushed" in result.stdout

    events = events_by_id(connect(server))
    assert set(events) == {"js-track", "js-identify", "js-page", "js-screen", "js-group",
                           "js-alias"}
    tracked = events["js-track"]
    assert (tracked["event"], tracked["user_id"]) == ("Signed Up", "js-1")
    assert json.loads(tracked["properties"]) == {"plan": "free"}
    assert tracked["timestamp"] == datetime.datetime(2026, 11, 21, 1, 2, 3, 4000,
                                                     tzinfo=datetime.timezone.utc)
    assert json.loads(tracked["context"])["library"]["name"] == "@segment/analytics-node"
    assert json.loads(events["js-identify"]["properties"]) == {"name": "Ada"}
    assert events["js-identify"]["anonymous_id"] == "js-anon"
    assert (events["js-page"]["event"], events["js-screen"]["event"]) == ("Pricing", "Settings")
    assert json.loads(events["js-alias"]["properties"]) == {"previousId": "js-anon"}


def test_every_endpoint_and_gzip(server, connect):
    base = {"userId": "e-1"}
    for path, body in [
        ("/v1/track", {**base, "event": "Clicked", "messageId": "ep-track"}),
        ("/v1/identify", {**base, "traits": {"a": 1}, "messageId": "ep-identify"}),
        ("/v1/page", {**base, "name": "P", "messageId": "ep-page"}),
        ("/v1/screen", {**base, "name": "S", "messageId": "ep-screen"}),
        ("/v1/alias", {**base, "previousId": "old", "messageId": "ep-alias"}),
        ("/v1/group", {**base, "groupId": "g", "messageId": "ep-group"}),
    ]:
        status, answer, _ = post(server.http, path, body, gzip=path == "/v1/page")
        assert (status, answer["accepted"]) == (200, 1), (path, answer)
    status, answer, _ = post(server.http, "/v1/import",
                             {"batch": [track("ep-import-1"), track("ep-import-2")]}, gzip=True)
    assert (status, answer["accepted"]) == (200, 2)
    types = dict(query(connect(server), "SELECT message_id, type FROM events"))
    assert types["ep-page"] == "page" and types["ep-alias"] == "alias"
    assert len(types) == 8


def test_limits_and_bad_messages_are_refused_by_name_and_store_nothing(server, connect):
    conn = connect(server)
    cases = [
        ("/v1/track", {"event": "x", "userId": "u", "properties": {"big": "a" * 33_000}},
         "limit is 32768 bytes"),
        ("/v1/batch", {"batch": [track(f"big-{i}", properties={"p": "b" * 20_000})
                                 for i in range(30)]}, "limit is 512000 bytes"),
        ("/v1/track", {"event": "x"}, "neither 'userId' nor 'anonymousId'"),
        ("/v1/track", {"event": "x", "userId": "u", "timestamp": "not a time"},
         "'not a time' is not an ISO-8601 time"),
        ("/v1/batch", {"messages": []}, "not a batch"),
        ("/v1/batch", {"batch": [{"type": "teleport", "userId": "u"}]}, "unknown type 'teleport'"),
    ]
    for path, body, expected in cases:
        status, answer, _ = post(server.http, path, body)
        assert status == 400, (path, answer)
        assert expected in answer["error"], answer
    status, answer, _ = post(server.http, "/v1/batch", None, raw=b"{not json")
    assert status == 400 and "not a batch" in answer["error"]
    status, answer, _ = post(server.http, "/v1/batch", None, raw=b"not gzip at all",
                             headers={"Content-Encoding": "gzip"})
    assert status == 400 and "not valid gzip" in answer["error"]
    status, answer, _ = post(server.http, "/v1/batch", {"batch": []},
                             headers={"Content-Encoding": "br"})
    assert status == 400 and "unsupported Content-Encoding 'br'" in answer["error"]
    assert count(conn) == 0

    status, answer, _ = post(server.http, "/v1/batch", {"batch": [
        track("good-1"), {"type": "track", "event": "x", "messageId": "bad-1"}, track("good-2")]})
    assert status == 200
    assert answer["accepted"] == 2
    assert [(r["index"], r["messageId"]) for r in answer["rejected"]] == [(1, "bad-1")]
    assert count(conn) == 2


def test_write_keys_route_events_to_their_tenant(tmp_path, connect):
    data = tmp_path / "data"
    srv = Server(data).start()
    try:
        assert any("No write keys configured" in line for line in srv.banner)
        conn = connect(srv)
        query(conn, "CREATE DATABASE acme")
        made = subprocess.run([BINARY, "write-key", "create", "--tenant", "acme", "--source",
                               "wechat", "--data", str(data)], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        assert key.startswith("trk_")
        refused = subprocess.run([BINARY, "write-key", "create", "--tenant", "nope", "--data",
                                  str(data)], capture_output=True, text=True)
        assert refused.returncode != 0 and "tenant 'nope' does not exist" in refused.stderr
        time.sleep(1.2)  # a running server reads new keys within a second

        status, answer, _ = post(srv.http, "/v1/batch", {"batch": [track("k-1")]}, key=key)
        assert status == 200, answer
        status, answer, _ = post(srv.http, "/v1/batch", {"batch": [track("k-2")]}, key="wrong")
        assert (status, answer["error"]) == (401, "unknown write key")
        status, answer, _ = post(srv.http, "/v1/batch", {"batch": [track("k-3")]})
        assert status == 401 and "no write key" in answer["error"]
        status, answer, _ = post(srv.http, "/v1/batch",
                                 {"batch": [track("k-4")], "writeKey": key})
        assert status == 200, "Segment also takes the key in the body"

        assert query(conn, "SELECT message_id, source FROM acme.public.events ORDER BY 1") == [
            ("k-1", "wechat"), ("k-4", "wechat")]
        assert count(conn, "default.public.events") == 0, "one tenant's events stay its own"

        listed = subprocess.run([BINARY, "write-key", "list", "--data", str(data)],
                                capture_output=True, text=True)
        assert key in listed.stdout and "tenant=acme" in listed.stdout
        subprocess.run([BINARY, "write-key", "revoke", key, "--data", str(data)], check=True,
                       capture_output=True)
    finally:
        srv.stop()


@pytest.mark.parametrize("mode", ["create_append", "replace"])
def test_adbc_ingest_loads_any_table(server, connect, mode):
    import pyarrow as pa

    conn = connect(server)
    orders = pa.table({"order_id": [1, 2, 3], "amount": [9.5, 20.0, 3.25]})
    with conn.cursor() as cur:
        assert cur.adbc_ingest("orders", orders, mode="create") == 3
        if mode == "create_append":
            assert cur.adbc_ingest("orders", orders.slice(0, 2), mode="append") == 2
            expected = 5
        else:
            coupons = pa.table({"code": ["A", "B"]})
            assert cur.adbc_ingest("orders", coupons, mode="replace") == 2
            assert query(conn, "SELECT code FROM orders ORDER BY code") == [("A",), ("B",)]
            expected = 2
    assert count(conn, "orders") == expected


def test_flight_ingest_into_events_drops_repeated_message_ids(server, connect):
    import pyarrow as pa

    conn = connect(server)
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
    events = pa.table({
        "message_id": ["f-1", "f-2", "f-1"], "type": ["track"] * 3, "event": ["a", "b", "a"],
        "user_id": ["u"] * 3, "timestamp": pa.array([now] * 3, pa.timestamp("us", "UTC")),
        "event_date": pa.array([now.date()] * 3, pa.date32()),
    })
    with conn.cursor() as cur:
        assert cur.adbc_ingest("events", events, mode="append") == 2
        assert cur.adbc_ingest("events", events, mode="append") == 0
    assert count(conn) == 2
    received = query(conn, "SELECT count(*) FROM events WHERE received_at IS NOT NULL")[0][0]
    assert received == 2, "the write path stamps received_at"


def test_plain_flight_do_put_appends_to_events(server, connect):
    import pyarrow as pa
    import pyarrow.flight as flight

    when = datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc)
    batch = pa.record_batch({
        "message_id": ["p-1", "p-2"], "type": ["track", "track"], "event": ["a", "b"],
        "anonymous_id": ["x", "y"], "timestamp": pa.array([when] * 2, pa.timestamp("us", "UTC")),
        "event_date": pa.array([when.date()] * 2, pa.date32()),
    })
    client = flight.FlightClient(f"grpc://{server.address}")
    for path in (["events"], ["default", "events"]):
        writer, reader = client.do_put(flight.FlightDescriptor.for_path(*path), batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()
    assert count(connect(server)) == 2, "the second put repeated the message ids"
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("nope"), batch.schema)
    writer.write_batch(batch)
    with pytest.raises(pa.ArrowKeyError, match="table .default.public.nope. does not exist"):
        writer.close()
