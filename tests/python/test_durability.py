"""What the write path promises: an acknowledged event survives `kill -9` and is stored once,
retries are not counted twice (also across restarts), a full buffer answers 503 instead of
failing, and an acknowledged event is visible to the next query."""

import json
import threading
import time

from collection import count, post, query, track
from conftest import Server, free_port


def batch_of(prefix, n):
    return {"batch": [track(f"{prefix}-{i}", user=f"user-{i % 7}") for i in range(n)]}


def test_a_retried_batch_is_stored_once_also_after_a_crash_and_a_restart(tmp_path, connect):
    srv = Server(tmp_path / "data").start()
    try:
        body = batch_of("dup", 50)
        assert post(srv.http, "/v1/batch", body)[1]["accepted"] == 50
        answer = post(srv.http, "/v1/batch", body)[1]
        assert (answer["accepted"], answer["duplicates"]) == (0, 50)

        srv.kill()  # the rows are in the log only, not yet committed
        srv.start()
        answer = post(srv.http, "/v1/batch", body)[1]
        assert (answer["accepted"], answer["duplicates"]) == (0, 50)

        srv.stop()  # a clean stop commits everything to Delta
        srv.start()
        partly_new = {"batch": body["batch"][:10] + batch_of("new", 5)["batch"]}
        answer = post(srv.http, "/v1/batch", partly_new)[1]
        assert (answer["accepted"], answer["duplicates"]) == (5, 10)
        conn = connect(srv)
        assert query(conn, "SELECT count(*), count(DISTINCT message_id) FROM events")[0] == (55, 55)
    finally:
        srv.stop()


def test_the_same_message_id_with_another_payload_is_a_conflict(tmp_path, connect):
    srv = Server(tmp_path / "data").start()
    try:
        first = track("same-id", event="Paid", properties={"amount": 10})
        changed = track("same-id", event="Paid", properties={"amount": 99})
        assert post(srv.http, "/v1/track", first)[1]["accepted"] == 1
        answer = post(srv.http, "/v1/batch", {"batch": [first, changed]})[1]
        assert (answer["accepted"], answer["duplicates"], answer["conflicts"]) == (0, 1, 1)
        srv.stop()
        srv.start()  # the payloads are known again after a restart (from the table)
        answer = post(srv.http, "/v1/batch", {"batch": [changed, first]})[1]
        assert (answer["accepted"], answer["duplicates"], answer["conflicts"]) == (0, 1, 1)
        stored = query(connect(srv), "SELECT properties FROM events")
        assert [json.loads(row[0]) for row in stored] == [{"amount": 10}], "the first one stays"
    finally:
        srv.stop()


class Sender(threading.Thread):
    """Sends batches of unique events like an SDK: a batch is retried until it is
    acknowledged; acknowledged message ids are recorded."""

    def __init__(self, name, base_url, stop):
        super().__init__(daemon=True)
        self.name_prefix = name
        self.base_url = base_url
        self.stop = stop
        self.acked = set()
        self.sent = set()

    def run(self):
        number = 0
        while not self.stop.is_set():
            body = batch_of(f"{self.name_prefix}-{number}", 20)
            ids = {m["messageId"] for m in body["batch"]}
            while not self.stop.is_set():
                self.sent |= ids
                try:
                    status, _, _ = post(self.base_url, "/v1/batch", body, timeout=5)
                except OSError:
                    status = None
                if status == 200:
                    self.acked |= ids
                    break
                time.sleep(0.05)
            number += 1


def test_kill_9_while_clients_send_loses_no_acknowledged_event(tmp_path, connect):
    data = tmp_path / "data"
    port = free_port()
    # Short flushes so that each crash finds rows both committed and only in the log.
    srv = Server(data, http_addr=f"127.0.0.1:{port}", args=["--flush-interval-ms", "300"]).start()
    stop = threading.Event()
    senders = [Sender(f"c{i}", srv.http, stop) for i in range(4)]
    for sender in senders:
        sender.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            srv.kill()
            time.sleep(0.3)
            srv.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    acked = set().union(*(s.acked for s in senders))
    sent = set().union(*(s.sent for s in senders))
    assert len(acked) > 200, "the clients got acknowledgements between the crashes"
    try:
        conn = connect(srv)
        stored = [row[0] for row in query(conn, "SELECT message_id FROM events")]
        assert len(stored) == len(set(stored)), "no event is stored twice"
        assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged events were lost"
        assert set(stored) <= sent
    finally:
        srv.stop()

    # Another Delta reader sees the same table once the server has committed it.
    from deltalake import DeltaTable

    table = DeltaTable(str(data / "default" / "events")).to_pyarrow_table()
    ids = table.column("message_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(stored)


def test_a_full_buffer_answers_503_and_recovers(tmp_path, connect):
    srv = Server(tmp_path / "data", args=["--buffer-max-mb", "1", "--flush-max-mb", "64",
                                          "--flush-interval-ms", "600000"]).start()
    try:
        accepted = 0
        refusal = None
        for number in range(200):
            body = {"batch": [track(f"bp-{number}-{i}", properties={"pad": "x" * 400})
                              for i in range(100)]}
            status, answer, headers = post(srv.http, "/v1/batch", body)
            if status == 503:
                refusal = (answer, headers)
                break
            assert status == 200, answer
            accepted += answer["accepted"]
        assert refusal is not None, "the buffer never filled"
        answer, headers = refusal
        assert headers.get("Retry-After") == "1"
        assert "write buffer is full" in answer["error"]
        conn = connect(srv)
        assert count(conn) == accepted, "refused writes change nothing"

        # The refusal made the flusher commit everything: a retry soon succeeds.
        deadline = time.time() + 30
        while time.time() < deadline:
            status, answer, _ = post(srv.http, "/v1/batch", {"batch": [track("after")]})
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, answer
        assert count(conn) == accepted + 1
    finally:
        srv.stop()


def test_an_acknowledged_event_is_in_the_next_query(tmp_path, connect):
    srv = Server(tmp_path / "data", args=["--flush-interval-ms", "600000"]).start()
    try:
        conn = connect(srv)
        for number in range(20):
            status, _, _ = post(srv.http, "/v1/track",
                                {"event": "Tick", "userId": "f", "messageId": f"fresh-{number}"})
            assert status == 200
            assert count(conn, where=f"message_id = 'fresh-{number}'") == 1
        # Buffered rows take part in filters, aggregates and DML like committed ones.
        assert count(conn, where="event = 'Tick' AND user_id = 'f'") == 20
        query(conn, "DELETE FROM events WHERE message_id = 'fresh-0'")
        assert count(conn) == 19
    finally:
        srv.stop()
