//! In-memory [`SpanStore`]: for tests and throwaway demos. Nothing survives a restart and
//! memory is unbounded; searches scan every trace.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::{
    BoxFuture, ConsumerGroupSeen, DependencyEdge, EdgeCounts, MAX_TRACE_SPANS, Operation,
    OperationSamples, RetentionOutcome, RetentionPolicy, SamplingDecision, SpanHop, SpanStore,
    StoreError, StoredTrace, TimeWindow, TraceQuery, TraceSummary, WriteOutcome, attr_index_text,
    group_samples,
};
use crate::model::{Span, SpanId, SpanKind, TraceId};

/// A [`SpanStore`] that keeps everything in process memory.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    commits: watch::Sender<u64>,
    max_spans_per_trace: usize,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, MemTrace>,
    /// Tail sampling decisions, deleted with their traces.
    decisions: HashMap<TraceId, SamplingDecision>,
    /// (destination, group) -> last seen, unix ns.
    consumer_groups: HashMap<(String, String), u64>,
    closed: bool,
}

#[derive(Debug)]
struct MemTrace {
    spans: Vec<Span>,
    keys: HashSet<(SpanId, SpanKind)>,
    /// (service, span name) pairs, for search.
    pairs: HashSet<(String, String)>,
    summary: TraceSummary,
    /// When the first span of the trace was stored (unix ns): retention ages by it, never by
    /// a start a client claims.
    received_unix_nano: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            commits: watch::Sender::new(0),
            max_spans_per_trace: super::DEFAULT_MAX_SPANS_PER_TRACE,
        }
    }

    /// The same store, refusing new spans of traces that hold `max` spans.
    pub fn with_max_spans_per_trace(mut self, max: usize) -> Self {
        self.max_spans_per_trace = max;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch behind (batches are
        // applied after validation, with infallible operations), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`lock`](Self::lock) for a change: [`StoreError::Closed`] once the store is shut down.
    fn lock_open(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        Ok(inner)
    }

    fn write_now(&self, spans: Vec<Span>) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.lock_open()?;
        let mut outcome = WriteOutcome::default();
        for span in spans {
            let trace = inner
                .traces
                .entry(span.trace_id)
                .or_insert_with(|| MemTrace {
                    spans: Vec::new(),
                    keys: HashSet::new(),
                    pairs: HashSet::new(),
                    summary: TraceSummary::new(span.trace_id),
                    received_unix_nano: crate::time::now_unix_nano(),
                });
            if trace.keys.contains(&(span.span_id, span.kind)) {
                outcome.duplicates += 1;
                continue;
            }
            if trace.spans.len() >= self.max_spans_per_trace {
                outcome.over_limit += 1;
                trace.summary.spans_refused += 1;
                continue;
            }
            trace.keys.insert((span.span_id, span.kind));
            trace.summary.add_span(&span);
            trace
                .pairs
                .insert((span.service_name.to_string(), span.name.to_string()));
            trace.spans.push(span);
            outcome.stored += 1;
        }
        drop(inner);
        self.commits.send_modify(|n| *n += 1);
        Ok(outcome)
    }

    fn find_now(&self, query: &TraceQuery) -> Vec<TraceSummary> {
        let inner = self.lock();
        let mut found: Vec<TraceSummary> = inner
            .traces
            .values()
            .filter(|t| !query.needs_span_check() || query.matches_trace(&t.summary, &t.spans))
            .filter(|t| query.needs_span_check() || query.matches_summary(&t.summary))
            .filter(|t| {
                t.pairs.iter().any(|(service, name)| {
                    query.service.as_ref().is_none_or(|s| s == service)
                        && query.operation.as_ref().is_none_or(|o| o == name)
                })
            })
            .filter(|t| {
                query.attributes.iter().all(|(key, value)| {
                    t.spans.iter().any(|s| {
                        s.attributes.iter().any(|kv| {
                            kv.key == *key
                                && attr_index_text(&kv.value).is_some_and(|v| v == *value)
                        })
                    })
                })
            })
            .map(|t| t.summary.clone())
            .collect();
        query.sort_summaries(&mut found);
        found.truncate(query.effective_limit());
        found
    }

    fn dependencies_now(&self, window: TimeWindow) -> Vec<DependencyEdge> {
        let inner = self.lock();
        let mut edges = EdgeCounts::default();
        for t in inner.traces.values() {
            let hops: Vec<SpanHop<'_>> = t.spans.iter().map(SpanHop::of).collect();
            edges.add_trace(&hops, window);
        }
        edges.into_edges()
    }

    fn samples_now(&self, window: TimeWindow, service: Option<&str>) -> Vec<OperationSamples> {
        let inner = self.lock();
        group_samples(
            inner
                .traces
                .values()
                .flat_map(|t| t.spans.iter())
                .filter(|s| is_entry(s) && window.contains(s.start_time_unix_nano))
                .filter(|s| service.is_none_or(|w| w == s.service_name))
                .map(|s| {
                    (
                        s.service_name.to_string(),
                        s.name.to_string(),
                        s.duration_ns(),
                        s.is_error(),
                    )
                }),
        )
    }

    fn retention_now(&self, policy: RetentionPolicy) -> Result<RetentionOutcome, StoreError> {
        let mut inner = self.lock_open()?;
        let mut outcome = RetentionOutcome::default();
        let Some(cutoff) = policy.delete_before_unix_nano else {
            return Ok(outcome);
        };
        let mut old: Vec<(u64, TraceId)> = inner
            .traces
            .values()
            .filter(|t| t.received_unix_nano < cutoff)
            .map(|t| (t.received_unix_nano, t.summary.trace_id))
            .collect();
        old.sort_unstable();
        let batch = policy.batch_traces.max(1);
        outcome.more = old.len() > batch;
        for (_, id) in old.into_iter().take(batch) {
            inner.decisions.remove(&id);
            if let Some(t) = inner.traces.remove(&id) {
                outcome.traces_deleted += 1;
                outcome.spans_deleted += t.spans.len() as u64;
            }
        }
        Ok(outcome)
    }
}

