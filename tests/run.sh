#!/usr/bin/env bash
# Runs every Tributary test on a fresh machine: formatting and lints (cargo fmt, clippy with
# -D warnings, no module cycles), Rust unit, SQL logic and end-to-end tests, then
# the Python end-to-end tests (ADBC Flight SQL client, Delta interop, S3-compatible store).
# Installs what it needs: a Python venv outside the clone with the client packages, and the
# Segment Node SDK (npm) for the collection tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary-target}"
VENV="${TRIBUTARY_VENV:-$HOME/.cache/tributary-venv}"
NODE_DIR="${TRIBUTARY_NODE_DIR:-$HOME/.cache/tributary-node}"
PY_PACKAGES=(pyarrow adbc-driver-flightsql adbc-driver-manager deltalake polars pytest "moto[server]" boto3 chdb duckdb segment-analytics-python lifetimes jsonschema cryptography)
# flightsql-dbapi (the SQLAlchemy dialect Superset uses) needs SQLAlchemy 1.4: its own venv.
SQLA_VENV="${TRIBUTARY_SQLA_VENV:-$HOME/.cache/tributary-venv-sqla}"
SQLA_PACKAGES=(flightsql-dbapi "SQLAlchemy<2" pandas)

echo "== house rules: cargo fmt --check, clippy -D warnings, no module cycles"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 tests/module_cycles.py

echo "== build (target dir: $CARGO_TARGET_DIR)"
# The shared target dir keeps every old test binary (up to ~1 GB each) and incremental state;
# left alone it filled a 250 GB disk. What was not rebuilt for a day goes.
if [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x -mtime +1 -delete
  find "$CARGO_TARGET_DIR/debug/incremental" -mindepth 1 -maxdepth 1 -type d -mtime +1 \
    -exec rm -rf {} + 2>/dev/null || true
fi
cargo build --workspace --all-targets --locked

echo "== Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== Python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
if [ ! -x "$SQLA_VENV/bin/python" ]; then
  python3 -m venv "$SQLA_VENV"
fi
"$SQLA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${SQLA_PACKAGES[@]}"

echo "== Segment Node SDK ($NODE_DIR)"
if [ ! -d "$NODE_DIR/node_modules/@segment/analytics-node" ]; then
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent @segment/analytics-node@3
fi

echo "== Python end-to-end tests"
TRIBUTARY_BIN="$CARGO_TARGET_DIR/debug/tributary" TRIBUTARY_NODE_MODULES="$NODE_DIR/node_modules" \
  TRIBUTARY_SQLA_PYTHON="$SQLA_VENV/bin/python" \
  "$VENV/bin/python" -m pytest -q tests/python
