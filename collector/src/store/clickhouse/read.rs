//! Reads by trace id and the listings: services, operations, the dependency graph and the
//! request samples behind `/v1/stats`. Each is one statement on the main node (a trace's:
//! its spans and refusal count together, on the node of its shard when the collector writes
//! per shard, `Shared::select_traces`); the work ClickHouse cannot do in 18.16's dialect
//! (matching a span to its parent in another service) is done here, as the memory store does.

use std::collections::HashMap;

use super::codec::read_span;
use super::rowbinary::Reader;
use super::search::refused_rows;
use super::{Shared, sql};
use crate::model::{SpanId, SpanKind, StatusCode, TraceId};
use crate::store::{
    DependencyEdge, EdgeCounts, MAX_TRACE_SPANS, Operation, OperationSamples, SpanHop, StoreError,
    StoredTrace, TimeWindow, TraceSummary, group_samples,
};

/// The spans (ordered by start, span id, kind; at most [`MAX_TRACE_SPANS`]) and summary of
/// one trace, or `None`.
///
/// # Errors
/// What the query failed with.
pub(super) async fn get_trace(
    shared: &Shared,
    trace_id: TraceId,
) -> Result<Option<StoredTrace>, StoreError> {
    let apart = shared.shards_apart().is_some();
    let mut answer = Vec::new();
    if apart {
        answer = shared
            .select_traces(&[trace_id], false, |tables, _| {
                sql::trace_spans(tables, trace_id)
            })
            .await?;
    }
    let mut refused_apart = None;
    if !apart || answer.is_empty() && shared.may_miss_by_shard() {
        // Through the `Distributed` tables: the refusal count in a second statement, at once.
        let spans = sql::trace_spans(&shared.tables, trace_id);
        let counts = sql::refused(&shared.tables, &[trace_id]);
        let (rows, counts) = tokio::try_join!(shared.select(&spans), shared.select(&counts))?;
        answer = rows;
        refused_apart = Some(refused_rows(&counts)?.remove(&trace_id).unwrap_or(0));
    }
    let mut refused = 0;
    let mut spans = Reader::new(&answer).rows(|r| {
        let span = read_span(r)?;
        refused = r.u64()?;
        Ok(span)
    })?;
    let refused = refused_apart.unwrap_or(refused);
    if spans.is_empty() {
        return Ok(None);
    }
    spans.sort_by(|a, b| {
        (a.start_time_unix_nano, a.span_id, a.kind).cmp(&(
            b.start_time_unix_nano,
            b.span_id,
            b.kind,
        ))
    });
    // A span the duplicate check missed (see insert::lookup_since) is stored twice: show it once.
    spans.dedup_by(|a, b| (a.span_id, a.kind) == (b.span_id, b.kind));
    let mut summary = TraceSummary::of_spans(trace_id, &spans);
    summary.spans_refused = refused;
    spans.truncate(MAX_TRACE_SPANS);
    Ok(Some(StoredTrace { summary, spans }))
}

/// The other traces with a span linking to `trace_id`, ascending, at most `limit`.
///
/// # Errors
/// What the query failed with.
pub(super) async fn traces_linking_to(
    shared: &Shared,
    trace_id: TraceId,
    limit: usize,
) -> Result<Vec<TraceId>, StoreError> {
    shared
        .select_rows(
            &sql::traces_linking_to(&shared.tables, trace_id, limit),
            |r| Ok(TraceId(r.fixed::<16>()?)),
        )
        .await
}

/// Every service, sorted.
///
/// # Errors
/// What the query failed with.
pub(super) async fn services(shared: &Shared) -> Result<Vec<String>, StoreError> {
    shared
        .select_rows(&sql::services(&shared.tables), |r| r.string())
        .await
}

/// Every (name, kind) of `service`, sorted.
///
/// # Errors
/// What the query failed with.
pub(super) async fn operations(
    shared: &Shared,
    service: &str,
) -> Result<Vec<Operation>, StoreError> {
    let mut out = shared
        .select_rows(&sql::operations(&shared.tables, service), |r| {
            let name = r.string()?;
            let kind = SpanKind::from_i32(i32::from(r.u8()?));
            Ok(Operation { name, kind })
        })
        .await?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// What the dependency graph needs of a span.
struct Hop {
    span_id: SpanId,
    parent: Option<SpanId>,
    kind: SpanKind,
    error: bool,
    service: String,
    name: String,
    start: u64,
}

/// The dependency graph over `window` (by child span start), as [`DependencyEdge`] defines.
///
/// # Errors
/// What the query failed with.
pub(super) async fn dependencies(
    shared: &Shared,
    window: TimeWindow,
) -> Result<Vec<DependencyEdge>, StoreError> {
    let rows = shared
        .select_rows(&sql::dependency_rows(&shared.tables, window), |r| {
            let trace = TraceId(r.fixed::<16>()?);
            let span_id = SpanId(r.fixed::<8>()?);
            let parent = SpanId(r.fixed::<8>()?);
            let has_parent = r.u8()? != 0;
            let kind = SpanKind::from_i32(i32::from(r.u8()?));
            let error = StatusCode::from_i32(i32::from(r.u8()?)) == StatusCode::Error;
            let service = r.string()?;
            let name = r.string()?;
            let start = r.u64()?;
            let hop = Hop {
                span_id,
                parent: has_parent.then_some(parent),
                kind,
                error,
                service,
                name,
                start,
            };
            Ok((trace, hop))
        })
        .await?;
    let mut traces: HashMap<TraceId, Vec<Hop>> = HashMap::new();
    for (trace, hop) in rows {
        traces.entry(trace).or_default().push(hop);
    }
    let mut edges = EdgeCounts::default();
    for spans in traces.values_mut() {
        // Resent spans stored twice count once.
        spans.sort_by_key(|a| (a.span_id, a.kind));
        spans.dedup_by(|a, b| (a.span_id, a.kind) == (b.span_id, b.kind));
        let hops: Vec<SpanHop<'_>> = spans
            .iter()
            .map(|h| SpanHop {
                span_id: h.span_id,
                parent: h.parent,
                kind: h.kind,
                error: h.error,
                service: &h.service,
                name: &h.name,
                start_unix_nano: h.start,
            })
            .collect();
        edges.add_trace(&hops, window);
    }
    Ok(edges.into_edges())
}

/// The SERVER and CONSUMER spans that started in `window` (of `service`, when given).
///
/// # Errors
/// What the query failed with.
pub(super) async fn samples(
    shared: &Shared,
    window: TimeWindow,
    service: Option<&str>,
) -> Result<Vec<OperationSamples>, StoreError> {
    let rows = shared
        .select_rows(&sql::sample_rows(&shared.tables, window, service), |r| {
            let service = r.string()?;
            let name = r.string()?;
            let duration = r.u64()?;
            let error = StatusCode::from_i32(i32::from(r.u8()?)) == StatusCode::Error;
            Ok((service, name, duration, error))
        })
        .await?;
    Ok(group_samples(rows))
}
