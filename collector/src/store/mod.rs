//! # Span storage
//!
//! [`SpanStore`] is the one storage interface; [`SqliteStore`] (durable, the default),
//! [`ClickHouseStore`] (one node or a sharded cluster, docs/clickhouse.md) and
//! [`MemoryStore`] (tests, demos) implement it, and all pass the same conformance suite
//! (`conformance.rs`, style.md §5 practice 14).
//!
//! Contract every backend keeps:
//!
//! - **Acknowledge after commit.** The future returned by [`SpanStore::write_spans`] resolves
//!   `Ok` only once every span of the call is durable in the backend's sense (SQLite: the
//!   transaction committed; reliability.md §6 C1). A call is all-or-nothing (C6).
//! - **Idempotent.** Spans are keyed by `(trace_id, span_id, kind)`; writing a span whose key
//!   is already stored changes nothing and counts it as a duplicate (C5).
//! - **Ordering.** Calls may be grouped but each is applied atomically in arrival order. Reads
//!   see every write that was acknowledged before the read started.
//! - **Limits.** [`get_trace`](SpanStore::get_trace) returns at most [`MAX_TRACE_SPANS`] spans;
//!   [`find_traces`](SpanStore::find_traces) at most [`MAX_SEARCH_LIMIT`] summaries. A trace
//!   holds at most its backend's per-trace span limit (`COLLECTOR_MAX_SPANS_PER_TRACE`,
//!   default [`DEFAULT_MAX_SPANS_PER_TRACE`]): later new spans of a full trace are refused,
//!   counted in [`WriteOutcome::over_limit`] and in the trace's
//!   [`TraceSummary::spans_refused`], which marks the trace as truncated.

mod clickhouse;
mod detail;
mod durable;
mod memory;
mod metered;
mod query;
mod sqlite;
mod summary;

#[cfg(test)]
pub(crate) mod conformance;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::model::{Span, SpanId, SpanKind, TraceId};

pub use clickhouse::{ClickHouseOptions, ClickHouseStore, check_identifier};
pub use durable::{ConsumerGroupSeen, SamplingDecision};
pub use memory::MemoryStore;
pub use metered::MeteredStore;
pub use query::{SortOrder, TimeWindow, TraceQuery};
#[doc(hidden)]
pub use sqlite::prepare_for_bench;
pub use sqlite::{AttributeIndex, MAX_GROUP_SPANS, SqliteOptions, SqliteStore, Synchronous};
pub use summary::{
    MAX_INDEXED_ATTR_VALUE_BYTES, TraceSummary, attr_index_text, span_mask_bit_kind,
    span_mask_bit_status,
};

/// A boxed, sendable future (keeps [`SpanStore`] object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most spans [`SpanStore::get_trace`] returns for one trace (the earliest by start time).
pub const MAX_TRACE_SPANS: usize = 10_000;
/// Default most spans stored per trace (`COLLECTOR_MAX_SPANS_PER_TRACE`).
pub const DEFAULT_MAX_SPANS_PER_TRACE: usize = 10_000;
/// Largest accepted [`TraceQuery::limit`]; larger limits are clamped.
pub const MAX_SEARCH_LIMIT: usize = 1000;
/// Default [`TraceQuery::limit`].
pub const DEFAULT_SEARCH_LIMIT: usize = 100;
/// Most distinct operation names kept in a [`TraceSummary`] (search by operation is exact
/// regardless of this cap).
pub const MAX_SUMMARY_OPERATIONS: usize = 256;

