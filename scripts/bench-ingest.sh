#!/usr/bin/env bash
# Collector ingest benchmark (DESIGN.md §6, BENCHMARKS.md §3.1-§3.3).
#
# In one run, RUNS times each, interleaved:
#   1. our collector (SQLite, default settings) at saturation: OTLP/HTTP protobuf, 500 spans
#      x 10 attributes per request, CONNECTIONS connections; acknowledged spans = committed;
#   2. rotel (PyPI `rotel`, Rust OTLP collector) with its blackhole exporter, same load;
#   3. the raw SQLite insert rate of the same rows (bare table, and with the dedupe index);
# then once: our collector at a fixed RATE (default 100k spans/s) for RATE_SECONDS, for RSS
# (and the COMPARE_BIN binary after it, label `compare@RATE`).
# After each collector run (ours and `compare`), the database's size over the spans it holds
# (`DISK label=… bytes_per_span=…`, after the collector's shutdown checkpoint).
# With COMPARE_BIN=<path to another collector binary> (e.g. one built from main), each run also
# measures that binary under the same load right after ours (label `compare`), for a same-run
# before/after. Prints every result line and the medians. CPU and RSS are sampled from /proc by the load
# generator (cpu_us_per_span: whole process; writer_us_per_span: the SQLite writer thread).
# The load generator runs on the same 2 cores as the receiver; figures are noisy: compare
# medians and ratios from the same run.
#
# LOADGEN_ARGS=--random-trace-ids: W3C-style random trace ids instead of time-ordered ones
# (for ours and `compare`), so the B-trees keyed by trace id take random inserts.
#
#   RUNS=3 DURATION=10 CONNECTIONS=8 scripts/bench-ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
duration=${DURATION:-10}
warmup=${WARMUP:-3}
connections=${CONNECTIONS:-8}
rate=${RATE:-100000}
rate_seconds=${RATE_SECONDS:-30}
work=${BENCH_DIR:-$(mktemp -d /tmp/spanline-bench-ingest.XXXXXX)}
venv=${ROTEL_VENV:-$work/rotel-venv}
target=${CARGO_TARGET_DIR:-target}
port=${BENCH_PORT:-14318}

echo "Building collector and loadgen (release)..."
cargo build --release --locked --quiet -p collector --bin collector
cargo build --release --locked --quiet -p loadgen
collector_bin=$target/release/collector
loadgen=$target/release/loadgen

rotel=""
if [ "${SKIP_ROTEL:-0}" != 1 ]; then
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if "$venv/bin/pip" install --quiet rotel >"$work/pip.log" 2>&1; then
    rotel=$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
    echo "rotel: $("$rotel" --version 2>&1)"
  else
    echo "rotel: pip install failed, see $work/pip.log; measuring without it"
  fi
fi

results=$work/results.txt
: >"$results"
pid=""
stop_target() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap stop_target EXIT
log_dir=$work
# wait_port.
. scripts/bench-common.sh

start_collector() { # [binary]
  rm -rf "$work/data"
  mkdir -p "$work/data"
  COLLECTOR_INGEST_ADDR=127.0.0.1:$port COLLECTOR_QUERY_ADDR=127.0.0.1:$((port + 1)) COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_DATA_DIR=$work/data "${1:-$collector_bin}" >"$log_dir/collector.log" 2>&1 &
  pid=$!
  wait_port "$port" collector "$pid"
}

start_rotel() {
  "$rotel" start --exporter blackhole --otlp-http-endpoint "127.0.0.1:$port" \
    --otlp-grpc-endpoint "127.0.0.1:$((port + 2))" >"$log_dir/rotel.log" 2>&1 &
  pid=$!
  wait_port "$port" rotel "$pid"
}

