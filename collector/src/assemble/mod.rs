//! # Assembly: spans → trace tree (DESIGN.md §4)
//!
//! [`assemble`] turns the stored spans of one trace into a [`TraceTree`], whose JSON form is
//! the contract of `GET /v1/traces/{trace_id}/tree`. One concept per module, in the order they
//! run:
//!
//! 1. [`dedupe`]: copies of one `(span_id, kind)` merged into one, with a warning;
//! 2. [`tree`]: spans linked by `parent_span_id`; orphans, cycles and over-deep chains become
//!    extra roots, with a warning;
//! 3. [`skew`]: children on another host shifted into their parent (off with `?raw=true`);
//! 4. [`critical_path`]: self time and the critical path, on the adjusted times;
//! 5. [`completeness`]: is the trace whole (one root, no orphans, every child its callee
//!    announced through `traceresponse` has arrived) and what it still awaits;
//! 6. [`text`]: the same tree drawn for a terminal.
//!
//! [`settle`] applies the completeness rule to spans as they are committed and tells when
//! each trace is finished (`GET /v1/tail`, `COLLECTOR_LOG_TREES`).
//!
//! Children (and roots) are ordered by start time, then span id, then kind. `offset_ns` is the
//! span start minus the trace start (the earliest span start); `duration_ns` of the trace is
//! the latest end minus the earliest start. The stored spans are never changed.

pub mod completeness;
pub mod consumer_sync;
mod critical_path;
mod dedupe;
mod layout;
pub mod page;
pub mod settle;
mod skew;
pub mod text;
mod tree;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{self, AttrValue, Span};

pub use layout::Layout;
pub use tree::MAX_DEPTH;

/// Default largest clock-skew shift applied: 1 minute.
pub const DEFAULT_MAX_CLOCK_SKEW_NS: u64 = 60_000_000_000;

/// How [`assemble_with`] and [`adjust`] treat the spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssembleOptions {
    /// Largest clock-skew shift applied, nanoseconds; `None` disables the adjustment.
    pub clock_skew_max_delta_ns: Option<u64>,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        Self {
            clock_skew_max_delta_ns: Some(DEFAULT_MAX_CLOCK_SKEW_NS),
        }
    }
}

impl AssembleOptions {
    /// No adjustment beyond merging duplicates (`?raw=true`).
    pub fn raw() -> Self {
        Self {
            clock_skew_max_delta_ns: None,
        }
    }
}

/// An assembled trace (the JSON tree of DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceTree {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// One root, no orphans, every expected child arrived ([`completeness`]).
    pub complete: bool,
    /// Spans in the tree.
    pub span_count: usize,
    /// Distinct services.
    pub service_count: usize,
    /// Distinct services, sorted.
    pub services: Vec<String>,
    /// Earliest span start, unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// Latest end minus earliest start, nanoseconds.
    pub duration_ns: u64,
    /// Deepest nesting, the root being 1 (0 for an empty tree).
    pub depth: usize,
    /// Span ids on the critical path of the main root, root first (see the module docs).
    pub critical_path: Vec<String>,
    /// The root span(s): normally one; orphans and re-rooted spans follow it.
    pub roots: Vec<TreeNode>,
    /// What an incomplete trace still awaits ([`completeness::Missing`]); empty when complete.
    pub missing: Vec<completeness::Missing>,
    /// The root span's `http.response.status_code`, when it has one.
    pub http_status: Option<i64>,
    /// Why the request ended as it did, from the span that decided it (the deepest span with
    /// `app.outcome.reason`, else the deepest error span's cause), when the root's status is
    /// 4xx/5xx or an error.
    pub outcome_reason: Option<String>,
    /// Why the tree is not complete, plus what the collector changed on ingest and assembly.
    pub warnings: Vec<String>,
}

/// One span in the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// Parent's span id, or `null` for a root.
    pub parent_span_id: Option<String>,
    /// Span name.
    pub name: String,
    /// `service.name` of the producer.
    pub service: String,
    /// `server|client|internal|producer|consumer`.
    pub kind: &'static str,
    /// Start, unix nanoseconds (after clock-skew adjustment).
    pub start_time_unix_nano: u64,
    /// End minus start, nanoseconds.
    pub duration_ns: u64,
    /// Start minus the trace start, nanoseconds.
    pub offset_ns: u64,
    /// Duration minus the union of the children's intervals (clipped to this span), ns.
    pub self_time_ns: u64,
    /// On the critical path of the trace.
    pub critical: bool,
    /// `unset|ok|error`.
    pub status: &'static str,
    /// Status message (may be empty).
    pub status_message: String,
    /// Attributes as a JSON object (values as JSON scalars, arrays, objects).
    pub attributes: Map<String, Value>,
    /// `[{"name", "time_unix_nano", "offset_ns", "attributes"}]`.
    pub events: Vec<Value>,
    /// `[{"trace_id", "span_id", "attributes"}]`.
    pub links: Vec<Value>,
    /// The spans of this trace that link to this one (the other direction of `links`):
    /// `[{"span_id", "service", "name", "kind"}]`, by start time.
    pub linked_from: Vec<Value>,
    /// True when the parent span is missing from the trace.
    pub orphan: bool,
    /// Why an error span failed, in one line ([`error_cause`]); `null` otherwise.
    pub cause: Option<String>,
    /// What ingest and assembly changed on this span (clock skew, merged duplicates,
    /// truncation); empty when nothing.
    pub warnings: Vec<String>,
    /// Child spans ordered by start time.
    pub children: Vec<TreeNode>,
}

