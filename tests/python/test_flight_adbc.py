"""Python ADBC (adbc-driver-flightsql) against the real server: generated data imported with
`tributary import`, queried and checked against pyarrow on the same files; metadata calls;
prepared statements; DDL at execute time; errors that change nothing."""

import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import Server, generate


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sample"), 10000, 7)


def test_generated_data_imported_and_grouped_matches_pyarrow(server, connect, sample):
    for table in ["events", "identities", "orders"]:
        result = server.cli("import", str(sample / f"{table}.parquet"), "--table", table)
        assert f"into {table}" in result.stdout

    expected = (
        pq.read_table(sample / "events.parquet")
        .group_by("event").aggregate([("message_id", "count")])
        .rename_columns(["event", "n"])
    )
    expected = {row["event"]: row["n"] for row in expected.to_pylist()}
    assert sum(expected.values()) > 400_000  # about 50 events per customer

    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("SELECT event, count(*) AS n FROM events GROUP BY event")
        got = {row[0]: row[1] for row in cur.fetchall()}
    assert got == expected

    orders = pq.read_table(sample / "orders.parquet")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(amount) FROM orders")
        count, total = cur.fetchone()
    assert count == orders.num_rows
    assert total == pytest.approx(pc.sum(orders["amount"]).as_py())

    # JSON properties are queryable: purchase revenue equals the orders' amounts.
    with conn.cursor() as cur:
        cur.execute("SELECT sum(json_get_float(properties, 'revenue')) FROM events WHERE event = 'purchase'")
        assert cur.fetchone()[0] == pytest.approx(total)


def test_metadata_calls(server, connect):
    conn = connect(server)
    objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "default" in catalogs
    public = next(s for s in catalogs["default"]["catalog_db_schemas"] if s["db_schema_name"] == "public")
    tables = {t["table_name"]: t for t in public["db_schema_tables"]}
    assert {"events", "identities", "profiles"} <= set(tables)
    event_columns = [c["column_name"] for c in tables["events"]["table_columns"]]
    assert event_columns[:3] == ["message_id", "type", "event"]

    schema = conn.adbc_get_table_schema("events", catalog_filter="default", db_schema_filter="public")
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("properties").type == pa.string()

    assert set(conn.adbc_get_table_types()) >= {"TABLE", "VIEW"}
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Tributary"


def test_prepared_statement_with_parameter(server, connect):
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE points (player VARCHAR, score BIGINT)")
        cur.execute("INSERT INTO points VALUES ('ann', 5), ('bob', 15), ('cy', 25)")
        cur.execute("SELECT player FROM points WHERE score > $1 ORDER BY player", parameters=(10,))
        assert [r[0] for r in cur.fetchall()] == ["bob", "cy"]
        cur.execute("SELECT player FROM points WHERE player = $1", parameters=("ann",))
        assert cur.fetchall() == [("ann",)]
        # Results arrive as plain Arrow strings, never string views.
        cur.execute("SELECT player FROM points")
        assert cur.fetch_arrow_table().schema.field("player").type == pa.string()



def test_question_mark_placeholders_bind_like_numbered_ones(server, connect):
    """`?` is what JDBC, ODBC and ADBC's DB-API (paramstyle qmark) send."""
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("SELECT CAST(? AS BIGINT) + 1", parameters=(41,))
        assert cur.fetchall() == [(42,)]
        cur.execute("CREATE TABLE marks (who VARCHAR, score BIGINT)")
        cur.executemany("INSERT INTO marks VALUES (?, ?)", [("ann", 3), ("bob", 5)])
        cur.execute("SELECT who FROM marks WHERE score > ? AND who <> ? ORDER BY who", parameters=(1, "ann"))
        assert cur.fetchall() == [("bob",)]

def test_ddl_runs_at_execute_and_errors_change_nothing(server, connect):
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE made_now (id BIGINT)")
    # The table exists without anyone fetching the CREATE's result.
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'made_now'")
        assert cur.fetchone()[0] == 1

    import adbc_driver_manager
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="SQL error"):
            cur.execute("SELEC 1")
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="no_such_table") as missing:
            cur.execute("SELECT * FROM no_such_table")
        # A missing table is NOT_FOUND (not a syntax error), here and in another tenant.
        assert missing.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
        with pytest.raises(adbc_driver_manager.ProgrammingError) as elsewhere:
            cur.execute("SELECT * FROM nobody.public.t")
        assert elsewhere.value.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute("INSERT INTO made_now VALUES ('not a number')")
        cur.execute("SELECT count(*) FROM made_now")
        assert cur.fetchone()[0] == 0


def test_adbc_bulk_ingest(server, connect):
    conn = connect(server)
    data = pa.table({"sku": ["a", "b"], "qty": pa.array([1, 2], pa.int64())})
    with conn.cursor() as cur:
        assert cur.adbc_ingest("stock", data, mode="create") == 2
        assert cur.adbc_ingest("stock", data, mode="append") == 2
        cur.execute("SELECT sku, sum(qty) FROM stock GROUP BY sku ORDER BY sku")
        assert cur.fetchall() == [("a", 2), ("b", 4)]


