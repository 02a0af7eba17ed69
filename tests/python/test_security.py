"""Users, roles and tenants through real clients (docs/security.md): logins by the Flight SQL
handshake (ADBC) and bearer tokens, expiry and revocation, what each role may do, and that a user
of one brand learns nothing about another brand's tenant by any route."""

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_flightsql import dbapi

from conftest import BINARY, Server

ROOT = ("root", "root-pass-1")
# Name and password lengths chosen so that "user:password" needs base64 padding: ADBC sends it
# without, pyarrow with.
ANALYST = ("ana", "analyst-pw12")
WRITER = ("wes", "writer-pw-1")
BOSS_A = ("boss", "boss-pw-a1")
TWO = ("tom", "two-brands1")


def user_cli(data, *args, password=None):
    env = dict(os.environ)
    if password is not None:
        env["TRIBUTARY_PASSWORD"] = password
    return subprocess.run([BINARY, "user", *args, "--data", str(data)], capture_output=True,
                          text=True, env=env, timeout=120)


def login(srv, user, tenant=None, **extra):
    kwargs = {"username": user[0], "password": user[1], **extra}
    if tenant:
        kwargs["adbc.flight.sql.rpc.call_header.x-tributary-tenant"] = tenant
    return dbapi.connect(srv.uri, db_kwargs=kwargs, autocommit=True)


def with_token(srv, token, tenant=None):
    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    if tenant:
        kwargs["adbc.flight.sql.rpc.call_header.x-tributary-tenant"] = tenant
    return dbapi.connect(srv.uri, db_kwargs=kwargs, autocommit=True)


def token_of(srv, user):
    client = flight.FlightClient(srv.uri)
    _, value = client.authenticate_basic_token(*user)
    client.close()
    return value.decode().split(" ", 1)[1]


def rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def refused(conn, sql):
    """The error message of a statement that must fail."""
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as info:
            cur.execute(sql)
            cur.fetchall()
    return str(info.value)


@pytest.fixture(scope="module")
def brands(tmp_path_factory):
    """Two brands' tenants with an orders table each, a superuser made with `tributary user add`,
    and users granted in SQL by the superuser."""
    data = tmp_path_factory.mktemp("secured") / "data"
    srv = Server(data).start()
    assert any("No users configured" in line for line in srv.banner)
    conn = dbapi.connect(srv.uri, autocommit=True)
    for brand, amounts in [("brand_a", [1, 2]), ("brand_b", [10, 20, 30])]:
        rows(conn, f"CREATE DATABASE {brand}")
        rows(conn, f"CREATE TABLE {brand}.public.orders (id BIGINT, amount DOUBLE)")
        values = ", ".join(f"({i}, {a})" for i, a in enumerate(amounts))
        rows(conn, f"INSERT INTO {brand}.public.orders VALUES {values}")
    conn.close()
    made = user_cli(data, "add", ROOT[0], "--superuser", password=ROOT[1])
    assert made.returncode == 0, made.stderr
    root = login(srv, ROOT)
    for user in [ANALYST, WRITER, BOSS_A, TWO]:
        rows(root, f"CREATE USER {user[0]} PASSWORD '{user[1]}'")
    rows(root, "GRANT analyst ON TENANT brand_a TO ana")
    rows(root, "GRANT writer ON TENANT brand_a TO wes")
    rows(root, "GRANT admin ON TENANT brand_a TO boss")
    rows(root, "GRANT analyst ON TENANT brand_a TO tom")
    rows(root, "GRANT analyst ON TENANT brand_b TO tom")
    root.close()
    yield srv
    srv.stop()


def test_no_credentials_or_wrong_ones_are_unauthenticated(brands):
    with pytest.raises(adbc_driver_manager.Error) as missing:
        rows(dbapi.connect(brands.uri, autocommit=True), "SELECT 1")
    assert "UNAUTHENTICATED" in str(missing.value) or "Unauthenticated" in str(missing.value)
    assert "needs a login" in str(missing.value)
    with pytest.raises(adbc_driver_manager.Error) as wrong:
        login(brands, (ANALYST[0], "not-the-password"))
    with pytest.raises(adbc_driver_manager.Error) as unknown:
        login(brands, ("nobody", ANALYST[1]))
    assert "wrong user name or password" in str(wrong.value)
    assert "wrong user name or password" in str(unknown.value)


