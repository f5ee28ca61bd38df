//! Trace search: [`sql::find_trace_ids`] picks the matching traces in the query's order (in
//! ClickHouse), then one more statement reads the summary columns of their spans, which are
//! folded with [`TraceSummary::add_span`], the one summary rule every backend shares.

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
    let answer = shared
        .select(&sql::find_trace_ids(&shared.tables, query))
        .await?;
    let mut r = Reader::new(&answer);
    let mut ids = Vec::new();
    while !r.is_empty() {
        ids.push(TraceId(r.fixed::<16>()?));
        for _ in 0..3 {
            r.u64()?;
        }
    }
    let mut summaries = summaries(shared, &ids).await?;
    let mut found: Vec<TraceSummary> = ids.iter().filter_map(|id| summaries.remove(id)).collect();
    query.sort_summaries(&mut found);
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
