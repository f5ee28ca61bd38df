#!/usr/bin/env bash
# End-to-end tracing overhead (DESIGN.md §6, BENCHMARKS.md §2): the real stack (release
# binaries: collector + frontend, user, order, payment on loopback), loaded through the
# frontend with wrk, once with OTEL_TRACES_SAMPLER=always_on and once with always_off,
# alternating (on/off, then off/on, ...) so drift on a shared machine hits both alike.
# Services are restarted for every run; the collector runs throughout.
#
# Prints, and writes to $OUT/overhead.md, the medians per mode and the ratios
# traced/untraced of throughput, p50 and p99 latency, and service CPU per request.
#
#   scripts/bench-overhead.sh                         # 5 rounds of 2 x 10 s
#   ROUNDS=3 DURATION=5 scripts/bench-overhead.sh     # quicker
#
# Settings (environment): ROUNDS (5), DURATION seconds per run (10), WARMUP seconds (3),
# CONNECTIONS (32), THREADS wrk threads (2), BASE_PORT (18080: frontend, +1 user,
# +2 order, +3 payment, +4 collector ingest, +5 collector query), LATENCY_MS simulated
# database/provider latency in user/order/payment (0: CPU-bound, the demo's 12/18/40 ms
# would make throughput a function of latency and hide any CPU cost), OUT
# (target/bench-overhead), SINK=1 to export to a receive-and-discard OTLP endpoint (a few
# lines of Python) instead of the collector, which on a 2-CPU machine otherwise takes its
# share of the same CPUs: that isolates the services' own tracing cost (spans, encoding,
# export) from the collector's ingest. Installs wrk with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-5}
duration=${DURATION:-10}
warmup=${WARMUP:-3}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
base=${BASE_PORT:-18080}
latency=${LATENCY_MS:-0}
out=${OUT:-target/bench-overhead}
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/release

mkdir -p "$out"
out=$(cd "$out" && pwd)
log_dir=$out/logs
rm -rf "$log_dir" "$out/data"
mkdir -p "$log_dir" "$out/data"

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found; installing it (apt-get)..."
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq wrk >/dev/null
fi

echo "Building release binaries..."
cargo build --release --bins --locked --quiet

p_front=$base p_user=$((base + 1)) p_order=$((base + 2)) p_pay=$((base + 3))
p_ingest=$((base + 4)) p_query=$((base + 5))
# wait_healthy, cpu_ticks, hz, require_free_ports, pids, collector_pid, stop_all,
# start_demo_services, stop_demo_services.
. scripts/bench-common.sh
require_free_ports $p_front $p_user $p_order $p_pay $p_ingest $p_query
trap stop_all EXIT

if [ "${SINK:-0}" = 1 ]; then
  receiver="OTLP sink (receive and discard)"
  python3 - "$p_ingest" >>"$log_dir/sink.log" 2>&1 <<'PY' &
import http.server, sys

class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.do_POST()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
  collector_pid=$!
  wait_healthy sink "http://127.0.0.1:$p_ingest/" "$collector_pid"
else
  receiver="collector (SQLite)"
  COLLECTOR_INGEST_ADDR=127.0.0.1:$p_ingest COLLECTOR_QUERY_ADDR=127.0.0.1:$p_query COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_DATA_DIR=$out/data "$bin/collector" >>"$log_dir/collector.log" 2>&1 &
  collector_pid=$!
  wait_healthy collector "http://127.0.0.1:$p_query/health" "$collector_pid"
fi

export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$p_ingest
export USER_DB_LATENCY_MS=$latency ORDER_DB_LATENCY_MS=$latency
export PAYMENT_PROVIDER_LATENCY_MS=$latency

start_services() { # sampler run-name
  pids=()
  start_demo_services "$2" OTEL_TRACES_SAMPLER="$1"
}

lua=$out/order.lua
cat >"$lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"user_id":"1","product":"Laptop","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
LUA

# wrk latency ("812.00us", "1.20ms", "1.02s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /m$/) { sub(/m$/, "", v); print v * 60000 }
    else { sub(/s$/, "", v); print v * 1000 } }'
}

