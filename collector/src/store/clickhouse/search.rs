//! Trace search: [`sql::find_trace_ids`] picks the matching traces in the query's order (in
//! ClickHouse), then one more statement reads the summary columns of their spans, which are
//! folded with [`TraceSummary::add_span`], the one summary rule every backend shares.
//! Newest-first searches with a prefilter first try a bounded candidate set
//! ([`sql::newest_candidates`]), falling back to the full search when it cannot be exact.

use std::collections::HashMap;

use super::codec::read_summary_span;
use super::rowbinary::Reader;
use super::{Shared, sql};
use crate::model::{Span, TraceId};
use crate::store::{StoreError, TraceQuery, TraceSummary};

/// Summaries of the traces matching `query`, in its order, at most its limit.
///
/// # Errors
/// What a query failed with.
pub(super) async fn find_traces(
    shared: &Shared,
    query: &TraceQuery,
) -> Result<Vec<TraceSummary>, StoreError> {
    let ids = match newest_first(shared, query).await? {
        Some(ids) => ids,
        None => {
            let answer = shared
                .select(&sql::find_trace_ids(&shared.tables, query))
                .await?;
            read_found(&answer)?.into_iter().map(|(id, _)| id).collect()
        }
    };
    let mut summaries = summaries(shared, &ids).await?;
    let mut found: Vec<TraceSummary> = ids.iter().filter_map(|id| summaries.remove(id)).collect();
    query.sort_summaries(&mut found);
    Ok(found)
}

/// Candidates read per result wanted, for newest-first searches.
const CANDIDATES_PER_RESULT: usize = 8;

/// A newest-first search over a bounded candidate set: the traces whose latest matching
/// span started last ([`sql::newest_candidates`]). Every trace outside them starts no later
/// than the last candidate's span, so when the results fill the limit and the last one
/// starts strictly after that, they are exact; otherwise `None` (search everything).
async fn newest_first(
    shared: &Shared,
    query: &TraceQuery,
) -> Result<Option<Vec<TraceId>>, StoreError> {
    let k = query.effective_limit() * CANDIDATES_PER_RESULT;
    let Some(candidates_sql) = sql::newest_candidates(&shared.tables, query, k) else {
        return Ok(None);
    };
    let answer = shared.select(&candidates_sql).await?;
    let mut r = Reader::new(&answer);
    let mut candidates = Vec::new();
    let mut bound = 0;
    while !r.is_empty() {
        candidates.push(TraceId(r.fixed::<16>()?));
        bound = r.u64()?;
    }
    if candidates.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let answer = shared
        .select(&sql::find_trace_ids_among(
            &shared.tables,
            query,
            &candidates,
        ))
        .await?;
    let found = read_found(&answer)?;
    let all_candidates = candidates.len() < k;
    let exact = all_candidates
        || (found.len() == query.effective_limit()
            && found.last().is_some_and(|(_, start)| *start > bound));
    Ok(exact.then(|| found.into_iter().map(|(id, _)| id).collect()))
}

/// `(trace_id, t_start)` of each row of a [`sql::find_trace_ids`] answer.
fn read_found(answer: &[u8]) -> Result<Vec<(TraceId, u64)>, StoreError> {
    let mut r = Reader::new(answer);
    let mut found = Vec::new();
    while !r.is_empty() {
        let id = TraceId(r.fixed::<16>()?);
        let start = r.u64()?;
        r.u64()?;
        r.u64()?;
        found.push((id, start));
    }
    Ok(found)
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
    let answer = shared
        .select(&sql::summary_rows(&shared.tables, ids))
        .await?;
    let mut r = Reader::new(&answer);
    let mut spans: HashMap<TraceId, Vec<Span>> = HashMap::new();
    while !r.is_empty() {
        let span = read_summary_span(&mut r)?;
        spans.entry(span.trace_id).or_default().push(span);
    }
    let refused = refused_counts(shared, ids).await?;
    Ok(spans
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
        .collect())
}

/// Spans refused at the per-trace limit, per trace among `ids` (absent: none).
///
/// # Errors
/// What the query failed with.
pub(super) async fn refused_counts(
    shared: &Shared,
    ids: &[TraceId],
) -> Result<HashMap<TraceId, u64>, StoreError> {
    let answer = shared.select(&sql::refused(&shared.tables, ids)).await?;
    let mut r = Reader::new(&answer);
    let mut out = HashMap::new();
    while !r.is_empty() {
        let id = TraceId(r.fixed::<16>()?);
        out.insert(id, r.u64()?);
    }
    Ok(out)
}
