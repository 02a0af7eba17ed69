"""Activation end to end: segments delivered by the server to a real webhook receiver (an HTTP
server in this process that fails when told to), to files read back with pyarrow, and as
Segment messages to a Segment-compatible receiver (Tributary's own collection API) — with
consent, erased people, retries, the activation log, and a `kill -9` in the middle of pending
deliveries."""

import base64
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Server

CITIES = ["Shanghai", "Beijing"]


class Receiver:
    """A webhook receiver: answers `failures` requests with 503, then 200; keeps every request."""

    def __init__(self):
        self.requests = []
        self.failures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    failing = receiver.failures > 0
                    if failing:
                        receiver.failures -= 1
                    receiver.requests.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body, not failing))
                self.send_response(503 if failing else 200)
                self.end_headers()
                self.wfile.write(b"busy" if failing else b"ok")

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"

    def accepted(self):
        with self.lock:
            return [(headers, body) for headers, body, ok in self.requests if ok]

    def close(self):
        self.http.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def run(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def identify(conn, people, tag):
    """One identify per person: (user, traits)."""
    n = len(people)
    now = dt.datetime.now(dt.timezone.utc)
    table = pa.table({
        "message_id": pa.array([f"{tag}-{user}" for user, _ in people]),
        "type": pa.array(["identify"] * n),
        "anonymous_id": pa.array([f"a-{user}" for user, _ in people]),
        "user_id": pa.array([user for user, _ in people]),
        "timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "event_date": pa.array([now.date()] * n, pa.date32()),
        "properties": pa.array([json.dumps(traits) for _, traits in people]),
    })
    with conn.cursor() as cur:
        cur.adbc_ingest("events", table, mode="append")
    run(conn, "CALL refresh_profiles()")


def customer_of(conn, user):
    [row] = rows(conn, f"SELECT customer_id FROM identity_map WHERE id_value = '{user}'")
    return row["customer_id"]


def wait_until(test, timeout=60, what="the delivery"):
    deadline = time.monotonic() + timeout
    while True:
        value = test()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.2)


PEOPLE = [(f"p{i}", {"city": CITIES[i % 2], "sms_opt_in": i % 3 != 0, "tier": f"t{i}",
                     "email": f"p{i}@example.com"}) for i in range(12)]


def shanghai_with_consent(people):
    return {user for user, traits in people if traits["city"] == "Shanghai" and traits["sms_opt_in"]}


def test_webhook_deliveries_are_retried_logged_and_exact(server, connect, receiver):
    conn = connect(server)
    identify(conn, PEOPLE, "first")
    forgotten = "p4"  # in Shanghai, with consent: erased, so never delivered
    run(conn, f"CALL forget('user_id', '{forgotten}')")
    run(conn, """CREATE SEGMENT shanghai AS '{"trait": "city", "op": "=", "value": "Shanghai"}'""")
    config = {"type": "webhook", "url": receiver.url, "batch_size": 2, "consent": "sms_opt_in",
              "headers": {"X-Shop": "demo"}}
    run(conn, f"CREATE DESTINATION crm AS '{json.dumps(config)}'")
    receiver.failures = 2
    [[entered]] = run(conn, "ACTIVATE SEGMENT shanghai TO crm WITH TRAITS (tier) IDENTIFIERS (user_id)")
    assert entered == 5  # p0 p2 p6 p8 p10 (p4 was erased)

    expected = shanghai_with_consent(PEOPLE) - {forgotten}
    users = {customer_of(conn, user): user for user in expected}

    def delivered_users():
        got = [m for _, body in receiver.accepted() for m in body["entered"]]
        return got if len(got) >= len(expected) else None

    members = wait_until(delivered_users)
    assert sorted(m["identifiers"]["user_id"][0] for m in members) == sorted(expected)
    assert all(m["traits"] == {"tier": dict(PEOPLE)[users[m["customer_id"]]]["tier"]}
               for m in members)
    for headers, body in receiver.accepted():
        assert headers["idempotency-key"] == body["batch_id"]
        assert headers["x-shop"] == "demo"
        assert body["segment"] == "shanghai" and body["destination"] == "crm"
        assert len(body["entered"]) + len(body["exited"]) <= 2
    # The first batch sent was refused twice and sent a third time; the others went at once
    # (a batch whose members all lack consent is logged delivered without a request).
    log = rows(conn, "SELECT batch_id, attempts, status, error FROM activation_log ORDER BY attempted_at")
    failed = [r for r in log if r["status"] == "failed"]
    assert [r["attempts"] for r in failed] == [1, 2] and "503" in failed[0]["error"]
    retried = [(r["attempts"], r["status"]) for r in log if r["batch_id"] == failed[0]["batch_id"]]
    assert retried == [(1, "failed"), (2, "failed"), (3, "delivered")]
    delivered = [r["batch_id"] for r in log if r["status"] == "delivered"]
    assert len(delivered) == len(set(delivered))
    assert sorted(body["batch_id"] for _, body in receiver.accepted()) == sorted(delivered)

    # p2 moves to Beijing, p1 to Shanghai (both with consent): one exit, one entry.
    identify(conn, [("p2", {"city": "Beijing"}), ("p1", {"city": "Shanghai"})], "move")
    [[changed]] = run(conn, "REFRESH SEGMENT shanghai")
    assert changed == 2
    before = len(receiver.accepted())
    last = wait_until(lambda: receiver.accepted()[before:] or None)
    [(_, body)] = last
    assert [m["identifiers"]["user_id"] for m in body["entered"]] == [["p1"]]
    assert [m["identifiers"]["user_id"] for m in body["exited"]] == [["p2"]]


