//! Trace search: [`search_sql::find_trace_ids`] picks the matching traces in the query's
//! order (in ClickHouse, each shard its own; sorted together here), then one more statement
//! reads the summary columns of their spans, which are folded with
//! [`TraceSummary::add_span`], the one summary rule every backend shares.
//!
//! Newest-first searches do bounded work: they look for candidates in time windows that
//! widen backwards from the newest span start ([`WINDOWS_NS`], from `newest_local`), keep
//! the `k` newest candidates of a window, rank those, and stop at the first window whose
//! results are certain to be the exact answer ([`newest_first`]; with the shards apart, a
//! search by service keeps and ranks each shard's own candidates in one statement, and its
//! first try returns the candidates' spans instead, ranked here: `window_spans.rs`); a
//! search starts at the
//! window that held the last result of the previous search of its shape and service
//! ([`first_window`], [`window_hint`]). Duration-sorted searches walk the traces longest first
//! (`longest.rs`). The full search is the last resort of both (ranking the candidates from
//! the per-trace summaries when the prefilter checked every span condition).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::codec::read_summary_span;
use super::rowbinary::Reader;
use super::window_spans::{CandidateSpans, returns_spans};
use super::{Shared, search_sql, sql};
use crate::model::{Span, TraceId};
use crate::store::{SortOrder, StoreError, TraceQuery, TraceSummary};

/// Summaries of the traces matching `query`, in its order, at most its limit.
///
/// # Errors
/// What a query failed with.
pub(super) async fn find_traces(
    shared: &Arc<Shared>,
    query: &TraceQuery,
) -> Result<Vec<TraceSummary>, StoreError> {
    let (walked, spans) = match newest_first(shared, query).await? {
        Some((ids, spans)) => (Some(ids), spans),
        None => (super::longest::longest_first(shared, query).await?, None),
    };
    let ids = match walked {
        Some(ids) => ids,
        None => {
            let sql = search_sql::find_trace_ids(&shared.tables, query);
            ranked(
                query,
                &shared.select_per_shard(&sql).await?,
                query.effective_limit(),
            )?
            .iter()
            .map(|f| f.id)
            .collect()
        }
    };
    let mut summaries = match spans {
        Some(kept) => summaries_of_kept(shared, &ids, kept).await?,
        None => summaries(shared, &ids).await?,
    };
    let mut found: Vec<TraceSummary> = ids.iter().filter_map(|id| summaries.remove(id)).collect();
    query.sort_summaries(&mut found);
    Ok(found)
}

/// Candidates kept per result wanted, at first: each costs a granule read in step two.
const CANDIDATES_PER_RESULT: usize = 4;

/// How many times more candidates a window's next try keeps.
const CANDIDATES_GROWTH: usize = 8;

/// Most candidates kept in one window before falling back to the full search.
const MAX_CANDIDATES: usize = 20_000;

/// How far back from the newest span start each window of a newest-first search reaches,
/// ns; after the last, the search covers all time.
pub(super) const WINDOWS_NS: [u64; 10] = [
    100_000,            // 100 µs
    1_000_000,          // 1 ms
    10_000_000,         // 10 ms
    100_000_000,        // 100 ms
    1_000_000_000,      // 1 s
    10_000_000_000,     // 10 s
    60_000_000_000,     // 1 min
    600_000_000_000,    // 10 min
    3_600_000_000_000,  // 1 h
    86_400_000_000_000, // 1 day
];

/// How long a read of `newest_local` is reused.
const NEWEST_TTL: Duration = Duration::from_secs(1);

/// Where the windows of `query` start: the newest span start of its service (of any service
/// without one), at most now and at most the query's `start_time_max` (a window starting
/// later cannot hold a result's start). A stale or missing value costs work, never
/// exactness: each window reaches forward without bound.
async fn anchor(shared: &Arc<Shared>, query: &TraceQuery) -> Result<u64, StoreError> {
    let now = crate::time::now_unix_nano();
    let newest = newest_starts(shared).await?;
    let newest = match &query.service {
        Some(s) => newest.get(s).copied(),
        None => newest.values().copied().max(),
    };
    Ok(newest
        .unwrap_or(now)
        .min(now)
        .min(query.start_time_max_unix_nano.unwrap_or(u64::MAX)))
}

