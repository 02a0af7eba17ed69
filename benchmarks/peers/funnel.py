"""The funnel benchmark: behaviour-analytics queries timed in Tributary (over Flight SQL, ADBC),
ClickHouse (chDB, in-process) and DuckDB (in-process) on the same generated data, best of N runs,
with the ratio Tributary / fastest peer. Answers are compared too: a fast wrong answer is a failure.

Tributary reads its `events` Delta table, imported from the generator's events.parquet; chDB and
DuckDB read that same Parquet file. Every query returns a small summary (a funnel or retention
curve), so the timing is the computation, not the transfer of per-person rows.

Run it with benchmarks/run.sh funnel (see docs/benchmarks.md)."""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from tributary_server import start_server

WINDOW_MICROS = 86_400 * 1_000_000
STEPS = ["product_view", "add_to_cart", "checkout", "purchase"]


# The last 7 of the generated data's 31 days, for the date-filtered group-by (a 30-day filter
# would keep nearly every row of this data).
SINCE = "2026-01-25"


def group_by_event(source, distinct, revenue, where=""):
    """GROUP BY event with distinct people and revenue (rounded: float sums differ in the last
    bits by order) in one engine's dialect."""
    return (f"SELECT event, {distinct}, round(sum({revenue}), 2) FROM {source} {where} "
            "GROUP BY event ORDER BY event NULLS FIRST")


def customer_funnel(source, mapping, funnel, nulls=""):
    """The funnel by customer: each event's customer is its user id's, else its anonymous id's
    (the same rule as Tributary's stitched events), through a join with the identity mapping."""
    return (f"SELECT level, count(*) AS people FROM (SELECT {funnel} AS level FROM {source} e "
            f"LEFT JOIN {mapping} u ON u.id_type = 'user_id' AND u.id_value = e.user_id "
            f"LEFT JOIN {mapping} a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id "
            f"GROUP BY coalesce(u.customer_id, a.customer_id)) GROUP BY level ORDER BY level{nulls}")


def queries(parquet, mapping):
    conds = ", ".join(f"event = '{s}'" for s in STEPS)
    e_conds = ", ".join(f"e.event = '{s}'" for s in STEPS)
    days = ["2026-01-05", "2026-01-06", "2026-01-12"]
    src_ch = f"file('{parquet}', Parquet)"
    src_duck = f"read_parquet('{parquet}')"
    map_ch = f"file('{mapping}', Parquet)"
    return [
        {
            "name": "window_funnel 4 steps, 1 day, by anonymous_id",
            "tributary": f"SELECT level, count(*) AS people FROM (SELECT window_funnel(INTERVAL '1 day', timestamp, {conds}) AS level FROM events GROUP BY anonymous_id) GROUP BY level ORDER BY level",
            "chdb": f"SELECT level, count() AS people FROM (SELECT windowFunnel({WINDOW_MICROS})(toUInt64(toUnixTimestamp64Micro(timestamp)), {conds}) AS level FROM {src_ch} GROUP BY anonymous_id) GROUP BY level ORDER BY level",
            "duckdb": None,
        },
        {
            "name": "retention 3 conditions (days 1, 2, 8), by anonymous_id",
            "tributary": "SELECT sum(r[1]), sum(r[2]), sum(r[3]) FROM (SELECT retention("
            + ", ".join(f"event_date = DATE '{d}'" for d in days)
            + ") AS r FROM events GROUP BY anonymous_id)",
            "chdb": "SELECT sum(r[1]), sum(r[2]), sum(r[3]) FROM (SELECT retention("
            + ", ".join(f"event_date = toDate32('{d}')" for d in days)
            + f") AS r FROM {src_ch} GROUP BY anonymous_id)",
            "duckdb": "SELECT sum(d0), sum(d0 * d1), sum(d0 * d2) FROM (SELECT "
            + ", ".join(f"max(CASE WHEN event_date = DATE '{d}' THEN 1 ELSE 0 END) AS d{i}" for i, d in enumerate(days))
            + f" FROM {src_duck} GROUP BY anonymous_id)",
        },
        {
            "name": "sequence_match cart .* (<=1h) purchase, by anonymous_id",
            "tributary": "SELECT sum(m), count(*) FROM (SELECT sequence_match('(?1).*(?t<=3600)(?2)', timestamp, event = 'add_to_cart', event = 'purchase') AS m FROM events GROUP BY anonymous_id)",
            "chdb": f"SELECT sum(m), count() FROM (SELECT sequenceMatch('(?1).*(?t<=3600000000)(?2)')(toUInt64(toUnixTimestamp64Micro(timestamp)), event = 'add_to_cart', event = 'purchase') AS m FROM {src_ch} GROUP BY anonymous_id)",
            "duckdb": None,
        },
        {
            "name": "window_funnel 4 steps, 1 day, by customer (join)",
            "tributary": customer_funnel(
                "events", "identity_map",
                f"window_funnel(INTERVAL '1 day', e.timestamp, {e_conds})"),
            "chdb": customer_funnel(
                src_ch, map_ch,
                f"windowFunnel({WINDOW_MICROS})(toUInt64(toUnixTimestamp64Micro(e.timestamp)), {e_conds})",
                " SETTINGS join_use_nulls = 1"),
            "duckdb": None,
        },
        {
            # Tributary's own relation of stitched events (no join), against chDB's join.
            "name": "the same by customer, customer_events",
            "tributary": "SELECT level, count(*) AS people FROM (SELECT window_funnel("
                         f"INTERVAL '1 day', timestamp, {conds}) AS level FROM customer_events "
                         "GROUP BY customer_key) GROUP BY level ORDER BY level",
            "chdb": customer_funnel(
                src_ch, map_ch,
                f"windowFunnel({WINDOW_MICROS})(toUInt64(toUnixTimestamp64Micro(e.timestamp)), {e_conds})",
                " SETTINGS join_use_nulls = 1"),
            "duckdb": None,
        },
        {
            "name": "GROUP BY event, distinct anonymous_id, revenue",
            "tributary": group_by_event("events", "count(DISTINCT anonymous_id)",
                                        "json_get_float(properties, 'revenue')"),
            "chdb": group_by_event(src_ch, "uniqExact(anonymous_id)",
                                   "JSONExtract(properties, 'revenue', 'Nullable(Float64)')"),
            "duckdb": group_by_event(src_duck, "count(DISTINCT anonymous_id)",
                                     "CAST(json_extract(properties, '$.revenue') AS DOUBLE)"),
        },
        {
            "name": f"the same, 7 days (event_date >= {SINCE})",
            "tributary": group_by_event("events", "count(DISTINCT anonymous_id)",
                                        "json_get_float(properties, 'revenue')",
                                        f"WHERE event_date >= DATE '{SINCE}'"),
            "chdb": group_by_event(src_ch, "uniqExact(anonymous_id)",
                                   "JSONExtract(properties, 'revenue', 'Nullable(Float64)')",
                                   f"WHERE event_date >= toDate32('{SINCE}')"),
            "duckdb": group_by_event(src_duck, "count(DISTINCT anonymous_id)",
                                     "CAST(json_extract(properties, '$.revenue') AS DOUBLE)",
                                     f"WHERE event_date >= DATE '{SINCE}'"),
        },
    ]


