"""Bulk loads larger than `--direct-commit-mb`: split by partition as they arrive (in memory up to
`--load-memory-mb`, then spilled to disk) and committed once (docs/collection.md, "Bulk loads").
Checked against the same file loaded whole by a server that holds it as one write, and against
pyarrow."""

import subprocess
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import Server, generate
from test_flight_adbc import assert_sorted_files_at


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("bulk-sample"), 2000, 5) / "events.parquet"


# A load over 1 MiB is streamed, and spilled to disk from its first row.
SPILL = ["--direct-commit-mb", "1", "--load-memory-mb", "0"]

ANSWERS = [
    "SELECT count(*), count(DISTINCT message_id), min(timestamp), max(timestamp) FROM events",
    "SELECT event, count(*), count(DISTINCT anonymous_id) FROM events GROUP BY event ORDER BY event",
    "SELECT id_type, id_value, customer_id FROM identity_map ORDER BY id_type, id_value",
]


def answers(conn):
    out = []
    with conn.cursor() as cur:
        for sql in ANSWERS:
            cur.execute(sql)
            out.append(cur.fetchall())
    return out


def with_suffix(table, suffix):
    ids = pc.binary_join_element_wise(table["message_id"], pa.scalar(suffix), "")
    return table.set_column(table.schema.get_field_index("message_id"), "message_id", ids)


def test_a_spilled_load_is_one_commit_of_sorted_files_with_the_answers_of_a_held_one(
        tmp_path, connect, events_file):
    from deltalake import DeltaTable

    expected = pq.read_table(events_file)
    spilled = Server(tmp_path / "spilled", args=SPILL).start()
    in_memory = Server(tmp_path / "in-memory", args=["--direct-commit-mb", "1"]).start()
    held = Server(tmp_path / "held", args=["--direct-commit-mb", "1024"]).start()
    try:
        for srv in (spilled, in_memory, held):
            result = srv.cli("import", str(events_file), "--table", "events")
            assert f"imported {expected.num_rows} rows" in result.stdout, result.stdout
        spilled_answers = answers(connect(spilled))
        assert spilled_answers == answers(connect(held))
        assert spilled_answers == answers(connect(in_memory))
        count, distinct, _, _ = spilled_answers[0][0]
        assert count == distinct == expected.num_rows
        assert len(spilled_answers[2]) > 2000, "identity resolution saw the load"

        table_dir = tmp_path / "spilled" / "default" / "events"
        delta = DeltaTable(str(table_dir))
        writes = [h for h in delta.history() if h["operation"] == "WRITE"]
        assert len(writes) == 1, writes
        days = len(set(expected["event_date"].to_pylist()))
        files = delta.file_uris()
        assert len(files) == days, "one file per day: every partition fits one sorted run"
        assert_sorted_files_at(files)
        assert delta.to_pyarrow_table().num_rows == expected.num_rows

        # The same file again: every row is a retry, nothing is added.
        result = spilled.cli("import", str(events_file), "--table", "events")
        assert "imported 0 rows" in result.stdout, result.stdout
        assert answers(connect(spilled))[0] == spilled_answers[0]
    finally:
        for srv in (spilled, in_memory, held):
            srv.stop()


def test_a_spilled_load_broken_midway_writes_nothing_and_gives_its_ids_back(
        tmp_path, connect, events_file):
    """The upload fails after most of it was spilled and its message ids claimed: nothing is
    committed, no spill is left behind, and the same rows load in full afterwards."""
    fresh = with_suffix(pq.read_table(events_file), "-again")
    good = tmp_path / "good.parquet"
    pq.write_table(fresh, good, row_group_size=fresh.num_rows // 4 + 1)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes())
    metadata = pq.ParquetFile(good).metadata
    last = metadata.row_group(metadata.num_row_groups - 1)
    start = min(last.column(i).data_page_offset for i in range(last.num_columns))
    with open(broken, "r+b") as f:
        f.seek(start)
        f.write(b"\xff" * 4096)

    data = tmp_path / "data"
    srv = Server(data, args=SPILL).start()
    try:
        result = srv.cli("import", str(broken), "--table", "events", check=False)
        assert result.returncode != 0, result.stdout
        # The server learns of the broken upload when its stream ends; then the spill goes.
        deadline = time.time() + 30
        while list((data / "_tributary" / "wal").glob("load-*")):
            assert time.time() < deadline, "a spill was left behind"
            time.sleep(0.05)
        conn = connect(srv)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM identity_map")
            assert cur.fetchone()[0] == 0, "identity resolution saw rows that were not stored"

        result = srv.cli("import", str(good), "--table", "events")
        assert f"imported {fresh.num_rows} rows" in result.stdout, result.stdout
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT message_id) FROM events")
            assert cur.fetchone() == (fresh.num_rows, fresh.num_rows)
    finally:
        srv.stop()