/// Spans after the read-time adjusters, linked into a forest (see the module docs).
#[derive(Debug, Clone)]
pub struct Adjusted {
    /// The distinct spans, with adjusted times, ordered by (start, span id, kind).
    pub spans: Vec<Span>,
    /// Per span: warnings added by assembly (skew, merged duplicates).
    pub span_warnings: Vec<Vec<String>>,
    /// Trace-level warnings (orphans, cycles, duplicates, skew summary).
    pub warnings: Vec<String>,
    forest: tree::Forest,
}

/// Merges duplicates ([`dedupe`]), links parents ([`tree`]) and corrects clock skew
/// ([`skew`]); the input is not changed.
pub fn adjust(input: &[Span], options: &AssembleOptions) -> Adjusted {
    adjust_owned(input.to_vec(), options)
}

/// [`adjust`] on spans the caller gives up: nothing is copied (a trace at the per-trace span
/// limit is read once, not twice).
pub fn adjust_owned(input: Vec<Span>, options: &AssembleOptions) -> Adjusted {
    let dedupe::Distinct {
        mut spans,
        mut span_warnings,
        mut warnings,
    } = dedupe::merge_duplicates(input);
    let mut forest = tree::link(&spans, &mut span_warnings, &mut warnings);
    if let Some(max_delta_ns) = options.clock_skew_max_delta_ns {
        skew::correct(
            &mut spans,
            &mut forest,
            &mut span_warnings,
            &mut warnings,
            max_delta_ns,
        );
    }
    Adjusted {
        spans,
        span_warnings,
        warnings,
        forest,
    }
}

/// Builds the tree of one trace with the default options. `spans` must all share a trace id
/// and be non-empty for a meaningful answer (an empty slice gives an empty, incomplete tree).
pub fn assemble(spans: &[Span]) -> TraceTree {
    assemble_with(spans, &AssembleOptions::default())
}

/// Builds the tree of one trace (see the module docs).
pub fn assemble_with(input: &[Span], options: &AssembleOptions) -> TraceTree {
    Layout::new(adjust(input, options)).into_tree()
}

/// The attribute a service records the reason for a business answer in (a 402's "payment
/// declined: ...", a 404's "unknown user").
pub const OUTCOME_REASON_ATTRIBUTE: &str = "app.outcome.reason";

/// The reason from the span that decided the outcome: the deepest span carrying
/// [`OUTCOME_REASON_ATTRIBUTE`], else the deepest error span's cause (see [`error_cause`]).
fn outcome_reason(spans: &[Span], forest: &tree::Forest) -> Option<String> {
    let deepest = |f: &dyn Fn(&Span) -> Option<String>| {
        (0..spans.len())
            .filter_map(|i| f(&spans[i]).map(|r| (forest.depth[i], r)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, r)| r)
    };
    deepest(
        &|s| match model::find_attribute(&s.attributes, OUTCOME_REASON_ATTRIBUTE)? {
            AttrValue::String(v) if !v.is_empty() => Some(v.to_string()),
            _ => None,
        },
    )
    .or_else(|| deepest(&error_cause))
}

/// Why an error span failed, in one line: `<exception.type>: <first line of
/// exception.message>` from its first `exception` event, else its status message; `None`
/// for a span that is not an error or says nothing.
pub fn error_cause(s: &Span) -> Option<String> {
    if s.status.code != model::StatusCode::Error {
        return None;
    }
    let exception = s.events.iter().find(|e| e.name == "exception").map(|e| {
        let text = |key| match model::find_attribute(&e.attributes, key) {
            Some(AttrValue::String(v)) => v.lines().next().unwrap_or("").trim().to_owned(),
            _ => String::new(),
        };
        (text("exception.type"), text("exception.message"))
    });
    let status = s.status.message.lines().next().unwrap_or("").trim();
    match exception {
        Some((kind, message)) if !message.is_empty() && !kind.is_empty() => {
            Some(format!("{kind}: {message}"))
        }
        Some((_, message)) if !message.is_empty() => Some(message),
        Some((kind, _)) if !kind.is_empty() && status.is_empty() => Some(kind),
        _ => (!status.is_empty()).then(|| status.to_owned()),
    }
}

#[cfg(test)]
mod tests;
