"""The same SQL on a Ballista cluster: a `tributary scheduler` and two `tributary executor`
processes on loopback, `tributary serve --cluster` in front of them. Every answer is compared
with a plain server's on the same data root; buffered (not yet flushed) rows are seen; the
scheduler gone gives a clear error while queries that read no table still answer; an executor
killed mid-query never gives a wrong answer."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import BINARY, Server, free_port, generate
from collection import post, track

STEPS = ["page_view", "product_view", "add_to_cart", "purchase"]
CONDS = ", ".join(f"event = '{s}'" for s in STEPS)
E_CONDS = ", ".join(f"e.event = '{s}'" for s in STEPS)
SEGMENT = {"all": [{"event": "purchase", "op": ">=", "value": 2},
                   {"not": {"event": "page_view", "op": "=", "value": 0}}]}
QUERIES = {
    "funnel": "SELECT level, count(*) FROM (SELECT window_funnel(INTERVAL '1 day', timestamp, "
              f"{CONDS}) AS level FROM events GROUP BY anonymous_id) GROUP BY level ORDER BY level",
    "retention": "SELECT sum(r[1]), sum(r[2]) FROM (SELECT retention(event = 'page_view', "
                 "event = 'purchase') AS r FROM events GROUP BY anonymous_id)",
    "sequence": "SELECT sum(m), count(*) FROM (SELECT sequence_match('(?1).*(?2)', timestamp, "
                "event = 'add_to_cart', event = 'purchase') AS m FROM events GROUP BY anonymous_id)",
    "customer funnel": "SELECT level, count(*) FROM (SELECT window_funnel(INTERVAL '1 day', "
                       f"e.timestamp, {E_CONDS}) AS level FROM events e "
                       "LEFT JOIN identity_map u ON u.id_type = 'user_id' AND u.id_value = e.user_id "
                       "LEFT JOIN identity_map a ON a.id_type = 'anonymous_id' "
                       "AND a.id_value = e.anonymous_id "
                       "GROUP BY coalesce(u.customer_id, a.customer_id)) GROUP BY level ORDER BY level",
    "attribution": "SELECT c['channel'], round(sum(c['credit']), 6) FROM (SELECT unnest("
                   "attribution('last_touch', timestamp, coalesce(json_get_str(context, "
                   "'campaign', 'source'), 'direct'), event = 'purchase')) AS c FROM events "
                   "GROUP BY anonymous_id) GROUP BY 1 ORDER BY 1",
    "group by": "SELECT event, count(DISTINCT anonymous_id), count(*) FROM events "
                "GROUP BY event ORDER BY event",
    "segment": f"SELECT segment_size('{json.dumps(SEGMENT)}')",
}


def wait_for_port(port, process, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a cluster node exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def two_free_ports():
    """A free port whose successor is free too (an executor's Flight and gRPC services)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two neighbouring free ports")


class Cluster:
    """A scheduler and executors, started as processes."""

    def __init__(self, data, env=None):
        self.data = data
        self.env = dict(os.environ, **(env or {}))
        self.scheduler_port = free_port()
        self.scheduler = None
        self.executors = []

    def start_scheduler(self):
        self.scheduler = subprocess.Popen(
            [BINARY, "scheduler", "--bind", f"127.0.0.1:{self.scheduler_port}",
             "--data", str(self.data)],
            stdout=subprocess.DEVNULL, stderr=sys.stderr, env=self.env)
        wait_for_port(self.scheduler_port, self.scheduler)

    def start_executor(self):
        port = two_free_ports()
        process = subprocess.Popen(
            [BINARY, "executor", "--scheduler", f"127.0.0.1:{self.scheduler_port}",
             "--bind", f"127.0.0.1:{port}", "--slots", "1", "--data", str(self.data)],
            stdout=subprocess.DEVNULL, stderr=sys.stderr, env=self.env)
        wait_for_port(port + 1, process)
        self.executors.append(process)
        return process

    @property
    def url(self):
        return f"df://127.0.0.1:{self.scheduler_port}"

    def stop(self):
        for process in [*self.executors, self.scheduler]:
            if process and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("cluster-sample"), 2000, 11)


