//! [`TraceSummary`]: the per-trace summary every backend maintains on write, and the
//! attribute-index text shared by every backend.

use std::borrow::Cow;

use crate::model::{AttrValue, Span, SpanKind, StatusCode, TraceId};

use super::MAX_SUMMARY_OPERATIONS;

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
            self.root_service = Some(span.service_name.to_string());
            self.root_operation = Some(span.name.to_string());
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