def test_malformed_import_reports_line_and_writes_nothing(server, connect, tmp_path):
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR)")
        cur.execute("INSERT INTO people VALUES (1, 'ann')")
    bad_csv = tmp_path / "people.csv"
    bad_csv.write_text("id,name\n2,bob\n3,cy\nfour,dee\n")
    result = server.cli("import", str(bad_csv), "--table", "people", check=False)
    assert result.returncode != 0
    assert "line 4" in result.stderr, result.stderr
    bad_json = tmp_path / "people.ndjson"
    bad_json.write_text('{"id": 2, "name": "bob"}\n{"id": 3, "name": \n')
    result = server.cli("import", str(bad_json), "--table", "people", check=False)
    assert result.returncode != 0 and "line 2" in result.stderr, result.stderr
    missing_required = tmp_path / "noid.csv"
    missing_required.write_text("name\nbob\n")
    result = server.cli("import", str(missing_required), "--table", "people", check=False)
    assert result.returncode != 0 and "id" in result.stderr, result.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM people")
        assert cur.fetchone()[0] == 1
    good = tmp_path / "good.csv"
    good.write_text("name,id\nbob,2\n")
    server.cli("import", str(good), "--table", "people")
    with conn.cursor() as cur:
        cur.execute("SELECT id, name FROM people ORDER BY id")
        assert cur.fetchall() == [(1, "ann"), (2, "bob")]


def test_parquet_import_streams_and_a_file_broken_midway_writes_nothing(server, connect, tmp_path):
    """`tributary import` sends a Parquet file as it reads it; the server commits once, at the
    end. A file whose last row group is corrupt fails after batches were sent: the upload is
    cancelled and nothing is committed."""
    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE readings (id BIGINT NOT NULL, note VARCHAR)")
    rows = 120_000
    table = pa.table({"id": pa.array(range(rows), pa.int64()),
                      "note": pa.array([f"reading {i}" for i in range(rows)])})
    good = tmp_path / "readings.parquet"
    pq.write_table(table, good, row_group_size=40_000)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(good.read_bytes())
    last = pq.ParquetFile(good).metadata.row_group(2)
    start = min(last.column(i).data_page_offset for i in range(last.num_columns))
    with open(broken, "r+b") as f:
        f.seek(start)
        f.write(b"\xff" * 4096)
    result = server.cli("import", str(broken), "--table", "readings", check=False)
    assert result.returncode != 0, result.stdout
    assert "broken.parquet" in result.stderr, result.stderr
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM readings")
        assert cur.fetchone()[0] == 0
    result = server.cli("import", str(good), "--table", "readings")
    assert f"imported {rows} rows" in result.stdout, result.stdout
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM readings")
        assert cur.fetchone() == (rows, rows, 0, rows - 1)


def test_sql_command_answers(server):
    result = server.cli("sql", "-c", "select 1")
    assert "| 1 " in result.stdout
    result = server.cli("sql", "-c", "select * from nope", check=False)
    assert result.returncode != 0 and "nope" in result.stderr


def test_tenant_header_picks_the_default_catalog(server, connect):
    import adbc_driver_manager
    from adbc_driver_flightsql import dbapi

    conn = connect(server)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE acme")
        cur.execute("CREATE TABLE acme.public.notes (t VARCHAR)")
        cur.execute("INSERT INTO acme.public.notes VALUES ('hi')")
        # The default tenant has no such table.
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="notes"):
            cur.execute("SELECT t FROM notes")
    header = "adbc.flight.sql.rpc.call_header.x-tributary-tenant"
    with dbapi.connect(server.uri, db_kwargs={header: "acme"}, autocommit=True) as acme:
        with acme.cursor() as cur:
            cur.execute("SELECT t FROM notes")
            assert cur.fetchall() == [("hi",)]
    with dbapi.connect(server.uri, db_kwargs={header: "nope"}, autocommit=True) as nope:
        with nope.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error, match="tenant 'nope' does not exist"):
                cur.execute("SELECT 1")