def answers(server):
    from adbc_driver_flightsql import dbapi

    with dbapi.connect(server.uri, autocommit=True) as conn:
        result = {}
        with conn.cursor() as cur:
            # `segment_size` runs on the front door; the segment's own SQL travels.
            cur.execute(f"EXPLAIN SEGMENT '{json.dumps(SEGMENT)}'")
            members = cur.fetchall()[0][0]
        for name, sql in [*QUERIES.items(),
                          ("segment members", f"SELECT count(*) FROM ({members})")]:
            with conn.cursor() as cur:
                cur.execute(sql)
                result[name] = cur.fetchall()
        return result


@pytest.fixture(params=["directory", "s3"])
def data_root(request, tmp_path):
    """The data root the servers and executors share: a local directory, or a bucket on the
    S3-compatible test server (executors then read it with the same credentials)."""
    if request.param == "directory":
        return str(tmp_path / "data"), {}
    return "s3://cdp/warehouse", request.getfixturevalue("s3_server")


def test_the_cluster_answers_as_one_server_does(tmp_path, sample, data_root):
    data, env = data_root
    wal = ["--wal-dir", str(tmp_path / "wal")]
    cluster = Cluster(data, env)
    front = None
    try:
        cluster.start_scheduler()
        cluster.start_executor()
        cluster.start_executor()
        # A long flush interval keeps the tracked rows below in the buffer while queried.
        front = Server(data, env=env, args=["--cluster", cluster.url, "--flush-interval-ms",
                                            "600000", *wal]).start()
        for table in ["events", "identities"]:
            front.cli("import", str(sample / f"{table}.parquet"), "--table", table)
        # Rows only in the front door's write buffer travel with the plan.
        for i in range(3):
            status, _, _ = post(front.http, "/v1/track",
                                track(f"buffered-{i}", user=f"late-{i}", event="purchase"))
            assert status == 200
        on_cluster = answers(front)
        assert on_cluster["group by"], "the data did not load"

        # The scheduler gone: every query above that reads tables fails clearly (so each one
        # ran on the cluster), and queries that read none still answer.
        cluster.scheduler.kill()
        cluster.scheduler.wait()
        from adbc_driver_flightsql import dbapi
        with dbapi.connect(front.uri, autocommit=True) as conn:
            for name, sql in QUERIES.items():
                if name == "segment":
                    continue
                with conn.cursor() as cur, pytest.raises(Exception, match="cluster"):
                    cur.execute(sql)
                    cur.fetchall()
            with conn.cursor() as cur:
                cur.execute("SELECT 41 + 1")
                assert cur.fetchall() == [(42,)]
        front.stop()

        local = Server(data, env=env, args=wal).start()
        try:
            assert answers(local) == on_cluster
        finally:
            local.stop()
    finally:
        if front:
            front.stop()
        cluster.stop()