def test_login_by_handshake_and_by_token(brands):
    conn = login(brands, ANALYST)
    assert rows(conn, "SELECT sum(amount) FROM orders") == [(3.0,)]
    conn.close()
    token = token_of(brands, ANALYST)
    conn = with_token(brands, token)
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    conn.close()
    # Basic credentials on a call, padded and unpadded, as some clients send them.
    encoded = base64.b64encode(f"{ANALYST[0]}:{ANALYST[1]}".encode()).decode()
    assert encoded.endswith("=")
    client = flight.FlightClient(brands.uri)
    for form in [encoded, encoded.rstrip("=")]:
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Basic {form}".encode())])
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(_statement("SELECT 42")), options)
        assert info.total_records in (-1, 1)
    client.close()


def _statement(sql):
    # A CommandStatementQuery wrapped in protobuf's Any, encoded by hand, as Flight SQL clients
    # send it.
    query = sql.encode()
    inner = b"\x0a" + _varint(len(query)) + query
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return b"\x0a" + _varint(len(type_url)) + type_url + b"\x12" + _varint(len(inner)) + inner


def _varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def test_revoked_and_expired_tokens_are_refused(brands, tmp_path):
    token = token_of(brands, WRITER)
    conn = with_token(brands, token)
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    root = login(brands, ROOT)
    rows(root, "ALTER USER wes REVOKE TOKENS")
    root.close()
    message = refused(conn, "SELECT count(*) FROM orders")
    assert "revoked" in message
    conn.close()
    # A fresh login works again.
    conn = login(brands, WRITER)
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    conn.close()

    data = tmp_path / "short"
    assert user_cli(data, "add", "eve", "--superuser", password="eve-pass-1").returncode == 0
    short = Server(data, args=["--token-lifetime-secs", "1"]).start()
    try:
        conn = with_token(short, token_of(short, ("eve", "eve-pass-1")))
        assert rows(conn, "SELECT 1") == [(1,)]
        time.sleep(1.5)
        assert "expired" in refused(conn, "SELECT 1")
        conn.close()
    finally:
        short.stop()


ANALYST_REFUSED = [
    "INSERT INTO orders VALUES (9, 9.0)",
    "UPDATE orders SET amount = 0",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "CREATE TABLE t (x BIGINT)",
    "CALL refresh_profiles()",
    "CREATE SEGMENT big AS '{\"field\": \"total_revenue\", \"op\": \">\", \"value\": 1}'",
    "CREATE DATABASE brand_c",
    "CREATE USER mallory PASSWORD 'mallory-pw'",
    "GRANT admin ON TENANT brand_a TO ana",
]


@pytest.mark.parametrize("sql", ANALYST_REFUSED)
def test_an_analyst_only_reads(brands, sql):
    conn = login(brands, ANALYST)
    message = refused(conn, sql)
    assert "PERMISSION_DENIED" in message or "PermissionDenied" in message or "Unauthorized" in message, message
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)], "nothing changed"
    conn.close()


def test_an_analyst_cannot_ingest(brands):
    conn = login(brands, ANALYST)
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as info:
            cur.adbc_ingest("orders", pa.table({"id": [7], "amount": [7.0]}), mode="append")
    assert "may not change data" in str(info.value)
    conn.close()


