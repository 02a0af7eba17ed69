"""The round-trip benchmark: how long a tiny query takes from a client's call to its answer,
through Tributary's Flight SQL server (ADBC, the client BI tools and Python use), next to
DuckDB answering the same query in-process (no network: the floor a server can approach).

A segment builder's live counts and a BI dashboard's many small queries wait on this figure;
it caught a ~40 ms Nagle/delayed-ACK stall on every small reply once, and is here so that
such a stall cannot come back unseen. Prints p50 and p99 over N calls and the ratio of p50s.

Run it with benchmarks/run.sh roundtrip [--calls N] (see docs/benchmarks.md)."""

import argparse
import statistics
import tempfile
import time

import duckdb
import pyarrow as pa
from adbc_driver_flightsql import dbapi
from tributary_server import start_server

QUERIES = {
    "SELECT 1": "SELECT 1",
    "point lookup (one row of 10,000 by key)": "SELECT name FROM lookup WHERE id = 4242",
}


def timings(call, calls):
    call()  # warm up: the first call plans and connects
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary")
    parser.add_argument("--calls", type=int, default=200, help="calls per query (default 200)")
    args = parser.parse_args()
    table = pa.table({"id": pa.array(range(10_000), pa.int64()), "name": [f"n{i}" for i in range(10_000)]})
    duck = duckdb.connect()
    duck.register("lookup_arrow", table)
    duck.execute("CREATE TABLE lookup AS SELECT * FROM lookup_arrow")
    with tempfile.TemporaryDirectory() as data:
        process, addresses = start_server(args.tributary, data)
        uri = f"grpc://{addresses['flight']}"
        try:
            with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
                cur.adbc_ingest("lookup", table, mode="create")

                def ours(sql):
                    cur.execute(sql)
                    cur.fetchall()

                print(f"{'query':45} {'tributary p50':>14} {'p99':>9} {'duckdb p50':>11} {'ratio':>7}")
                for name, sql in QUERIES.items():
                    t50, t99 = timings(lambda: ours(sql), args.calls)
                    d50, _ = timings(lambda: duck.execute(sql).fetchall(), args.calls)
                    print(f"{name:45} {t50 * 1000:11.2f} ms {t99 * 1000:6.2f} ms {d50 * 1000:8.2f} ms {t50 / d50:6.1f}x")
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
