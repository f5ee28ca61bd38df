#!/usr/bin/env bash
# Regenerates the figures in BENCHMARKS.md (DESIGN.md §6): the library micro-benchmarks
# beside opentelemetry_sdk and fastrace (criterion, same run), and the end-to-end overhead
# runs (scripts/bench-overhead.sh, against the collector and against a discarding sink).
# Each figure lands between its `<!-- bench:NAME -->` / `<!-- /bench:NAME -->` markers;
# the prose around them is left alone. Needs python3 (reads criterion's JSON).
#
#   scripts/bench.sh                 # everything (the query bench's store takes longest)
#   scripts/bench.sh micro           # only the criterion benches
#   scripts/bench.sh overhead        # only the end-to-end runs
#   scripts/bench.sh ingest|query    # the collector benches (BENCHMARKS.md §3, by hand)
#
# BENCH_RUNS (how many times each criterion bench runs, default 3: the table reports the
# median over runs and each run's peer / tracekit ratio), BENCH_MEASURE (seconds per
# criterion benchmark, default: the benches' own 2 s) and the bench-overhead.sh settings
# (ROUNDS, DURATION, ...) are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
target_dir=${CARGO_TARGET_DIR:-target}
doc=BENCHMARKS.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Replaces the block between <!-- bench:NAME --> and <!-- /bench:NAME --> with a file.
fill() { # name file
  awk -v name="$1" -v file="$2" '
    $0 == "<!-- bench:" name " -->" { print; while ((getline line < file) > 0) print line; skip = 1; next }
    $0 == "<!-- /bench:" name " -->" { skip = 0 }
    !skip { print }' "$doc" >"$work/doc" && mv "$work/doc" "$doc"
}

machine() {
  local cpu mem
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
  {
    echo "- Run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet HEAD || echo ' (with local changes)')"
    echo "- Machine: $(nproc) vCPU $cpu, $mem, $(uname -sr), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo '?'); $(rustc --version)"
    echo "- Shared with other engineers' builds: load average at the end $(uptime | sed 's/.*load average: //')"
  } >"$work/machine"
  fill machine "$work/machine"
}

micro() {
  local runs=${BENCH_RUNS:-3} benches=(span propagation http) i b
  local extra=()
  [ -n "${BENCH_MEASURE:-}" ] && extra=(-- --measurement-time "$BENCH_MEASURE")
  for i in $(seq 1 "$runs"); do
    for b in "${benches[@]}"; do
      echo "==> run $i/$runs: cargo bench -p tracekit --bench $b"
      cargo bench -p tracekit --bench "$b" "${extra[@]}" 2>&1 | tee "$work/$b-$i.log" |
        grep -E '^[a-z_]+/|time:|spans ended' || true
    done
    mkdir -p "$work/crit"
    cp -r "$target_dir/criterion" "$work/crit/$i"
  done
  python3 - "$work/crit" >"$work/micro" <<'PY'
import json, os, statistics, sys

root = sys.argv[1]
runs = sorted(os.listdir(root))

def medians(group, bench):
    """Criterion's median (ns) of this benchmark in each run."""
    out = []
    for r in runs:
        d = os.path.join(root, r, group)
        for name in (bench, bench.replace("::", "__")):
            path = os.path.join(d, name, "new", "estimates.json")
            if os.path.exists(path):
                with open(path) as f:
                    out.append(json.load(f)["median"]["point_estimate"])
                break
    return out

def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"

def spread(xs, f):
    return f"{f(min(xs))}-{f(max(xs))}" if len(xs) > 1 else f(xs[0])

rows = [
    ("sampled span start+end, 4 attributes, batch processor", "span_sampled_4_attrs_batch", "span",
     "<= 100 ns; >= 2.5x faster than opentelemetry_sdk", ["opentelemetry_sdk", "fastrace"]),
    ("unsampled span (new trace, 4 attributes set)", "span_unsampled", "span", "<= 10 ns",
     ["opentelemetry_sdk", "fastrace"]),
    ("`traceparent` extract from a HeaderMap", "traceparent_extract", "propagation", "<= 50 ns",
     ["opentelemetry_sdk", "fastrace"]),
    ("`traceparent` inject into a HeaderMap", "traceparent_inject", "propagation", "<= 50 ns",
     ["opentelemetry_sdk", "fastrace"]),
    ("server middleware, one request (no-op service, in process)", "http_server_middleware", "http",
     "-", ["opentelemetry_sdk", "bare"]),
    ("traced client call + server middleware over loopback", "http_client_server_loopback", "http",
     "-", ["opentelemetry_sdk", "bare"]),
]
print(f"{len(runs)} runs of each bench; every cell is the median over the runs of criterion's median "
      "(range over the runs after it); a ratio is computed within each run, then its median taken.")
print()
print("| operation | tracekit | peer (same runs) | peer / tracekit | target | command |")
print("|---|---|---|---|---|---|")
for title, group, bench, target, peers in rows:
    ours = medians(group, "tracekit")
    if not ours:
        continue
    first = True
    for peer in peers:
        theirs = medians(group, peer)
        if len(theirs) != len(ours):
            continue
        ratios = [p / o for p, o in zip(theirs, ours)]
        ours_cell = f"**{fmt(statistics.median(ours))}** ({spread(ours, fmt)})" if first else "″"
        name = "no tracing" if peer == "bare" else peer
        ratio = f"{statistics.median(ratios):.2f}x ({spread(ratios, lambda r: f'{r:.2f}')})"
        cmd = f"`cargo bench -p tracekit --bench {bench}`" if first else ""
        print(f"| {title if first else '″'} | {ours_cell} | {name}: {fmt(statistics.median(theirs))} "
              f"({spread(theirs, fmt)}) | {ratio} | {target if first else ''} | {cmd} |")
        first = False
print()
sys_now = medians("clock_read", "SystemTime::now")
tsc_now = medians("clock_read", "fastant::Instant::now")
if sys_now and tsc_now:
    print(f"Clock reads in the same runs (`--bench span`, group `clock_read`): `SystemTime::now` "
          f"{fmt(statistics.median(sys_now))}, `fastant::Instant::now` (TSC) "
          f"{fmt(statistics.median(tsc_now))}. A span reads the clock twice.")
PY
  fill micro "$work/micro"
}

overhead() {
  echo "==> scripts/bench-overhead.sh (collector)"
  OUT=$target_dir/bench-overhead/collector scripts/bench-overhead.sh
  cp "$target_dir/bench-overhead/collector/overhead.md" "$work/overhead-collector"
  fill overhead-collector "$work/overhead-collector"
  echo "==> SINK=1 scripts/bench-overhead.sh (discarding OTLP sink)"
  SINK=1 OUT=$target_dir/bench-overhead/sink scripts/bench-overhead.sh
  cp "$target_dir/bench-overhead/sink/overhead.md" "$work/overhead-sink"
  fill overhead-sink "$work/overhead-sink"
}

# Collector ingest and query at scale (BENCHMARKS.md §3): their own scripts, whose output
# §3 is written from by hand (tables of several runs and notes, no markers).
ingest() {
  echo "==> scripts/bench-ingest.sh"
  scripts/bench-ingest.sh
}
query() {
  echo "==> scripts/bench-query.sh"
  scripts/bench-query.sh
}

case $what in
  all) micro; overhead; ingest; query ;;
  micro) micro ;;
  overhead) overhead ;;
  ingest) ingest ;;
  query) query ;;
  *) echo "usage: $0 [all|micro|overhead|ingest|query]" >&2; exit 2 ;;
esac
machine
echo "BENCHMARKS.md updated."
