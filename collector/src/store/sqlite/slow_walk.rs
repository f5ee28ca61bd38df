//! Newest-first searches for a service's slow spans (`service=…&min_duration=…&sort=newest`,
//! a minimum of at least [`SLOW_SPAN_NS`]) when many of the service's spans reach it: a walk
//! of `slow_spans_by_start` (schema 15; `spans_slow_by_start` on `spans` from 13), the service's spans of 100 ms or longer by start,
//! newest first.
//!
//! Each span at or above the minimum names a candidate trace, which one primary-key read of
//! `traces` (with the search's other conditions) accepts or refuses. The walk stops once a
//! span starts before the `offset + limit`-th best accepted trace: a trace starts no later
//! than any of its spans, and every trace that can match has a span of the service at or
//! above the minimum (the same-span condition), so no trace not yet seen can rank above it.
//! The answer is exactly that of walking the service's traces newest first
//! (`trace_services`), which reads every trace of the service until enough reach the
//! minimum: with 1.5% of them that long, ~1,300 random reads of `traces` for 20 results
//! (BENCHMARKS.md §3.5).

use std::collections::HashSet;

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::read::{SUMMARY_COLUMNS, row_to_summary};
use super::search::SLOW_SPAN_NS;
use super::{backend, to_i64};
use crate::store::{StoreError, TraceSummary};

/// Version 12 → 13 (also run on a new file; since 15 on the empty `spans`): the spans of 100 ms or longer by service and
/// start, with their duration in the entry, so that the walk reads the span row (for its
/// trace id) only for spans at or above the minimum. Costs the writer one B-tree insert per
/// such span (none in the ingest benchmark, whose spans last 250 µs), about 26 B each on disk
/// (a covering entry with the trace id took 41). Building it on an existing file reads every
/// span once (10-40 s per 10M spans).
pub(super) const SCHEMA_V13: &str = "CREATE INDEX IF NOT EXISTS spans_slow_by_start \
    ON spans (service, start_ns, duration_ns) WHERE duration_ns >= 100000000;";

/// The walk: the trace id and start of each span of a service (`?`) at or above a minimum
/// duration (`?` ns, at least [`SLOW_SPAN_NS`]) starting at or after `?`, newest first. The
/// index's own condition is written out so that SQLite may use the partial index.
const WALK: &str = "SELECT trace_id, start_ns FROM slow_spans NOT INDEXED \
    WHERE service = ? AND duration_ns >= 100000000 AND duration_ns >= ? AND start_ns >= ? \
    ORDER BY start_ns DESC";

/// What [`find`] searches: the service and minimum duration that drive the walk, the
/// earliest trace start wanted, and the search's conditions on `traces t` (`conds`, joined
/// by `AND`, their values `args` in order) that every result meets.
pub(super) struct SlowWalk<'a> {
    /// The service whose spans are walked.
    pub service: &'a str,
    /// The minimum span duration, ns; at least [`SLOW_SPAN_NS`].
    pub min_duration_ns: u64,
    /// The earliest trace start wanted, unix ns (a trace starts no later than its spans, so
    /// spans before it are not walked).
    pub start_min_ns: Option<u64>,
    /// The search's conditions on `traces t`.
    pub conds: &'a [String],
    /// Their values, in order.
    pub args: &'a [SqlValue],
}

/// `limit` summaries from `offset`, newest first (trace start, then trace id, both
/// descending), of the traces that meet every condition and have a span of the service at
/// or above the minimum duration. Errors: the database's, as [`StoreError::Backend`].
pub(super) fn find(
    conn: &Connection,
    walk: &SlowWalk<'_>,
    limit: usize,
    offset: usize,
) -> Result<Vec<TraceSummary>, StoreError> {
    debug_assert!(walk.min_duration_ns >= SLOW_SPAN_NS);
    let wanted = limit.saturating_add(offset);
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let mut check_sql = format!("SELECT {SUMMARY_COLUMNS} FROM traces t WHERE ");
    for cond in walk.conds {
        check_sql.push_str(cond);
        check_sql.push_str(" AND ");
    }
    check_sql.push_str("t.trace_id = ?");
    let mut check = conn.prepare_cached(&check_sql).map_err(backend)?;
    let mut spans = conn.prepare_cached(WALK).map_err(backend)?;
    let mut rows = spans
        .query((
            walk.service,
            to_i64(walk.min_duration_ns),
            walk.start_min_ns.map_or(i64::MIN, to_i64),
        ))
        .map_err(backend)?;
    // The best `wanted` accepted traces, best (newest) first.
    let mut best: Vec<TraceSummary> = Vec::with_capacity(wanted.min(1024));
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let span_start_ns: i64 = row.get(1).map_err(backend)?;
        if best.len() == wanted
            && best
                .last()
                .is_some_and(|last| span_start_ns < to_i64(last.start_time_unix_nano))
        {
            break;
        }
        let trace_id: Vec<u8> = row.get(0).map_err(backend)?;
        if seen.contains(&trace_id) {
            continue;
        }
        let mut args = walk.args.to_vec();
        args.push(SqlValue::Blob(trace_id.clone()));
        seen.insert(trace_id);
        let mut found = check
            .query_map(rusqlite::params_from_iter(args), row_to_summary)
            .map_err(backend)?;
        let Some(summary) = found.next().transpose().map_err(backend)? else {
            continue;
        };
        let key = |s: &TraceSummary| (s.start_time_unix_nano, s.trace_id);
        let at = best.partition_point(|b| key(b) > key(&summary));
        if at < wanted {
            best.insert(at, summary);
            best.truncate(wanted);
        }
    }
    Ok(best.into_iter().skip(offset).collect())
}
