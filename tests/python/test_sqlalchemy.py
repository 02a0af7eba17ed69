"""SQLAlchemy through `flightsql-dbapi` (its `datafusion` dialect, as Superset uses it): log in
with user and password, reflect tables and columns, run a query. The client runs in its own venv
(SQLAlchemy 1.4), made by tests/run.sh."""

import json
import os
import subprocess
from pathlib import Path

from adbc_driver_flightsql import dbapi

from conftest import BINARY, Server

SQLA_PYTHON = os.environ.get(
    "TRIBUTARY_SQLA_PYTHON", str(Path.home() / ".cache/tributary-venv-sqla/bin/python"))
CLIENT = Path(__file__).with_name("sqlalchemy_client.py")


def test_superset_style_connection_reflects_and_queries(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    try:
        conn = dbapi.connect(srv.uri, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE orders (id BIGINT, amount DOUBLE, note VARCHAR)")
            cur.execute("INSERT INTO orders VALUES (1, 2.5, 'a'), (2, 4.0, NULL)")
        conn.close()
        env = dict(os.environ, TRIBUTARY_PASSWORD="super-secret-1")
        made = subprocess.run([BINARY, "user", "add", "bi", "--superuser", "--data", str(data)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert made.returncode == 0, made.stderr
        url = f"datafusion://bi:super-secret-1@{srv.address}?insecure=true"
        result = subprocess.run([SQLA_PYTHON, str(CLIENT), url], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert "orders" in seen["tables"]
        assert [name for name, _ in seen["columns"]] == ["id", "amount", "note"]
        assert seen["total"] == 6.5
        assert seen["rows"] == [[1, 2.5], [2, 4.0]]
        wrong = subprocess.run([SQLA_PYTHON, str(CLIENT), url.replace("super-secret-1", "nope")],
                               capture_output=True, text=True, timeout=120)
        assert wrong.returncode != 0 and "wrong user name or password" in wrong.stderr
    finally:
        srv.stop()