def test_sigterm_does_not_wait_for_idle_connections(tmp_path):
    import signal
    from conftest import Server
    from adbc_driver_flightsql import dbapi
    srv = Server(tmp_path / "data", args=["--shutdown-grace-secs", "600"]).start()
    conn = dbapi.connect(srv.uri, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()
    # The connection stays open and idle; the server must not sit out its 600 s grace period.
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(timeout=120) == 0
    assert "Tributary stopped" in srv.process.stdout.read()
    conn.close()


def assert_sorted_files(table_dir):
    """Every data file of `events` holds its rows by event, anonymous_id, timestamp (nulls
    first), as Tributary writes them (docs/data-model.md, "On storage")."""
    files = sorted(table_dir.rglob("*.parquet"))
    assert files
    return assert_sorted_files_at(files)


def assert_sorted_files_at(files):
    for path in files:
        rows = pq.read_table(path, columns=["event", "anonymous_id", "timestamp"]).to_pylist()
        keys = [(r["event"] is not None, r["event"] or "", r["anonymous_id"] is not None,
                 r["anonymous_id"] or "", r["timestamp"]) for r in rows]
        assert keys == sorted(keys), path
    return files


def test_events_files_are_sorted_and_pruned_by_event(tmp_path, connect, sample):
    """An import (one direct commit) and a small ingest (buffered, then flushed) both write
    sorted files; a filter on a rare event then decodes only some of the Parquet pages."""
    data = tmp_path / "data"
    server = Server(data, args=["--flush-interval-ms", "50"]).start()
    try:
        server.cli("import", str(sample / "events.parquet"), "--table", "events")
        conn = connect(server)
        with conn.cursor() as cur:
            small = pq.read_table(sample / "events.parquet").slice(0, 500)
            small = small.set_column(0, "message_id", pc.binary_join_element_wise(
                small["message_id"], pa.scalar("-again"), ""))
            assert cur.adbc_ingest("events", small, mode="append") == 500
            cur.execute("SELECT count(*) FROM events")
            total = cur.fetchone()[0]
        deadline = time.time() + 30
        while sum(pq.read_metadata(f).num_rows for f in (data / "default" / "events").rglob(
                "*.parquet")) < total:
            assert time.time() < deadline, "the small ingest was not flushed"
            time.sleep(0.1)
        assert_sorted_files(data / "default" / "events")

        with conn.cursor() as cur:
            cur.execute("EXPLAIN ANALYZE SELECT count(*) FROM events WHERE event = 'purchase'")
            plan = "\n".join(row[1] for row in cur.fetchall())
        pruned = plan.split("page_index_rows_pruned=")[1].split(",")[0]
        before, after = [part.strip() for part in pruned.split("total →")]
        assert after.endswith("matched") and after.split()[0] != before.split()[0], pruned

        # A time filter skips whole files by their Delta statistics, without opening them, and
        # the answer is the same as without skipping.
        since = "2026-01-29T00:00:00Z"
        with conn.cursor() as cur:
            cur.execute(f"EXPLAIN ANALYZE SELECT count(*) FROM events "
                        f"WHERE timestamp >= TIMESTAMP '{since}'")
            plan = "\n".join(row[1] for row in cur.fetchall())
            cur.execute(f"SELECT count(*) FROM events WHERE timestamp >= TIMESTAMP '{since}'")
            counted = cur.fetchall()[0][0]
            cur.execute(f"SELECT count(*) FROM events WHERE CAST(timestamp AS VARCHAR) >= '{since[:10]}'")
            assert counted == cur.fetchall()[0][0] > 0
        files = plan.split("files_ranges_pruned_statistics=")[1].split(",")[0]
        total, matched = [int(part.split()[0]) for part in files.split("total →")]
        assert 0 < matched < total, files
    finally:
        server.stop()


def test_compaction_rewrites_small_events_files_sorted(tmp_path, connect, sample):
    """Three small ingests of the same days, each flushed to files of its own; the compaction
    after the third flush leaves one sorted file per day, with every row."""
    from deltalake import DeltaTable

    data = tmp_path / "data"
    args = ["--flush-interval-ms", "50", "--compact-after-flushes", "3"]
    server = Server(data, args=args).start()
    table_dir = data / "default" / "events"
    try:
        conn = connect(server)
        rows = pq.read_table(sample / "events.parquet").slice(0, 300)
        for n in range(3):
            copy = rows.set_column(0, "message_id", pc.binary_join_element_wise(
                rows["message_id"], pa.scalar(f"-{n}"), ""))
            with conn.cursor() as cur:
                assert cur.adbc_ingest("events", copy, mode="append") == 300
            deadline = time.time() + 30
            while DeltaTable(str(table_dir)).to_pyarrow_table(columns=["message_id"]).num_rows < 300 * (n + 1):
                assert time.time() < deadline, "a small ingest was not flushed"
                time.sleep(0.05)
        days = len(set(rows["event_date"].to_pylist()))
        deadline = time.time() + 30
        while len(DeltaTable(str(table_dir)).file_uris()) != days:
            assert time.time() < deadline, DeltaTable(str(table_dir)).file_uris()
            time.sleep(0.05)
        active = DeltaTable(str(table_dir))
        assert_sorted_files_at(active.file_uris())
        ids = active.to_pyarrow_table(columns=["message_id"])["message_id"].to_pylist()
        assert len(ids) == len(set(ids)) == 900
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT message_id) FROM events")
            assert cur.fetchone() == (900, 900)
    finally:
        server.stop()
