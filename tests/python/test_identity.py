"""Identity resolution end to end through the real faces: events over the HTTP collection API,
SQL over Flight SQL (ADBC), the `tributary profile` and `tributary forget` commands, a restart
after kill -9, tenant isolation, and an erasure that leaves no trace in any live Delta file."""

import json
import pathlib
import subprocess
import time

import pyarrow.parquet as pq

from collection import count, post, query
from conftest import BINARY, Server

PHONE = "13912345678"
EMAIL = "erase.me@example.com"


def identify(message_id, anonymous_id, user_id, traits, ts="2026-03-01T10:00:00Z"):
    return {"type": "identify", "messageId": message_id, "anonymousId": anonymous_id,
            "userId": user_id, "traits": traits, "timestamp": ts}


def track(message_id, event, ts, anonymous_id=None, user_id=None, **properties):
    message = {"type": "track", "messageId": message_id, "event": event, "timestamp": ts,
               "properties": properties}
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    if user_id:
        message["userId"] = user_id
    return message


def send(srv, *messages):
    status, answer, _ = post(srv.http, "/v1/batch", {"batch": list(messages)})
    assert status == 200, answer


def customer(conn, id_type, value):
    return query(conn, f"SELECT resolve_customer('{id_type}', '{value}')")[0][0]


def story(srv):
    """One person on two devices, logging in on both; a second person on their own."""
    send(srv,
         track("m1", "page_view", "2026-03-01T09:00:00Z", anonymous_id="dev-a"),
         track("m2", "page_view", "2026-03-01T09:30:00Z", anonymous_id="dev-b"),
         identify("m3", "dev-a", "member-1", {"email": EMAIL, "phone": PHONE, "name": "Ann"}),
         track("m4", "purchase", "2026-03-02T10:00:00Z", user_id="member-1", revenue=30.5),
         identify("m5", "dev-b", "member-1", {"name": "Ann Lee"}, ts="2026-03-03T10:00:00Z"),
         track("m6", "page_view", "2026-03-01T09:00:00Z", anonymous_id="other-dev", user_id="member-2"))


def test_events_resolve_at_once_and_the_360_view_answers(tmp_path, connect):
    srv = Server(tmp_path / "data").start()
    try:
        story(srv)
        conn = connect(srv)
        # No waiting: an acknowledged event's identities are already resolved.
        ann = customer(conn, "anonymous_id", "dev-a")
        assert ann is not None
        for id_type, value in [("anonymous_id", "dev-b"), ("user_id", "member-1"),
                               ("phone", PHONE), ("email", EMAIL)]:
            assert customer(conn, id_type, value) == ann, (id_type, value)
        assert customer(conn, "user_id", "member-2") not in (None, ann)
        assert customer(conn, "anonymous_id", "nobody") is None

        # The idiom: events joined to identity_map count per person, across devices.
        rows = query(conn, """
            SELECT m.customer_id, count(*) FROM events e
            JOIN identity_map m
              ON m.id_type = CASE WHEN e.user_id IS NOT NULL THEN 'user_id' ELSE 'anonymous_id' END
             AND m.id_value = coalesce(e.user_id, e.anonymous_id)
            GROUP BY 1 ORDER BY 2 DESC""")
        assert rows[0] == (ann, 5)

        # dev-b was seen alone before it was identified: a merge, logged with its reason.
        deadline = time.time() + 5
        while time.time() < deadline and count(conn, "identity_changes", "kind = 'merge'") == 0:
            time.sleep(0.1)
        [(kind, kept, reason)] = query(
            conn, "SELECT kind, customer_id, reason FROM identity_changes WHERE kind = 'merge'")
        assert kept == ann and "dev-b" in reason

        [(traits, events, purchases, revenue)] = query(
            conn, f"SELECT traits, event_count, purchase_count, total_revenue "
                  f"FROM customer_profile('phone', '{PHONE}')")
        assert '"name":"Ann Lee"' in traits, "the latest identify wins"
        assert (events, purchases, revenue) == (5, 1, 30.5)

        assert query(conn, "CALL refresh_profiles()") == [(2,)]
        [(profile_customer, identifiers)] = query(
            conn, "SELECT customer_id, identifiers FROM profiles WHERE event_count = 5")
        assert profile_customer == ann and PHONE in identifiers

        shown = srv.cli("profile", "email", EMAIL).stdout
        assert f"Customer {ann}" in shown
        assert "member-1" in shown and "dev-b" in shown and "purchase" in shown
        assert "Ann Lee" in shown
        missing = srv.cli("profile", "phone", "00000000000", check=False)
        assert missing.returncode != 0 and "belongs to no customer" in missing.stderr

        # A crash: the map is rebuilt from the tables with the same customer ids.
        before = query(conn, "SELECT id_type, id_value, customer_id FROM identity_map ORDER BY 1, 2")
        srv.kill()
        srv.start()
        conn = connect(srv)
        after = query(conn, "SELECT id_type, id_value, customer_id FROM identity_map ORDER BY 1, 2")
        assert after == before
    finally:
        srv.stop()


