#!/usr/bin/env python3
"""Groups a perf profile of the SQLite writer thread by what it does (BENCHMARKS.md §3.1-§3.2).

Record the writer thread of a release build (debug info on) while `loadgen ingest` saturates
it, then print the samples' stacks and group them:

    tid=$(grep -l spanline-sqlite /proc/<collector pid>/task/*/comm | cut -d/ -f5)
    perf record -F 499 -g --call-graph dwarf,32768 -t "$tid" -o writer.data -- sleep 8
    perf script -i writer.data -F comm,tid,ip,sym > writer.txt
    scripts/writer-profile.py writer.txt

Each sample goes to the first group (in the order of GROUPS) one of whose names appears in its
stack, inlined frames included: a checkpoint or a move of staged attribute rows is counted as
such even when its time is in SQLite's B-tree or WAL code. DETAIL=<group> DEPTH=<n> also
prints the most common innermost n frames of that group's samples.
"""

import collections
import os
import sys

# (group, names any of which in a stack puts a sample in the group), first match wins.
GROUPS = [
    ("checkpoint (the writer's PASSIVE)", ["after_commit", "sqlite3WalCheckpoint"]),
    ("attribute rows moved into runs (attr_stage::merge)", ["attr_stage::merge", "absorb_staged"]),
    ("commit (WAL frames, checksums)", ["vdbeCommit", "sqlite3BtreeCommitPhaseOne", "CommitPhaseTwo"]),
    # (op, start, trace) before schema 15, (bucket, op, start, trace) since.
    ("trace_operations", ["insert_rows<(i64, i64, collector::model::TraceId)",
                          "insert_rows<(i64, i64, i64, collector::model::TraceId)"]),
    ("entry_spans", ["insert_entry_spans", "insert_rows<(i64, i64, i64, i64"]),
    ("attribute rows staged (attr_stage::stage)", ["attr_stage::stage", "insert_rows<(i64", "stage (inlined)"]),
    ("attribute probe of traces stored before (retain_new)", ["retain_new"]),
    ("trace_links", ["insert_links"]),
    ("per-trace span count probe (admits; since schema 16 stored_count, stored_ids)", ["admits", "stored_count", "stored_ids"]),
    ("resources", ["resource_id"]),
    ("span rows (spans, spans_identity; since schema 16 span_blocks, slow_spans)", ["insert_spans"]),
    ("traces upserts (read and write)", ["update_trace", "read_summary", "write_summary"]),
    ("trace_services", ["insert_rows<(&str, i64"]),
    ("GroupIndex::flush, other SQL", ["GroupIndex::flush&sqlite3_step"]),
    ("GroupIndex::flush own code", ["GroupIndex::flush"]),
    ("request plans (attr_plan.rs)", ["AttrPlan"]),
    ("apply_group, other", ["apply_group"]),
]


def read_samples(path):
    """The samples of `perf script -F comm,tid,ip,sym`: each a list of frame names, innermost first."""
    samples, frames = [], None
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if frames:
                    samples.append(frames)
                frames = None
            elif not line.startswith(("\t", " ")):
                frames = []
            elif frames is not None:
                parts = line.strip().split(" ", 1)
                if len(parts) == 2:
                    frames.append(parts[1])
    if frames:
        samples.append(frames)
    return samples


def matches(frames, name):
    # "a&b": both a and b are in the stack.
    return all(any(part in f for f in frames) for part in name.split("&"))


def group_of(frames):
    for group, names in GROUPS:
        if any(matches(frames, n) for n in names):
            return group
    return "other: " + (frames[0] if frames else "?")


def main():
    samples = read_samples(sys.argv[1])
    groups = collections.Counter(group_of(s) for s in samples)
    total = sum(groups.values()) or 1
    print(f"{total} samples")
    for group, n in groups.most_common():
        print(f"{100 * n / total:5.1f}%  {n:5d}  {group}")
    detail = os.environ.get("DETAIL")
    if detail:
        depth = int(os.environ.get("DEPTH", "3"))
        stacks = collections.Counter(
            " <- ".join(s[:depth]) for s in samples if group_of(s) == detail
        )
        print(f"\n{detail}: innermost {depth} frames")
        for stack, n in stacks.most_common(30):
            print(f"{n:5d}  {stack[:240]}")


if __name__ == "__main__":
    main()
