#!/usr/bin/env bash
# ClickHouse backend benchmark (issue 15; BENCHMARKS.md §6), in one run:
#   1. ingest at saturation (loadgen: OTLP/HTTP protobuf, 500 spans x 10 attributes per
#      request, CONNECTIONS connections), acknowledged spans/s: the collector on a 2-shard
#      ClickHouse 18.16 cluster (acknowledged once every shard confirmed), then the
#      collector on SQLite (default settings; SQLITE=0 skips it), RUNS times, interleaved;
#      each binary ingests into its own database (a new one per run, see FRESH), not the one
#      queried below;
#   2. the cluster's `spanline` database topped up to SPANS spans (default 1M), then through
#      the collector's query API: trace by id, service + duration search, attribute search:
#      p50 / p99 of SAMPLES queries each (HTTP keep-alive, one client), and the CPU the
#      ClickHouse servers and the collector used per query (from /proc).
# Both shards, the collector and the load generator share this machine's cores: figures are
# noisy; `uptime` is printed with each, and so is the CPU the ClickHouse servers used per
# acknowledged span (`clickhouse_us_per_span`, from /proc; the collector's is
# `cpu_us_per_span`), which depends less on what else runs.
#
#   RUNS=2 DURATION=10 SPANS=1000000 SAMPLES=200 scripts/bench-clickhouse.sh
#
# COMPARE_BIN=path: a second collector binary (a release build of main): it ingests too
# (its own database, label `clickhouse-2shards-compare`, first in each run or every other
# run: see ALTERNATE), tops the
# cluster up, and answers the same queries first, on the same data (then this build, which
# may migrate the schema forward; the compared binary must not run after it).
# TOPUP=copy: load SEED_SPANS (default SPANS/8) through the collector, then double the
# stored spans inside ClickHouse (`INSERT ... SELECT` of every span under new trace ids,
# start times shifted COPY_SHIFT_S seconds back per doubling, default 0: same times) until
# SPANS; the last doubling copies a share of the traces. The search rows (schema 6) and the
# duration rows (schema 7) are copied alongside. Default TOPUP=loadgen: every span
# through the collector.
# QUERIES=name,name: only these query kinds (the names in the RESULT lines).
# QUERY_ONLY=1 (with BENCH_DIR of an earlier run): the query phase only, on that run's
# cluster, started again on its data. COMPARE_SCHEMA=N: before the compared binary's
# queries, the database's recorded schema version is set back to N (it refuses a newer
# one; the tables it does not know are left alone and unused by it).
# COLLECTOR_BIN=path: this binary as "this build" instead of building the worktree's (to
# measure a build kept from an earlier commit).
# FRESH=1 (default): each ingest run writes into a new database (`bench_ingest_<label>_<run>`),
# dropped on every node right after the run, so no run pays for the merges of the parts an
# earlier run left (each run's own merges still run inside it; a long DURATION, e.g. 60,
# makes a run pay for most of them). FRESH=cluster: besides, each ingest run on a 2-shard
# cluster of its own, started for it in a new directory and removed after it (so no run
# inherits the servers' or the file system's state from another: BENCHMARKS.md §6.13).
# FRESH=0: one database per binary over all runs, as before (each run slower than the last).
# ALTERNATE=1 (default): with COMPARE_BIN, the compared binary runs first in odd runs and
# second in even ones (the first ClickHouse run after a pause or a start was the fastest:
# BENCHMARKS.md §6.13); ALTERNATE=0: always first, as before.
# RATE=N: offer N spans/s (loadgen --rate: each connection sends at its turn in the schedule,
# so at most CONNECTIONS requests are in flight) instead of saturating (0, the default); the
# acknowledged rate then says whether the cluster keeps up with N.
# DURATIONS=spread (default since 2026-12-06): traces last from 50 us to 50 ms (loadgen
# --spread-durations), so duration-sorted searches have a ranking to walk; DURATIONS=fixed:
# every span 250 us, every trace 259 us, as in figures measured before then.
# PAUSE_S=N: N seconds idle before each ingest run (default 0), so a run does not start
# while the servers or the file system still work off the one before.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-2}
duration=${DURATION:-10}
connections=${CONNECTIONS:-8}
rate=${RATE:-0}
spans_target=${SPANS:-1000000}
samples=${SAMPLES:-200}
compare_bin=${COMPARE_BIN:-}
topup=${TOPUP:-loadgen}
seed_spans=${SEED_SPANS:-$((spans_target / 8))}
copy_shift_s=${COPY_SHIFT_S:-0}
query_only=${QUERY_ONLY:-0}
case "${DURATIONS:-spread}" in
  spread) spread_flag=--spread-durations ;;
  fixed) spread_flag= ;;
  *) echo "DURATIONS must be spread or fixed" >&2; exit 2 ;;
