"""The ingest benchmark: how fast events get in, and how soon they can be queried.

- HTTP: the generator's events as Segment `/v1/batch` requests of 100 events, sent by several
  concurrent keep-alive clients (benchmarks/src/bin/ingest_load.rs) to `tributary serve` on
  loopback. Every request is acknowledged only once its events are fsynced in the write-ahead log.
- Freshness: while that load runs (and after it, up to 200 probes), a probe sends one event at a
  time and measures the time from its acknowledgement until a Flight SQL query (ADBC) returns
  it; p50 and p99. The time includes that query, a filter on message_id over all events.
- Flight ingest: the generator's events.parquet read with pyarrow and loaded with ADBC's
  `adbc_ingest` into a tenant's `events`, against DuckDB loading the same Parquet file into a
  table of a database file, in the same run.
- Import memory: `tributary import` of the `--import-customers` sample's events.parquet (100,000
  customers: about 5M events) into a fresh server; the peak resident memory (RSS) of the
  client and of the server, against issue 14's target of under 1 GiB each.

Run it with benchmarks/run.sh ingest (see docs/benchmarks.md)."""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from tributary_server import start_server

BATCH = 100


def iso(value):
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def write_bodies(parquet, path, events):
    """Turns the first `events` generated events into Segment batch bodies, one per line."""
    import pyarrow.parquet as pq

    table = pq.read_table(parquet).slice(0, events)
    rows = table.to_pylist()
    with open(path, "w") as out:
        for start in range(0, len(rows), BATCH):
            batch = []
            for row in rows[start:start + BATCH]:
                message = {
                    "type": row["type"] or "track",
                    "messageId": "http-" + row["message_id"],
                    "timestamp": iso(row["timestamp"]),
                    "anonymousId": row["anonymous_id"],
                    "userId": row["user_id"],
                    "context": json.loads(row["context"]) if row["context"] else {},
                }
                if message["type"] == "track":
                    message["event"] = row["event"]
                    message["properties"] = json.loads(row["properties"]) if row["properties"] else {}
                elif message["type"] in ("page", "screen"):
                    message["name"] = row["event"]
                batch.append(message)
            out.write(f"{len(batch)}\t{json.dumps({'batch': batch})}\n")
    return len(rows)


