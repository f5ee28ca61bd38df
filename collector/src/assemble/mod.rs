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
mod critical_path;
mod dedupe;
pub mod settle;
mod skew;
pub mod text;
mod tree;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{self, AttrValue, Span, SpanId};

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
    let adj = adjust(input, options);
    let (spans, forest) = (&adj.spans, &adj.forest);
    let n = spans.len();
    let trace_start = spans
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap_or(0);
    let trace_end = spans
        .iter()
        .map(|s| s.end_time_unix_nano)
        .max()
        .unwrap_or(0);
    let mut warnings = adj.warnings.clone();
    let is_root = {
        let mut v = vec![false; n];
        for &r in forest.roots.iter().chain(&forest.extra_roots) {
            v[r] = true;
        }
        v
    };
    let self_time: Vec<u64> = (0..n)
        .map(|i| critical_path::self_time_ns(&adj, i))
        .collect();
    let mut root_ids: Vec<usize> = forest
        .roots
        .iter()
        .chain(&forest.extra_roots)
        .copied()
        .collect();
    // The real root(s) first, then orphans and re-rooted spans, each by start time.
    root_ids.sort_by_key(|&i| {
        (
            forest.parent[i].is_some() || forest.orphan[i],
            dedupe::sort_key(&spans[i]),
        )
    });
    let main_root = root_ids
        .first()
        .copied()
        .filter(|&r| !forest.orphan[r] && forest.parent[r].is_none());
    let critical = match main_root {
        Some(root) => critical_path::critical_spans(&adj, root),
        None => vec![false; n],
    };

    let mut linked_from = linked_from_map(spans);

    // Build nodes bottom-up (deepest first) so no recursion is needed.
    let mut by_depth: Vec<usize> = (0..n).collect();
    by_depth.sort_by_key(|&i| std::cmp::Reverse(forest.depth[i]));
    let mut built: Vec<Option<TreeNode>> = vec![None; n];
    for &i in &by_depth {
        let mut node = make_node(&spans[i], trace_start, forest.orphan[i]);
        node.self_time_ns = self_time[i];
        node.critical = critical[i];
        node.linked_from = linked_from.remove(&spans[i].span_id).unwrap_or_default();
        node.warnings = spans[i]
            .warnings
            .iter()
            .chain(&adj.span_warnings[i])
            .cloned()
            .collect();
        node.children = forest.children[i]
            .iter()
            .filter(|&&c| !is_root[c])
            .filter_map(|&c| built[c].take())
            .collect();
        built[i] = Some(node);
    }
    let root_nodes: Vec<TreeNode> = root_ids.iter().filter_map(|&i| built[i].take()).collect();
    let mut critical_path = Vec::new();
    if let Some(root) = root_nodes.first() {
        critical_path::collect_critical(root, &mut critical_path);
    }

    let shapes: Vec<completeness::Shape> = spans.iter().map(completeness::Shape::of).collect();
    let verdict = completeness::check(&shapes);
    let (missing, waiting) = completeness::describe(spans, &verdict);
    if verdict.roots == 0 && n > 0 {
        warnings.push("the root span has not arrived (no span without a parent)".to_owned());
    } else if verdict.roots > 1 {
        warnings.push(format!(
            "{} spans have no parent; expected one root",
            verdict.roots
        ));
    }
    warnings.extend(waiting);
    let complete = verdict.is_complete() && root_nodes.len() == 1;
    for s in spans {
        for w in &s.warnings {
            warnings.push(format!("span {}: {w}", s.span_id));
        }
    }
    let mut services: Vec<String> = spans.iter().map(|s| s.service_name.clone()).collect();
    services.sort();
    services.dedup();
    let http_status = main_root.and_then(|r| spans[r].http_status());
    let outcome_reason = main_root
        .filter(|&r| {
            spans[r].status.code == model::StatusCode::Error
                || http_status.is_some_and(|c| c >= 400)
        })
        .and_then(|_| outcome_reason(spans, forest));
    TraceTree {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_hex())
            .unwrap_or_default(),
        complete,
        span_count: n,
        service_count: services.len(),
        services,
        start_time_unix_nano: trace_start,
        duration_ns: trace_end.saturating_sub(trace_start),
        depth: if n == 0 {
            0
        } else {
            forest.depth.iter().max().copied().unwrap_or(0) + 1
        },
        critical_path,
        roots: root_nodes,
        missing,
        http_status,
        outcome_reason,
        warnings,
    }
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
            AttrValue::String(v) if !v.is_empty() => Some(v.clone()),
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

fn make_node(s: &Span, trace_start: u64, orphan: bool) -> TreeNode {
    TreeNode {
        span_id: s.span_id.to_hex(),
        parent_span_id: s.parent_span_id.map(|p| p.to_hex()),
        name: s.name.clone(),
        service: s.service_name.clone(),
        kind: s.kind.as_str(),
        start_time_unix_nano: s.start_time_unix_nano,
        duration_ns: s.duration_ns(),
        offset_ns: s.start_time_unix_nano.saturating_sub(trace_start),
        status: s.status.code.as_str(),
        status_message: s.status.message.clone(),
        attributes: model::attributes_to_json(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "time_unix_nano": e.time_unix_nano,
                    "offset_ns": e.time_unix_nano.saturating_sub(trace_start),
                    "attributes": model::attributes_to_json(&e.attributes),
                })
            })
            .collect(),
        links: s
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "trace_id": l.trace_id.to_hex(),
                    "span_id": l.span_id.to_hex(),
                    "attributes": model::attributes_to_json(&l.attributes),
                })
            })
            .collect(),
        orphan,
        linked_from: Vec::new(),
        cause: error_cause(s),
        warnings: Vec::new(),
        self_time_ns: 0,
        critical: false,
        children: Vec::new(),
    }
}

/// For each span of the trace that others link to (links within the same trace), those
/// spans as `{"span_id", "service", "name", "kind"}`, in `spans` order (by start time).
fn linked_from_map(spans: &[Span]) -> HashMap<SpanId, Vec<Value>> {
    let mut map: HashMap<SpanId, Vec<Value>> = HashMap::new();
    for s in spans {
        for l in s.links.iter().filter(|l| l.trace_id == s.trace_id) {
            map.entry(l.span_id).or_default().push(serde_json::json!({
                "span_id": s.span_id.to_hex(),
                "service": s.service_name,
                "name": s.name,
                "kind": s.kind.as_str(),
            }));
        }
    }
    map
}

#[cfg(test)]
mod tests;