esac
compare_schema=${COMPARE_SCHEMA:-}
fresh=${FRESH:-1}
work=${BENCH_DIR:-$(mktemp -d /tmp/spanline-bench-ch.XXXXXX)}
target=${CARGO_TARGET_DIR:-target}

scripts/clickhouse.sh install >/dev/null
echo "Building collector and loadgen (release)..."
collector_bin=${COLLECTOR_BIN:-$target/release/collector}
[ -n "${COLLECTOR_BIN:-}" ] || cargo build --release --locked --quiet -p collector --bin collector
cargo build --release --locked --quiet -p loadgen
loadgen=$target/release/loadgen

# A reserved free port (scripts/ports.py: left in TIME_WAIT, so no other program is handed it
# before the collector binds it).
free_port() { python3 scripts/ports.py reserve 1; }
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
run_ch=""
cleanup() {
  stop_collector
  [ -z "$run_ch" ] || scripts/clickhouse.sh stop "$run_ch" || true
  scripts/clickhouse.sh stop "$work/ch" || true
}
trap cleanup EXIT

if [ "$query_only" = 1 ]; then
  echo "Starting the 2-shard ClickHouse cluster in $work/ch again"
  nodes=$(for i in 1 2; do scripts/clickhouse.sh restart "$work/ch" "$i"; done)
else
  echo "Starting a 2-shard ClickHouse cluster in $work/ch"
  nodes=$(scripts/clickhouse.sh start "$work/ch" 2)
fi
echo "$nodes"
urls=$(echo "$nodes" | awk '/^node /{print $3}' | paste -sd, -)
ch1=$(echo "$urls" | cut -d, -f1)
ch_dir=$work/ch

log_dir=$work
# wait_port.
. scripts/bench-common.sh

start_collector() { # storage [binary] [database]
  rm -rf "$work/data"
  mkdir -p "$work/data"
  COLLECTOR_INGEST_ADDR=127.0.0.1:$port COLLECTOR_QUERY_ADDR=127.0.0.1:$qport \
    COLLECTOR_GRPC_ADDR=127.0.0.1:0 COLLECTOR_SAMPLING_ADDR=127.0.0.1:0 \
    COLLECTOR_DATA_DIR=$work/data COLLECTOR_STORAGE=$1 \
    COLLECTOR_CLICKHOUSE_URL=$urls COLLECTOR_CLICKHOUSE_CLUSTER=spanline_2s \
    COLLECTOR_CLICKHOUSE_DATABASE=${3:-spanline} \
    COLLECTOR_RETENTION=0 "${2:-$collector_bin}" >>"$log_dir/collector.log" 2>&1 &
  pid=$!
  wait_port "$port" collector "$pid"
  wait_port "$qport" collector "$pid"
}

results=$work/results.txt
: >"$results"
# CPU time (1/100 s) the ClickHouse servers have used so far, both together.
ch_ticks() {
  local f t=0
  for f in "$ch_dir"/node*/pid; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$(cat "$f")/stat")))
  done
  echo "$t"
}
load() { # label seconds
  local t0 out acked
  t0=$(ch_ticks)
  out=$("$loadgen" ingest --url "http://127.0.0.1:$port/v1/traces" --connections "$connections" \
    --rate "$rate" --warmup 2 --duration "$2" --pid "$pid" --label "$1" $spread_flag)
  # The servers' CPU over warmup + run, per span acknowledged in the run (scaled to both).
  acked=$(echo "$out" | sed -n 's/.* acked_spans=\([0-9]*\).*/\1/p')
  echo "$out clickhouse_us_per_span=$(echo "scale=1; ($(ch_ticks) - $t0) * 10000 * $2 / ($2 + 2) / ${acked:-1}" | bc)" |
    tee -a "$results"
  echo "uptime: $(uptime)" | tee -a "$results"
}

