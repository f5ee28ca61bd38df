#!/usr/bin/env bash
# ClickHouse backend benchmark (issue 15; BENCHMARKS.md §6), in one run:
#   1. ingest at saturation (loadgen: OTLP/HTTP protobuf, 500 spans x 10 attributes per
#      request, CONNECTIONS connections), acknowledged spans/s: the collector on a 2-shard
#      ClickHouse 18.16 cluster (Distributed tables, insert_distributed_sync=1), then the
#      collector on SQLite (default settings), RUNS times, interleaved;
#   2. the cluster topped up to SPANS spans (default 1M), then through the collector's query
#      API: trace by id, service + duration search, attribute search: p50 / p99 of SAMPLES
#      queries each (HTTP keep-alive, one client).
# Both shards, the collector and the load generator share this machine's cores: figures are
# noisy; `uptime` is printed with each.
#
#   RUNS=2 DURATION=10 SPANS=1000000 SAMPLES=200 scripts/bench-clickhouse.sh
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-2}
duration=${DURATION:-10}
connections=${CONNECTIONS:-8}
spans_target=${SPANS:-1000000}
samples=${SAMPLES:-200}
work=${BENCH_DIR:-$(mktemp -d /tmp/spanline-bench-ch.XXXXXX)}
target=${CARGO_TARGET_DIR:-target}

scripts/clickhouse.sh install >/dev/null
echo "Building collector and loadgen (release)..."
cargo build --release --locked --quiet -p collector --bin collector
cargo build --release --locked --quiet -p loadgen
collector_bin=$target/release/collector
loadgen=$target/release/loadgen

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port=$(free_port)
qport=$(free_port)

pid=""
stop_collector() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
cleanup() {
  stop_collector
  scripts/clickhouse.sh stop "$work/ch" || true
}
trap cleanup EXIT

echo "Starting a 2-shard ClickHouse cluster in $work/ch"
nodes=$(scripts/clickhouse.sh start "$work/ch" 2)
echo "$nodes"
urls=$(echo "$nodes" | awk '/^node /{print $3}' | paste -sd, -)
ch1=$(echo "$urls" | cut -d, -f1)

log_dir=$work
# wait_port.
. scripts/bench-common.sh

start_collector() { # storage
  rm -rf "$work/data"
  mkdir -p "$work/data"
  COLLECTOR_INGEST_ADDR=127.0.0.1:$port COLLECTOR_QUERY_ADDR=127.0.0.1:$qport \
    COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_DATA_DIR=$work/data COLLECTOR_STORAGE=$1 \
    COLLECTOR_CLICKHOUSE_URL=$urls COLLECTOR_CLICKHOUSE_CLUSTER=spanline_2s \
    COLLECTOR_RETENTION=0 "$collector_bin" >"$log_dir/collector.log" 2>&1 &
  pid=$!
  wait_port "$port" collector "$pid"
  wait_port "$qport" collector "$pid"
}

results=$work/results.txt
: >"$results"
load() { # label seconds
  "$loadgen" ingest --url "http://127.0.0.1:$port/v1/traces" --connections "$connections" \
    --warmup 2 --duration "$2" --pid "$pid" --label "$1" | tee -a "$results"
  echo "uptime: $(uptime)" | tee -a "$results"
}

stored() {
  curl -fsS "$ch1/" --data-binary "SELECT count() FROM spanline.spans_dist"
}

for run in $(seq 1 "$runs"); do
  echo "--- run $run/$runs"
  start_collector clickhouse
  load clickhouse-2shards "$duration"
  stop_collector
  start_collector sqlite
  load sqlite "$duration"
  stop_collector
done

echo "--- topping the cluster up to $spans_target spans"
start_collector clickhouse
while [ "$(stored)" -lt "$spans_target" ]; do
  load clickhouse-topup 10 >/dev/null
done
echo "stored: $(stored) spans; on disk per node:"
for u in $(echo "$urls" | tr , ' '); do
  curl -fsS "$u/" --data-binary "SELECT table, formatReadableSize(sum(bytes_on_disk)), sum(rows) FROM system.parts WHERE database = 'spanline' AND active GROUP BY table FORMAT TSV"
done

echo "--- query latency through the collector (clickhouse, 2 shards), $samples samples each"
ids=$(curl -fsS "$ch1/" --data-binary "SELECT lower(hex(trace_id)) FROM spanline.spans_dist WHERE rand() % 1000 = 0 LIMIT $samples")
python3 - "$qport" "$samples" "$ids" <<'PY' | tee -a "$results"
import http.client, statistics, sys, time, urllib.parse, random
port, samples, ids = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def timed(path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:200]!r}")
    return ms, body
def report(name, paths):
    timed(paths[0])  # warm the connection
    times = sorted(timed(p)[0] for p in paths)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"RESULT query={name} n={len(times)} p50_ms={p(0.5):.1f} p99_ms={p(0.99):.1f} max_ms={times[-1]:.1f}")
random.seed(1)
report("trace_by_id", [f"/v1/traces/{random.choice(ids)}" for _ in range(samples)])
now = time.time()
report("service_duration_1h", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&start_time={now - 3600:.0f}&limit=20" for i in range(samples)])
report("service_duration_all", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&limit=20" for i in range(samples)])
report("attribute", [f"/v1/traces?{urllib.parse.urlencode({'attr.url.path': f'/api/v1/items/{i % 500}'})}&limit=20" for i in range(samples)])
report("attribute_service", [f"/v1/traces?service=svc-{i % 4}&{urllib.parse.urlencode({'attr.url.path': f'/api/v1/items/{i % 500}'})}&limit=20" for i in range(samples)])
PY
echo "uptime: $(uptime)" | tee -a "$results"
stop_collector

echo "--- medians"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT ") and "spans_per_s=" in line:
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        rows.setdefault(kv["label"], []).append(float(kv["spans_per_s"]))
for label, v in rows.items():
    print(f"{label:24s} spans_per_s={statistics.median(v):10.0f} (n={len(v)})")
if "clickhouse-2shards" in rows and "sqlite" in rows:
    print(f"clickhouse / sqlite = {statistics.median(rows['clickhouse-2shards']) / statistics.median(rows['sqlite']):.2f}")
PY
echo "results: $results"