/// The newest span start per service (`newest_local`): read inline the first time, then
/// reused; once older than [`NEWEST_TTL`] it is read again in the background (one read at a
/// time) while searches go on with the value they have, so no search waits for it (a stale
/// value costs work, never exactness: see [`anchor`]).
async fn newest_starts(shared: &Arc<Shared>) -> Result<HashMap<String, u64>, StoreError> {
    {
        let mut cached = shared.newest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, map)) = cached.as_mut() {
            if at.elapsed() >= NEWEST_TTL {
                *at = Instant::now();
                let shared = Arc::clone(shared);
                tokio::spawn(async move {
                    // A failed read keeps the value; the next search after the TTL retries.
                    let _ = read_newest_starts(&shared).await;
                });
            }
            return Ok(map.clone());
        }
    }
    read_newest_starts(shared).await
}

/// Reads `newest_local` and caches it for [`newest_starts`].
async fn read_newest_starts(shared: &Shared) -> Result<HashMap<String, u64>, StoreError> {
    let answer = shared.select(&sql::newest_starts(&shared.tables)).await?;
    let mut r = Reader::new(&answer);
    let mut map = HashMap::new();
    while !r.is_empty() {
        let service = String::from_utf8_lossy(r.bytes()?).into_owned();
        map.insert(service, r.u64()?);
    }
    *shared.newest.lock().unwrap_or_else(PoisonError::into_inner) =
        Some((Instant::now(), map.clone()));
    Ok(map)
}