# Settings go in the URL: 18.16 does not apply an INSERT ... SELECT's SETTINGS clause to
# the insert.
ch_query() { curl -fsS "$ch1/?insert_distributed_sync=1" --data-binary "$1"; }
stored() { ch_query "SELECT count() FROM spanline.spans_dist"; }

# ingest_db NAME RUN: the database of an ingest run (see FRESH).
ingest_db() { if [ "$fresh" != 0 ]; then echo "bench_ingest_$1_$2"; else echo "bench_ingest_$1"; fi; }
# drop_fresh DATABASE: with FRESH=1, drops the run's database on every node (its merges stop).
drop_fresh() {
  [ "$fresh" = 1 ] || return 0  # (a run's own cluster is removed whole)
  local u
  for u in $(echo "$urls" | tr , ' '); do
    curl -fsS "$u/" --data-binary "DROP DATABASE IF EXISTS \`$1\`"
  done
}

# ingest LABEL BINARY DATABASE: one ingest run (on a cluster of its own with FRESH=cluster).
ingest() {
  local main_urls=$urls
  sleep "${PAUSE_S:-0}"
  if [ "$fresh" = cluster ]; then
    run_ch=$work/ch-run
    urls=$(scripts/clickhouse.sh start "$run_ch" 2 | awk '/^node /{print $3}' | paste -sd, -)
    ch_dir=$run_ch
  fi
  start_collector clickhouse "$2" "$3"
  load "$1" "$duration"
  stop_collector
  drop_fresh "$3"
  if [ "$fresh" = cluster ]; then
    scripts/clickhouse.sh stop "$run_ch" >/dev/null
    rm -rf "$run_ch"
    run_ch="" ch_dir=$work/ch urls=$main_urls
  fi
}

if [ "$query_only" = 1 ]; then runs=0; fi
for run in $(seq 1 "$runs"); do
  echo "--- run $run/$runs"
  compare_second=0
  [ "${ALTERNATE:-1}" = 1 ] && [ $((run % 2)) = 0 ] && compare_second=1
  if [ -n "$compare_bin" ] && [ "$compare_second" = 0 ]; then
    ingest clickhouse-2shards-compare "$compare_bin" "$(ingest_db compare "$run")"
  fi
  ingest clickhouse-2shards "$collector_bin" "$(ingest_db this "$run")"
  if [ -n "$compare_bin" ] && [ "$compare_second" = 1 ]; then
    ingest clickhouse-2shards-compare "$compare_bin" "$(ingest_db compare "$run")"
  fi
  if [ "${SQLITE:-1}" = 1 ]; then
    start_collector sqlite
    load sqlite "$duration"
    stop_collector
  fi
done

topup_bin=${compare_bin:-$collector_bin}
through_collector=$spans_target
[ "$topup" = copy ] && through_collector=$seed_spans
if [ "$query_only" != 1 ]; then
echo "--- topping the cluster up to $through_collector spans through the collector ($topup_bin)"
start_collector clickhouse "$topup_bin"
while [ "$(stored)" -lt "$through_collector" ]; do
  load clickhouse-topup 10 >/dev/null
