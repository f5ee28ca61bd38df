#!/usr/bin/env python3
"""Runs the ClickHouse backend's SQL on current ClickHouse, in-process (chDB).

Input: the statements the Rust test `dump_statements_for_the_chdb_check` writes (one per
line; see scripts/check-clickhouse-sql.sh). The schema statements run first; then sample spans
go in (their search rows and inbound-link rows too, as the inserter writes them), then every query shape runs and the ones with a
known answer are checked. Exit status 1 when any statement fails on this ClickHouse.

    python3 check-clickhouse-sql.py STATEMENTS_FILE
"""
import sys
import tempfile

import chdb
from chdb import session as chs

# Two sample traces with the ids the dump uses (collector/src/testing.rs `trace_id(1)`, `(2)`).
T1 = "4b" + "00" * 6 + "1f" + "00" * 7 + "01"
T2 = "4b" + "00" * 6 + "3e" + "00" * 7 + "02"
SAMPLE_ROWS = """
INSERT INTO spanline.spans_local (received_day, received_ns, trace_id, span_id, parent_span_id,
  has_parent, kind, status, service, name, start_ns, end_ns, duration_ns, http_status,
  has_http_status, detail)
SELECT today(), toUInt64(now()) * 1000000000, unhex('{t}'), unhex('000000000000000' || toString(number + 1)),
  unhex('0000000000000001'), number > 0, if(number = 0, 2, 3), if(number = 2, 2, 0), 'frontend',
  'GET /', 1764000000000000000 + number * 1000, 1764000000100000000, 100000000 - number * 1000,
  if(number = 2, 500, 200), 1, ''
FROM numbers(3)
"""
# Their search rows (schema 6: the inserter writes them; the indexed attributes are here only).
# Keys as the inserter writes them since schema 8 (`{keys}` = attr_key_hashes, the keys'
# cityHash64), or as text (`{keys}` = attr_keys), as rows written before schema 8 hold them,
# which the column's DEFAULT hashes.
SEARCH_ROWS = """
INSERT INTO spanline.search_local (received_day, service, start_ns, trace_id, name, kind, status,
  duration_ns, {keys}, attr_values)
SELECT today(), 'frontend', 1764000000000000000 + number * 1000, unhex('{t}'), 'GET /',
  if(number = 0, 2, 3), if(number = 2, 2, 0), 100000000 - number * 1000,
  [{key}], [if(number = 2, '500', '200')]
FROM numbers(3)
"""
# Inbound links: a span of T2 links to T1 (written twice, as a retried insert would), and one
# of T1 to itself (never a row: the inserter skips it; here it checks the query's filter).
LINK_ROWS = """
INSERT INTO spanline.links_local (received_day, trace_id, source_trace_id) VALUES
  (today(), unhex('{t1}'), unhex('{t2}')), (today(), unhex('{t1}'), unhex('{t2}')),
  (today(), unhex('{t1}'), unhex('{t1}'))
"""


# Rows of the version-2 tables (store/durable.rs): two decisions on T1 (the later wins) and
# one on T2; a consumer group seen twice (reads fold by max) and another.
DURABLE_ROWS = [
    f"""INSERT INTO spanline.sampling_decisions_local (received_day, decided_ns, trace_id, kept,
  policies, finish) VALUES (today(), 1764000000000000000, unhex('{T1}'), 1, '["errors"]', 'complete'),
  (today(), 1764000000000000009, unhex('{T1}'), 1, '["slow"]', 'settled'),
  (today(), 1764000000000000000, unhex('{T2}'), 0, '[]', 'settled')""",
    """INSERT INTO spanline.consumer_groups_local (destination, consumer_group, last_seen_ns)
  VALUES ('payments.completed', 'notification', 1764000000000000100),
  ('payments.completed', 'notification', 1764000000000000300),
  ('payments.completed', 'order', 1764000000000000200)""",
]


