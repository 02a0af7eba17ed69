"""Run by test_sqlalchemy.py in its own venv (flightsql-dbapi needs SQLAlchemy 1.4): connects the
way Superset adds a database (a `datafusion://` URL with user and password), reflects and queries,
and prints what it saw as JSON."""

import json
import sys

from sqlalchemy import create_engine, inspect, text

url = sys.argv[1]
engine = create_engine(url)
inspector = inspect(engine)
seen = {
    "tables": sorted(inspector.get_table_names()),
    "columns": [(c["name"], str(c["type"])) for c in inspector.get_columns("orders")],
}
with engine.connect() as connection:
    seen["total"] = connection.execute(text("SELECT sum(amount) AS total FROM orders")).scalar()
    seen["rows"] = [list(r) for r in connection.execute(text("SELECT id, amount FROM orders ORDER BY id"))]
print(json.dumps(seen))
