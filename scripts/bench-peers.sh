#!/usr/bin/env bash
# Cost of routing by TraceId between collectors (COLLECTOR_PEERS, docs/scale.md).
#
# In one run, RUNS times each, interleaved, the same OTLP/HTTP protobuf load as
# bench-ingest.sh (500 spans x 10 attributes per request, 10 spans per trace, fresh ids):
#   one  — one collector, CONNECTIONS connections;
#   two  — two collectors with COLLECTOR_PEERS, CONNECTIONS/2 connections to each; about half
#          of every request belongs to the other collector and is forwarded to it before the
#          answer (acknowledged = committed at the owner).
# STORAGE=sqlite (default; each collector has its own file) or memory (isolates the routing
# cost from the writer). Everything shares the machine's cores: this measures the price of
# forwarding (spans/s, CPU µs per span summed over the collectors), not a scale-out speed-up.
#
#   RUNS=3 DURATION=10 STORAGE=memory scripts/bench-peers.sh   (SKIP_BUILD=1: use target/release as is)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-8}
storage=${STORAGE:-sqlite}
work=${BENCH_DIR:-$(mktemp -d /tmp/spanline-bench-peers.XXXXXX)}
target=${CARGO_TARGET_DIR:-target}
base=${BENCH_PORT:-15318}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "Building collector and loadgen (release)..."
  cargo build --release --locked --quiet -p collector -p loadgen --bins
fi
collector_bin=$target/release/collector
loadgen=$target/release/loadgen

results=$work/results.txt
: >"$results"
log_dir=$work
# pids, stop_all, wait_port, cpu_ticks, hz.
. scripts/bench-common.sh
trap stop_all EXIT

start() { # index peers-list
  local i=$1 ingest=$((base + 10 * $1))
  rm -rf "$work/data$i" && mkdir -p "$work/data$i"
  COLLECTOR_INGEST_ADDR=127.0.0.1:$ingest COLLECTOR_QUERY_ADDR=127.0.0.1:$((ingest + 1)) \
    COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_DATA_DIR=$work/data$i COLLECTOR_STORAGE=$storage \
    COLLECTOR_PEERS=$2 COLLECTOR_PEER_SELF=http://127.0.0.1:$ingest \
    "$collector_bin" >"$log_dir/collector$i.log" 2>&1 &
  pids+=($!)
  wait_port "$ingest" "collector$i" "$!"
}

load() { # label index connections
  "$loadgen" ingest --url "http://127.0.0.1:$((base + 10 * $2))/v1/traces" --connections "$3" \
    --warmup "$warmup" --duration "$duration" --label "$1"
}

measure() { # label: runs the load against the started collectors, prints one RESULT line
  local label=$1 n=${#pids[@]} before after out total=0 failed=0 line
  before=$(cpu_ticks "${pids[@]}")
  if [ "$n" = 1 ]; then
    out=$(load "$label" 0 "$connections")
  else
    out=$( (load "$label" 0 $((connections / 2)) & load "$label" 1 $((connections / 2)) & wait) )
  fi
  after=$(cpu_ticks "${pids[@]}")
  for line in $(echo "$out" | grep -o 'acked_spans=[0-9]*'); do total=$((total + ${line#*=})); done
  for line in $(echo "$out" | grep -o 'failed_requests=[0-9]*'); do failed=$((failed + ${line#*=})); done
  # CPU over warm-up + measured time; spans over the measured time only: µs/span is an upper bound.
  python3 - "$label" "$total" "$failed" "$duration" "$((after - before))" "$hz" "$warmup" <<'PY' | tee -a "$results"
import sys
label, spans, failed, secs, ticks, hz, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
cpu_s = ticks / hz
rate = spans / secs
print(f"RESULT label={label} spans_per_s={rate:.0f} failed_requests={failed} "
      f"collectors_cpu_pct={100 * cpu_s / (secs + warm):.0f} "
      f"collectors_cpu_us_per_span={1e6 * cpu_s * secs / (secs + warm) / max(spans, 1):.1f}")
PY
}

for run in $(seq 1 "$runs"); do
  echo "--- run $run/$runs (storage $storage)"
  start 0 ""
  measure one
  stop_all
  peers="http://127.0.0.1:$base,http://127.0.0.1:$((base + 10))"
  start 0 "$peers"
  start 1 "$peers"
  measure two
  for i in 0 1; do
    curl -fsS "http://127.0.0.1:$((base + 10 * i + 1))/metrics" | grep -E '^spanline_peer_(spans_forwarded|spans_from_peers|forward_failures)_total' | sed "s/^/collector $i: /"
  done
  stop_all
done

echo "--- medians over $runs runs"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    rows.setdefault(kv["label"], []).append(kv)
for label, rs in rows.items():
    m = lambda k: statistics.median(float(r[k]) for r in rs)
    print(f"{label}: spans_per_s={m('spans_per_s'):.0f} collectors_cpu_pct={m('collectors_cpu_pct'):.0f} "
          f"collectors_cpu_us_per_span={m('collectors_cpu_us_per_span'):.1f}")
if "one" in rows and "two" in rows:
    ratio = statistics.median(float(r["spans_per_s"]) for r in rows["two"]) / statistics.median(float(r["spans_per_s"]) for r in rows["one"])
    print(f"two/one spans_per_s = {ratio:.2f}")
PY