def test_one_tenants_identities_stay_its_own(tmp_path, connect):
    srv = Server(tmp_path / "data").start()
    try:
        conn = connect(srv)
        query(conn, "CREATE DATABASE acme")
        query(conn, "INSERT INTO acme.public.identities VALUES ('user_id', 'only-acme', 'phone', "
                    "'13700000000', 'crm', TIMESTAMP '2026-01-01T00:00:00Z', 'bind')")
        assert count(conn, "acme.public.identity_map") == 2
        assert count(conn, "default.public.identity_map") == 0
        assert customer(conn, "user_id", "only-acme") is None, "the default tenant sees nothing"
    finally:
        srv.stop()


def data_files(root):
    return [p for p in pathlib.Path(root).rglob("*.parquet") if "_delta_log" not in p.parts]


def traces(root, markers):
    """The markers found in any text value (also inside JSON) of any Parquet file under root."""
    found = set()
    for path in data_files(root):
        table = pq.read_table(path)
        for column in table.columns:
            if str(column.type) in ("string", "large_string", "string_view"):
                for value in column.to_pylist():
                    found.update(m for m in markers if value is not None and m in value)
    return found


def test_forget_erases_everywhere_and_suppresses_new_data(tmp_path, connect):
    data = tmp_path / "data"
    srv = Server(data).start()
    try:
        story(srv)
        conn = connect(srv)
        ann = customer(conn, "phone", PHONE)
        other = customer(conn, "user_id", "member-2")
        query(conn, "CALL refresh_profiles()")
        srv.stop()  # everything committed to Delta files
        srv.start()
        conn = connect(srv)
        person = {"dev-a", "dev-b", "member-1", PHONE, EMAIL, ann}
        assert traces(data, person) == person

        erased = srv.cli("forget", "email", EMAIL).stdout
        assert "rows deleted" in erased

        for table, column in [("events", "anonymous_id"), ("events", "user_id")]:
            assert count(conn, table, f"{column} IN ('dev-a', 'dev-b', 'member-1')") == 0
        assert count(conn, "identities") == 0
        assert count(conn, "identity_map", f"customer_id = '{ann}'") == 0
        assert count(conn, "profiles", f"customer_id = '{ann}'") == 0
        assert count(conn, "identity_changes", f"customer_id = '{ann}' OR other_customer_id = '{ann}'") == 0
        assert customer(conn, "phone", PHONE) is None
        # The other person is untouched.
        assert customer(conn, "user_id", "member-2") == other
        assert count(conn, "events", "user_id = 'member-2'") == 1

        # No live Parquet file (old versions vacuumed) holds any of the person's identifiers.
        assert traces(data, person) == set()
        assert traces(data, {"member-2"}) == {"member-2"}
        # Nor does the write-ahead log (purged once everything is committed).
        time.sleep(0.5)
        for segment in (data / "_tributary" / "wal").glob("*"):
            assert b"member-1" not in segment.read_bytes(), segment

        # New events for an erased identifier are acknowledged and dropped, also after a restart.
        send(srv, track("m7", "page_view", "2026-04-01T00:00:00Z", anonymous_id="dev-a"),
             track("m8", "page_view", "2026-04-01T00:00:00Z", anonymous_id="dev-new", user_id="member-1"),
             track("m9", "page_view", "2026-04-01T00:00:00Z", user_id="member-3"))
        assert count(conn, "events", "message_id IN ('m7', 'm8')") == 0
        assert count(conn, "events", "message_id = 'm9'") == 1
        srv.stop()
        srv.start()
        conn = connect(srv)
        send(srv, track("m10", "page_view", "2026-04-02T00:00:00Z", user_id="member-1"))
        assert count(conn, "events", "user_id = 'member-1' OR anonymous_id = 'dev-a'") == 0
        assert customer(conn, "user_id", "member-1") is None
    finally:
        srv.stop()


def test_traits_follow_source_priority_and_bad_rules_are_refused(tmp_path, connect):
    data = tmp_path / "data"
    rules = data / "_tributary" / "identity"
    rules.mkdir(parents=True)
    (rules / "default.json").write_text(json.dumps({
        "trait_source_priority": ["crm", "http"],
        "trait_tables": [{"table": "crm_members", "id_type": "user_id", "id_column": "member_id",
                          "source": "crm", "time_column": "updated_at"}],
    }))
    srv = Server(data).start()
    try:
        conn = connect(srv)
        query(conn, "CREATE TABLE crm_members (member_id VARCHAR, name VARCHAR, tier VARCHAR, "
                    "updated_at TIMESTAMP)")
        query(conn, "INSERT INTO crm_members VALUES ('member-1', 'Ann (CRM)', 'gold', "
                    "TIMESTAMP '2026-01-01T00:00:00')")
        send(srv, identify("t1", "dev-a", "member-1", {"name": "Ann (web)", "city": "Hangzhou"},
                           ts="2026-06-01T00:00:00Z"))
        [(traits,)] = query(conn, "SELECT traits FROM customer_profile('anonymous_id', 'dev-a')")
        traits = json.loads(traits)
        # The CRM is trusted over the web even though the web's value is newer.
        assert traits == {"name": "Ann (CRM)", "tier": "gold", "city": "Hangzhou"}, traits
    finally:
        srv.stop()

    (rules / "default.json").write_text('{"limits": {"phone": 0}}')
    refused = subprocess.run(
        [BINARY, "serve", "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
         "--data", str(data)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "identity/default.json" in refused.stderr and "'phone' is 0" in refused.stderr, refused.stderr
