#!/usr/bin/env bash
# Sampling measurements (issue 13 "Measured", BENCHMARKS.md §Sampling): the real stack on
# loopback (collector + frontend, user, order, payment), loaded by `loadgen orders` at a
# steady rate with failures and slow orders, in four phases of DURATION seconds each:
#
#   tail      collector with COLLECTOR_TAIL_SAMPLING (errors, slow >= 1 s, 10% baseline):
#             share of failed and slow traces kept, and kept whole (complete tree); the
#             baseline's kept share of the other traces against its 10% target (±10%);
#             collector CPU per span received.
#   off       the same load and collector without tail sampling: collector CPU per span,
#             beside the tail phase's (same run, same machine).
#   adaptive  COLLECTOR_SAMPLING=adaptive (target TARGET_TPS per operation, interval
#             INTERVAL s); services on parentbased_jaeger_remote polling every second:
#             POST /orders traces sampled per second in each interval against the target
#             (±20% from the third interval on).
#   ratelimit the frontend on parentbased_ratelimiting at RATE_LIMIT traces/s: sampled
#             traces per second over the phase against the rate (±5%).
#
# Prints, and writes to $OUT/sampling.md, one line per measurement with PASS or MISS.
#
#   scripts/bench-sampling.sh                        # 4 phases of 60 s at 100 orders/s
#   DURATION=10 RATE=50 scripts/bench-sampling.sh    # quicker, less precise
#
# Settings (environment): DURATION seconds per phase (60), RATE orders/s (100), FAIL (0.02),
# SLOW (0.01) fractions, TARGET_TPS (5), INTERVAL adaptive seconds (10), RATE_LIMIT (20),
# BASE_PORT (19080: frontend, +1 user, +2 order, +3 payment, +4 ingest, +5 query,
# +6 sampling), PROFILE (release; `debug` skips the release build), OUT
# (target/bench-sampling).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-60}
rate=${RATE:-100}
fail=${FAIL:-0.02}
slow=${SLOW:-0.01}
target_tps=${TARGET_TPS:-5}
interval=${INTERVAL:-10}
rate_limit=${RATE_LIMIT:-20}
base=${BASE_PORT:-19080}
profile=${PROFILE:-release}
out=${OUT:-target/bench-sampling}
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$profile

mkdir -p "$out"
out=$(cd "$out" && pwd)
log_dir=$out/logs
rm -rf "$log_dir" "$out/data"
mkdir -p "$log_dir"

echo "Building $profile binaries..."
if [ "$profile" = release ]; then
  cargo build --release --bins --locked --quiet
else
  cargo build --bins --locked --quiet
fi

p_front=$base p_user=$((base + 1)) p_order=$((base + 2)) p_pay=$((base + 3))
p_ingest=$((base + 4)) p_query=$((base + 5)) p_samp=$((base + 6))
# wait_healthy, cpu_ticks, hz, require_free_ports, pids, collector_pid, stop_all,
# start_demo_services, stop_demo_services.
. scripts/bench-common.sh
require_free_ports $p_front $p_user $p_order $p_pay $p_ingest $p_query $p_samp
trap stop_all EXIT

metric() { # name: a counter of the collector's /metrics
  curl -fsS "http://127.0.0.1:$p_query/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

policies=$out/tail-policies.yaml
cat >"$policies" <<'YAML'
decision_wait: 5s
num_traces: 50000
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 1000}}
  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
YAML

start_collector() { # phase, then extra VAR=value settings
  local phase=$1
  shift
  stop_collector
  rm -rf "$out/data/$phase"
  env COLLECTOR_INGEST_ADDR=127.0.0.1:$p_ingest COLLECTOR_QUERY_ADDR=127.0.0.1:$p_query \
    COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:$p_samp \
    COLLECTOR_DATA_DIR="$out/data/$phase" "$@" \
    "$bin/collector" >>"$log_dir/collector-$phase.log" 2>&1 &
  collector_pid=$!
  wait_healthy "collector-$phase" "http://127.0.0.1:$p_query/health" "$collector_pid"
}

stop_collector() {
  if [ -n "$collector_pid" ]; then
    kill -TERM "$collector_pid" 2>/dev/null || true
    wait "$collector_pid" 2>/dev/null || true
    collector_pid=
  fi
}

start_services() { # phase sampler sampler-arg (the sampler applies to every service)
  stop_demo_services
  start_demo_services "$1" OTEL_TRACES_SAMPLER="$2" OTEL_TRACES_SAMPLER_ARG="$3" \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$p_ingest" OTEL_BSP_SCHEDULE_DELAY=200
}

load() { # phase: DURATION seconds of orders; answers in $out/<phase>.tsv
  "$bin/loadgen" orders --url "http://127.0.0.1:$p_front" --rate "$rate" \
    --duration "$duration" --concurrency 64 --fail "$fail" --slow "$slow" --slow-ms 1500 \
    --out "$out/$1.tsv" --summary-every 5 2>>"$log_dir/loadgen-$1.log"
  tail -n 2 "$log_dir/loadgen-$1.log" >&2
}

