#!/usr/bin/env bash
# Checks the ClickHouse backend's SQL on current ClickHouse (chDB from PyPI, in-process):
# the Rust test dumps every statement shape, scripts/check-clickhouse-sql.py runs them.
# (ClickHouse 18.16, the other supported version, is checked by the integration tests.)
#
#   scripts/check-clickhouse-sql.sh          # venv in ${CHDB_VENV:-/tmp/spanline-chdb-venv}
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${CHDB_VENV:-/tmp/spanline-chdb-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import chdb' 2>/dev/null; then
  "$venv/bin/pip" install --quiet chdb
fi
out=$(mktemp /tmp/spanline-clickhouse-sql.XXXXXX)
SPANLINE_CLICKHOUSE_SQL_OUT=$out cargo test --locked --quiet -p collector --lib \
  dump_statements_for_the_chdb_check >/dev/null
"$venv/bin/python" scripts/check-clickhouse-sql.py "$out"
rm -f "$out"