def test_a_writer_writes_but_does_not_administer(brands):
    conn = login(brands, WRITER)
    rows(conn, "CREATE TABLE scratch (x BIGINT)")
    rows(conn, "INSERT INTO scratch VALUES (1)")
    with conn.cursor() as cur:
        assert cur.adbc_ingest("scratch", pa.table({"x": [2, 3]}), mode="append") == 2
    assert rows(conn, "SELECT count(*) FROM scratch") == [(3,)]
    assert "may not" in refused(conn, "CREATE USER mallory PASSWORD 'mallory-pw'")
    assert "may not" in refused(conn, "CREATE DATABASE brand_c")
    rows(conn, "DROP TABLE scratch")
    conn.close()


def test_a_tenant_admin_manages_their_tenant_only(brands):
    conn = login(brands, BOSS_A)
    rows(conn, "CREATE USER intern PASSWORD 'intern-pw1'")
    rows(conn, "GRANT analyst ON TENANT brand_a TO intern")
    assert "not available" in refused(conn, "GRANT analyst ON TENANT brand_b TO intern")
    users = {r[0]: r for r in rows(conn, "SHOW USERS")}
    assert set(users) == {"boss", "intern", "ana", "wes", "tom"}, "root is not shown to a tenant admin"
    assert users["tom"][2] == "brand_a=analyst", "grants on other tenants are not shown"
    assert "may not manage" in refused(conn, "DROP USER tom")
    rows(conn, "DROP USER intern")
    conn.close()


def other_tenant_probes(tenant):
    return [
        f"SELECT * FROM {tenant}.public.orders",
        f"SELECT * FROM {tenant}.public.no_such_table",
        f"INSERT INTO {tenant}.public.orders VALUES (1, 1.0)",
        f"DROP TABLE {tenant}.public.orders",
    ]


@pytest.mark.parametrize("index", range(4))
def test_another_tenant_is_indistinguishable_from_none(brands, index):
    conn = login(brands, WRITER)
    hidden = refused(conn, other_tenant_probes("brand_b")[index])
    missing = refused(conn, other_tenant_probes("brand_zz")[index])
    assert hidden.replace("brand_b", "X") == missing.replace("brand_zz", "X")
    conn.close()


def test_metadata_shows_granted_tenants_only(brands):
    conn = login(brands, ANALYST)
    catalogs = {c["catalog_name"] for c in conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()}
    assert catalogs == {"brand_a"}
    tables = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    assert {c["catalog_name"] for c in tables} == {"brand_a"}
    assert {r[0] for r in rows(conn, "SELECT DISTINCT table_catalog FROM information_schema.tables")} == {"brand_a"}
    assert {r[0] for r in rows(conn, "SHOW TABLES") if r[0] != "brand_a"} == set()
    assert conn.adbc_get_table_schema("orders", catalog_filter="brand_a") is not None
    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema("orders", catalog_filter="brand_b")
    conn.close()


def test_the_tenant_header_and_use_are_checked(brands):
    with pytest.raises(adbc_driver_manager.Error) as hidden:
        rows(login(brands, ANALYST, tenant="brand_b"), "SELECT 1")
    with pytest.raises(adbc_driver_manager.Error) as missing:
        rows(login(brands, ANALYST, tenant="brand_zz"), "SELECT 1")
    assert str(hidden.value).replace("brand_b", "X") == str(missing.value).replace("brand_zz", "X")
    conn = login(brands, ANALYST)
    assert "not available" in refused(conn, "USE brand_b")
    conn.close()
    # A user of two brands picks one with USE (kept for the login) or with the header.
    conn = login(brands, TWO)
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    rows(conn, "USE brand_b")
    assert rows(conn, "SELECT count(*) FROM orders") == [(3,)]
    assert rows(conn, "SELECT count(*) FROM brand_a.public.orders") == [(2,)]
    conn.close()
    conn = login(brands, TWO, tenant="brand_b")
    assert rows(conn, "SELECT sum(amount) FROM orders") == [(60.0,)]
    conn.close()


def test_ingest_into_another_tenant_is_refused(brands):
    conn = login(brands, WRITER)
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as info:
            cur.adbc_ingest("orders", pa.table({"id": [7], "amount": [7.0]}), mode="append",
                            catalog_name="brand_b")
    assert "not available" in str(info.value)
    conn.close()
    root = login(brands, ROOT, tenant="brand_b")
    assert rows(root, "SELECT count(*) FROM orders") == [(3,)]
    root.close()