done
stop_collector
fi
if [ "$topup" = copy ] && [ "$query_only" != 1 ]; then
  # Schema 5 and before: the attribute arrays are in spans_dist too, and search_mv copies
  # each inserted span into search_local; schema 6: search rows are copied alongside.
  arrays=$(ch_query "SELECT count() FROM system.columns WHERE database = 'spanline' AND table = 'spans_dist' AND name = 'attr_keys'")
  durations=$(ch_query "SELECT count() FROM system.tables WHERE database = 'spanline' AND name = 'trace_duration_dist'")
  # Schema 8: the attribute keys as hashes (`attr_keys` holds only rows written before).
  keys=attr_keys
  [ "$(ch_query "SELECT count() FROM system.columns WHERE database = 'spanline' AND table = 'search_dist' AND name = 'attr_key_hashes'")" = 1 ] &&
    keys="attr_keys, attr_key_hashes"
  columns="received_day, received_ns, trace_id, span_id, parent_span_id, has_parent, kind, status, service, name, start_ns, end_ns, duration_ns, http_status, has_http_status, detail"
  [ "$arrays" = 1 ] && columns="${columns%, detail}, attr_keys, attr_values, detail"
  new_id() { # generation: the copy's trace id, from trace_id
    echo "toFixedString(substring(concat(reinterpretAsString(cityHash64(trace_id, $1)),
        reinterpretAsString(cityHash64($1, trace_id)), '________________'), 1, 16), 16)"
  }
  generation=0
  while [ "$(stored)" -lt "$spans_target" ]; do
    generation=$((generation + 1))
    have=$(stored)
    # Whole traces: the share of traces to copy this time, in percent.
    pct=$(( (spans_target - have) * 100 / have + 1 ))
    [ "$pct" -gt 100 ] && pct=100
    shift_ns=$((copy_shift_s * 1000000000 * generation))
    t0=$(date +%s.%N)
    if [ "$arrays" != 1 ]; then
      ch_query "INSERT INTO spanline.search_dist (received_day, service, start_ns, trace_id, name,
        kind, status, duration_ns, $keys, attr_values) SELECT received_day, service,
        start_ns - $shift_ns, $(new_id "$generation"), name, kind, status, duration_ns,
        $keys, attr_values FROM spanline.search_dist WHERE cityHash64(trace_id, 7) % 100 < $pct"
    fi
    if [ "$durations" = 1 ]; then
      # Schema 7: the copies' rows for duration-sorted searches (each trace's rows walked).
      ch_query "INSERT INTO spanline.trace_duration_dist (received_day, duration_ns, trace_id)
        SELECT received_day, duration_ns, $(new_id "$generation")
        FROM spanline.trace_duration_dist WHERE cityHash64(trace_id, 7) % 100 < $pct"
    fi
    ch_query "INSERT INTO spanline.spans_dist ($columns) SELECT received_day, received_ns,
      $(new_id "$generation"),
      span_id, parent_span_id, has_parent, kind, status, service, name,
      start_ns - $shift_ns, end_ns - $shift_ns, duration_ns, http_status, has_http_status,
      ${columns#*has_http_status, }
      FROM spanline.spans_dist WHERE cityHash64(trace_id, 7) % 100 < $pct"
    echo "copy $generation: $pct% of $have spans in $(echo "$(date +%s.%N) - $t0" | bc) s"
  done
fi
echo "stored: $(stored) spans; on disk per node:"
for u in $(echo "$urls" | tr , ' '); do
  curl -fsS "$u/" --data-binary "SELECT table, formatReadableSize(sum(bytes_on_disk)), sum(rows) FROM system.parts WHERE database = 'spanline' AND active GROUP BY table FORMAT TSV"
done

ids=$(ch_query "SELECT lower(hex(trace_id)) FROM spanline.spans_dist WHERE rand() % 1000 = 0 LIMIT $samples")
query_bins="$collector_bin"
[ -n "$compare_bin" ] && query_bins="$compare_bin $collector_bin"
for bin in $query_bins; do
if [ "$bin" = "$compare_bin" ] && [ -n "$compare_schema" ]; then
  for u in $(echo "$urls" | tr , ' '); do
    for q in "DROP TABLE spanline.schema_version" \
      "CREATE TABLE spanline.schema_version (version UInt32, applied_unix_ns UInt64) ENGINE = TinyLog" \
      "INSERT INTO spanline.schema_version VALUES ($compare_schema, 0)"; do
      curl -fsS "$u/" --data-binary "$q"
    done
  done
fi
start_collector clickhouse "$bin"
echo "--- query latency through the collector $bin (clickhouse, 2 shards), $samples samples each"
python3 - "$qport" "$samples" "$ids" "$bin" "$pid" "$work"/ch/node*/pid <<'PY' | tee -a "$results"
import http.client, os, statistics, sys, time, urllib.parse, random
port, samples, ids, binary = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
collector_pid, server_pids = sys.argv[5], [open(f).read().strip() for f in sys.argv[6:]]
tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
def cpu_ms(pids):
    """CPU time (user + system) the processes `pids` have used so far, ms."""
    total = 0
    for p in pids:
        fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * tick_ms
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
    servers, collector = cpu_ms(server_pids), cpu_ms([collector_pid])
    times = sorted(timed(p)[0] for p in paths)
    # CPU per query of both servers and of the collector (load-independent, mostly).
    servers = (cpu_ms(server_pids) - servers) / len(times)
    collector = (cpu_ms([collector_pid]) - collector) / len(times)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"RESULT bin={binary} query={name} n={len(times)} p50_ms={p(0.5):.1f} p99_ms={p(0.99):.1f} max_ms={times[-1]:.1f} clickhouse_cpu_ms_per_query={servers:.2f} collector_cpu_ms_per_query={collector:.2f}")
