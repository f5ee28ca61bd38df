//! # Span storage
//!
//! [`SpanStore`] is the one storage interface; [`SqliteStore`] (durable, the default) and
//! [`MemoryStore`] (tests, demos) implement it, and both pass the same conformance suite
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
//!   [`find_traces`](SpanStore::find_traces) at most [`MAX_SEARCH_LIMIT`] summaries.

mod memory;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::model::{Span, SpanKind, TraceId};

pub use memory::MemoryStore;
pub use sqlite::{MAX_GROUP_SPANS, SqliteOptions, SqliteStore, Synchronous};

/// A boxed, sendable future (keeps [`SpanStore`] object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most spans [`SpanStore::get_trace`] returns for one trace (the earliest by start time).
pub const MAX_TRACE_SPANS: usize = 100_000;
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
        matches!(self, Self::Full | Self::Overloaded | Self::Closed)
    }
}

/// Result of one [`SpanStore::write_spans`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Spans newly stored.
    pub stored: usize,
    /// Spans whose `(trace_id, span_id, kind)` was already stored (ignored).
    pub duplicates: usize,
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
            root_start_time_unix_nano: None,
            services: Vec::new(),
            operations: Vec::new(),
            span_count: 0,
            error_count: 0,
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

/// Search filters for [`SpanStore::find_traces`]. All set filters must match.
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
    /// Most summaries returned (clamped to 1..=[`MAX_SEARCH_LIMIT`]).
    pub limit: usize,
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
            limit: DEFAULT_SEARCH_LIMIT,
        }
    }
}

impl TraceQuery {
    /// The limit clamped to `1..=MAX_SEARCH_LIMIT`.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_SEARCH_LIMIT)
    }

    /// Whether a summary passes the time, duration and error filters (service and operation
    /// are matched by the backend, which knows the trace's (service, name) pairs).
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
    }
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