def test_an_executor_killed_mid_query_never_gives_a_wrong_answer(tmp_path, sample):
    data = tmp_path / "data"
    local = Server(data).start()
    try:
        local.cli("import", str(sample / "events.parquet"), "--table", "events")
        expected = answers(local)["funnel"]
    finally:
        local.stop()
    cluster = Cluster(data)
    front = None
    try:
        cluster.start_scheduler()
        cluster.start_executor()
        victim = cluster.start_executor()
        front = Server(data, args=["--cluster", cluster.url]).start()
        from adbc_driver_flightsql import dbapi

        outcome = {}

        def run():
            try:
                with dbapi.connect(front.uri, autocommit=True) as conn, conn.cursor() as cur:
                    cur.execute(QUERIES["funnel"])
                    outcome["rows"] = cur.fetchall()
            except Exception as e:  # a clear error is an allowed outcome; a wrong answer is not
                outcome["error"] = str(e)

        query = threading.Thread(target=run)
        query.start()
        time.sleep(0.3)
        victim.kill()
        query.join(timeout=300)
        assert not query.is_alive(), "the query hung after an executor died"
        if "rows" in outcome:
            assert outcome["rows"] == expected
        else:
            assert outcome["error"]
        # The cluster goes on with the executor that is left.
        with dbapi.connect(front.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(QUERIES["funnel"])
            assert cur.fetchall() == expected
    finally:
        if front:
            front.stop()
        cluster.stop()


def test_two_servers_on_one_root_see_each_others_commits(tmp_path):
    """Readers that scale out: two `serve` processes on one data root (each with its own
    write-ahead log) show each other's commits, new tables included, within a few seconds."""
    from adbc_driver_flightsql import dbapi

    data = tmp_path / "data"
    first = Server(data, args=["--flush-interval-ms", "200"]).start()
    second = None
    try:
        # The log directory of the root is the first server's: a second one is refused.
        with pytest.raises(RuntimeError):
            Server(data).start()
        second = Server(data, args=["--wal-dir", str(tmp_path / "wal-2"),
                                    "--flush-interval-ms", "200"]).start()

        def count(server, table):
            with dbapi.connect(server.uri, autocommit=True) as conn, conn.cursor() as cur:
                try:
                    cur.execute(f"SELECT count(*) FROM {table}")
                    return cur.fetchall()[0][0]
                except Exception:
                    return None

        def wait_for(server, table, expected, timeout=30):
            deadline = time.monotonic() + timeout
            while (got := count(server, table)) != expected:
                assert time.monotonic() < deadline, f"{table}: {got} rows, expected {expected}"
                time.sleep(0.2)

        with dbapi.connect(first.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE shared (n INT)")
            cur.execute("INSERT INTO shared VALUES (1), (2)")
        wait_for(second, "shared", 2)
        with dbapi.connect(second.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO shared VALUES (3)")
        wait_for(first, "shared", 3)
        status, _, _ = post(first.http, "/v1/track", track("shared-1", user="s-1", event="Seen"))
        assert status == 200
        wait_for(second, "events", 1)
        assert count(first, "events") == 1
    finally:
        for server in [second, first]:
            if server:
                server.stop()


def test_two_writers_on_one_table_never_lose_an_update(tmp_path):
    """Two `serve` processes changing the same rows at once: Delta's optimistic concurrency lets
    one commit win each race and the other is refused with an error that says so; no
    acknowledged update is lost (the counter ends at the number of UPDATEs that succeeded)."""
    from adbc_driver_flightsql import dbapi

    data = tmp_path / "data"
    first = Server(data, args=["--flush-interval-ms", "200"]).start()
    second = None
    try:
        second = Server(data, args=["--wal-dir", str(tmp_path / "wal-2"),
                                    "--flush-interval-ms", "200"]).start()
        with dbapi.connect(first.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE counter (id INT, n INT)")
            cur.execute("INSERT INTO counter VALUES (1, 0)")
            cur.execute("DELETE FROM counter WHERE id = 2")  # commits the buffered row

        def value(server):
            with dbapi.connect(server.uri, autocommit=True) as conn, conn.cursor() as cur:
                try:
                    cur.execute("SELECT n FROM counter WHERE id = 1")
                except Exception:  # noqa: BLE001 - not there yet
                    return None
                rows = cur.fetchall()
                return rows[0][0] if rows else None

        deadline = time.monotonic() + 30
        while value(second) != 0:
            assert time.monotonic() < deadline, "the second server never saw the table"
            time.sleep(0.2)

        outcomes = {"ok": 0, "refused": []}
        lock = threading.Lock()

        def bump(server, times):
            with dbapi.connect(server.uri, autocommit=True) as conn, conn.cursor() as cur:
                for _ in range(times):
                    try:
                        cur.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                        cur.fetchall()
                        with lock:
                            outcomes["ok"] += 1
                    except Exception as e:  # noqa: BLE001 - every refusal is checked below
                        with lock:
                            outcomes["refused"].append(str(e))

        threads = [threading.Thread(target=bump, args=(server, 12)) for server in [first, second]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert outcomes["ok"] > 0
        for message in outcomes["refused"]:
            # gRPC ABORTED (ADBC shows it as "(Aborted; …)").
            assert "(Aborted;" in message and "changed by another writer" in message, message
        # A refused server loaded the winner's commit: run again, one at a time, the statement
        # goes through on both (well before the data-root follower's next look).
        refused, succeeded = len(outcomes["refused"]), outcomes["ok"]
        for server in [first, second]:
            bump(server, 1)
        assert (outcomes["ok"], len(outcomes["refused"])) == (succeeded + 2, refused)
        # Both servers end up showing every successful update, and only those.
        for server in [first, second]:
            deadline = time.monotonic() + 30
            while value(server) != outcomes["ok"]:
                assert time.monotonic() < deadline, (
                    f"counter {value(server)} after {outcomes['ok']} successful updates "
                    f"({len(outcomes['refused'])} refused)")
                time.sleep(0.2)
    finally:
        for server in [second, first]:
            if server:
                server.stop()
