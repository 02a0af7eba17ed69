"""The cluster benchmark: the funnel suite's Tributary queries on one server, then through
`serve --cluster` on a Ballista cluster of 1 and of 2 executors (`tributary scheduler` and
`tributary executor` processes on this machine), same data root, best of N runs; every answer is
compared with the single server's.

On one machine the executors share its cores: the 1 -> 2 step measures what the split costs
and what a second executor gives when there is spare CPU, not what a cluster of machines gives.
docs/distributed.md models the larger cases from these numbers.

Run it with benchmarks/run.sh cluster (see docs/benchmarks.md)."""

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from funnel import best_of, normalise, queries
from tributary_server import start_server


def free_port(neighbour=False):
    """A free loopback port (with `neighbour`, one whose successor is free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not neighbour:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def wait_for_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def start_cluster(binary, data, executors, slots, work):
    """A scheduler and `executors` executors writing shuffle files under `work`; returns their
    processes and the df:// URL."""
    port = free_port()
    processes = [subprocess.Popen([binary, "scheduler", "--bind", f"127.0.0.1:{port}",
                                   "--data", data],
                                  stdout=subprocess.DEVNULL, stderr=sys.stderr)]
    wait_for_port(port)
    for i in range(executors):
        own = free_port(neighbour=True)
        processes.append(subprocess.Popen(
            [binary, "executor", "--scheduler", f"127.0.0.1:{port}", "--bind", f"127.0.0.1:{own}",
             "--slots", str(slots), "--data", data, "--work-dir", os.path.join(work, str(i))],
            stdout=subprocess.DEVNULL, stderr=sys.stderr))
        wait_for_port(own + 1)
    time.sleep(1)  # executors register with the scheduler after they listen
    return processes, f"df://127.0.0.1:{port}"


def stop(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def run_queries(binary, data, sqls, runs, extra=()):
    """Each query's best time and answer (None, None when it failed)."""
    from adbc_driver_flightsql import dbapi

    server, addresses = start_server(binary, data, extra)
    try:
        with dbapi.connect(f"grpc://{addresses['flight']}", autocommit=True) as conn:
            def run(sql):
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetchall()
            results = []
            for sql in sqls:
                try:
                    elapsed, answer = best_of(runs, lambda: run(sql))
                except Exception as e:  # reported in the table, not hidden
                    print(f"error: {str(e)[:400]}", file=sys.stderr)
                    results.append((None, None))
                    continue
                results.append((elapsed, answer))
            return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary (release)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1,
                        help="task slots per executor")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tributary-bench"))
    args = parser.parse_args()

    sample = os.path.join(args.work_dir, f"sample-{args.customers}")
    parquet = os.path.join(sample, "events.parquet")
    data = os.path.join(args.work_dir, f"cluster-data-{args.customers}")
    if not os.path.exists(parquet):
        subprocess.run([args.tributary, "generate", "--customers", str(args.customers),
                        "--out", sample], check=True)
    if not os.path.exists(data):
        server, addresses = start_server(args.tributary, data)
        try:
            for table in ["events", "identities"]:
                subprocess.run([args.tributary, "import", os.path.join(sample, f"{table}.parquet"),
                                "--table", table, "--server", addresses["flight"]], check=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    with_names = [(q["name"], q["tributary"]) for q in queries(parquet, "unused")]
    sqls = [sql for _, sql in with_names]
    results = {"local": run_queries(args.tributary, data, sqls + ["SELECT count(*) FROM events"],
                                    args.runs)}
    events = results["local"].pop()[1][0][0]
    for executors in (1, 2):
        work = tempfile.mkdtemp(prefix="shuffle-", dir=args.work_dir)  # removed afterwards
        processes, url = start_cluster(args.tributary, data, executors, args.slots, work)
        try:
            results[f"{executors} exec"] = run_queries(
                args.tributary, data, sqls, args.runs, ["--cluster", url])
        finally:
            stop(processes)
            shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"data: {args.customers} customers, {events} events; best of {args.runs} runs; "
          f"{args.slots} slots per executor")
    print()
    header = f"{'query':55} {'local':>9} {'1 exec':>9} {'2 exec':>9} {'2/1':>6}  answers"
    print(header)
    print("-" * len(header))
    failed = False
    for i, (name, _) in enumerate(with_names):
        expected = results["local"][i][1]
        cells, agree = [], True
        for key in ("local", "1 exec", "2 exec"):
            elapsed, answer = results[key][i]
            if elapsed is None:
                cells.append(f"{'ERROR':>9}")
                agree = False
                continue
            cells.append(f"{elapsed * 1000:7.0f}ms")
            agree &= normalise(answer) == normalise(expected)
        one, two = results["1 exec"][i][0], results["2 exec"][i][0]
        step = f"{two / one:6.2f}" if one and two else f"{'-':>6}"
        failed |= not agree
        print(f"{name:55} {' '.join(cells)} {step}  {'agree' if agree else 'DIFFER'}")
    print()
    print("2/1 = time on 2 executors / time on 1 (below 1.0: the second executor helped)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
