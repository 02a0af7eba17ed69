"""The identity benchmark: a full identity resolution of the generator's identity graph by
Tributary against DuckDB computing the same components with iterative SQL, in the same run on
the same data, and the accuracy of each against the generator's ground truth.

- Data: `tributary generate` (default 100k customers): each logged-in customer's devices,
  user id, phone, email and sometimes a WeChat OpenID, as bind edges in identities.parquet;
  1% of phones are released and re-bound to another member (unbind, then bind); 0.5% of all
  customers share the cashiers' placeholder phone 00000000000. identity_truth.parquet says
  which person each identifier belongs to.
- Tributary, server: identities.parquet imported into a tenant over Flight SQL (each batch
  resolved incrementally as it is acknowledged), then `CALL rebuild_identity()` timed over
  ADBC: a full batch resolution that scans the table and rebuilds every customer. Best of 3.
- Tributary, in process (benchmarks/src/bin/identity_bench.rs): the same resolution with the
  tributary-identity crate alone, best of 3; then one-edge incremental updates (a new device, a
  link between two customers, an unbind that splits) timed one by one; and a check that the
  incremental result equals a batch recomputation.
- DuckDB: the same rules in SQL (the latest action of each pair; blocked values dropped), then
  connected components by label propagation until no label changes, from the Parquet read.
  Best of 3.
- Accuracy over pairs of identifiers: correctly merged (same person, same customer), wrongly
  merged (different persons, same customer) and missed (same person, different customers).

Run it with benchmarks/run.sh identity (see docs/benchmarks.md)."""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from tributary_server import start_server

BLOCKED = ["", "null", "undefined", "none", "nil", "unknown", "anonymous", "[object object]",
           "nan", "-1", "0"]


def duckdb_components(duck, identities):
    """Bound, unblocked pairs; then min-label propagation to a fixed point. Returns iterations."""
    blocked = ", ".join(f"'{v}'" for v in BLOCKED)
    value = "split_part(n, chr(31), 2)"
    duck.execute(f"""
        CREATE OR REPLACE TABLE raw AS
        SELECT least(id_type || chr(31) || id_value, linked_type || chr(31) || linked_value) AS a,
               greatest(id_type || chr(31) || id_value, linked_type || chr(31) || linked_value) AS b,
               observed_at, action
        FROM read_parquet('{identities}');
        CREATE OR REPLACE TABLE pairs AS
        SELECT a, b FROM raw GROUP BY a, b
        HAVING max(observed_at) FILTER (WHERE action = 'bind')
             > coalesce(max(observed_at) FILTER (WHERE action = 'unbind'), TIMESTAMPTZ '1970-01-01');
        CREATE OR REPLACE TABLE nodes AS
        SELECT n, row_number() OVER () AS id FROM (SELECT a AS n FROM pairs UNION SELECT b FROM pairs)
        WHERE lower(trim({value})) NOT IN ({blocked})
          AND NOT regexp_matches({value}, '^\\+?(0{{5,}}|1{{5,}}|2{{5,}}|3{{5,}}|4{{5,}}|5{{5,}}|6{{5,}}|7{{5,}}|8{{5,}}|9{{5,}})$');
        CREATE OR REPLACE TABLE links AS
        SELECT x.id AS src, y.id AS dst FROM pairs JOIN nodes x ON x.n = a JOIN nodes y ON y.n = b
        UNION ALL
        SELECT y.id, x.id FROM pairs JOIN nodes x ON x.n = a JOIN nodes y ON y.n = b;
        CREATE OR REPLACE TABLE labels AS SELECT id, id AS label FROM nodes;
    """)
    iterations = 0
    while True:
        iterations += 1
        duck.execute("""
            CREATE OR REPLACE TABLE next AS
            SELECT l.id, least(l.label, coalesce(min(m.label), l.label)) AS label
            FROM labels l LEFT JOIN links ON links.src = l.id LEFT JOIN labels m ON m.id = links.dst
            GROUP BY l.id, l.label""")
        changed = duck.execute(
            "SELECT count(*) FROM next JOIN labels USING (id) WHERE next.label <> labels.label").fetchone()[0]
        duck.execute("CREATE OR REPLACE TABLE labels AS SELECT * FROM next")
        if changed == 0:
            return iterations


def accuracy(duck, truth, predicted_sql):
    """(correct, wrong, missed) pairs of identifiers against the ground truth."""
    duck.execute(f"""
        CREATE OR REPLACE TABLE judged AS
        SELECT t.person, coalesce(p.customer, t.id_type || ':' || t.id_value) AS customer
        FROM read_parquet('{truth}') t
        LEFT JOIN ({predicted_sql}) p ON p.id_type = t.id_type AND p.id_value = t.id_value""")
    pairs = lambda group: duck.execute(  # noqa: E731
        f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM judged GROUP BY {group})"
    ).fetchone()[0]
    correct, truth_pairs, predicted_pairs = pairs("person, customer"), pairs("person"), pairs("customer")
    return int(correct), int(predicted_pairs - correct), int(truth_pairs - correct)


