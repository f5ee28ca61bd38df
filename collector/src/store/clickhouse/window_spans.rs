//! The first try of a newest-first search by service with the shards apart, in one round
//! trip and without the per-trace summaries: each shard keeps its own `k` candidates of the
//! window (as [`search_sql::window_candidates`] picks them) and answers, in one statement,
//! every span of those candidates (the summary columns, read with a `PREWHERE` on the trace
//! id) and the candidates themselves ([`window_spans`]). The collector ranks the candidates
//! over their spans ([`TraceSummary::add_span`], the rule every backend shares) and keeps
//! the spans, so the result's summaries need no second read: only the refusal counts, and
//! only from a shard that holds any refusal (the statement says whether it does).
//!
//! Why: at 10M spans most of a search's ClickHouse CPU was the ranking's lookups of the
//! candidates in `trace_summary_local` (a 256-row granule per candidate and part) and then
//! the result's spans in `spans_local` (a 1024-row granule per trace and part, every
//! column of it), in two round trips; reading the candidates' spans once costs less than
//! both (BENCHMARKS.md §6.11). It returns about `k / limit` times the spans of a result, so
//! only a try with few candidates ([`returns_spans`]: the first, at the usual limits) takes
//! it; a try with more candidates ranks in the server as before (`search.rs`).
//!
//! Exactness is [`super::search`]'s: the candidates and the bound they give are the same
//! rows, and a candidate's trace start and duration come from all its spans on its shard,
//! as `trace_summary_local` (filled from those spans) gives them.

use std::collections::HashMap;

use super::codec::read_summary_span;
use super::rowbinary::Reader;
use super::search::{Found, WindowStep, sorted};
use super::sql::{SUMMARY_COLUMNS, Tables};
use super::{Shared, search_sql};
use crate::model::{Span, TraceId};
use crate::store::{StoreError, TraceQuery, TraceSummary};

/// Most candidates per shard, per result wanted, for which a try returns the candidates'
/// spans (the first try keeps 4 x limit in all, at least the limit per shard).
const MAX_K_PER_RESULT: usize = 4;

/// Most candidates per shard for which a try returns the candidates' spans, whatever the
/// limit: bounds what a search with a large limit holds in memory (a trace may have up to
/// `COLLECTOR_MAX_SPANS_PER_TRACE` spans).
const MAX_K: usize = 400;

/// Whether a try keeping `k` candidates a shard for `limit` results takes [`step`] (else
/// the server ranks them, and the result's spans are read after).
pub(super) fn returns_spans(k: usize, limit: usize) -> bool {
    k <= limit * MAX_K_PER_RESULT && k <= MAX_K
}

/// The spans of a try's candidates, kept for the result's summaries.
#[derive(Debug, Default)]
pub(super) struct CandidateSpans {
    /// Every span of every candidate with spans, per trace (copies not dropped yet).
    pub(super) spans: HashMap<TraceId, Vec<Span>>,
    /// A shard that answered holds refusal rows: the result's counts must be read.
    pub(super) refusals: bool,
}

/// For a newest-first search over one node's tables: rows `(b, SUMMARY_COLUMNS)` where
/// `b = 0` is a span of one of the node's `k` candidates (every span of each), `b = 1` a
/// candidate (its id, and in `start_ns` the start of its earliest span in the window
/// meeting the prefilter; the other columns are defaults), and `b = 2` one row when the
/// node's `refusals_local` has any row. `None` for other orders, with attribute conditions,
/// or when the ranking needs more than the trace's start and duration (conditions the
/// prefilter did not check).
pub(super) fn window_spans(
    t: &Tables,
    q: &TraceQuery,
    from_ns: Option<u64>,
    k: usize,
) -> Option<String> {
    if !q.attributes.is_empty() || !search_sql::ranks_from_summaries(q) {
        return None;
    }
    let candidates = search_sql::window_candidates(t, q, from_ns, k)?;
    let candidates = candidates.trim_end_matches(" FORMAT RowBinary");
    // The defaults of the rows that are not spans, column for column (`UNION ALL` needs
    // one type per column in every branch).
    let defaults = "toFixedString('', 8), toUInt8(0), toUInt8(0), toUInt8(0), '', ''";
    let tail = "toUInt64(0), toInt64(0), toUInt8(0)";
    // The trace id is in the key: the `PREWHERE` reads only it from the granules the key
    // selects (one per candidate and part), the other columns only where a candidate is.
    Some(format!(
        "SELECT toUInt8(0) AS b, {SUMMARY_COLUMNS} FROM {} PREWHERE trace_id IN \
         (SELECT trace_id FROM ({candidates})) UNION ALL SELECT toUInt8(1) AS b, trace_id, \
         {defaults}, s, {tail} FROM ({candidates}) UNION ALL SELECT toUInt8(2) AS b, \
         trace_id, {defaults}, toUInt64(0), {tail} FROM (SELECT trace_id FROM {} LIMIT 1) \
         FORMAT RowBinary",
        t.spans(),
        t.refusals()
    ))
}

