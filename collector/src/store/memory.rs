//! In-memory [`SpanStore`]: for tests and throwaway demos. Nothing survives a restart and
//! memory is unbounded; searches scan every trace.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::{
    BoxFuture, MAX_TRACE_SPANS, Operation, SpanStore, StoreError, StoredTrace, TraceQuery,
    TraceSummary, WriteOutcome,
};
use crate::model::{Span, SpanId, SpanKind, TraceId};

/// A [`SpanStore`] that keeps everything in process memory.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    commits: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, MemTrace>,
    closed: bool,
}

#[derive(Debug)]
struct MemTrace {
    spans: Vec<Span>,
    keys: HashSet<(SpanId, SpanKind)>,
    /// (service, span name) pairs, for search.
    pairs: HashSet<(String, String)>,
    summary: TraceSummary,
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
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch behind (batches are
        // applied after validation, with infallible operations), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_now(&self, spans: Vec<Span>) -> Result<WriteOutcome, StoreError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
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
                });
            if !trace.keys.insert((span.span_id, span.kind)) {
                outcome.duplicates += 1;
                continue;
            }
            trace.summary.add_span(&span);
            trace
                .pairs
                .insert((span.service_name.clone(), span.name.clone()));
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
            .filter(|t| query.matches_summary(&t.summary))
            .filter(|t| {
                t.pairs.iter().any(|(service, name)| {
                    query.service.as_ref().is_none_or(|s| s == service)
                        && query.operation.as_ref().is_none_or(|o| o == name)
                })
            })
            .map(|t| t.summary.clone())
            .collect();
        found.sort_by(|a, b| {
            b.start_time_unix_nano
                .cmp(&a.start_time_unix_nano)
                .then(b.trace_id.cmp(&a.trace_id))
        });
        found.truncate(query.effective_limit());
        found
    }
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
                    name: s.name.clone(),
                    kind: s.kind,
                })
                .collect();
            Ok(set.into_iter().collect())
        })
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.lock().closed {
                Err(StoreError::Closed)
            } else {
                Ok(())
            }
        })
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