/// SERVER and CONSUMER spans: the entry points that stats and dependencies count.
pub(crate) fn is_entry(s: &Span) -> bool {
    matches!(s.kind, SpanKind::Server | SpanKind::Consumer)
}

impl SpanStore for MemoryStore {
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        Box::pin(async move { self.write_now(spans) })
    }

    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            Ok(inner.traces.get(&trace_id).map(|t| {
                let mut spans = t.spans.clone();
                spans.sort_by(|a, b| {
                    (a.start_time_unix_nano, a.span_id, a.kind).cmp(&(
                        b.start_time_unix_nano,
                        b.span_id,
                        b.kind,
                    ))
                });
                spans.truncate(MAX_TRACE_SPANS);
                StoredTrace {
                    summary: t.summary.clone(),
                    spans,
                }
            }))
        })
    }

    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>> {
        Box::pin(async move { Ok(self.find_now(&query)) })
    }

    fn traces_linking_to(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TraceId>, StoreError>> {
        let inner = self.lock();
        let mut found: Vec<TraceId> = inner
            .traces
            .iter()
            .filter(|(id, t)| {
                **id != trace_id
                    && t.spans
                        .iter()
                        .any(|s| s.links.iter().any(|l| l.trace_id == trace_id))
            })
            .map(|(id, _)| *id)
            .collect();
        drop(inner);
        found.sort_unstable_by_key(|id| id.0);
        found.truncate(limit);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            let set: BTreeSet<String> = inner
                .traces
                .values()
                .flat_map(|t| t.summary.services.iter().cloned())
                .collect();
            Ok(set.into_iter().collect())
        })
    }

    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            let set: BTreeSet<Operation> = inner
                .traces
                .values()
                .flat_map(|t| t.spans.iter())
                .filter(|s| s.service_name == service)
                .map(|s| Operation {
                    name: s.name.to_string(),
                    kind: s.kind,
                })
                .collect();
            Ok(set.into_iter().collect())
        })
    }

    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>> {
        Box::pin(async move { Ok(self.dependencies_now(window)) })
    }

    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>> {
        Box::pin(async move { Ok(self.samples_now(window, service.as_deref())) })
    }

    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(async move { self.retention_now(policy) })
    }

    fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock_open()?;
            let mut outcome = RetentionOutcome::default();
            for id in trace_ids {
                inner.decisions.remove(&id);
                if let Some(t) = inner.traces.remove(&id) {
                    outcome.traces_deleted += 1;
                    outcome.spans_deleted += t.spans.len() as u64;
                }
            }
            Ok(outcome)
        })
    }

    fn record_sampling_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock_open()?;
            for d in decisions {
                let newer = inner
                    .decisions
                    .get(&d.trace_id)
                    .is_none_or(|old| old.decided_unix_nano <= d.decided_unix_nano);
                if newer {
                    inner.decisions.insert(d.trace_id, d);
                }
            }
            Ok(())
        })
    }

    fn sampling_decision(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<SamplingDecision>, StoreError>> {
        Box::pin(async move { Ok(self.lock().decisions.get(&trace_id).cloned()) })
    }

    fn record_consumer_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut inner = self.lock_open()?;
            for s in seen {
                let last = inner
                    .consumer_groups
                    .entry((s.destination, s.group))
                    .or_default();
                *last = (*last).max(s.last_seen_unix_nano);
            }
            Ok(())
        })
    }

    fn consumer_groups(
        &self,
        since_unix_nano: u64,
    ) -> BoxFuture<'_, Result<Vec<ConsumerGroupSeen>, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            let mut out: Vec<ConsumerGroupSeen> = inner
                .consumer_groups
                .iter()
                .filter(|(_, last)| **last >= since_unix_nano)
                .map(|((destination, group), last)| ConsumerGroupSeen {
                    destination: destination.clone(),
                    group: group.clone(),
                    last_seen_unix_nano: *last,
                })
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn storage_bytes(&self) -> Option<u64> {
        None
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.lock_open().map(|_| ()) })
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.lock().closed = true;
        })
    }
}

#[cfg(test)]
mod tests {
    crate::store::conformance::conformance_tests!(async { (super::MemoryStore::new(), ()) });
}
