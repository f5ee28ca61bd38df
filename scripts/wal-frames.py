#!/usr/bin/env python3
"""WAL frames per commit, by B-tree (BENCHMARKS.md §3.1, "2026-12-06").

Usage: scripts/wal-frames.py <spanline.db>

Reads `<db>-wal` as a collector killed with `kill -9` left it: every whole commit in the file
(frames of earlier WAL generations past the current one's end included), split at commit
frames; maps each frame's page to its table or index with `dbstat` on a copy of the database
and WAL (the original is not opened). Commits of more than twice the median (moves of staged
attribute rows) are left out of the per-table shares. Needs an SQLite with `dbstat`.
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile

db = sys.argv[1]
wal = open(db + "-wal", "rb").read()
page_size = struct.unpack(">8I", wal[:32])[2]
commits, current, salts = [], [], None
offset = 32
while offset + 24 + page_size <= len(wal):
    pgno, db_size, salt1, salt2, _, _ = struct.unpack(">6I", wal[offset:offset + 24])
    if (salt1, salt2) != salts:
        current, salts = [], (salt1, salt2)
    current.append(pgno)
    if db_size:
        commits.append(current)
        current = []
    offset += 24 + page_size
if not commits:
    sys.exit("no whole commit in the WAL")
with tempfile.TemporaryDirectory() as tmp:
    shutil.copy(db, os.path.join(tmp, "x.db"))
    shutil.copy(db + "-wal", os.path.join(tmp, "x.db-wal"))
    conn = sqlite3.connect(os.path.join(tmp, "x.db"))
    owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    conn.close()
sizes = sorted(len(c) for c in commits)
median = sizes[len(sizes) // 2]
print(f"commits {len(commits)}, frames per commit: median {median}, min {sizes[0]}, max {sizes[-1]}")
normal = [c for c in commits if len(c) <= 2 * median]
by_tree = collections.Counter(owner.get(p, "(freed or new page)") for c in normal for p in c)
frames = sum(len(c) for c in normal)
print(f"{len(normal)} commits of at most twice the median: {frames / len(normal):.1f} frames each")
for name, n in by_tree.most_common(14):
    print(f"  {name:32} {n / len(normal):7.1f}  {100 * n / frames:5.1f}%")