def best_of(runs, run):
    best, answer = None, None
    for _ in range(runs):
        started = time.perf_counter()
        answer = run()
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return best, answer


def plain(value):
    """One cell as a plain Python value: numpy scalars unwrapped, NaN as NULL, whole floats as int."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if value != value:
            return None
        if value.is_integer():
            return int(value)
    return value


def normalise(rows):
    return sorted((tuple(plain(v) for v in row) for row in rows), key=repr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary (release)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tributary-bench"))
    args = parser.parse_args()

    import chdb
    import duckdb
    import pyarrow.parquet as pq
    from adbc_driver_flightsql import dbapi

    sample = os.path.join(args.work_dir, f"sample-{args.customers}")
    parquet = os.path.join(sample, "events.parquet")
    data = os.path.join(args.work_dir, f"data-{args.customers}")
    if not os.path.exists(parquet):
        subprocess.run([args.tributary, "generate", "--customers", str(args.customers), "--out", sample], check=True)
    server, addresses = start_server(args.tributary, data)
    address = addresses["flight"]
    try:
        conn = dbapi.connect(f"grpc://{address}", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events")
            loaded = cur.fetchone()[0]
        if loaded == 0:
            subprocess.run([args.tributary, "import", parquet, "--table", "events", "--server", address], check=True)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM events")
                loaded = cur.fetchone()[0]
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM identities")
            if cur.fetchone()[0] == 0:
                subprocess.run([args.tributary, "import", os.path.join(sample, "identities.parquet"),
                                "--table", "identities", "--server", address], check=True)
        # The peers get Tributary's identity mapping as a Parquet file (exported, not timed).
        mapping = os.path.join(args.work_dir, f"identity_map-{args.customers}.parquet")
        with conn.cursor() as cur:
            cur.execute("SELECT id_type, id_value, customer_id FROM identity_map "
                        "WHERE id_type IN ('user_id', 'anonymous_id')")
            pq.write_table(cur.fetch_arrow_table(), mapping)

        def tributary(sql):
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()

        duck = duckdb.connect()
        engines = {
            "tributary": tributary,
            "chdb": lambda sql: [tuple(r) for r in chdb.query(sql, "DataFrame").itertuples(index=False)],
            "duckdb": lambda sql: duck.execute(sql).fetchall(),
        }
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        print(f"data: {args.customers} customers, {loaded} events; best of {args.runs} runs; chDB {chdb.__version__}, DuckDB {duckdb.__version__}")
        print()
        header = f"{'query':55} {'tributary':>10} {'chdb':>10} {'duckdb':>10} {'ratio':>7}  answers"
        print(header)
        print("-" * len(header))
        failed = False
        for q in queries(parquet, mapping):
            times, answers = {}, {}
            for engine, run in engines.items():
                if q[engine] is None:
                    continue
                times[engine], answers[engine] = best_of(args.runs, lambda: run(q[engine]))
            peers = [t for e, t in times.items() if e != "tributary"]
            ratio = times["tributary"] / min(peers)
            agree = all(normalise(a) == normalise(answers["tributary"]) for a in answers.values())
            failed |= not agree
            cell = lambda e: f"{times[e] * 1000:8.0f}ms" if e in times else f"{'-':>10}"
            print(f"{q['name']:55} {cell('tributary')} {cell('chdb')} {cell('duckdb')} {ratio:7.2f}  {'agree' if agree else 'DIFFER'}")
            if not agree:
                for engine, answer in answers.items():
                    print(f"    {engine}: {normalise(answer)[:8]}")
        print()
        print("ratio = Tributary time / fastest peer time (below 1.0: Tributary is faster)")
        conn.close()
        sys.exit(1 if failed else 0)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
