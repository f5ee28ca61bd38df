#!/usr/bin/env python3
"""What a span costs a ClickHouse 18.16 node by the size of the writer's batches (BENCHMARKS.md
§6.15): the same spans, sent as batches of different sizes, each batch as one shard of the
collector's writer sends it (collector/src/store/clickhouse/insert.rs): the duplicate check's
read over the batch's trace ids (`trace_summary_local`), then the inserts of the duration rows,
the search rows and the spans (whose two materialized views write `trace_summary_local` and
`newest_local`), `RowBinary` over HTTP, into schema 8's tables in a new database per round.

One node (scripts/clickhouse.sh) in BENCH_DIR; SPANS spans (default 160,000) of `loadgen`'s
shape (4 services, 10-span traces, 10 attributes), made once in a source database and cut into
4,000-span files; each round sends them all as batches of K files, then waits until the node's
merges of the round's database ended (merges run, batches paced like the ingest: 40 ms per
4,000 spans) and prints the node's CPU per span (user + system, and user, from /proc).

  BENCH_DIR=/tmp/bb scripts/bench-clickhouse-batch.py 1 2 1 2 1 2

Arguments: the rounds, as K (files per batch: 1 = 4,000 spans, 2 = 8,000, ...); alternate them,
since this machine's CPU per span drifts from round to round (BENCHMARKS.md §6.13).
"""
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

FILE_SPANS = 4000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0_NS = 1764900000000000000


def ddl(db):
    """Schema 8's tables that a span write touches, as collector/src/store/clickhouse/ddl.rs has them."""
    return [
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.spans_local (received_day Date, received_ns UInt64, "
        "trace_id FixedString(16), span_id FixedString(8), parent_span_id FixedString(8), "
        "has_parent UInt8, kind UInt8, status UInt8, service String, name String, "
        "start_ns UInt64, end_ns UInt64, duration_ns UInt64, http_status Int64, "
        "has_http_status UInt8, detail String) ENGINE = MergeTree PARTITION BY received_day "
        "ORDER BY (trace_id, start_ns) SETTINGS index_granularity = 1024",
        f"CREATE TABLE {db}.search_local (received_day Date, service String, start_ns UInt64, "
        "trace_id FixedString(16), name String, kind UInt8, status UInt8, duration_ns UInt64, "
        "attr_keys Array(String), attr_key_hashes Array(UInt64) DEFAULT "
        "arrayMap(k -> cityHash64(k), attr_keys), attr_values Array(String)) "
        "ENGINE = MergeTree PARTITION BY received_day ORDER BY (service, start_ns) "
        "SETTINGS index_granularity = 8192",
        f"CREATE TABLE {db}.newest_local (service String, start_ns UInt64) "
        "ENGINE = ReplacingMergeTree(start_ns) ORDER BY service",
        f"CREATE MATERIALIZED VIEW {db}.newest_mv TO {db}.newest_local AS SELECT service, "
        f"max(start_ns) AS start_ns FROM {db}.spans_local GROUP BY service",
        f"CREATE TABLE {db}.trace_summary_local (received_day Date, trace_id FixedString(16), "
        "start_state AggregateFunction(min, UInt64), end_state AggregateFunction(max, UInt64)) "
        "ENGINE = AggregatingMergeTree PARTITION BY received_day ORDER BY trace_id "
        "SETTINGS index_granularity = 256",
        f"CREATE MATERIALIZED VIEW {db}.trace_summary_mv TO {db}.trace_summary_local AS SELECT "
        "received_day, trace_id, minState(start_ns) AS start_state, maxState(end_ns) AS "
        f"end_state FROM {db}.spans_local GROUP BY received_day, trace_id",
        f"CREATE TABLE {db}.trace_duration_local (received_day Date, duration_ns UInt64, "
        "trace_id FixedString(16)) ENGINE = MergeTree PARTITION BY received_day "
        "ORDER BY (duration_ns, trace_id)",
    ]


SEARCH_COLUMNS = ("received_day, service, start_ns, trace_id, name, kind, status, duration_ns, "
                  "attr_key_hashes, attr_values")
TRACE = ("toFixedString(concat(reinterpretAsString(cityHash64(intDiv(number, 10), 1)), "
         "reinterpretAsString(cityHash64(intDiv(number, 10), 2))), 16)")
KEYS = ("['http.request.method', 'http.route', 'url.path', 'http.response.status_code', "
        "'server.address', 'server.port', 'client.address', 'user_agent.original', "
        "'app.item.id', 'app.cache.hit']")
VALUES = ("['GET', '/api/v1/items/{id}', concat('/api/v1/items/', toString(number % 500)), '200', "
          "'items.internal', '8080', '10.1.2.3', 'bench/1.0', toString(number % 500), "
          "if(number % 3 = 0, 'true', 'false')]")


class Node:
    def __init__(self, url, pid):
        self.url, self.pid = url, pid

    def q(self, sql, data=None):
        if data is None:
            req = urllib.request.Request(self.url + "/", data=sql.encode())
        else:
            req = urllib.request.Request(
                self.url + "/?" + urllib.parse.urlencode({"query": sql}), data=data)
        return urllib.request.urlopen(req).read()

    def ticks(self):
        """(user, system) CPU of the server so far, 1/100 s."""
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])


