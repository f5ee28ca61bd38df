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
mod memory;
mod metered;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::model::{AttrValue, Span, SpanKind, StatusCode, TraceId};

pub use clickhouse::{ClickHouseOptions, ClickHouseStore, check_identifier};
pub use memory::MemoryStore;
pub use metered::MeteredStore;
pub use sqlite::{AttributeIndex, MAX_GROUP_SPANS, SqliteOptions, SqliteStore, Synchronous};

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

/// Summary of one trace, maintained on write (DESIGN.md §4 `GET /v1/traces`).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// The trace.
    pub trace_id: TraceId,
    /// Earliest span start, unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// Latest span end, unix nanoseconds.
    pub end_time_unix_nano: u64,
    /// Service of the root span (the earliest span without a parent), once it arrived.
    pub root_service: Option<String>,
    /// Name of the root span, once it arrived.
    pub root_operation: Option<String>,
    /// The root span's HTTP status ([`Span::http_status`]), when it has one.
    pub root_http_status: Option<i64>,
    /// Start of the root span, unix nanoseconds (picks the earliest of several roots).
    pub root_start_time_unix_nano: Option<u64>,
    /// Distinct services, sorted.
    pub services: Vec<String>,
    /// Distinct span names, sorted, at most [`MAX_SUMMARY_OPERATIONS`].
    pub operations: Vec<String>,
    /// Stored spans (duplicates not counted).
    pub span_count: u64,
    /// Stored spans with status error.
    pub error_count: u64,
    /// Which span kinds and status codes occur in the trace: bit `kind` (OTLP number, 0–5)
    /// and bit `8 + status code` (0–2); see [`span_mask_bit_kind`], [`span_mask_bit_status`].
    pub span_mask: u32,
    /// New spans refused because the trace reached the per-trace span limit; more than 0
    /// means the trace is truncated.
    pub spans_refused: u64,
}

/// The [`TraceSummary::span_mask`] bit of a span kind.
pub fn span_mask_bit_kind(kind: SpanKind) -> u32 {
    1 << kind.as_i32()
}

/// The [`TraceSummary::span_mask`] bit of a status code.
pub fn span_mask_bit_status(code: StatusCode) -> u32 {
    1 << (8 + code.as_i32())
}

/// Longest string attribute value put in the attribute index, bytes; longer values cannot be
/// searched for.
pub const MAX_INDEXED_ATTR_VALUE_BYTES: usize = 256;