random.seed(1)
only = set(filter(None, os.environ.get("QUERIES", "").split(",")))
def report(name, paths, report=report):
    if not only or name in only:
        report(name, paths)
report("trace_by_id", [f"/v1/traces/{random.choice(ids)}" for _ in range(samples)])
now = time.time()
report("service_duration_1h", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&start_time={now - 3600:.0f}&limit=20" for i in range(samples)])
report("service_duration_all", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&limit=20" for i in range(samples)])
# The same searches newest first (a min_duration search sorts by duration unless asked).
report("service_duration_newest_1h", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&start_time={now - 3600:.0f}&sort=newest&limit=20" for i in range(samples)])
report("service_duration_newest_all", [f"/v1/traces?service=svc-{i % 4}&min_duration=200us&sort=newest&limit=20" for i in range(samples)])
report("attribute", [f"/v1/traces?{urllib.parse.urlencode({'attr.url.path': f'/api/v1/items/{i % 500}'})}&limit=20" for i in range(samples)])
report("attribute_service", [f"/v1/traces?service=svc-{i % 4}&{urllib.parse.urlencode({'attr.url.path': f'/api/v1/items/{i % 500}'})}&limit=20" for i in range(samples)])
PY
echo "uptime: $(uptime)" | tee -a "$results"
stop_collector
done

echo "--- medians"
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT ") and "spans_per_s=" in line:
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        rows.setdefault(kv["label"], []).append(float(kv["spans_per_s"]))
ch = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT ") and "clickhouse_us_per_span=" in line:
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        ch.setdefault(kv["label"], []).append(float(kv["clickhouse_us_per_span"]))
for label, v in rows.items():
    extra = f" clickhouse_us_per_span={statistics.median(ch[label]):.1f}" if label in ch and label != "sqlite" else ""
    print(f"{label:24s} spans_per_s={statistics.median(v):10.0f} (n={len(v)}){extra}")
if "clickhouse-2shards-compare" in rows and "clickhouse-2shards" in rows:
    print(f"this / compare = {statistics.median(rows['clickhouse-2shards']) / statistics.median(rows['clickhouse-2shards-compare']):.2f}")
    # Run by run (the two builds of a run ran back to back, under about the same load).
    pairs = [t / c for t, c in zip(rows['clickhouse-2shards'], rows['clickhouse-2shards-compare'])]
    print(f"this / compare per run = {', '.join(f'{p:.2f}' for p in pairs)} (median {statistics.median(pairs):.2f})")
if "clickhouse-2shards" in rows and "sqlite" in rows:
    print(f"clickhouse / sqlite = {statistics.median(rows['clickhouse-2shards']) / statistics.median(rows['sqlite']):.2f}")
PY
echo "results: $results"