def test_pending_deliveries_survive_kill_9(server, connect, receiver):
    conn = connect(server)
    identify(conn, PEOPLE, "first")
    run(conn, """CREATE SEGMENT shanghai AS '{"trait": "city", "op": "=", "value": "Shanghai"}'""")
    config = {"type": "webhook", "url": receiver.url, "batch_size": 100}
    run(conn, f"CREATE DESTINATION crm AS '{json.dumps(config)}'")
    run(conn, "ACTIVATE SEGMENT shanghai TO crm IDENTIFIERS (user_id)")
    wait_until(lambda: receiver.accepted())
    first = receiver.accepted()
    assert len(first) == 1 and len(first[0][1]["entered"]) == 6
    # The receiver is down; a refresh makes a delivery that cannot be sent, then the server dies.
    receiver.failures = 10**6
    identify(conn, [("p0", {"city": "Beijing"})], "move")
    run(conn, "REFRESH SEGMENT shanghai")
    wait_until(lambda: any(r["status"] == "failed" for r in rows(
        conn, "SELECT status FROM activation_log")), what="a failed attempt")
    conn.close()
    server.kill()
    receiver.failures = 0
    server.start()
    wait_until(lambda: len(receiver.accepted()) >= 2, what="the delivery after the restart")
    time.sleep(2)
    accepted = receiver.accepted()
    assert len(accepted) == 2  # the first delivery is not sent again
    assert [m["identifiers"]["user_id"] for m in accepted[1][1]["exited"]] == [["p0"]]
    assert accepted[1][1]["entered"] == []


def test_files_and_segment_messages(server, connect, tmp_path):
    conn = connect(server)
    identify(conn, PEOPLE, "first")
    run(conn, """CREATE SEGMENT shanghai AS '{"trait": "city", "op": "=", "value": "Shanghai"}'""")
    files = tmp_path / "exports"
    for name, fmt in [("parquet_files", "parquet"), ("csv_files", "csv")]:
        config = {"type": "file", "uri": str(files / fmt), "format": fmt}
        run(conn, f"CREATE DESTINATION {name} AS '{json.dumps(config)}'")
        run(conn, f"ACTIVATE SEGMENT shanghai TO {name} WITH TRAITS (city) IDENTIFIERS (email)")
    # Tributary's own collection API is a Segment-compatible receiver (open write keys).
    key = base64.b64encode(b"any-key:").decode()
    config = {"type": "webhook", "url": f"{server.http}/v1/batch", "format": "segment",
              "headers": {"Authorization": f"Basic {key}"}}
    run(conn, f"CREATE DESTINATION loopback AS '{json.dumps(config)}'")
    run(conn, "ACTIVATE SEGMENT shanghai TO loopback")

    shanghai = {user for user, traits in PEOPLE if traits["city"] == "Shanghai"}
    parquet = wait_until(lambda: list((files / "parquet" / "shanghai").glob("*.parquet")))
    table = pq.read_table(parquet[0]).to_pylist()
    assert {json.loads(r["identifiers"])["email"][0] for r in table} == {
        f"{user}@example.com" for user in shanghai}
    assert {r["change"] for r in table} == {"entered"}
    assert all(json.loads(r["traits"]) == {"city": "Shanghai"} for r in table)
    csv = wait_until(lambda: list((files / "csv" / "shanghai").glob("*.csv")))
    assert len(csv[0].read_text().strip().splitlines()) == 1 + len(shanghai)

    entered = wait_until(lambda: rows(conn, "SELECT user_id FROM events WHERE event = 'Audience Entered'")
                         if len(rows(conn, "SELECT user_id FROM events WHERE event = 'Audience Entered'"))
                         >= len(shanghai) else None)
    assert {r["user_id"] for r in entered} == shanghai
    traits = rows(conn, "SELECT properties FROM events WHERE type = 'identify' AND message_id LIKE 'shanghai.%'")
    assert all(json.loads(r["properties"]) == {"shanghai": True} for r in traits)
    assert len(traits) == len(shanghai)