def main() -> int:
    statements = [s for s in open(sys.argv[1]).read().split("\n") if s.strip()]
    print(f"ClickHouse {chdb.query('SELECT version()', 'CSV').data().strip()} (chDB {chdb.__version__})")
    failures = 0
    with tempfile.TemporaryDirectory() as path:
        sess = chs.Session(path)

        def run(sql: str) -> str:
            # The backend reads RowBinary; here rows are shown as CSV.
            text = sql.replace(" FORMAT RowBinary", "")
            return sess.query(text, "CSV").data()

        # `PARSE ` lines (replicated and Distributed DDL: chDB has no ZooKeeper and no
        # cluster) are parsed and formatted by the current parser, not run.
        parse_only = [s[len("PARSE "):] for s in statements if s.startswith("PARSE ")]
        statements = [s for s in statements if not s.startswith("PARSE ")]
        for sql in parse_only:
            literal = "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"
            try:
                formatted = run(f"SELECT formatQuery({literal})")
                if "ENGINE = " in sql:
                    ok = sql.split("ENGINE = ", 1)[1].split("(", 1)[0] in formatted
                elif "DROP COLUMN" in sql:  # schema 6's migration (the columns are gone here)
                    ok = "DROP COLUMN" in formatted
                else:  # schema 8's migration (the column is there here)
                    ok = "ADD COLUMN `attr_key_hashes`" in formatted
                failures += not ok
                print(f"{'OK' if ok else 'FAIL'}    parsed {sql[:100]}")
            except Exception as e:  # noqa: BLE001
                failures += 1
                print(f"FAIL  parse {sql}\n      {e}")
        schema = [s for s in statements if s.startswith("CREATE")]
        rest = [s for s in statements if not s.startswith("CREATE")]
        for sql in schema:
            try:
                run(sql)
                print(f"OK    {sql[:110]}")
            except Exception as e:  # noqa: BLE001 - report every failure
                failures += 1
                print(f"FAIL  {sql}\n      {e}")
        for t, keys, key in (
            (T1, "attr_key_hashes", "cityHash64('http.response.status_code')"),
            (T2, "attr_keys", "'http.response.status_code'"),
        ):
            run(SAMPLE_ROWS.format(t=t))
            run(SEARCH_ROWS.format(t=t, keys=keys, key=key))
        run(LINK_ROWS.format(t1=T1, t2=T2))
        for sql in DURABLE_ROWS:
            run(sql)
        views = run("SELECT count() FROM system.tables WHERE database = 'spanline' "
                    "AND name = 'search_mv'").strip()
        print(f"{'OK' if views == '0' else 'FAIL'}    no search_mv (schema 6): {views}")
        failures += views != "0"
        # Known answers (before the statements that delete): trace by id, attribute search.
        checks = {
            f"SELECT count() FROM spanline.spans_local WHERE trace_id = unhex('{T1}')": "3",
            "SELECT count() FROM (SELECT trace_id FROM spanline.search_local GROUP BY trace_id "
            "HAVING max(arrayExists((h, v) -> h = cityHash64('http.response.status_code') "
            "AND v = '500', attr_key_hashes, attr_values)) = 1)": "2",
            # The hashes the DEFAULT gives text keys (schema 8) are the inserter's:
            # collector/src/store/clickhouse/cityhash.rs tests the same value on 18.16.
            "SELECT cityHash64('http.response.status_code')": "8509236992697570135",
            # traces_linking_to(T1): T2 once; not T1 itself.
            f"SELECT hex(source_trace_id) FROM (SELECT DISTINCT source_trace_id FROM "
            f"spanline.links_local WHERE trace_id = unhex('{T1}') AND source_trace_id != "
            f"unhex('{T1}') ORDER BY source_trace_id LIMIT 10)": f'"{T2.upper()}"',
            # The decision shape (sql::decision): the latest row of T1.
            f"SELECT kept, policies, finish FROM spanline.sampling_decisions_local "
            f"WHERE trace_id = unhex('{T1}') ORDER BY decided_ns DESC LIMIT 1": '1,"[""slow""]","settled"',
            # newest_mv filled newest_local (schema 4): the newest span start of the service.
            "SELECT service, max(start_ns) FROM spanline.newest_local GROUP BY service":
            '"frontend",1764000000000002000',
            # The consumer-group shape (sql::consumer_groups): one row per pair, its latest time.
            "SELECT destination, consumer_group, max(last_seen_ns) AS seen FROM "
            "spanline.consumer_groups_local GROUP BY destination, consumer_group "
            "HAVING seen >= 1764000000000000150 ORDER BY destination, consumer_group":
            '"payments.completed","notification",1764000000000000300\n'
            '"payments.completed","order",1764000000000000200',
        }
        for sql, want in checks.items():
            got = run(sql).strip()
            ok = got == want
            failures += not ok
            print(f"{'OK' if ok else 'FAIL'}    {got} == {want}: {sql[:90]}")
        for sql in rest:
            try:
                out = run(sql)
                rows = len([line for line in out.splitlines() if line.strip()])
                print(f"OK    ({rows} rows) {sql[:100]}")
            except Exception as e:  # noqa: BLE001
                failures += 1
                print(f"FAIL  {sql}\n      {e}")
    print(f"{len(statements)} statements run, {len(parse_only)} parsed, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