/// Storage failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file is damaged. The file is left untouched (reliability.md §6 C12).
    #[error(
        "database {path} is corrupt ({detail}); refusing to start. The file was left untouched: \
         move it aside to start empty, or try `sqlite3 {path} .recover`"
    )]
    Corrupt {
        /// Database path.
        path: String,
        /// What SQLite reported.
        detail: String,
    },
    /// The file is a database, but not one this version understands.
    #[error("database {path}: {detail}")]
    Incompatible {
        /// Database path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The disk is full; retry later (reliability.md §6 C3).
    #[error("storage is full")]
    Full,
    /// The database cannot be written right now (read-only file system or file, permission
    /// denied, I/O error); retry later. The detail is logged.
    #[error("storage cannot be written ({0})")]
    Unwritable(String),
    /// The write queue stayed full; retry later (reliability.md §6 C4).
    #[error("storage is overloaded")]
    Overloaded,
    /// The store was shut down.
    #[error("storage is shut down")]
    Closed,
    /// File-system trouble (creating the data directory, opening the file).
    #[error("{context}: {detail}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        detail: String,
    },
    /// Any other backend failure (the message is for logs).
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// True when the client should retry later (HTTP 503 + `Retry-After`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Full | Self::Unwritable(_) | Self::Overloaded | Self::Closed
        )
    }
}

/// Result of one [`SpanStore::write_spans`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Spans newly stored.
    pub stored: usize,
    /// Spans whose `(trace_id, span_id, kind)` was already stored (ignored).
    pub duplicates: usize,
    /// New spans refused because their trace already holds the per-trace span limit.
    pub over_limit: usize,
}

/// One edge of the service dependency graph: spans of `child` whose parent span belongs to
/// `parent` (a different service), counted over a window by the child span's start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DependencyEdge {
    /// Calling service.
    pub parent: String,
    /// Called service.
    pub child: String,
    /// Calls (child SERVER/CONSUMER spans under a span of the parent service).
    pub call_count: u64,
    /// Calls where the caller's or the callee's span has status error.
    pub error_count: u64,
    /// For a queue hop (a PRODUCER span's CONSUMER child): the destination the messages
    /// went through, from the consumer's span name `<operation> <destination>` (semantic
    /// conventions for messaging spans); `None` for direct calls. Hops through different
    /// destinations are separate edges.
    pub via: Option<String>,
}

impl DependencyEdge {
    /// The edge `parent` → `child` (through `via`, for a queue hop) with `call_count` calls,
    /// `error_count` of them failed: one entry of an [`EdgeCounts`] or one grouped query row.
    pub fn from_counts(
        (parent, child, via): (String, String, Option<String>),
        (call_count, error_count): (u64, u64),
    ) -> Self {
        Self {
            parent,
            child,
            call_count,
            error_count,
            via,
        }
    }
}

/// What the dependency graph needs of a span ([`EdgeCounts::add_trace`]), borrowed from
/// the backend's own row or span.
#[derive(Debug, Clone, Copy)]
pub struct SpanHop<'a> {
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id; `None` for a root.
    pub parent: Option<SpanId>,
    /// Its kind.
    pub kind: SpanKind,
    /// Whether its status is error.
    pub error: bool,
    /// Its service (`service.name`).
    pub service: &'a str,
    /// Its name (a queue hop's destination is read from it, [`queue_hop`]).
    pub name: &'a str,
    /// Its start, unix nanoseconds.
    pub start_unix_nano: u64,
}

impl<'a> SpanHop<'a> {
    /// The view of `span`.
    pub fn of(span: &'a Span) -> Self {
        Self {
            span_id: span.span_id,
            parent: span.parent_span_id,
            kind: span.kind,
            error: span.is_error(),
            service: &span.service_name,
            name: &span.name,
            start_unix_nano: span.start_time_unix_nano,
        }
    }
}

/// Call and error counts per (parent service, child service, queue destination), for
/// backends that walk spans to build the dependency graph; [`EdgeCounts::into_edges`] gives
/// the edges sorted by that key.
#[derive(Debug, Default)]
pub struct EdgeCounts(std::collections::BTreeMap<(String, String, Option<String>), (u64, u64)>);

impl EdgeCounts {
    /// Counts one call from the span `parent` (of `parent_service`, kind `parent_kind`) to
    /// its child span `child_name` (of `child_service`, kind `child_kind`); `error` when
    /// either span has status error. A queue hop is keyed by its destination
    /// ([`queue_hop`]).
    pub fn add(
        &mut self,
        (parent_service, parent_kind): (&str, SpanKind),
        (child_service, child_kind, child_name): (&str, SpanKind, &str),
        error: bool,
    ) {
        let via = queue_hop(parent_kind, child_kind, child_name);
        let e = self
            .0
            .entry((parent_service.to_owned(), child_service.to_owned(), via))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(error);
    }

