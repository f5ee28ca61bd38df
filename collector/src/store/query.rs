//! [`TraceQuery`]: the search filters of [`SpanStore::find_traces`](super::SpanStore::find_traces),
//! their sort order and time windows; the same-span semantics every backend shares.

use crate::model::{Span, SpanKind, StatusCode};

use super::summary::{attr_index_text, span_mask_bit_kind, span_mask_bit_status};
use super::{DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, TraceSummary};

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