/// A [`WindowStep`] by [`window_spans`], one statement per shard, the shards at once
/// (needs `Shared::shards_apart`): the candidates ranked here over their spans, which
/// come back with the step. `None` when the query has no such statement.
///
/// # Errors
/// What a shard's statement failed with, or an answer that does not parse.
pub(super) async fn step(
    shared: &Shared,
    query: &TraceQuery,
    from: Option<u64>,
    k: usize,
) -> Result<Option<(WindowStep, CandidateSpans)>, StoreError> {
    if window_spans(&shared.tables, query, from, k).is_none() {
        return Ok(None);
    }
    let answers = shared
        .select_each_shard(|t| window_spans(t, query, from, k).unwrap_or_default())
        .await?;
    let mut step = WindowStep {
        found: Vec::new(),
        candidates: 0,
        all_kept: true,
        bound: (0, TraceId([0; 16])),
    };
    let mut kept = CandidateSpans::default();
    let mut found = Vec::new();
    for answer in &answers {
        let shard = read_answer(answer)?;
        step.candidates += shard.candidates.len();
        if shard.candidates.len() >= k {
            step.all_kept = false;
            if let Some(last) = shard.candidates.iter().min() {
                step.bound = step.bound.max(*last);
            }
        }
        kept.refusals |= shard.refusals;
        for (_, id) in &shard.candidates {
            let Some(spans) = shard.spans.get(id) else {
                continue; // search rows without spans (an insert that failed between)
            };
            let summary = TraceSummary::of_spans(*id, spans);
            if within_bounds(query, &summary) {
                found.push(Found {
                    id: *id,
                    start_ns: summary.start_time_unix_nano,
                    duration_ns: summary.duration_ns(),
                });
            }
        }
        for (id, spans) in shard.spans {
            kept.spans.entry(id).or_default().extend(spans);
        }
    }
    step.found = sorted(query, found, query.effective_limit());
    Ok(Some((step, kept)))
}

/// What [`search_sql::find_trace_ids_among`] checks when the summaries suffice (its
/// `HAVING`): the trace's start within the query's bounds, and, when the span conditions
/// are not checked together on one span, its duration within the duration bounds.
fn within_bounds(q: &TraceQuery, summary: &TraceSummary) -> bool {
    let start = summary.start_time_unix_nano;
    let duration = summary.duration_ns();
    q.start_time_min_unix_nano.is_none_or(|m| start >= m)
        && q.start_time_max_unix_nano.is_none_or(|m| start <= m)
        && (q.needs_span_check()
            || q.min_duration_ns.is_none_or(|m| duration >= m)
                && q.max_duration_ns.is_none_or(|m| duration <= m))
}

/// One shard's answer to [`window_spans`].
struct ShardAnswer {
    /// `(start of its earliest span in the window meeting the prefilter, id)` per candidate.
    candidates: Vec<(u64, TraceId)>,
    /// The candidates' spans, per trace.
    spans: HashMap<TraceId, Vec<Span>>,
    /// The shard holds refusal rows.
    refusals: bool,
}