url=http://127.0.0.1:$p_front/orders
results=$out/runs.tsv
printf 'round\tmode\trps\tp50_ms\tp99_ms\tnon2xx\tsvc_cpu_us_per_req\tcollector_cpu_s\n' >"$results"
echo "Load: wrk -t$threads -c$connections -d${duration}s POST /orders (after ${warmup}s warm-up);"
echo "simulated latency ${latency} ms; $rounds rounds; logs in $log_dir"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then modes="always_on always_off"; else modes="always_off always_on"; fi
  for mode in $modes; do
    run=r$round-$mode
    start_services "$mode" "$run"
    wrk -t"$threads" -c"$connections" -d"${warmup}s" -s "$lua" "$url" >/dev/null
    svc0=$(cpu_ticks "${pids[@]}")
    col0=$(cpu_ticks "$collector_pid")
    wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$lua" "$url" >"$log_dir/$run.wrk"
    svc1=$(cpu_ticks "${pids[@]}")
    col1=$(cpu_ticks "$collector_pid")
    stop_demo_services
    w=$log_dir/$run.wrk
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$w")
    reqs=$(awk '/requests in/ {print $1}' "$w")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$w")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$w")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$w")
    non2xx=${non2xx:-0}
    svc_us=$(awk -v t=$((svc1 - svc0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    col_s=$(awk -v t=$((col1 - col0)) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$rps" "$p50" "$p99" "$non2xx" \
      "$svc_us" "$col_s" >>"$results"
    printf '  round %s %-10s %9s req/s  p50 %7s ms  p99 %7s ms  non-2xx %s  service CPU %s us/req  collector CPU %s s\n' \
      "$round" "$mode" "$rps" "$p50" "$p99" "$non2xx" "$svc_us" "$col_s"
  done
done

# Spans the services dropped (queue full) would flatter the traced runs: count them from
# the summary each service prints at shutdown when it dropped any.
dropped=$(cat "$log_dir"/*-always_on-*.log 2>/dev/null |
  sed -n 's/.*span export stopped; exported \([0-9]*\), dropped \([0-9]*\).*/\2/p' |
  awk '{s += $1} END {print s + 0}')

median() { # column mode
  awk -F'\t' -v c="$1" -v m="$2" 'NR > 1 && $2 == m {print $c}' "$results" | sort -g |
    awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

on_rps=$(median 3 always_on) off_rps=$(median 3 always_off)
on_p50=$(median 4 always_on) off_p50=$(median 4 always_off)
on_p99=$(median 5 always_on) off_p99=$(median 5 always_off)
on_cpu=$(median 7 always_on) off_cpu=$(median 7 always_off)
on_col=$(median 8 always_on) off_col=$(median 8 always_off)

summary=$out/overhead.md
{
  echo "| metric (median of $rounds runs each) | always_on (traced) | always_off (untraced) | traced / untraced |"
  echo "|---|---|---|---|"
  echo "| throughput, req/s | $on_rps | $off_rps | $(ratio "$on_rps" "$off_rps") |"
  echo "| p50 latency, ms | $on_p50 | $off_p50 | $(ratio "$on_p50" "$off_p50") |"
  echo "| p99 latency, ms | $on_p99 | $off_p99 | $(ratio "$on_p99" "$off_p99") |"
  echo "| CPU of the 4 services per request, us | $on_cpu | $off_cpu | $(ratio "$on_cpu" "$off_cpu") |"
  echo "| $receiver CPU during the run, s | $on_col | $off_col | |"
  echo
  echo "wrk -t$threads -c$connections -d${duration}s --latency, POST /orders, simulated latency ${latency} ms,"
  echo "$rounds rounds alternating; spans to the $receiver; commit $(git rev-parse --short HEAD); $(nproc) CPUs"
  echo "($(uptime | sed 's/.*load average: /load average /') at the end); spans dropped by the services'"
  echo "export queues over all traced runs: $dropped."
} >"$summary"
echo
cat "$summary"
echo
echo "Runs: $results"
