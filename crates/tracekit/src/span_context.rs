//! The propagated part of a span: what crosses process boundaries in `traceparent` and
//! `tracestate` (W3C Trace Context Level 2 §3).

use crate::id::{SpanId, TraceFlags, TraceId};
use crate::propagation::TraceState;

/// The immutable identity of a span, as propagated between processes.
///
/// `trace_id` and `span_id` are never all-zero in a `SpanContext` built by this crate.
/// `is_remote` is true when the context was extracted from an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span's id (for a remote context, the caller's span: the W3C `parent-id`).
    pub span_id: SpanId,
    /// The W3C trace flags (sampled, random).
    pub trace_flags: TraceFlags,
    /// Vendor-specific trace state, carried unchanged to children.
    pub trace_state: TraceState,
    /// Whether this context came from another process.
    pub is_remote: bool,
}

impl SpanContext {
    /// Whether the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.trace_flags.is_sampled()
    }
}