    /// Counts the calls into one trace's entry spans (SERVER, CONSUMER) that started in
    /// `window`: a child's parent is the span of another service with its parent id (a
    /// Zipkin shared server span has its client as the other span of the same id); a child
    /// without such a parent is no call. `spans` are all the trace's spans (each once).
    pub fn add_trace(&mut self, spans: &[SpanHop<'_>], window: TimeWindow) {
        for child in spans {
            if !matches!(child.kind, SpanKind::Server | SpanKind::Consumer)
                || !window.contains(child.start_unix_nano)
            {
                continue;
            }
            let Some(pid) = child.parent else { continue };
            let Some(parent) = spans
                .iter()
                .find(|p| p.span_id == pid && p.service != child.service)
            else {
                continue;
            };
            self.add(
                (parent.service, parent.kind),
                (child.service, child.kind, child.name),
                parent.error || child.error,
            );
        }
    }

    /// The counted edges, sorted by (parent, child, via).
    pub fn into_edges(self) -> Vec<DependencyEdge> {
        self.0
            .into_iter()
            .map(|(key, counts)| DependencyEdge::from_counts(key, counts))
            .collect()
    }
}

/// The destination of a queue hop from `parent_kind` to the child span `child_kind`
/// `child_name` (see [`DependencyEdge::via`]).
pub fn queue_hop(
    parent_kind: crate::model::SpanKind,
    child_kind: crate::model::SpanKind,
    child_name: &str,
) -> Option<String> {
    use crate::model::SpanKind::{Consumer, Producer};
    if parent_kind != Producer || child_kind != Consumer {
        return None;
    }
    child_name
        .split_once(' ')
        .map(|(_, destination)| destination.to_owned())
        .filter(|d| !d.is_empty())
}

/// The SERVER and CONSUMER spans of one (service, operation) in a window: what
/// request-rate, error-rate and latency statistics are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationSamples {
    /// Service.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// Durations of the spans, nanoseconds, sorted ascending.
    pub durations_ns: Vec<u64>,
    /// Spans with status error.
    pub error_count: u64,
}

/// Sorts the raw (service, operation, duration, error) rows of a window into
/// [`OperationSamples`] ordered by service then operation. Shared by every backend.
pub fn group_samples(
    rows: impl IntoIterator<Item = (String, String, u64, bool)>,
) -> Vec<OperationSamples> {
    let mut map: std::collections::BTreeMap<(String, String), OperationSamples> =
        std::collections::BTreeMap::new();
    for (service, operation, duration, error) in rows {
        let entry = map
            .entry((service.clone(), operation.clone()))
            .or_insert_with(|| OperationSamples {
                service,
                operation,
                durations_ns: Vec::new(),
                error_count: 0,
            });
        entry.durations_ns.push(duration);
        entry.error_count += u64::from(error);
    }
    map.into_values()
        .map(|mut s| {
            s.durations_ns.sort_unstable();
            s
        })
        .collect()
}

/// What [`SpanStore::enforce_retention`] removes (one small batch per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Traces first received before this instant (unix nanoseconds) are deleted. A trace's
    /// age is when the collector first stored one of its spans, never the start a client
    /// claims, so a span with a victim's trace id and an old start cannot get the victim's
    /// trace deleted (issue 16 item 1).
    pub delete_before_unix_nano: Option<u64>,
    /// While the stored data is larger than this (bytes), the oldest traces are deleted.
    /// Only backends that can measure their size apply it.
    pub max_bytes: Option<u64>,
    /// Most traces deleted by one call.
    pub batch_traces: usize,
}

/// Result of one [`SpanStore::enforce_retention`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Traces deleted by this call.
    pub traces_deleted: u64,
    /// Spans deleted by this call.
    pub spans_deleted: u64,
    /// More data matches the policy: call again (after letting writes through).
    pub more: bool,
}

