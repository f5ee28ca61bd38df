#!/usr/bin/env bash
# What a merge of `search_local` costs the server, by the form of the attribute keys
# (BENCHMARKS.md §6.14): one ClickHouse 18.16 node (scripts/clickhouse.sh), two tables of
# search rows shaped as `loadgen`'s spans (4 services, 10 attributes per span: 8 constant,
# 2 with 500 values), one with the keys as text (`attr_keys Array(String)`, schema 7), one
# with the keys as their cityHash64 (`Array(UInt64)`, schema 8). Each round copies each
# table into PARTS parts of ROWS/PARTS rows (merges stopped), then times `OPTIMIZE TABLE
# ... FINAL` (the server's CPU from /proc, wall time).
#
#   ROWS=1024000 PARTS=32 ROUNDS=3 scripts/bench-clickhouse-merge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1024000}
parts=${PARTS:-32}
rounds=${ROUNDS:-3}
work=${BENCH_DIR:-$(mktemp -d /tmp/spanline-bench-merge.XXXXXX)}
scripts/clickhouse.sh install >/dev/null
url=$(scripts/clickhouse.sh start "$work/ch" 1 | awk '/^node /{print $3}')
trap 'scripts/clickhouse.sh stop "$work/ch" >/dev/null' EXIT
pid=$(cat "$work"/ch/node1/pid)
q() { curl -fsS "$url/" --data-binary "$1"; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

keys="['http.request.method', 'http.route', 'url.path', 'http.response.status_code',
  'server.address', 'server.port', 'client.address', 'user_agent.original', 'app.item.id',
  'app.cache.hit']"
values="['GET', '/api/v1/items/{id}', concat('/api/v1/items/', toString(number % 500)), '200',
  'items.internal', '8080', '10.1.2.3', 'bench/1.0', toString(number % 500),
  if(number % 3 = 0, 'true', 'false')]"
columns="received_day Date, service String, start_ns UInt64, trace_id FixedString(16),
  name String, kind UInt8, status UInt8, duration_ns UInt64"
engine="ENGINE = MergeTree PARTITION BY received_day ORDER BY (service, start_ns)
  SETTINGS index_granularity = 8192"
row="toDate('2026-12-05'), concat('svc-', toString(number % 4)), 1764900000000000000 + number * 1000,
  toFixedString(concat(reinterpretAsString(cityHash64(number, 1)),
    reinterpretAsString(cityHash64(number, 2))), 16),
  concat('GET /api/v1/items/', toString(number % 20)), toUInt8(2 + number % 2), toUInt8(0),
  toUInt64(250000)"
q "CREATE DATABASE bench_merge"
q "CREATE TABLE bench_merge.text_keys ($columns, attr_keys Array(String), attr_values Array(String)) $engine"
q "CREATE TABLE bench_merge.hashed_keys ($columns, attr_key_hashes Array(UInt64), attr_values Array(String)) $engine"
q "INSERT INTO bench_merge.text_keys SELECT $row, $keys, $values FROM numbers($rows)"
q "INSERT INTO bench_merge.hashed_keys SELECT $row, arrayMap(k -> cityHash64(k), $keys), $values FROM numbers($rows)"
for round in $(seq 1 "$rounds"); do
  for table in text_keys hashed_keys; do
    q "DROP TABLE IF EXISTS bench_merge.m"
    q "CREATE TABLE bench_merge.m AS bench_merge.$table"
    q "SYSTEM STOP MERGES"
    for p in $(seq 0 $((parts - 1))); do
      q "INSERT INTO bench_merge.m SELECT * FROM bench_merge.$table WHERE intDiv(start_ns, 1000) % $parts = $p"
    done
    q "SYSTEM START MERGES"
    t0=$(ticks) s0=$(date +%s%N)
    q "OPTIMIZE TABLE bench_merge.m FINAL"
    t1=$(ticks) s1=$(date +%s%N)
    bytes=$(q "SELECT sum(data_uncompressed_bytes) FROM system.parts WHERE database = 'bench_merge' AND table = 'm' AND active")
    echo "RESULT round=$round table=$table rows=$rows parts=$parts merge_cpu_ms=$(( (t1 - t0) * 10 )) merge_wall_ms=$(( (s1 - s0) / 1000000 )) uncompressed_bytes=$bytes load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