def test_a_spilled_load_survives_kill_9_once_acknowledged(tmp_path, connect, events_file):
    data = tmp_path / "data"
    srv = Server(data, args=SPILL).start()
    rows = pq.read_metadata(events_file).num_rows
    srv.cli("import", str(events_file), "--table", "events")
    srv.kill()
    srv = Server(data, args=SPILL).start()
    try:
        with connect(srv).cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT message_id) FROM events")
            assert cur.fetchone() == (rows, rows)
    finally:
        srv.stop()


KILLED_CLIENT = """
import os, signal, sys, time
import pyarrow.flight as fl, pyarrow.parquet as pq
table = pq.read_table(sys.argv[2])
client = fl.FlightClient(sys.argv[1])
writer, _ = client.do_put(fl.FlightDescriptor.for_path("events"), table.schema)
for batch in table.to_batches(max_chunksize=20_000)[:int(sys.argv[3])]:
    writer.write_batch(batch)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_client_killed_mid_upload_writes_nothing(tmp_path, connect, events_file):
    """A Flight `DoPut` whose client dies (SIGKILL) after sending part of the file: neither a
    spilled upload (most of the file) nor a held one (three batches) is committed."""
    import sys

    data = tmp_path / "data"
    srv = Server(data, args=SPILL).start()
    try:
        for batches in (3, 1_000_000):
            client = subprocess.run(
                [sys.executable, "-c", KILLED_CLIENT, srv.uri, str(events_file), str(batches)],
                capture_output=True, timeout=120)
            assert client.returncode == -9, client.stderr
            deadline = time.time() + 30
            while list((data / "_tributary" / "wal").glob("load-*")):
                assert time.time() < deadline, "a spill was left behind"
                time.sleep(0.05)
            time.sleep(1)  # a server that took the reset for an end would be committing now
            with connect(srv).cursor() as cur:
                cur.execute("SELECT count(*) FROM events")
                assert cur.fetchone()[0] == 0
    finally:
        srv.stop()


def test_a_spilled_load_makes_a_table_and_bad_batches_at_its_end_refuse_it_whole(tmp_path, connect):
    """`adbc_ingest` creating a table of its own from a load over the direct-commit size; a
    second load whose last batches do not fit the table is refused by column, whole."""
    rows = 200_000
    table = pa.table({"id": pa.array(range(rows), pa.int64()),
                      "note": pa.array([f"note {i:09d}" for i in range(rows)])})
    table = pa.Table.from_batches(table.to_batches(max_chunksize=20_000))
    srv = Server(tmp_path / "data", args=SPILL).start()
    try:
        conn = connect(srv)
        with conn.cursor() as cur:
            assert cur.adbc_ingest("notes", table, mode="create") == rows
            cur.execute("SELECT count(*), sum(id), count(DISTINCT note) FROM notes")
            assert cur.fetchone() == (rows, rows * (rows - 1) // 2, rows)

            bad = pa.table({"id": pa.array(["12"] * 20_000 + ["not a number"] * 20_000),
                            "note": pa.array(["x"] * 40_000)})
            bad = pa.concat_tables([table.slice(0, 100_000).cast(bad.schema), bad])
            bad = pa.Table.from_batches(bad.to_batches(max_chunksize=20_000))
            with pytest.raises(Exception, match="id"):
                cur.adbc_ingest("notes", bad, mode="append")
            cur.execute("SELECT count(*) FROM notes")
            assert cur.fetchone()[0] == rows
    finally:
        srv.stop()