fn read_answer(answer: &[u8]) -> Result<ShardAnswer, StoreError> {
    let mut r = Reader::new(answer);
    let mut out = ShardAnswer {
        candidates: Vec::new(),
        spans: HashMap::new(),
        refusals: false,
    };
    while !r.is_empty() {
        let b = r.u8()?;
        let span = read_summary_span(&mut r)?;
        match b {
            0 => out.spans.entry(span.trace_id).or_default().push(span),
            1 => out
                .candidates
                .push((span.start_time_unix_nano, span.trace_id)),
            _ => out.refusals = true,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SortOrder;

    fn tables() -> Tables {
        Tables::one_node_for_tests()
    }

    #[test]
    fn the_step_reads_the_spans_of_the_candidates_it_lists() {
        let q = TraceQuery {
            service: Some("a".into()),
            min_duration_ns: Some(9),
            ..TraceQuery::default()
        };
        let sql = window_spans(&tables(), &q, Some(7), 40).unwrap();
        let candidates = search_sql::window_candidates(&tables(), &q, Some(7), 40).unwrap();
        let candidates = candidates.trim_end_matches(" FORMAT RowBinary");
        assert_eq!(sql.matches(candidates).count(), 2, "{sql}");
        assert!(
            sql.contains(&format!(
                "FROM `d`.`spans_local` PREWHERE trace_id IN (SELECT trace_id FROM ({candidates}))"
            )),
            "{sql}"
        );
        assert!(sql.contains("FROM `d`.`refusals_local` LIMIT 1"), "{sql}");
        // No ranking in the server: no summary rows read.
        assert!(!sql.contains("trace_summary"), "{sql}");
        // Other orders, attributes: the server ranks (or another path answers).
        let by_duration = TraceQuery {
            sort: SortOrder::Duration,
            ..q.clone()
        };
        assert!(window_spans(&tables(), &by_duration, None, 40).is_none());
        let attributes = TraceQuery {
            attributes: vec![("k".into(), "v".into())],
            ..q.clone()
        };
        assert!(window_spans(&tables(), &attributes, None, 40).is_none());
        // A kind besides the status: the prefilter checks the status only, so a span term
        // is left that the trace's start and duration cannot check.
        let terms = TraceQuery {
            status: Some(crate::model::StatusCode::Ok),
            errors_only: true,
            ..TraceQuery::default()
        };
        assert!(window_spans(&tables(), &terms, None, 40).is_none());
    }

    #[test]
    fn only_tries_with_few_candidates_return_their_spans() {
        // The first try: 4 x limit over 2 shards, or on one node.
        assert!(returns_spans(40, 20));
        assert!(returns_spans(80, 20));
        // The next try keeps 8 times as many: ranked in the server.
        assert!(!returns_spans(320, 20));
        // A large limit: at most MAX_K candidates' spans a shard.
        assert!(returns_spans(MAX_K, 1000));
        assert!(!returns_spans(MAX_K + 1, 1000));
    }

    fn summary(start: u64, end: u64) -> TraceSummary {
        let mut span = Span::new(TraceId([1; 16]), crate::model::SpanId([2; 8]), "op");
        span.start_time_unix_nano = start;
        span.end_time_unix_nano = end;
        TraceSummary::of_spans(TraceId([1; 16]), [&span])
    }

    #[test]
    fn bounds_are_the_ones_the_server_ranking_checks() {
        let q = TraceQuery {
            service: Some("a".into()),
            start_time_min_unix_nano: Some(10),
            start_time_max_unix_nano: Some(20),
            ..TraceQuery::default()
        };
        assert!(within_bounds(&q, &summary(10, 100)));
        assert!(within_bounds(&q, &summary(20, 21)));
        assert!(!within_bounds(&q, &summary(9, 100)));
        assert!(!within_bounds(&q, &summary(21, 100)));
        // A lone duration bound is the trace's duration ...
        let lone = TraceQuery {
            min_duration_ns: Some(5),
            max_duration_ns: Some(8),
            ..TraceQuery::default()
        };
        assert!(within_bounds(&lone, &summary(10, 15)));
        assert!(!within_bounds(&lone, &summary(10, 14)));
        assert!(!within_bounds(&lone, &summary(10, 19)));
        // ... but with a service it is a span condition the prefilter checked.
        let with_service = TraceQuery {
            service: Some("a".into()),
            ..lone
        };
        assert!(within_bounds(&with_service, &summary(10, 14)));
    }

    #[test]
    fn an_answer_gives_candidates_spans_and_refusals() {
        let row = |b: u8, id: u8, span: u8, start: u64| {
            let mut w = Vec::new();
            w.push(b);
            w.extend([id; 16]);
            w.extend([span; 8]);
            w.extend([0u8, 1, 0]);
            for s in ["svc", "op"] {
                w.push(s.len() as u8);
                w.extend(s.as_bytes());
            }
            w.extend(start.to_le_bytes());
            w.extend((start + 5).to_le_bytes());
            w.extend(0i64.to_le_bytes());
            w.push(0);
            w
        };
        let answer = [
            row(0, 1, 1, 100),
            row(0, 1, 2, 90),
            row(1, 1, 0, 95),
            row(1, 3, 0, 80),
        ]
        .concat();
        let read = read_answer(&answer).unwrap();
        assert_eq!(
            read.candidates,
            vec![(95, TraceId([1; 16])), (80, TraceId([3; 16]))]
        );
        assert_eq!(read.spans[&TraceId([1; 16])].len(), 2);
        assert!(!read.spans.contains_key(&TraceId([3; 16])));
        assert!(!read.refusals);
        let with_refusals = [answer, row(2, 0, 0, 0)].concat();
        assert!(read_answer(&with_refusals).unwrap().refusals);
        // A cut answer is an error, not a panic.
        assert!(read_answer(&with_refusals[..with_refusals.len() - 3]).is_err());
    }
}