def test_prepared_statements_are_checked_too(brands):
    conn = login(brands, ANALYST)
    with conn.cursor() as cur:
        cur.execute("SELECT amount FROM orders WHERE id = $1", parameters=(1,))
        assert cur.fetchall() == [(2.0,)]
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute("SELECT amount FROM brand_b.public.orders WHERE id = $1", parameters=(1,))
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute("DELETE FROM orders WHERE id = $1", parameters=(1,))
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    conn.close()


def test_the_segment_api_takes_the_same_logins(brands):
    def call(path, authorization=None):
        request = urllib.request.Request(brands.http + path)
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = call("/v1/segments")
    assert status == 401, body
    basic = base64.b64encode(f"{ANALYST[0]}:{ANALYST[1]}".encode()).decode()
    assert call("/v1/segments", f"Basic {basic}")[0] == 200
    assert call("/v1/segments", f"Bearer {token_of(brands, ANALYST)}")[0] == 200
    assert call("/v1/segments", "Bearer trt_forged")[0] == 401


def test_users_survive_a_restart_and_the_cli_lists_them(brands):
    listed = user_cli(brands.data, "list")
    assert listed.returncode == 0
    assert "root\tsuperuser" in listed.stdout and "ana\tuser\tgrants=brand_a=analyst" in listed.stdout
    brands.stop()
    brands.start()
    assert not any("No users configured" in line for line in brands.banner)
    conn = login(brands, ANALYST)
    assert rows(conn, "SELECT count(*) FROM orders") == [(2,)]
    conn.close()


