//! [`MeteredStore`]: a [`SpanStore`] decorator that feeds the RED metrics
//! ([`crate::metrics::RedMetrics`]) from every committed batch, so no ingest path has to.

use std::sync::Arc;

use tokio::sync::watch;

use super::{
    BoxFuture, ConsumerGroupSeen, DependencyEdge, Operation, OperationSamples, RetentionOutcome,
    RetentionPolicy, SamplingDecision, SpanStore, StoreError, StoredTrace, TimeWindow, TraceQuery,
    TraceSummary, WriteOutcome,
};
use crate::metrics::{Metrics, RedMetrics};
use crate::model::{Span, TraceId};

/// Forwards everything to the inner store; after a successful write, counts the batch's
/// SERVER and CONSUMER spans in [`Metrics::red`].
pub struct MeteredStore {
    inner: Arc<dyn SpanStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SpanStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl SpanStore for MeteredStore {
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        Box::pin(async move {
            let samples = RedMetrics::samples(&spans);
            let roots = self.metrics.roots.roots_of(&spans);
            let outcome = self.inner.write_spans(spans).await?;
            self.metrics.red.record(samples);
            self.metrics.roots.record(roots);
            Ok(outcome)
        })
    }

    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>> {
        self.inner.get_trace(trace_id)
    }

    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>> {
        self.inner.find_traces(query)
    }

    fn traces_linking_to(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TraceId>, StoreError>> {
        self.inner.traces_linking_to(trace_id, limit)
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.services()
    }

    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>> {
        self.inner.operations(service)
    }

    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>> {
        self.inner.dependencies(window)
    }

    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>> {
        self.inner.operation_samples(window, service)
    }

    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        self.inner.enforce_retention(policy)
    }

    fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        self.inner.delete_traces(trace_ids)
    }

    fn record_sampling_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.record_sampling_decisions(decisions)
    }

    fn sampling_decision(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<SamplingDecision>, StoreError>> {
        self.inner.sampling_decision(trace_id)
    }

    fn record_consumer_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.record_consumer_groups(seen)
    }

    fn consumer_groups(
        &self,
        since_unix_nano: u64,
    ) -> BoxFuture<'_, Result<Vec<ConsumerGroupSeen>, StoreError>> {
        self.inner.consumer_groups(since_unix_nano)
    }

    fn storage_bytes(&self) -> Option<u64> {
        self.inner.storage_bytes()
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.check_writable()
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.inner.subscribe_commits()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}