def make_source(node, spans, out):
    """The source spans, and per 4,000-span file: spans, search rows, duration rows, trace ids."""
    for statement in ddl("src"):
        node.q(statement)
    ts = f"{T0_NS} + number * 1000"
    detail = ("concat(reinterpretAsString(cityHash64(number, 5)), 'http.request.method GET "
              "http.route /api/v1/items/{id} url.path /api/v1/items/', toString(number % 500), "
              "' server.address items.internal server.port 8080 client.address 10.1.2.3 "
              "user_agent.original bench/1.0 app.item.id ', toString(number % 500), "
              "' service.name svc telemetry.sdk.language rust')")
    node.q(f"INSERT INTO src.spans_local SELECT toDate('2026-12-05'), {ts}, {TRACE}, "
           "toFixedString(reinterpretAsString(cityHash64(number, 3)), 8), "
           "toFixedString(if(number % 10 = 0, '\\0\\0\\0\\0\\0\\0\\0\\0', "
           "reinterpretAsString(cityHash64(number - 1, 3))), 8), number % 10 != 0, "
           "toUInt8(2 + number % 2), 0, concat('svc-', toString(number % 4)), "
           f"concat('GET /api/v1/items/', toString(number % 20)), {ts}, {ts} + 250000, 250000, "
           f"200, 1, {detail} FROM numbers({spans})")
    node.q(f"INSERT INTO src.search_local ({SEARCH_COLUMNS}) SELECT toDate('2026-12-05'), "
           f"concat('svc-', toString(number % 4)), {ts}, {TRACE}, "
           "concat('GET /api/v1/items/', toString(number % 20)), toUInt8(2 + number % 2), 0, "
           f"toUInt64(250000), arrayMap(k -> cityHash64(k), {KEYS}), {VALUES} "
           f"FROM numbers({spans})")
    node.q(f"INSERT INTO src.trace_duration_local SELECT toDate('2026-12-05'), 260000, {TRACE} "
           f"FROM numbers({spans}) WHERE number % 10 = 0")
    files = []
    for f in range(spans // FILE_SPANS):
        lo, hi = T0_NS + f * FILE_SPANS * 1000, T0_NS + (f + 1) * FILE_SPANS * 1000
        spans_sql = f"FROM src.spans_local WHERE received_ns >= {lo} AND received_ns < {hi}"
        ids = node.q(f"SELECT DISTINCT hex(trace_id) {spans_sql} FORMAT TSV").decode().split()
        files.append({
            "spans": node.q(f"SELECT * {spans_sql} ORDER BY received_ns FORMAT RowBinary"),
            "search": node.q(f"SELECT {SEARCH_COLUMNS} FROM src.search_local WHERE start_ns >= "
                             f"{lo} AND start_ns < {hi} FORMAT RowBinary"),
            "durations": node.q(f"SELECT * FROM src.trace_duration_local WHERE trace_id IN "
                                f"(SELECT trace_id {spans_sql}) FORMAT RowBinary"),
            # As the writer inlines them (sql.rs, `id_list`): escaped 16-byte literals.
            "ids": ["'" + "".join("\\x" + h[i:i + 2] for i in range(0, 32, 2)) + "'" for h in ids],
        })
    return files


def merges_ended(node, db, deadline_s=120):
    quiet, t0 = 0, time.time()
    while quiet < 4 and time.time() - t0 < deadline_s:
        running = int(node.q(f"SELECT count() FROM system.merges WHERE database = '{db}'"))
        quiet = quiet + 1 if running == 0 else 0
        time.sleep(0.5)


def round_(node, files, k, db):
    for statement in ddl(db):
        node.q(statement)
    (u0, s0), start = node.ticks(), time.time()
    for first in range(0, len(files), k):
        group = files[first:first + k]
        ids = ",".join(i for f in group for i in f["ids"])
        node.q(f"SELECT DISTINCT trace_id FROM {db}.trace_summary_local WHERE received_day >= "
               f"toDate('2026-12-04') AND trace_id IN ({ids}) FORMAT RowBinary")
        for table, key, columns in [("trace_duration_local", "durations", ""),
                                    ("search_local", "search", f" ({SEARCH_COLUMNS})"),
                                    ("spans_local", "spans", "")]:
            node.q(f"INSERT INTO {db}.{table}{columns} FORMAT RowBinary",
                   b"".join(f[key] for f in group))
        time.sleep(0.04 * len(group))
    merges_ended(node, db)
    u1, s1 = node.ticks()
    n = len(files) * FILE_SPANS
    load = open("/proc/loadavg").read().split()[0]
    print(f"RESULT spans_per_batch={k * FILE_SPANS} spans={n} "
          f"server_cpu_us_per_span={(u1 + s1 - u0 - s0) * 10000 / n:.2f} "
          f"user_us_per_span={(u1 - u0) * 10000 / n:.2f} wall_s={time.time() - start:.1f} "
          f"load={load} utc={time.strftime('%H:%M:%S', time.gmtime())}", flush=True)
    node.q(f"DROP DATABASE {db}")


def main():
    rounds = [int(a) for a in sys.argv[1:]] or [1, 2, 1, 2]
    spans = int(os.environ.get("SPANS", "160000")) // FILE_SPANS * FILE_SPANS
    work = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="spanline-bench-batch.")
    script = os.path.join(ROOT, "scripts", "clickhouse.sh")
    subprocess.run([script, "install"], check=True, stdout=subprocess.DEVNULL)
    started = subprocess.run([script, "start", f"{work}/ch", "1"], check=True,
                             capture_output=True, text=True).stdout
    try:
        line = next(l for l in started.splitlines() if l.startswith("node "))
        node = Node(line.split()[2], int(open(f"{work}/ch/node1/pid").read()))
        files = make_source(node, spans, work)
        for i, k in enumerate(rounds):
            round_(node, files, k, f"batch_{i}")
    finally:
        subprocess.run([script, "stop", f"{work}/ch"], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
