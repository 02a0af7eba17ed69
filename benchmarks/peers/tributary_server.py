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
