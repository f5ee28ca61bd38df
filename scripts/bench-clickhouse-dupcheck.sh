#!/usr/bin/env bash
# Cost of the ClickHouse backend's duplicate check (docs/clickhouse.md, "Writes") with and
# without a bound on `received_day`: one ClickHouse 18.16 node, the backend's real schema
# (as `dump_statements_for_the_chdb_check` renders it), SPANS spans of 10-span traces
# spread over DAYS received days in INSERTS inserts, then the check's statement for BATCH
# trace ids (half stored today, half never stored), SAMPLES times each way, p50 / p90 ms
# over HTTP keep-alive. Prints `uptime`: the machine is shared, figures are rough.
#
#   SPANS=2000000 DAYS=8 INSERTS=16 BATCH=500 SAMPLES=50 scripts/bench-clickhouse-dupcheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${SPANS:-2000000}
days=${DAYS:-8}
inserts=${INSERTS:-16}
batch=${BATCH:-500}
samples=${SAMPLES:-50}
work=$(mktemp -d /tmp/spanline-bench-dup.XXXXXX)
trap 'CLICKHOUSE_STOP_GRACE_S=0 scripts/clickhouse.sh stop "$work"; rm -rf "$work"' EXIT

scripts/clickhouse.sh install >/dev/null
url=$(scripts/clickhouse.sh start "$work" 1 | awk '/^node 1/ {print $3}')
SPANLINE_CLICKHOUSE_SQL_OUT=$work/statements.sql cargo test --locked --quiet -p collector \
  --lib dump_statements_for_the_chdb_check >/dev/null
python3 - "$url" "$work/statements.sql" "$spans" "$days" "$inserts" "$batch" "$samples" <<'PY'
import http.client, statistics, sys, time, urllib.parse

url, statements, spans, days, inserts, batch, samples = sys.argv[1:]
spans, days, inserts, batch, samples = map(int, (spans, days, inserts, batch, samples))
host = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(host.hostname, host.port, timeout=600)

def run(sql):
    conn.request("POST", "/?max_query_size=16777216", body=sql.encode())
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{sql[:200]}: {body.decode(errors='replace')}")
    return body

for line in open(statements):
    if line.startswith("CREATE"):
        run(line)
traces = spans // 10
# A trace's 10 spans share a received day: trace t was received (t % days) days ago.
tid = ("toFixedString(concat(reinterpretAsString(cityHash64(t)), "
       "reinterpretAsString(cityHash64(t, 1))), 16)")
t0 = time.time()
per = traces // inserts
for i in range(inserts):
    run(f"""INSERT INTO spanline.spans_local SELECT today() - (t % {days}) AS d,
      toUInt64(toDateTime(d)) * 1000000000, {tid}, toFixedString(reinterpretAsString(number), 8),
      toFixedString(reinterpretAsString(toUInt64(t * 10)), 8), number % 10 > 0, 1 + number % 3,
      0, concat('svc-', toString(number % 7)), concat('op-', toString(number % 31)),
      toUInt64(1764000000000000000 + number * 1000), toUInt64(1764000000000000000 + number * 1000 + 5000000),
      5000000, 200, 1, ['http.route', 'k'], [concat('/r', toString(number % 50)), 'v'], ''
      FROM (SELECT number, intDiv(number, 10) AS t FROM numbers({i * per * 10}, {per * 10}))""")
print(f"filled {traces * 10} spans over {days} days in {inserts} inserts: {time.time() - t0:.1f} s")
print(run("SELECT count(), uniqExact(partition) FROM system.parts "
          "WHERE database = 'spanline' AND table = 'spans_local' AND active").decode().strip(),
      "(active parts, partitions)")

def ids_sql(ids):
    return ", ".join("'" + "".join("\\x%02X" % b for b in i) + "'" for i in ids)

# Half the batch: traces received today (t % days == 0); half: never stored.
stored = run(f"SELECT hex({tid}) FROM (SELECT number * {days} AS t FROM numbers({batch // 2})) "
             "FORMAT TabSeparated").decode().split()
fresh = [f"{n:032X}" for n in range(1, batch - batch // 2 + 1)]
ids = [bytes.fromhex(h) for h in stored + fresh]
id_list = ids_sql(ids)
queries = {
    "bounded (received_day >= yesterday)":
        f"SELECT trace_id, span_id, kind FROM spanline.spans_local WHERE received_day >= "
        f"yesterday() AND trace_id IN ({id_list}) FORMAT RowBinary",
    "unbounded (every retained day)":
        f"SELECT trace_id, span_id, kind FROM spanline.spans_local WHERE trace_id IN ({id_list}) "
        "FORMAT RowBinary",
}

def parts():
    return run("SELECT count() FROM system.parts WHERE database = 'spanline' "
               "AND table = 'spans_local' AND active").decode().strip()


def measure(label):
    for _ in range(3):
        for sql in queries.values():
            run(sql)
    for name, sql in queries.items():
        times = []
        for _ in range(samples):
            s = time.perf_counter()
            rows = len(run(sql)) // 25
            times.append((time.perf_counter() - s) * 1000)
        times.sort()
        print(f"{label}, {name}: {rows} rows, p50 {statistics.median(times):.1f} ms, "
              f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms ({samples} runs, batch {batch} traces)")


measure(f"{parts()} parts")
# The steady state: days that no longer receive spans end merged (here: forced).
for d in range(2, days):
    day = run(f"SELECT toString(today() - {d})").decode().strip()
    run(f"OPTIMIZE TABLE spanline.spans_local PARTITION '{day}' FINAL")
measure(f"older days merged, {parts()} parts")
PY
uptime