/// A stored trace: its spans (ordered by start time, then span id, then kind) and summary.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrace {
    /// The summary maintained on write.
    pub summary: TraceSummary,
    /// The spans, at most [`MAX_TRACE_SPANS`].
    pub spans: Vec<Span>,
}

/// An operation seen for a service (for operation pickers and the Jaeger API).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation {
    /// Span name.
    pub name: String,
    /// Span kind it was seen with.
    pub kind: SpanKind,
}

/// The storage interface (see the module docs for the contract).
///
/// Object safe: the app holds an `Arc<dyn SpanStore>`.
pub trait SpanStore: Send + Sync + 'static {
    /// Stores a batch; resolves after it is committed.
    ///
    /// # Errors
    /// [`StoreError::Overloaded`], [`StoreError::Full`] or [`StoreError::Closed`] (retryable:
    /// nothing of the batch was stored), [`StoreError::Backend`] otherwise.
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>>;

    /// The spans and summary of one trace; `Ok(None)` if no span of it is stored.
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>>;

    /// Summaries matching `query`, newest trace start first (ties: larger trace id first).
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>>;

    /// The other stored traces that have a span linking to a span of `trace_id` (inbound
    /// links), distinct, in ascending trace-id order, at most `limit`. A trace's links to
    /// itself do not count. Links are indexed as spans are written; a deleted trace drops
    /// out, as source or as target.
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn traces_linking_to(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TraceId>, StoreError>>;

    /// Every service name seen, sorted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Every (name, kind) seen for `service`, sorted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>>;

    /// The service dependency graph over `window` (by child span start), sorted by
    /// (parent, child). See [`DependencyEdge`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>>;

    /// The SERVER and CONSUMER spans that started in `window` (of `service` only, when set),
    /// grouped by (service, operation), sorted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>>;

    /// Deletes one small batch of data outside the retention `policy`; call again while
    /// [`RetentionOutcome::more`] is set. Each call is one short transaction, so writes are
    /// not stalled (reliability.md §6 C10).
    ///
    /// # Errors
    /// As for a write.
    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>>;

    /// Deletes whole traces by id: their spans, summaries, search-index rows and request
    /// samples, in one transaction. Ids not stored are ignored. Used by tail sampling
    /// (`crate::sampling::tail`) for traces it does not keep; `more` is always `false`.
    ///
    /// # Errors
    /// As for a write.
    fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>>;

    /// Stores tail sampling decisions (`crate::sampling::tail`), replacing a stored decision
    /// on the same trace; resolves after they are committed. A decision is deleted with its
    /// trace, by retention and by [`delete_traces`](Self::delete_traces).
    ///
    /// # Errors
    /// As for a write.
    fn record_sampling_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The stored decision on `trace_id` (the latest, when several were recorded).
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn sampling_decision(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<SamplingDecision>, StoreError>>;

    /// Stores (upserts) `(destination, consumer group, last seen)` pairs: a stored pair keeps
    /// the later of its two times. Resolves after they are committed.
    ///
    /// # Errors
    /// As for a write.
    fn record_consumer_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every stored pair last seen at or after `since_unix_nano`, one per (destination,
    /// group) with its latest time, sorted by (destination, group).
    ///
    /// # Errors
    /// [`StoreError::Backend`] on read failure.
    fn consumer_groups(
        &self,
        since_unix_nano: u64,
    ) -> BoxFuture<'_, Result<Vec<ConsumerGroupSeen>, StoreError>>;

    /// Bytes the store occupies (SQLite: database plus WAL files); `None` when not measurable.
    fn storage_bytes(&self) -> Option<u64>;

    /// Checks that a write can be committed now (used by `GET /health`).
    ///
    /// # Errors
    /// Whatever a write would fail with.
    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A receiver whose value (a commit counter) changes after every commit; lets long-polls
    /// wait for new data instead of polling.
    fn subscribe_commits(&self) -> watch::Receiver<u64>;

    /// Commits everything queued, then stops accepting writes. Idempotent.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