/// A newest-first search in widening time windows (see the module docs): the ids, and the
/// candidates' spans when the try that answered returned them (`window_spans.rs`); `None`
/// for other orders, or when a window would need more than [`MAX_CANDIDATES`] candidates
/// (search everything then).
///
/// In a window from `from`, the `k` candidates (of the cluster, or of each shard when the
/// shards answer apart: [`window_step_per_shard`], one round trip per try instead of two)
/// are the traces whose earliest span in the window meeting the prefilter sorts first by
/// `(start, trace_id)`. A trace left out starts before `from`, or sorts after the last
/// candidate `(s, id)` of its shard (its start is at most that span's), so after the
/// largest of those over the shards that left traces out. So results sorted by
/// `(start, trace_id)` are exact when they fill the limit and the last one sorts after
/// both: it starts at or after `from`, and after that bound. Otherwise: a wider window if
/// the results start too early, else more candidates.
async fn newest_first(
    shared: &Arc<Shared>,
    query: &TraceQuery,
) -> Result<Option<(Vec<TraceId>, Option<CandidateSpans>)>, StoreError> {
    if query.sort != crate::store::SortOrder::Newest {
        return Ok(None);
    }
    let limit = query.effective_limit();
    let anchor = anchor(shared, query).await?;
    let min = query.start_time_min_unix_nano.unwrap_or(0);
    let windows = WINDOWS_NS
        .iter()
        .skip(window_hint(shared, query))
        .map(|w| anchor.checked_sub(*w).filter(|from| *from > min))
        .take_while(Option::is_some)
        .chain([None]);
    // Each shard keeps and ranks its own candidates in one statement, which reads the
    // window's search rows twice (the candidates, and their ranking): only when that read
    // is cheap, a short key range (a service) and no attribute arrays; otherwise the
    // cluster's candidates, then each shard ranks its own (BENCHMARKS.md §6.9).
    let apart = shared
        .shards_apart()
        .filter(|_| query.service.is_some() && query.attributes.is_empty());
    // Candidates per shard when each shard keeps its own: the same total at first.
    let mut k = match apart {
        Some(shards) => (limit * CANDIDATES_PER_RESULT).div_ceil(shards).max(limit),
        None => limit * CANDIDATES_PER_RESULT,
    };
    for from in windows {
        loop {
            // A try by service with few candidates returns their spans with the step.
            let with_spans = match apart {
                Some(_) if returns_spans(k, limit) => {
                    super::window_spans::step(shared, query, from, k).await?
                }
                _ => None,
            };
            let (step, spans) = match with_spans {
                Some((step, spans)) => (Some(step), Some(spans)),
                None => match apart {
                    Some(_) => (window_step_per_shard(shared, query, from, k).await?, None),
                    None => (window_step(shared, query, from, k).await?, None),
                },
            };
            let Some(WindowStep {
                found,
                candidates,
                all_kept,
                bound,
            }) = step
            else {
                return Ok(None);
            };
            if from.is_some() && candidates < limit {
                break; // too few to fill the limit: widen
            }
            if candidates == 0 {
                return Ok(Some((Vec::new(), None)));
            }
            let last = found.last().map(|f| (f.start_ns, f.id));
            let in_window = match (from, last) {
                (None, _) => true,
                (Some(from), Some((start, _))) => start >= from,
                (Some(_), None) => false,
            };
            let after_bound = all_kept || last.is_some_and(|l| l > bound);
            if found.len() == limit && in_window && after_bound || from.is_none() && all_kept {
                if let Some((start, _)) = last.filter(|_| found.len() == limit) {
                    set_window_hint(shared, query, first_window(anchor, start));
                }
                return Ok(Some((found.iter().map(|f| f.id).collect(), spans)));
            }
            if !in_window || found.len() < limit && all_kept {
                break; // the window holds too few results: widen
            }
            k *= CANDIDATES_GROWTH;
            if k > MAX_CANDIDATES {
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// One try of a newest-first search in one window: the candidates, and the best of them
/// ranked.
pub(super) struct WindowStep {
    /// The best candidates ranked as the query orders, at most its limit (none when there
    /// were too few candidates to fill it, or none at all).
    pub(super) found: Vec<Found>,
    /// How many candidates were kept (every shard's together).
    pub(super) candidates: usize,
    /// No shard had more candidates than it kept.
    pub(super) all_kept: bool,
    /// What every trace a shard left out sorts before by `(start, trace_id)`, for the
    /// shards that did: the largest of their last candidates (see [`newest_first`]).
    pub(super) bound: (u64, TraceId),
}

/// A [`WindowStep`] in two statements: the `k` candidates of the whole cluster
/// ([`search_sql::window_candidates`]), then each shard ranks its own. `None` when the
/// query has no window statement.
async fn window_step(
    shared: &Shared,
    query: &TraceQuery,
    from: Option<u64>,
    k: usize,
) -> Result<Option<WindowStep>, StoreError> {
    let Some(sql) = search_sql::window_candidates(&shared.tables, query, from, k) else {
        return Ok(None);
    };
    let answer = shared.select(&sql).await?;
    let mut r = Reader::new(&answer);
    let mut candidates = Vec::new();
    let mut bound = (0, TraceId([0; 16]));
    while !r.is_empty() {
        let id = TraceId(r.fixed::<16>()?);
        bound = (r.u64()?, id);
        candidates.push(id);
    }
    let limit = query.effective_limit();
    let found = if candidates.is_empty() || from.is_some() && candidates.len() < limit {
        Vec::new()
    } else {
        let answer = shared
            .select_traces(&candidates, true, |tables, ids| {
                search_sql::find_trace_ids_among(tables, query, ids)
            })
            .await?;
        ranked(query, &answer, limit)?
    };
    Ok(Some(WindowStep {
        found,
        candidates: candidates.len(),
        all_kept: candidates.len() < k,
        bound,
    }))
}

/// A [`WindowStep`] in one statement per shard, the shards at once: each keeps its own `k`
/// candidates and ranks them ([`search_sql::window_step`]; needs [`Shared::shards_apart`]).
async fn window_step_per_shard(
    shared: &Shared,
    query: &TraceQuery,
    from: Option<u64>,
    k: usize,
) -> Result<Option<WindowStep>, StoreError> {
    if search_sql::window_step(&shared.tables, query, from, k).is_none() {
        return Ok(None);
    }
    let answers = shared
        .select_each_shard(|t| search_sql::window_step(t, query, from, k).unwrap_or_default())
        .await?;
    let mut found = Vec::new();
    let mut step = WindowStep {
        found: Vec::new(),
        candidates: 0,
        all_kept: true,
        bound: (0, TraceId([0; 16])),
    };
    for answer in &answers {
        let mut r = Reader::new(answer);
        let mut kept = 0;
        let mut last = None;
        while !r.is_empty() {
            let candidate = r.u8()? == 1;
            let id = TraceId(r.fixed::<16>()?);
            let start_ns = r.u64()?;
            r.u64()?;
            let duration_ns = r.u64()?;
            if candidate {
                kept += 1;
                last = Some(last.map_or((start_ns, id), |l: (u64, TraceId)| l.min((start_ns, id))));
            } else {
                found.push(Found {
                    id,
                    start_ns,
                    duration_ns,
                });
            }
        }
        step.candidates += kept;
        if kept >= k {
            step.all_kept = false;
            if let Some(last) = last {
                step.bound = step.bound.max(last);
            }
        }
    }
    step.found = sorted(query, found, query.effective_limit());
    Ok(Some(step))
}

/// Where newest-first searches start: per `(shape, service)`, an index into [`WINDOWS_NS`]
/// (`Shared::window_hints`; the service `None` of a shape with a service: any service).
pub(super) type WindowHints = HashMap<(usize, Option<String>), usize>;

/// Most entries of [`WindowHints`]; past it they are forgotten (a hint costs work when
/// wrong, never exactness).
const MAX_WINDOW_HINTS: usize = 1024;

/// The window a newest-first search of `query` starts at: where the last one of its shape
/// and service ended, else the last one of its shape (another service: a guess), else 0.
fn window_hint(shared: &Shared, query: &TraceQuery) -> usize {
    let hints = shared
        .window_hints
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let shape = shape(query);
    hints
        .get(&(shape, query.service.clone()))
        .or_else(|| hints.get(&(shape, None)))
        .copied()
        .unwrap_or(0)
}

/// Records `window` (an index into [`WINDOWS_NS`]) as where the next newest-first search of
/// `query`'s shape and service starts, and of its shape for a service not seen yet.
fn set_window_hint(shared: &Shared, query: &TraceQuery, window: usize) {
    let mut hints = shared
        .window_hints
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if hints.len() >= MAX_WINDOW_HINTS {
        hints.clear();
    }
    let shape = shape(query);
    hints.insert((shape, None), window);
    if query.service.is_some() {
        hints.insert((shape, query.service.clone()), window);
    }
}

/// Which conditions a newest-first search has (service or operation, attributes, kind or
/// status, duration; 16 shapes): part of its key in `Shared::window_hints`.
fn shape(query: &TraceQuery) -> usize {
    usize::from(query.service.is_some() || query.operation.is_some())
        | usize::from(!query.attributes.is_empty()) << 1
        | usize::from(query.kind.is_some() || query.status.is_some() || query.errors_only) << 2
        | usize::from(query.min_duration_ns.is_some() || query.max_duration_ns.is_some()) << 3
}

/// The index of the narrowest window of [`WINDOWS_NS`] reaching back from `anchor` to
/// `start_ns` (the last result of a search): where the next search of the same shape starts
/// (a hint: a narrower window than needed costs a round trip, a wider one a longer scan;
/// the answer is exact either way). At most the last window, never all time.
fn first_window(anchor: u64, start_ns: u64) -> usize {
    let back_ns = anchor.saturating_sub(start_ns);
    WINDOWS_NS
        .iter()
        .position(|w| *w >= back_ns)
        .unwrap_or(WINDOWS_NS.len() - 1)
}

/// One row of a per-trace aggregate ([`search_sql::find_trace_ids`] and the like).
pub(super) struct Found {
    pub(super) id: TraceId,
    /// The trace's first span start, unix ns.
    pub(super) start_ns: u64,
    /// The trace's duration, ns.
    pub(super) duration_ns: u64,
}

/// The rows `(trace_id, t_start, t_end, t_dur)` of a per-trace aggregate that each shard
/// answered alone, sorted together in the query's order (ties: larger trace id first),
/// the first `keep`.
fn ranked(query: &TraceQuery, answer: &[u8], keep: usize) -> Result<Vec<Found>, StoreError> {
    let mut r = Reader::new(answer);
    let mut found = Vec::new();
    while !r.is_empty() {
        let id = TraceId(r.fixed::<16>()?);
        let start_ns = r.u64()?;
        r.u64()?;
        let duration_ns = r.u64()?;
        found.push(Found {
            id,
            start_ns,
            duration_ns,
        });
    }
    Ok(sorted(query, found, keep))
}

/// `found` in the query's order (ties: larger trace id first), the first `keep`.
pub(super) fn sorted(query: &TraceQuery, mut found: Vec<Found>, keep: usize) -> Vec<Found> {
    match query.sort {
        SortOrder::Newest => found.sort_by_key(|f| std::cmp::Reverse((f.start_ns, f.id))),
        SortOrder::Duration => found.sort_by_key(|f| std::cmp::Reverse((f.duration_ns, f.id))),
    }
    found.truncate(keep);
    found
}

/// The summaries of `ids` (traces without stored spans are left out).
///
/// # Errors
/// What a query failed with.
pub(super) async fn summaries(
    shared: &Shared,
    ids: &[TraceId],
) -> Result<HashMap<TraceId, TraceSummary>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    // Two statements at once (per shard, each naming its own traces): one round trip's wait.
    let (answer, mut refused) = tokio::try_join!(
        shared.select_traces(ids, false, sql::summary_rows),
        refused_counts(shared, ids)
    )?;
    let mut spans: HashMap<TraceId, Vec<Span>> = HashMap::new();
    summary_spans(&answer, &mut spans)?;
    let missed: Vec<TraceId> = ids
        .iter()
        .filter(|id| !spans.contains_key(*id))
        .copied()
        .collect();
    if !missed.is_empty() && shared.may_miss_by_shard() {
        // Not on their shards: every shard, through the store's tables.
        let rows = sql::summary_rows(&shared.tables, &missed);
        let counts = sql::refused(&shared.tables, &missed);
        let (answer, more) = tokio::try_join!(shared.select(&rows), shared.select(&counts))?;
        summary_spans(&answer, &mut spans)?;
        refused.extend(refused_rows(&more)?);
    }
    Ok(fold(spans, &refused))
}

/// The summaries of `ids` from the spans a window step returned (`window_spans.rs`): no
/// span read, and the refusal counts only when a shard holds any.
///
/// # Errors
/// What the refusal read failed with.
async fn summaries_of_kept(
    shared: &Shared,
    ids: &[TraceId],
    mut kept: CandidateSpans,
) -> Result<HashMap<TraceId, TraceSummary>, StoreError> {
    let refused = match kept.refusals {
        true => refused_counts(shared, ids).await?,
        false => HashMap::new(),
    };
    let spans = ids
        .iter()
        .filter_map(|id| kept.spans.remove_entry(id))
        .collect();
    Ok(fold(spans, &refused))
}

/// Each trace's summary over its spans (copies of a span dropped: same span id and kind),
/// with its refusal count.
fn fold(
    spans: HashMap<TraceId, Vec<Span>>,
    refused: &HashMap<TraceId, u64>,
) -> HashMap<TraceId, TraceSummary> {
    spans
        .into_iter()
        .map(|(id, mut list)| {
            list.sort_by(|a, b| {
                (a.start_time_unix_nano, a.span_id, a.kind).cmp(&(
                    b.start_time_unix_nano,
                    b.span_id,
                    b.kind,
                ))
            });
            list.dedup_by(|a, b| (a.span_id, a.kind) == (b.span_id, b.kind));
            let mut summary = TraceSummary::of_spans(id, &list);
            summary.spans_refused = refused.get(&id).copied().unwrap_or(0);
            (id, summary)
        })
        .collect()
}

/// Spans refused at the per-trace limit, per trace among `ids` (absent: none).
///
/// # Errors
/// What the query failed with.
pub(super) async fn refused_counts(
    shared: &Shared,
    ids: &[TraceId],
) -> Result<HashMap<TraceId, u64>, StoreError> {
    refused_rows(&shared.select_traces(ids, false, sql::refused).await?)
}

/// The rows `(trace_id, refused)` of [`sql::refused`].
pub(super) fn refused_rows(answer: &[u8]) -> Result<HashMap<TraceId, u64>, StoreError> {
    let mut r = Reader::new(answer);
    let mut out = HashMap::new();
    while !r.is_empty() {
        let id = TraceId(r.fixed::<16>()?);
        out.insert(id, r.u64()?);
    }
    Ok(out)
}

/// Adds the spans of `answer` (rows of [`sql::summary_rows`]) to `spans`, per trace.
fn summary_spans(answer: &[u8], spans: &mut HashMap<TraceId, Vec<Span>>) -> Result<(), StoreError> {
    let mut r = Reader::new(answer);
    while !r.is_empty() {
        let span = read_summary_span(&mut r)?;
        spans.entry(span.trace_id).or_default().push(span);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_search_starts_at_the_window_that_held_the_last_result() {
        let anchor = 1_000_000_000_000_000_000;
        assert_eq!(first_window(anchor, anchor), 0);
        assert_eq!(first_window(anchor, anchor - 100_000), 0);
        assert_eq!(first_window(anchor, anchor - 100_001), 1);
        assert_eq!(first_window(anchor, anchor - 5_000_000), 2);
        // Older than every window: the widest, never all time.
        assert_eq!(first_window(anchor, 0), WINDOWS_NS.len() - 1);
        // A result after the anchor (a span newer than `newest_local` said): the first.
        assert_eq!(first_window(anchor, anchor + 7), 0);
    }

    #[test]
    fn shapes_tell_the_condition_groups_apart() {
        let service = TraceQuery {
            service: Some("a".into()),
            ..TraceQuery::default()
        };
        let attribute = TraceQuery {
            attributes: vec![("k".into(), "v".into())],
            ..TraceQuery::default()
        };
        let both = TraceQuery {
            min_duration_ns: Some(1),
            ..attribute.clone()
        };
        let shapes = [
            shape(&TraceQuery::default()),
            shape(&service),
            shape(&attribute),
            shape(&both),
        ];
        assert_eq!(shapes, [0, 1, 2, 10]);
        assert!(shapes.iter().all(|s| *s < 16));
    }
}