/// The text under which an attribute value is indexed and compared by attribute filters:
/// strings (up to [`MAX_INDEXED_ATTR_VALUE_BYTES`]) as they are, integers in decimal, booleans
/// as `true`/`false`, finite doubles in Rust's shortest form. Other values are not indexed.
/// Strings are borrowed, not copied (the ingest path calls this for every attribute).
pub fn attr_index_text(value: &AttrValue) -> Option<Cow<'_, str>> {
    match value {
        AttrValue::String(s) if s.len() <= MAX_INDEXED_ATTR_VALUE_BYTES => Some(Cow::Borrowed(s)),
        AttrValue::Int(i) => Some(Cow::Owned(i.to_string())),
        AttrValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        AttrValue::Double(d) if d.is_finite() => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

impl TraceSummary {
    /// An empty summary (no spans yet).
    pub fn new(trace_id: TraceId) -> Self {
        Self {
            trace_id,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            root_service: None,
            root_operation: None,
            root_http_status: None,
            root_start_time_unix_nano: None,
            services: Vec::new(),
            operations: Vec::new(),
            span_count: 0,
            error_count: 0,
            span_mask: 0,
            spans_refused: 0,
        }
    }

    /// Builds the summary of a set of (distinct) spans.
    pub fn of_spans<'a>(trace_id: TraceId, spans: impl IntoIterator<Item = &'a Span>) -> Self {
        let mut summary = Self::new(trace_id);
        for span in spans {
            summary.add_span(span);
        }
        summary
    }

    /// Whether spans of the trace were refused at the per-trace span limit.
    pub fn is_truncated(&self) -> bool {
        self.spans_refused > 0
    }

    /// The warning every answer about a truncated trace carries, or `None`.
    pub fn truncation_warning(&self) -> Option<String> {
        self.is_truncated().then(|| {
            format!(
                "the trace is truncated: it reached the most spans a trace may have ({}), and \
                 {} later spans were refused (COLLECTOR_MAX_SPANS_PER_TRACE)",
                self.span_count, self.spans_refused
            )
        })
    }

    /// Folds one newly stored span into the summary. Every backend uses this one function,
    /// so summaries agree across backends.
    pub fn add_span(&mut self, span: &Span) {
        if self.span_count == 0 {
            self.start_time_unix_nano = span.start_time_unix_nano;
            self.end_time_unix_nano = span.end_time_unix_nano;
        } else {
            self.start_time_unix_nano = self.start_time_unix_nano.min(span.start_time_unix_nano);
            self.end_time_unix_nano = self.end_time_unix_nano.max(span.end_time_unix_nano);
        }
        self.span_count += 1;
        self.span_mask |= span_mask_bit_kind(span.kind) | span_mask_bit_status(span.status.code);
        if span.is_error() {
            self.error_count += 1;
        }
        if span.parent_span_id.is_none()
            && self
                .root_start_time_unix_nano
                .is_none_or(|t| span.start_time_unix_nano < t)
        {
            self.root_service = Some(span.service_name.clone());
            self.root_operation = Some(span.name.clone());
            self.root_http_status = span.http_status();
            self.root_start_time_unix_nano = Some(span.start_time_unix_nano);
        }
        insert_sorted(&mut self.services, &span.service_name, usize::MAX);
        insert_sorted(&mut self.operations, &span.name, MAX_SUMMARY_OPERATIONS);
    }

    /// `end - start`, nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

fn insert_sorted(list: &mut Vec<String>, item: &str, cap: usize) {
    if let Err(pos) = list.binary_search_by(|s| s.as_str().cmp(item))
        && list.len() < cap
    {
        list.insert(pos, item.to_owned());
    }
}

/// Search filters for [`SpanStore::find_traces`]. All set filters must match; given
/// together, the span conditions must hold for one span ([`TraceQuery::needs_span_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceQuery {
    /// The trace has a span of this service.
    pub service: Option<String>,
    /// The trace has a span with this name (of `service`, when that is set too).
    pub operation: Option<String>,
    /// Trace duration is at least this, nanoseconds.
    pub min_duration_ns: Option<u64>,
    /// Trace duration is at most this, nanoseconds.
    pub max_duration_ns: Option<u64>,
    /// Trace start is at or after this, unix nanoseconds.
    pub start_time_min_unix_nano: Option<u64>,
    /// Trace start is at or before this, unix nanoseconds.
    pub start_time_max_unix_nano: Option<u64>,
    /// Only traces with at least one error span.
    pub errors_only: bool,
    /// The trace has a span of this kind.
    pub kind: Option<SpanKind>,
    /// The trace has a span with this status code.
    pub status: Option<StatusCode>,
    /// The trace has, for each pair, a span attribute `key` whose indexed text
    /// ([`attr_index_text`]) equals `value`.
    pub attributes: Vec<(String, String)>,
    /// Result order.
    pub sort: SortOrder,
    /// Most summaries returned (clamped to 1..=[`MAX_SEARCH_LIMIT`]).
    pub limit: usize,
}

/// Order of [`SpanStore::find_traces`] results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Newest trace start first (ties: larger trace id first).
    #[default]
    Newest,
    /// Longest trace first (ties: larger trace id first).
    Duration,
}

impl Default for TraceQuery {
    fn default() -> Self {
        Self {
            service: None,
            operation: None,
            min_duration_ns: None,
            max_duration_ns: None,
            start_time_min_unix_nano: None,
            start_time_max_unix_nano: None,
            errors_only: false,
            kind: None,
            status: None,
            attributes: Vec::new(),
            sort: SortOrder::Newest,
            limit: DEFAULT_SEARCH_LIMIT,
        }
    }
}

