"""Starting the Tributary server a benchmark measures: `tributary serve` on loopback ports the
system picks, with a fresh data root; the caller stops it (terminate, then wait)."""

import subprocess
import sys

PREFIXES = {
    "Tributary Flight SQL listening on ": "flight",
    "Tributary HTTP collection API listening on ": "http",
}


def start_server(binary, data, extra=()):
    """Starts the server; returns the process and its addresses ({"flight": …, "http": …})."""
    process = subprocess.Popen(
        [binary, "serve", "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
         "--data", data, *extra],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
    )
    addresses = {}
    for line in process.stdout:
        for prefix, key in PREFIXES.items():
            if line.startswith(prefix):
                addresses[key] = line[len(prefix):].split()[0]
        if len(addresses) == len(PREFIXES):
            return process, addresses
    raise RuntimeError("tributary serve did not start")


def start_with_history(binary, customers, work, prefix):
    """Generates `customers` with a two-year purchase history (`--history-days 730`) under
    `work` (a new temporary directory named `prefix`… without one), starts the server on a
    fresh data root and imports identities and events; returns the process and addresses."""
    import os
    import tempfile

    work = work or tempfile.mkdtemp(prefix=prefix)
    sample = os.path.join(work, "sample")
    subprocess.run([binary, "generate", "--customers", str(customers), "--history-days", "730",
                    "--out", sample], check=True)
    process, addresses = start_server(binary, tempfile.mkdtemp(prefix="data-", dir=work))
    for table in ["identities", "events"]:
        subprocess.run([binary, "import", os.path.join(sample, f"{table}.parquet"),
                        "--table", table, "--server", addresses["flight"]], check=True)
    return process, addresses


def history_benchmark(doc, runs, prefix):
    """The command line of a benchmark over a two-year history (`--tributary`, `--customers`,
    `--runs` defaulting to `runs`, `--work-dir`), and the server started over that history
    ([`start_with_history`]); returns the arguments, the process and its addresses."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tributary", required=True, help="path of the tributary binary")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args()
    process, addresses = start_with_history(args.tributary, args.customers, args.work_dir, prefix)
    return args, process, addresses
