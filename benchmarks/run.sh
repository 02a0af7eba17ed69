#!/usr/bin/env bash
# Runs a benchmark suite against peers:
#   benchmarks/run.sh funnel [--customers N] [--runs N] [--work-dir DIR]
#   benchmarks/run.sh ingest [--customers N] [--http-events N] [--clients N] [--work-dir DIR]
#   benchmarks/run.sh identity [--customers N] [--runs N] [--probes N] [--work-dir DIR]
#   benchmarks/run.sh roundtrip [--calls N]
#   benchmarks/run.sh models [--customers N] [--runs N] [--work-dir DIR]
#   benchmarks/run.sh segments [--customers N] [--runs N] [--work-dir DIR]
#   benchmarks/run.sh cluster [--customers N] [--runs N] [--slots N] [--work-dir DIR]
# Builds the release binaries, prepares a Python venv with chDB, DuckDB and ADBC, and runs the
# suite's script in benchmarks/peers/. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-}"
case "$suite" in
  funnel|ingest|identity|roundtrip|models|segments|cluster) shift ;;
  -h|--help|"") sed -n '2,9p' "$0" | sed 's/^# *//'; exit 0 ;;
  *) echo "unknown suite '$suite' (suites: funnel, ingest, identity, roundtrip, models, segments, cluster)" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
VENV="${TRIBUTARY_VENV:-$HOME/.cache/tributary-venv}"
extra=()
if [ "$suite" = ingest ]; then
  # Built together with the server so that both share one feature set (one dependency build).
  cargo build --release --locked -p tributary-server -p tributary-benchmarks \
    --features tributary-benchmarks/load --bin tributary --bin ingest-load
  extra=(--load "$CARGO_TARGET_DIR/release/ingest-load")
elif [ "$suite" = identity ]; then
  cargo build --release --locked -p tributary-server -p tributary-benchmarks \
    --bin tributary --bin identity-bench
  extra=(--bench "$CARGO_TARGET_DIR/release/identity-bench")
else
  cargo build --release -p tributary-server --locked
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pyarrow pandas adbc-driver-flightsql adbc-driver-manager chdb duckdb lifetimes
exec "$VENV/bin/python" "benchmarks/peers/$suite.py" --tributary "$CARGO_TARGET_DIR/release/tributary" "${extra[@]}" "$@"