impl TraceQuery {
    /// The limit clamped to `1..=MAX_SEARCH_LIMIT`.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_SEARCH_LIMIT)
    }

    /// Whether a summary passes the time, duration, error, kind and status filters (service,
    /// operation and attributes are matched by the backend, which indexes them).
    pub fn matches_summary(&self, s: &TraceSummary) -> bool {
        let d = s.duration_ns();
        self.min_duration_ns.is_none_or(|m| d >= m)
            && self.max_duration_ns.is_none_or(|m| d <= m)
            && self
                .start_time_min_unix_nano
                .is_none_or(|m| s.start_time_unix_nano >= m)
            && self
                .start_time_max_unix_nano
                .is_none_or(|m| s.start_time_unix_nano <= m)
            && (!self.errors_only || s.error_count > 0)
            && self
                .kind
                .is_none_or(|k| s.span_mask & span_mask_bit_kind(k) != 0)
            && self
                .status
                .is_none_or(|c| s.span_mask & span_mask_bit_status(c) != 0)
    }

    /// Whether the span conditions must be checked on the spans themselves: when two or more
    /// of them are given (service and operation count as one, as they are indexed as a
    /// pair; each attribute counts alone), they must hold for **one** span, which the
    /// trace-level indexes cannot tell. A lone duration bound applies to the trace's duration.
    pub fn needs_span_check(&self) -> bool {
        let groups = usize::from(self.service.is_some() || self.operation.is_some())
            + usize::from(self.kind.is_some())
            + usize::from(self.status.is_some() || self.errors_only)
            + usize::from(self.min_duration_ns.is_some() || self.max_duration_ns.is_some())
            + self.attributes.len();
        groups >= 2
    }

    /// The trace-level query that finds every trace the span check could accept (a
    /// superset): a span's duration is at most its trace's, so `max_duration` cannot
    /// narrow the traces, and is dropped.
    pub fn candidates(&self) -> Self {
        Self {
            max_duration_ns: None,
            ..self.clone()
        }
    }

    /// Whether a trace passes every filter: the time bounds by the trace start, and the span
    /// conditions ([`matches_span`](Self::matches_span)) all met by one span, as in Jaeger.
    pub fn matches_trace(&self, summary: &TraceSummary, spans: &[Span]) -> bool {
        self.start_time_min_unix_nano
            .is_none_or(|m| summary.start_time_unix_nano >= m)
            && self
                .start_time_max_unix_nano
                .is_none_or(|m| summary.start_time_unix_nano <= m)
            && spans.iter().any(|s| self.matches_span(s))
    }

    /// Whether one span meets every span condition: `service`, `operation`, `kind`,
    /// `status`, `errors_only`, `attributes` (by their indexed text) and the duration bounds
    /// (the span's duration).
    pub fn matches_span(&self, s: &Span) -> bool {
        let d = s.duration_ns();
        self.service.as_ref().is_none_or(|v| *v == s.service_name)
            && self.operation.as_ref().is_none_or(|v| *v == s.name)
            && self.kind.is_none_or(|k| k == s.kind)
            && self.status.is_none_or(|c| c == s.status.code)
            && (!self.errors_only || s.is_error())
            && self.min_duration_ns.is_none_or(|m| d >= m)
            && self.max_duration_ns.is_none_or(|m| d <= m)
            && self.attributes.iter().all(|(key, value)| {
                s.attributes.iter().any(|kv| {
                    kv.key == *key && attr_index_text(&kv.value).is_some_and(|v| v == *value)
                })
            })
    }

    /// Sorts summaries in the query's order.
    pub fn sort_summaries(&self, found: &mut [TraceSummary]) {
        match self.sort {
            SortOrder::Newest => found.sort_by(|a, b| {
                b.start_time_unix_nano
                    .cmp(&a.start_time_unix_nano)
                    .then(b.trace_id.cmp(&a.trace_id))
            }),
            SortOrder::Duration => found.sort_by(|a, b| {
                b.duration_ns()
                    .cmp(&a.duration_ns())
                    .then(b.trace_id.cmp(&a.trace_id))
            }),
        }
    }
}

/// A time window `[start, end)` in unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// First included instant.
    pub start_unix_nano: u64,
    /// First excluded instant.
    pub end_unix_nano: u64,
}

impl TimeWindow {
    /// Whether `t` lies in the window.
    pub fn contains(&self, t: u64) -> bool {
        t >= self.start_unix_nano && t < self.end_unix_nano
    }
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