class FreshnessProbe(threading.Thread):
    """Sends one event at a time; measures acknowledgement → visible in a Flight SQL query."""

    def __init__(self, http, conn):
        super().__init__(daemon=True)
        self.http, self.conn = http, conn
        self.stop = threading.Event()
        self.latencies = []

    def run(self):
        number = 0
        while not self.stop.is_set():
            message_id = f"probe-{number}"
            body = json.dumps({"event": "Probe", "userId": "probe", "messageId": message_id})
            request = urllib.request.Request(f"{self.http}/v1/track", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            acknowledged = time.perf_counter()
            while True:
                with self.conn.cursor() as cur:
                    cur.execute(f"SELECT count(*) FROM events WHERE message_id = '{message_id}'")
                    if cur.fetchone()[0] == 1:
                        break
            self.latencies.append(time.perf_counter() - acknowledged)
            number += 1
            time.sleep(0.02)


def peak_rss_mib(pid):
    """The peak resident memory of the live process `pid` so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def import_peaks(binary, parquet, work):
    """`tributary import` of `parquet` into `events` of a fresh server: (seconds, rows, client
    peak RSS MiB, server peak RSS MiB)."""
    import pyarrow.parquet as pq

    server, addresses = start_server(binary, tempfile.mkdtemp(prefix="import-", dir=work))
    try:
        started = time.perf_counter()
        errors = tempfile.TemporaryFile(mode="w+")
        client = subprocess.Popen([binary, "import", parquet, "--table", "events",
                                   "--server", addresses["flight"]],
                                  stdout=subprocess.DEVNULL, stderr=errors, text=True)
        # Polled: the peak of the process's own memory (VmHWM, reset by exec). A child's
        # ru_maxrss would also count the forked image of this Python process before its exec.
        client_peak = 0.0
        while client.poll() is None:
            try:
                client_peak = max(client_peak, peak_rss_mib(client.pid))
            except (OSError, RuntimeError):
                pass  # it exited between the check and the read
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        if client.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"tributary import failed: {errors.read()}")
        server_peak = peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    rows = pq.ParquetFile(parquet).metadata.num_rows
    return seconds, rows, client_peak, server_peak


def percentile(values, p):
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * p)] if ordered else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary (release)")
    parser.add_argument("--load", required=True, help="path of the ingest-load binary (release)")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--http-events", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--import-customers", type=int, default=100_000,
                        help="customers of the sample whose events.parquet is imported (memory)")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tributary-bench"))
    args = parser.parse_args()

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from adbc_driver_flightsql import dbapi

    sample = os.path.join(args.work_dir, f"sample-{args.customers}")
    parquet = os.path.join(sample, "events.parquet")
    if not os.path.exists(parquet):
        subprocess.run([args.tributary, "generate", "--customers", str(args.customers), "--out", sample], check=True)
    run_dir = tempfile.mkdtemp(prefix="ingest-", dir=args.work_dir)
    bodies = os.path.join(run_dir, "bodies.txt")
    http_events = write_bodies(parquet, bodies, args.http_events)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"DuckDB {duckdb.__version__}; {args.clients} HTTP clients, {BATCH} events per request")
    print()

    server, addresses = start_server(args.tributary, os.path.join(run_dir, "data"))
    try:
        conn = dbapi.connect(f"grpc://{addresses['flight']}", autocommit=True)
        probe = FreshnessProbe(f"http://{addresses['http']}", conn)
        probe.start()
        load = subprocess.run([args.load, "--url", f"http://{addresses['http']}", "--bodies", bodies,
                               "--clients", str(args.clients)], capture_output=True, text=True)
        # Enough probes for a p99: the probe goes on (against what the load left) up to 200.
        deadline = time.time() + 60
        while len(probe.latencies) < 200 and time.time() < deadline:
            time.sleep(0.1)
        probe.stop.set()
        probe.join(timeout=60)
        if load.returncode != 0:
            raise RuntimeError(f"ingest-load failed: {load.stderr}")
        http = json.loads(load.stdout)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events WHERE message_id LIKE 'http-%'")
            stored = cur.fetchone()[0]
        assert stored == http_events == http["events"], (stored, http_events, http)

        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE bulk")
        started = time.perf_counter()
        table = pq.read_table(parquet)
        # Flight messages stay under the client's 16 MiB limit.
        table = pa.Table.from_batches(table.to_batches(max_chunksize=65_536))
        with conn.cursor() as cur:
            loaded = cur.adbc_ingest("events", table, mode="append", catalog_name="bulk")
        flight_seconds = time.perf_counter() - started
        assert loaded == table.num_rows, (loaded, table.num_rows)
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=60)

    big_sample = os.path.join(args.work_dir, f"sample-{args.import_customers}")
    big_parquet = os.path.join(big_sample, "events.parquet")
    if not os.path.exists(big_parquet):
        subprocess.run([args.tributary, "generate", "--customers", str(args.import_customers),
                        "--out", big_sample], check=True)
    import_seconds, import_rows, client_peak, server_peak = import_peaks(
        args.tributary, big_parquet, run_dir)

    duck_file = os.path.join(run_dir, "duck.db")
    started = time.perf_counter()
    duck = duckdb.connect(duck_file)
    duck.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{parquet}')")
    duck_rows = duck.execute("SELECT count(*) FROM events").fetchone()[0]
    duck.close()
    duck_seconds = time.perf_counter() - started
    shutil.rmtree(run_dir, ignore_errors=True)

    flight_rate = loaded / flight_seconds
    duck_rate = duck_rows / duck_seconds
    print(f"{'measure':52} {'value':>14} {'target':>12}")
    print("-" * 80)
    print(f"{'HTTP /v1/batch, events/s':52} {http['events_per_second']:>14,.0f} {'>= 100,000':>12}")
    print(f"{'  request latency p50 / p99 (ms)':52} {http['request_p50_ms']:>6.1f} / {http['request_p99_ms']:<6.1f}")
    print(f"{'  events, requests, 503 retries':52} {http['events']:>6} {http['requests']:>6} {http['retried_503']:>4}")
    print(f"{'freshness ack -> visible p50 (ms)':52} {percentile(probe.latencies, 0.5) * 1000:>14.1f}")
    print(f"{'freshness ack -> visible p99 (ms)':52} {percentile(probe.latencies, 0.99) * 1000:>14.1f} {'< 1,000':>12}")
    print(f"{'  probes':52} {len(probe.latencies):>14}")
    print(f"{'Flight ingest (ADBC adbc_ingest), rows/s':52} {flight_rate:>14,.0f} {'>= 1,000,000':>12}")
    print(f"{'DuckDB CREATE TABLE AS read_parquet, rows/s':52} {duck_rate:>14,.0f}")
    print(f"{'ratio Tributary / DuckDB load rate':52} {flight_rate / duck_rate:>14.2f}")
    print(f"  ({loaded} rows: Tributary {flight_seconds:.2f} s, DuckDB {duck_seconds:.2f} s)")
    print(f"{'tributary import, peak RSS of the client (MiB)':52} {client_peak:>14,.0f} {'< 1,024':>12}")
    print(f"{'tributary import, peak RSS of the server (MiB)':52} {server_peak:>14,.0f} {'< 1,024':>12}")
    print(f"  ({import_rows} rows from {os.path.basename(big_parquet)} of {args.import_customers} "
          f"customers in {import_seconds:.1f} s, one commit)")


if __name__ == "__main__":
    main()
