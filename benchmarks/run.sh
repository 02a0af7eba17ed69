#!/usr/bin/env bash
# Runs a benchmark suite against peers: benchmarks/run.sh funnel [--customers N] [--runs N]
# Builds the release binary, prepares a Python venv with chDB, DuckDB and ADBC, and runs the
# suite's script in benchmarks/peers/. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-}"
case "$suite" in
  funnel) shift ;;
  -h|--help|"") echo "usage: benchmarks/run.sh funnel [--customers N] [--runs N] [--work-dir DIR]"; exit 0 ;;
  *) echo "unknown suite '$suite' (suites: funnel)" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
VENV="${TRIBUTARY_VENV:-$HOME/.cache/tributary-venv}"
cargo build --release -p tributary-server --locked
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pyarrow pandas adbc-driver-flightsql adbc-driver-manager chdb duckdb
exec "$VENV/bin/python" "benchmarks/peers/$suite.py" --tributary "$CARGO_TARGET_DIR/release/tributary" "$@"
