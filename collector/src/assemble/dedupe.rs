//! Duplicate copies of one span merged into one (interop.md §3.5, reliability.md §3.2).
//!
//! A retried export or a duplicating proxy can deliver one `(span_id, kind)` several times.
//! The copy with the most attributes and events wins, then the one that ended latest; the merge
//! is reported on the span and on the trace. The same span id with another kind is a distinct
//! span (Zipkin's shared CLIENT/SERVER ids, interop.md §2.8).

use std::collections::HashMap;

use crate::model::{Span, SpanId, SpanKind};

/// The distinct spans, ordered by [`sort_key`], each with its merge warning (if any).
pub(super) struct Distinct {
    /// One span per `(span_id, kind)`.
    pub(super) spans: Vec<Span>,
    /// Per span: `"N copies of this span were merged into one"` when N > 1.
    pub(super) span_warnings: Vec<Vec<String>>,
    /// Trace-level: `"span <id>: N copies ..."`, one per merged span.
    pub(super) warnings: Vec<String>,
}

/// Tree order: start time, then span id, then kind.
pub(super) fn sort_key(s: &Span) -> (u64, SpanId, SpanKind) {
    (s.start_time_unix_nano, s.span_id, s.kind)
}

/// Keeps the richest copy of each `(span_id, kind)` (see the module docs).
pub(super) fn merge_duplicates(input: Vec<Span>) -> Distinct {
    let mut warnings = Vec::new();
    let mut best: HashMap<(SpanId, SpanKind), (usize, usize)> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        let entry = best.entry((s.span_id, s.kind)).or_insert((i, 0));
        entry.1 += 1;
        let cur = &input[entry.0];
        let richness = |s: &Span| (s.attributes.len() + s.events.len(), s.end_time_unix_nano);
        if i != entry.0 && richness(s) > richness(cur) {
            entry.0 = i;
        }
    }
    let mut keep: Vec<(usize, usize)> = best.into_values().collect();
    keep.sort_by_key(|&(i, _)| sort_key(&input[i]));
    // Moved out, not cloned: the copies that lose are dropped.
    let mut input: Vec<Option<Span>> = input.into_iter().map(Some).collect();
    let mut spans: Vec<Span> = Vec::with_capacity(keep.len());
    let mut span_warnings: Vec<Vec<String>> = Vec::with_capacity(keep.len());
    for (i, copies) in keep {
        let Some(s) = input[i].take() else { continue };
        let mut w = Vec::new();
        if copies > 1 {
            let msg = format!("{copies} copies of this span were merged into one");
            warnings.push(format!("span {}: {msg}", s.span_id));
            w.push(msg);
        }
        spans.push(s);
        span_warnings.push(w);
    }
    Distinct {
        spans,
        span_warnings,
        warnings,
    }
}
