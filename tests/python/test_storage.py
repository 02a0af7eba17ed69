"""Storage: tables survive a restart, other Delta readers (deltalake, polars) read what
Tributary wrote, and the same works on an S3-compatible server (moto) on loopback."""

import os
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest
from deltalake import DeltaTable

from collection import post, track
from conftest import Server, free_port


def write_orders(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (order_id BIGINT NOT NULL, customer VARCHAR, amount DOUBLE)")
        cur.execute("INSERT INTO orders VALUES (1, 'ann', 10.5), (2, 'bob', 20.0), (3, 'ann', 7.25)")
        cur.execute("DELETE FROM orders WHERE order_id = 2")


def test_restart_and_delta_interop(tmp_path, connect):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        write_orders(connect(server))
    finally:
        server.stop()

    # Another Delta reader sees the committed table (the DELETE included).
    table = DeltaTable(str(data / "default" / "orders"))
    assert sorted(table.to_pyarrow_table()["order_id"].to_pylist()) == [1, 3]
    frame = pl.read_delta(str(data / "default" / "orders"))
    assert frame["amount"].sum() == pytest.approx(17.75)
    assert DeltaTable(str(data / "default" / "events")).metadata().partition_columns == ["event_date"]

    server = Server(data).start()
    try:
        with connect(server).cursor() as cur:
            cur.execute("SELECT order_id, customer FROM orders ORDER BY order_id")
            assert cur.fetchall() == [(1, "ann"), (3, "ann")]
    finally:
        server.stop()


def test_s3_compatible_store(s3_server, connect, tmp_path):
    # The write-ahead log is on local disk; the tables are on S3.
    wal = ["--wal-dir", str(tmp_path / "wal")]
    server = Server("s3://cdp/warehouse", env=s3_server, args=wal).start()
    try:
        write_orders(connect(server))
        status, answer, _ = post(server.http, "/v1/batch",
                                 {"batch": [track(f"s3-{i}") for i in range(30)]})
        assert (status, answer["accepted"]) == (200, 30)
    finally:
        server.kill()  # acknowledged events only in the log: the restart replays them into S3

    server = Server("s3://cdp/warehouse", env=s3_server, args=wal).start()
    try:
        with connect(server).cursor() as cur:
            cur.execute("SELECT sum(amount) FROM orders")
            assert cur.fetchone()[0] == pytest.approx(17.75)
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
            assert [r[0] for r in cur.fetchall()] == [
                "activation_log", "activations", "customer_events", "customer_ids", "customer_profiles",
                "destinations", "events", "identities", "identity_changes", "identity_map", "orders", "profiles",
                "segment_members", "segments"]
            cur.execute("SELECT count(*), count(DISTINCT message_id) FROM events")
            assert cur.fetchone() == (30, 30)
    finally:
        server.stop()  # commits the replayed events to S3

    options = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server["AWS_ENDPOINT_URL"], "AWS_ALLOW_HTTP": "true",
    }
    table = DeltaTable("s3://cdp/warehouse/default/orders", storage_options=options)
    assert sorted(table.to_pyarrow_table()["order_id"].to_pylist()) == [1, 3]
    events = DeltaTable("s3://cdp/warehouse/default/events", storage_options=options)
    assert events.to_pyarrow_table().num_rows == 30


def test_a_second_server_on_the_same_log_is_refused(tmp_path):
    """Two servers sharing a write-ahead log would replay and commit the same records: the
    second one stops at start and names the way out."""
    from conftest import Server
    first = Server(tmp_path / "data").start()
    try:
        second = Server(tmp_path / "data")
        with pytest.raises(RuntimeError):
            second.start()
        assert second.process.wait() != 0
        conn_ok = Server(tmp_path / "data", args=["--wal-dir", str(tmp_path / "wal2")])
        conn_ok.start()
        conn_ok.stop()
    finally:
        first.stop()


def test_a_delta_feature_the_scan_does_not_apply_is_refused_by_name(tmp_path, connect):
    """A table another writer made with column mapping (its files name columns by physical
    names) is refused with the feature's name, never read as NULLs; other tables still work."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "data" / "default" / "mapped"
    (table / "_delta_log").mkdir(parents=True)
    pq.write_table(pa.table({"col-5f1c": pa.array([1, 2], pa.int64())}), table / "part-0.parquet")
    field = {"name": "n", "type": "long", "nullable": True,
             "metadata": {"delta.columnMapping.id": 1,
                          "delta.columnMapping.physicalName": "col-5f1c"}}
    actions = [
        {"protocol": {"minReaderVersion": 2, "minWriterVersion": 5}},
        {"metaData": {"id": "c0ffee00-0000-0000-0000-000000000001",
                      "format": {"provider": "parquet", "options": {}},
                      "schemaString": json.dumps({"type": "struct", "fields": [field]}),
                      "partitionColumns": [], "createdTime": 1700000000000,
                      "configuration": {"delta.columnMapping.mode": "name",
                                        "delta.columnMapping.maxColumnId": "1"}}},
        {"add": {"path": "part-0.parquet", "partitionValues": {}, "modificationTime": 1700000000000,
                 "size": (table / "part-0.parquet").stat().st_size, "dataChange": True,
                 "stats": json.dumps({"numRecords": 2})}},
    ]
    (table / "_delta_log" / "00000000000000000000.json").write_text(
        "".join(json.dumps(a) + "\n" for a in actions))
    server = Server(tmp_path / "data").start()
    try:
        with connect(server).cursor() as cur:
            with pytest.raises(Exception, match="column mapping"):
                cur.execute("SELECT * FROM mapped")
                cur.fetchall()
            cur.execute("SELECT count(*) FROM events")
            assert cur.fetchall() == [(0,)]
    finally:
        server.stop()