# Collector CPU µs per span received over one load phase.
cpu_per_span() { # phase
  local c0 s0 c1 s1
  c0=$(cpu_ticks "$collector_pid")
  s0=$(metric spanline_spans_received_total)
  load "$1"
  sleep 1
  c1=$(cpu_ticks "$collector_pid")
  s1=$(metric spanline_spans_received_total)
  awk -v t=$((c1 - c0)) -v hz="$hz" -v n=$((s1 - s0)) 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}'
}

report=$out/sampling.md
: >"$report"
say() { echo "$*" | tee -a "$report"; }
say "# Sampling ($(date -u +%FT%TZ), $(nproc) CPUs, $profile, $duration s per phase, $rate orders/s, fail $fail, slow $slow)"

echo "== tail: tail sampling on"
start_collector tail COLLECTOR_TAIL_SAMPLING="$policies"
start_services tail parentbased_always_on ""
tail_cpu=$(cpu_per_span tail)
for _ in $(seq 1 200); do
  [ "$(metric spanline_tail_sampling_traces_awaiting_decision)" = 0 ] && break
  sleep 0.1
done
python3 - "$out/tail.tsv" "http://127.0.0.1:$p_query" >>"$report" <<'PY'
import json, sys, urllib.request
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
base = sys.argv[2]
def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return json.load(r)
    except Exception:
        return None
must = [r for r in rows if r[1] in ("fail", "slow") and r[4] != "-"]
kept_whole = 0
for r in must:
    d = get(f"/v1/traces/{r[4]}/sampling")
    tree = get(f"/v1/traces/{r[4]}/tree") if d and d.get("decision") == "kept" else None
    kept_whole += bool(tree and tree.get("complete"))
others = [r for r in rows if r[1] == "ok" and r[4] != "-"][:3000]
kept = sum(1 for r in others if (get(f"/v1/traces/{r[4]}/sampling") or {}).get("decision") == "kept")
share = kept / len(others) if others else 0
ok_must = kept_whole == len(must) and must
print(f"- tail sampling kept {kept_whole}/{len(must)} failed and slow traces whole: {'PASS' if ok_must else 'MISS'}")
print(f"- baseline kept {kept}/{len(others)} = {share:.3f} of the other traces (target 0.100 ±10%): {'PASS' if abs(share - 0.1) <= 0.01 else 'MISS'}")
PY
tail -n 2 "$report"

echo "== off: tail sampling off"
start_collector off
off_cpu=$(cpu_per_span off)
say "- collector CPU per span received: tail sampling on $tail_cpu µs, off $off_cpu µs"

echo "== adaptive"
start_collector adaptive COLLECTOR_SAMPLING=adaptive COLLECTOR_ADAPTIVE_TARGET_TPS="$target_tps" \
  COLLECTOR_ADAPTIVE_INTERVAL="${interval}s" COLLECTOR_ADAPTIVE_INITIAL_PROBABILITY=1
start_services adaptive parentbased_jaeger_remote \
  "endpoint=http://127.0.0.1:$p_samp/api/sampling,pollingIntervalMs=1000,initialSamplingRate=1"
load adaptive
python3 - "$out/adaptive.tsv" "$interval" "$target_tps" >>"$report" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
interval, target = float(sys.argv[2]), float(sys.argv[3])
n = int(max(float(r[0]) for r in rows) // interval) if rows else 0
rates = []
for i in range(n):
    s = sum(1 for r in rows if i * interval <= float(r[0]) < (i + 1) * interval and r[5] == "1")
    rates.append(s / interval)
# Intervals are counted from the first recalculation the services could see.
within = [abs(r - target) <= 0.2 * target for r in rates]
ok = len(within) >= 4 and all(within[3:])
print(f"- adaptive POST /orders traces/s per {interval:.0f} s interval (target {target}): "
      + " ".join(f"{r:.2f}" for r in rates) + f": {'PASS' if ok else 'MISS'} (±20% from the 4th interval)")
PY
tail -n 1 "$report"

echo "== ratelimit"
start_collector ratelimit
start_services ratelimit parentbased_ratelimiting "$rate_limit"
load ratelimit
python3 - "$out/ratelimit.tsv" "$rate_limit" >>"$report" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
limit = float(sys.argv[2])
span = max(float(r[0]) for r in rows) - min(float(r[0]) for r in rows) if rows else 0
sampled = sum(1 for r in rows if r[5] == "1")
got = sampled / span if span else 0
# The bucket starts full (max(rate, 1) traces at once): also shown without the first second.
later = sum(1 for r in rows if r[5] == "1" and float(r[0]) >= 1.0)
steady = later / (span - 1.0) if span > 1.0 else 0
print(f"- rate-limiting sampler: {sampled} traces in {span:.1f} s = {got:.2f}/s, "
      f"{steady:.2f}/s after the first second "
      f"(target {limit}/s ±5%): {'PASS' if abs(got - limit) <= 0.05 * limit else 'MISS'}")
PY
tail -n 1 "$report"
echo "Report: $report"
