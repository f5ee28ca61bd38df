#!/usr/bin/env python3
"""Bytes per stored span of each table and index of a Spanline SQLite file (BENCHMARKS.md §3.2).

Usage: scripts/db-bytes.py <spanline.db>

Reads SQLite's `dbstat` virtual table (pages of each B-tree, bytes used in them) on a
read-only connection; the attribute index's runs (`span_attrs_run<N>`) are summed as one row.
Prints, per B-tree, its pages' bytes over the spans stored (`span_blocks.span_count`, or the rows
of `spans` before schema 16), the payload bytes (the rows'
own bytes, without page headers and free space) and the rows.
"""
import re
import sqlite3
import sys

path = sys.argv[1]
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
spans = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
# Schema 16 stores spans in blocks (`span_blocks.span_count` each); older files in `spans`.
blocks = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'span_blocks'").fetchone()[0]
if blocks:
    spans += conn.execute("SELECT coalesce(sum(span_count), 0) FROM span_blocks").fetchone()[0]
owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
rows = {}
for name, pages, payload, cells in conn.execute(
    "SELECT name, sum(pgsize), sum(payload), sum(CASE WHEN pagetype = 'leaf' THEN ncell ELSE 0 END) "
    "FROM dbstat GROUP BY name"
):
    name = re.sub(r"^span_attrs_run\d+$", "span_attrs_run*", name)
    r = rows.setdefault(name, [0, 0, 0])
    r[0] += pages
    r[1] += payload
    r[2] += cells
total = sum(r[0] for r in rows.values())
print(f"spans={spans} file_pages_bytes={total} bytes_per_span={total / max(spans, 1):.1f}")
print(f"{'b-tree':40s} {'B/span':>8s} {'payload B/span':>15s} {'rows':>10s}")
for name, (pages, payload, cells) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
    table = owner.get(name, name)
    shown = name if table in (name, None) else f"{name} (index of {table})"
    print(f"{shown:40s} {pages / spans:8.1f} {payload / spans:15.1f} {cells:10d}")
if blocks:
    n, data, per = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0), coalesce(avg(span_count), 0) FROM span_blocks"
    ).fetchone()
    print(f"span_blocks: {n} blocks, {per:.1f} spans a block, data {data / max(spans, 1):.1f} B/span")
else:
    detail = conn.execute("SELECT avg(length(detail)) FROM spans").fetchone()[0]
    print(f"spans.detail average length: {detail:.1f} B")
