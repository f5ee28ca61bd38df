#!/usr/bin/env python3
"""What merging staged attribute-index rows costs as `span_attrs` grows (BENCHMARKS.md §3.3).

Up to schema 10 the SQLite writer staged each commit's attribute rows as a segment of
`span_attrs_new` and, every ~100k rows, merged them into `span_attrs`, one B-tree keyed by (key,
value, start_ns, trace_id). Since schema 11 it moves them into bounded runs instead
(collector/src/store/sqlite/attr_runs.rs): "merge" below is the cost of moving into a run of
that size. This script builds the same two tables
with Python's sqlite3 module, fills `span_attrs` with BASE_TRACES traces of the ingest
benchmark's shape (29 rows per trace: 7 constant attributes, 2 x 10 varying values, 2
booleans), stages ~100k rows in 9 segments, and times, per row:
  - merge: the writer's merge (INSERT ... SELECT ... ORDER BY into `span_attrs`, then DELETE
    of the staged rows), one transaction;
  - append: the same rows compacted into one new segment at the end of `span_attrs_new`
    (what a log-structured merge of segments would do instead), then the same DELETE.

  scripts/bench-attr-merge.py [repeat|unique] [BASE_TRACES]

`repeat`: the varying values repeat (500 distinct, as `loadgen`'s url.path and app.item.id);
`unique`: every varying value is new (order ids, request ids). Timings are wall clock:
run on a quiet machine and compare the two figures of one run.
"""
import os
import random
import sqlite3
import sys
import tempfile
import time

KEYS = ['http.request.method', 'http.route', 'url.path', 'http.response.status_code',
        'server.address', 'server.port', 'client.address', 'user_agent.original',
        'app.item.id', 'app.cache.hit']
VARYING = ('url.path', 'app.item.id')


def rows(ntraces, first_start_ns, unique):
    """The attribute rows of `ntraces` traces, one start per trace (1 µs apart)."""
    out = []
    for t in range(ntraces):
        tid = os.urandom(16)
        start = first_start_ns + t * 1000
        for key in KEYS:
            if key in VARYING:
                values = ([str(random.getrandbits(62)) for _ in range(10)] if unique
                          else [str(v) for v in random.sample(range(500), 10)])
                out.extend((key, v, start, tid) for v in values)
            elif key == 'app.cache.hit':
                out.extend([(key, 'true', start, tid), (key, 'false', start, tid)])
            else:
                out.append((key, 'x' + key, start, tid))
    return out


def main():
    unique = len(sys.argv) > 1 and sys.argv[1] == 'unique'
    base_traces = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    with tempfile.TemporaryDirectory(prefix='attr-merge-') as work:
        run(unique, base_traces, os.path.join(work, 't.db'))


def run(unique, base_traces, path):
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript('''
        PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16000;
        CREATE TABLE span_attrs (key TEXT NOT NULL, value TEXT NOT NULL,
            start_ns INTEGER NOT NULL, trace_id BLOB NOT NULL,
            PRIMARY KEY (key, value, start_ns, trace_id)) WITHOUT ROWID;
        CREATE TABLE span_attrs_new (seg INTEGER NOT NULL, key TEXT NOT NULL,
            value TEXT NOT NULL, start_ns INTEGER NOT NULL, trace_id BLOB NOT NULL,
            PRIMARY KEY (seg, key, value, start_ns, trace_id)) WITHOUT ROWID;''')
    clock = [1_796_310_999_000_000_000]

    def add(table, ntraces, seg=None):
        r = rows(ntraces, clock[0], unique)
        clock[0] += ntraces * 1000
        r.sort()
        if seg is None:
            c.executemany(f'INSERT INTO {table} VALUES (?,?,?,?)', r)
        else:
            c.executemany(f'INSERT INTO {table} VALUES (?,?,?,?,?)', [(seg,) + x for x in r])

    c.execute('BEGIN')
    for _ in range(base_traces // 10_000):
        add('span_attrs', 10_000)
    c.execute('COMMIT')
    c.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    print(f"span_attrs rows: {c.execute('SELECT count(*) FROM span_attrs').fetchone()[0]}"
          f" ({'unique' if unique else 'repeating'} values)")

    def staged(first_seg):
        c.execute('BEGIN')
        for s in range(9):
            add('span_attrs_new', 390, first_seg + s)
        c.execute('COMMIT')
        return c.execute('SELECT count(*) FROM span_attrs_new').fetchone()[0]

    def timed(*statements):
        began = time.perf_counter()
        c.execute('BEGIN')
        for sql in statements:
            c.execute(sql)
        c.execute('COMMIT')
        spent = time.perf_counter() - began
        c.execute('PRAGMA wal_checkpoint(TRUNCATE)')
        return spent

    for trial in range(3):
        n = staged(1)
        merge = timed('INSERT INTO span_attrs SELECT key, value, start_ns, trace_id '
                      'FROM span_attrs_new ORDER BY key, value, start_ns, trace_id',
                      'DELETE FROM span_attrs_new')
        staged(1)
        append = timed('INSERT INTO span_attrs_new SELECT 1000000, key, value, start_ns, '
                       'trace_id FROM span_attrs_new WHERE seg < 1000000 '
                       'ORDER BY key, value, start_ns, trace_id',
                       'DELETE FROM span_attrs_new WHERE seg < 1000000')
        c.execute('DELETE FROM span_attrs_new')
        print(f'trial {trial + 1}: {n} staged rows: merge into span_attrs '
              f'{1e6 * merge / n:.2f} us/row; append as one segment {1e6 * append / n:.2f} us/row')


if __name__ == '__main__':
    main()