disk_per_span() { # label: bytes of the stopped collector's database per stored span
  python3 - "$work/data/spanline.db" "$1" <<'EOF' | tee -a "$results"
import os, sqlite3, sys
path, label = sys.argv[1], sys.argv[2]
size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
spans = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
# Schema 16 stores spans in blocks (`span_blocks.span_count` each); older files in `spans`.
if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'span_blocks'").fetchone()[0]:
    spans += conn.execute("SELECT coalesce(sum(span_count), 0) FROM span_blocks").fetchone()[0]
print(f"DISK label={label} bytes_per_span={size / max(spans, 1):.0f} spans={spans} db_bytes={size}")
EOF
}

load() { # label [extra loadgen args]
  local label=$1
  shift
  "$loadgen" ingest --url "http://127.0.0.1:$port/v1/traces" --connections "$connections" \
    --warmup "$warmup" --duration "${LOAD_DURATION:-$duration}" --pid "$pid" --label "$label" "$@" |
    tee -a "$results"
}

for run in $(seq 1 "$runs"); do
  echo "--- run $run/$runs"
  start_collector
  # shellcheck disable=SC2086 # LOADGEN_ARGS: extra loadgen flags, word-split on purpose
  load spanline ${LOADGEN_ARGS:-}
  # Everything acknowledged is stored (ack after commit).
  stop_target
  disk_per_span spanline
  if [ -n "${COMPARE_BIN:-}" ]; then
    start_collector "$COMPARE_BIN"
    # shellcheck disable=SC2086
    load compare ${LOADGEN_ARGS:-}
    stop_target
    disk_per_span compare
  fi
  if [ -n "$rotel" ]; then
    start_rotel
    load rotel-blackhole
    stop_target
  fi
  "$loadgen" sqlite-ceiling --db "$work/ceiling.db" --rows 500000 | tee -a "$results"
  "$loadgen" sqlite-ceiling --db "$work/ceiling.db" --rows 500000 --identity-index |
    tee -a "$results"
done

echo "--- fixed rate: $rate spans/s for ${rate_seconds}s (RSS)"
start_collector
LOAD_DURATION=$rate_seconds load "spanline@$rate" --rate "$rate"
du -sh "$work/data" | sed 's/^/data dir after the fixed-rate run: /' 
stop_target
if [ -n "${COMPARE_BIN:-}" ]; then
  start_collector "$COMPARE_BIN"
  LOAD_DURATION=$rate_seconds load "compare@$rate" --rate "$rate"
  stop_target
fi

echo "--- medians over $runs runs"
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
disk = {}
for line in open(sys.argv[1]):
    if line.startswith("DISK "):
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        disk.setdefault(kv["label"], []).append(float(kv["bytes_per_span"]))
        continue
    if not line.startswith("RESULT "):
        continue
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    rows.setdefault(kv["label"], []).append(kv)
med = {}
for label, rs in rows.items():
    def m(key):
        vals = [float(r[key]) for r in rs if key in r]
        return statistics.median(vals) if vals else None
    rate_key = "spans_per_s" if "spans_per_s" in rs[0] else "rows_per_s"
    med[label] = m(rate_key)
    extra = " ".join(
        f"{k}={m(k):.2f}" for k in ("cpu_pct", "cpu_us_per_span", "writer_us_per_span",
                                   "rss_max_mib", "hwm_mib", "req_p99_ms") if m(k) is not None)
    print(f"{label:32s} {rate_key}={med[label]:10.0f} (n={len(rs)}) {extra}")
for label, vals in disk.items():
    print(f"{label + ' disk':32s} bytes_per_span={statistics.median(vals):.0f} (n={len(vals)})")
if "spanline" in med and "compare" in med:
    print(f"spanline / compare         = {med['spanline'] / med['compare']:.2f}")
if "spanline" in med and "rotel-blackhole" in med:
    print(f"spanline / rotel-blackhole = {med['spanline'] / med['rotel-blackhole']:.2f}")
if "spanline" in med and "sqlite-ceiling" in med:
    print(f"spanline / sqlite-ceiling  = {med['spanline'] / med['sqlite-ceiling']:.2f}")
EOF
echo "results: $results"