def best_of(runs, action):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary (release)")
    parser.add_argument("--bench", required=True, help="path of the identity-bench binary (release)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probes", type=int, default=30_000, help="one-edge incremental updates")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tributary-bench"))
    args = parser.parse_args()

    import duckdb
    from adbc_driver_flightsql import dbapi

    sample = os.path.join(args.work_dir, f"sample-{args.customers}")
    identities = os.path.join(sample, "identities.parquet")
    truth = os.path.join(sample, "identity_truth.parquet")
    if not os.path.exists(truth):
        subprocess.run([args.tributary, "generate", "--customers", str(args.customers), "--out", sample],
                       check=True, stdout=subprocess.DEVNULL)
    run_dir = tempfile.mkdtemp(prefix="identity-", dir=args.work_dir)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"DuckDB {duckdb.__version__}; {args.customers:,} customers; best of {args.runs}")
    print()

    map_file = os.path.join(run_dir, "map.parquet")
    bench = subprocess.run([args.bench, identities, map_file, str(args.probes)],
                           capture_output=True, text=True, check=True)
    inprocess = json.loads(bench.stdout)

    server, addresses = start_server(
        args.tributary, os.path.join(run_dir, "data"), ["--profile-refresh-secs", "0"])
    address = addresses["flight"]
    try:
        started = time.perf_counter()
        subprocess.run([args.tributary, "import", identities, "--table", "identities",
                        "--server", address], check=True, stdout=subprocess.DEVNULL)
        import_seconds = time.perf_counter() - started
        conn = dbapi.connect(f"grpc://{address}", autocommit=True)

        def rebuild():
            with conn.cursor() as cur:
                cur.execute("CALL rebuild_identity()")
                return cur.fetchone()[0]

        server_seconds, customers = best_of(args.runs, rebuild)
        with conn.cursor() as cur:
            cur.execute("SELECT id_type, id_value, customer_id FROM identity_map")
            served_map = cur.fetch_arrow_table()
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=60)

    duck = duckdb.connect()
    duck_seconds, iterations = best_of(args.runs, lambda: duckdb_components(duck, identities))
    duck.register("served_map", served_map)
    served = accuracy(duck, truth, "SELECT id_type, id_value, customer_id AS customer FROM served_map")
    ducked = accuracy(duck, truth, """
        SELECT split_part(n, chr(31), 1) AS id_type, split_part(n, chr(31), 2) AS id_value,
               CAST(label AS VARCHAR) AS customer FROM labels JOIN nodes USING (id)""")
    placeholder = duck.execute(f"""
        SELECT count(DISTINCT m.customer_id) FROM read_parquet('{identities}') i
        JOIN served_map m ON m.id_type = i.id_type AND m.id_value = i.id_value
        WHERE i.linked_value = '00000000000' AND i.action = 'bind'""").fetchone()[0]
    sharing = duck.execute(
        f"SELECT count(DISTINCT id_value) FROM read_parquet('{identities}') "
        "WHERE linked_value = '00000000000' AND action = 'bind'").fetchone()[0]
    os.system(f"rm -rf '{run_dir}'")

    print(f"{inprocess['edges']:,} edge records, {inprocess['identifiers']:,} identifiers, "
          f"{customers:,} customers; DuckDB needed {iterations} label-propagation rounds")
    print()
    print(f"{'full resolution':52} {'seconds':>10} {'DuckDB / this':>14}")
    print("-" * 78)
    print(f"{'Tributary server, CALL rebuild_identity() over ADBC':52} {server_seconds:>10.3f} {duck_seconds / server_seconds:>13.1f}x")
    print(f"{'Tributary in process (tributary-identity crate)':52} {inprocess['batch_seconds']:>10.3f} {duck_seconds / inprocess['batch_seconds']:>13.1f}x")
    print(f"{'DuckDB, same rules, iterative SQL':52} {duck_seconds:>10.3f}")
    print(f"{'(Tributary import of identities.parquet, incremental)':52} {import_seconds:>10.3f}")
    print()
    print(f"{'accuracy (pairs of identifiers)':40} {'correct':>12} {'wrong':>10} {'missed':>10}")
    print("-" * 78)
    print(f"{'Tributary':40} {served[0]:>12,} {served[1]:>10,} {served[2]:>10,}")
    print(f"{'DuckDB':40} {ducked[0]:>12,} {ducked[1]:>10,} {ducked[2]:>10,}")
    print(f"placeholder phone 00000000000: bound to {sharing} user ids, which stay {placeholder} customers")
    print()
    print(f"{'one-edge incremental update (µs)':40} {'mean':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    print("-" * 78)
    for key, label in [("new_device", "new device of a known user"),
                       ("link_two_customers", "link between two customers"),
                       ("unbind", "unbind (recomputes the part)")]:
        t = inprocess[key]
        print(f"{label:40} {t['mean_us']:>8.1f} {t['p50_us']:>8.1f} {t['p99_us']:>8.1f} {t['max_us']:>8.1f}")
    print(f"incremental result equals batch recomputation: {inprocess['incremental_equals_batch']}")


if __name__ == "__main__":
    main()
