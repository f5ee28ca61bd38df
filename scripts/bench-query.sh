#!/usr/bin/env bash
# Query latency at scale (DESIGN.md §6, BENCHMARKS.md "Collector / Query at scale").
#
# Fills SQLite stores with demo-shaped traces (10 spans, 4 services, the demo's attributes,
# time-ordered trace ids) straight through SqliteStore, 50k spans per write, then times trace-by-id and searches through the query router
# (p50 / p99 / max of SAMPLES queries each). Databases are kept in BENCH_DIR and reused:
# a second run only tops them up.
#
#   SIZES="1000000 10000000" SAMPLES=200 scripts/bench-query.sh
#   BENCH_ID_ORDER=random SIZES=1000000 scripts/bench-query.sh   # W3C-style random trace ids
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=${SIZES:-1000000}
dir=${BENCH_DIR:-/tmp/spanline-bench-query}
mkdir -p "$dir"

cargo test --release --locked --quiet -p collector --test query_bench --no-run
for n in $sizes; do
  # `demo-`: databases of the earlier bench (`q<n>.db`) are not topped up.
  # BENCH_ID_ORDER=random: random-looking trace ids instead of time-ordered ones.
  db=$dir/demo-${BENCH_ID_ORDER:+$BENCH_ID_ORDER-}$n.db
  echo "--- $n spans ($db)"
  BENCH_SPANS=$n BENCH_DB=$db BENCH_SAMPLES=${SAMPLES:-200} \
    cargo test --release --locked --quiet -p collector --test query_bench -- \
    --ignored --nocapture --test-threads 1
done