def test_a_public_address_without_users_is_refused(tmp_path):
    result = subprocess.run(
        [BINARY, "serve", "--flight-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0",
         "--data", str(tmp_path / "open")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0" in result.stderr


def test_tributary_sql_logs_in_with_password_or_token(brands):
    env = dict(os.environ, TRIBUTARY_PASSWORD=ANALYST[1])
    result = subprocess.run([BINARY, "sql", "--server", brands.address, "--user", ANALYST[0],
                             "-c", "SELECT count(*) AS n FROM orders"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| 2 |" in result.stdout
    token = token_of(brands, ANALYST)
    result = subprocess.run([BINARY, "sql", "--server", brands.address, "--token", token,
                             "-c", "SHOW GRANTS"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "brand_a" in result.stdout and "analyst" in result.stdout
    result = subprocess.run([BINARY, "sql", "--server", brands.address, "-c", "SELECT 1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "needs a login" in result.stderr


def test_metadata_rpcs_and_table_functions_do_not_reach_another_tenant(brands):
    conn = login(brands, ANALYST)
    for depth in ["db_schemas", "tables", "columns"]:
        hidden = conn.adbc_get_objects(depth=depth, catalog_filter="brand_b").read_all().to_pylist()
        assert hidden == [], depth
    assert {t for t in conn.adbc_get_table_types()} >= {"TABLE"}
    # Computed tables and table functions answer for the session's tenant only.
    hidden = refused(conn, "SELECT count(*) FROM brand_b.public.identity_map")
    missing = refused(conn, "SELECT count(*) FROM brand_zz.public.identity_map")
    assert hidden.replace("brand_b", "X") == missing.replace("brand_zz", "X")
    assert rows(conn, "SELECT count(*) FROM identity_map") == [(0,)]
    assert rows(conn, """SELECT segment_size('{"field": "total_revenue", "op": ">", "value": 0}')""") == [(0,)]
    # DataFusion answers information_schema under any catalog name, from the session's catalogs:
    # the other brand's name shows the same (own) rows as a name that does not exist.
    hidden = rows(conn, "SELECT DISTINCT table_catalog FROM brand_b.information_schema.tables")
    missing = rows(conn, "SELECT DISTINCT table_catalog FROM brand_zz.information_schema.tables")
    assert hidden == missing == [("brand_a",)]
    conn.close()


def test_plain_do_put_paths_are_checked(brands):
    token = token_of(brands, WRITER)
    client = flight.FlightClient(brands.uri)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    rows_in = pa.table({"id": [100], "amount": [1.0]})
    for path, allowed in [(["brand_b", "orders"], False), (["brand_zz", "orders"], False), (["orders"], True)]:
        descriptor = flight.FlightDescriptor.for_path(*path)
        if allowed:
            writer, reader = client.do_put(descriptor, rows_in.schema, options)
            writer.write_table(rows_in)
            writer.done_writing()
            reader.read()
            writer.close()
        else:
            with pytest.raises(flight.FlightError) as info:
                writer, reader = client.do_put(descriptor, rows_in.schema, options)
                writer.write_table(rows_in)
                writer.done_writing()
                reader.read()
                writer.close()
            assert "not available" in str(info.value)
    client.close()
    conn = login(brands, WRITER)
    rows(conn, "DELETE FROM orders WHERE id = 100")
    conn.close()
    root = login(brands, ROOT, tenant="brand_b")
    assert rows(root, "SELECT count(*) FROM orders") == [(3,)]
    root.close()


def test_the_user_command_manages_users_a_running_server_sees(brands):
    assert user_cli(brands.data, "add", "cli_user", password="cli-pass-12").returncode == 0
    assert user_cli(brands.data, "grant", "cli_user", "analyst", "--tenant", "brand_b").returncode == 0
    bad = user_cli(brands.data, "grant", "cli_user", "owner", "--tenant", "brand_b")
    assert bad.returncode != 0 and "unknown role 'owner'" in bad.stderr
    missing = user_cli(brands.data, "grant", "cli_user", "analyst", "--tenant", "brand_zz")
    assert missing.returncode != 0 and "brand_zz" in missing.stderr
    time.sleep(1.1)  # the server reads the users again at most once a second
    conn = login(brands, ("cli_user", "cli-pass-12"))
    assert rows(conn, "SELECT count(*) FROM orders") == [(3,)]
    conn.close()
    assert user_cli(brands.data, "passwd", "cli_user", password="cli-pass-34").returncode == 0
    time.sleep(1.1)
    with pytest.raises(adbc_driver_manager.Error):
        login(brands, ("cli_user", "cli-pass-12"))
    conn = login(brands, ("cli_user", "cli-pass-34"))
    assert user_cli(brands.data, "revoke", "cli_user", "--tenant", "brand_b").returncode == 0
    time.sleep(1.1)
    assert "has no tenant" in refused(conn, "SELECT 1")
    conn.close()
    assert user_cli(brands.data, "remove", "cli_user").returncode == 0
    time.sleep(1.1)
    with pytest.raises(adbc_driver_manager.Error):
        login(brands, ("cli_user", "cli-pass-34"))


def test_a_ticket_runs_with_the_rights_of_whoever_presents_it(brands):
    """GetFlightInfo keeps its physical plan for the DoGet that follows; another user's DoGet of
    that ticket never gets it, and a second DoGet plans again."""
    root = login(brands, ROOT)
    rows(root, "CREATE USER bea PASSWORD 'bea-pass-12'")
    rows(root, "GRANT analyst ON TENANT brand_b TO bea")
    root.close()
    client = flight.FlightClient(brands.uri)

    def as_user(user):
        token = token_of(brands, user)
        return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])

    ana, bea = as_user(ANALYST), as_user(("bea", "bea-pass-12"))
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(_statement("SELECT id FROM orders")), ana)
    ticket = info.endpoints[0].ticket
    # bea's session is brand_b: the same SQL, her tenant's rows, not the plan ana's call made.
    assert client.do_get(ticket, bea).read_all().num_rows == 3
    assert client.do_get(ticket, ana).read_all().num_rows == 2
    assert client.do_get(ticket, ana).read_all().num_rows == 2
    client.close()
