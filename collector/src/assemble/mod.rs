//! # Assembly: spans → trace tree (DESIGN.md §4)
//!
//! [`assemble`] links each span to its parent by `parent_span_id` and returns a [`TraceTree`]
//! whose JSON form is the contract of `GET /v1/traces/{trace_id}/tree`:
//!
//! - roots are the spans without a parent; a span whose parent never arrived becomes an extra
//!   root flagged `orphan: true`, with a warning;
//! - parent cycles and trees deeper than [`MAX_DEPTH`] are broken into extra roots, with a
//!   warning, so malformed input never recurses without bound;
//! - children (and roots) are ordered by start time, then span id, then kind;
//! - `complete` is true when there is exactly one root, it has no parent, and nothing above
//!   was needed;
//! - `offset_ns` is the span start minus the trace start (the earliest span start);
//!   `duration_ns` of the trace is the latest end minus the earliest start.
//!
//! [`text::render`] draws the same tree as text.

pub mod text;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{self, Span, SpanId};

/// Deepest nesting kept in one tree; deeper spans are re-rooted with a warning.
pub const MAX_DEPTH: usize = 256;

/// An assembled trace (the JSON tree of DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceTree {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Exactly one parentless root and no orphans (see the module docs).
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
    /// The root span(s): normally one; orphans and re-rooted spans follow it.
    pub roots: Vec<TreeNode>,
    /// Why the tree is not complete, plus what the collector changed on ingest.
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
    /// Start, unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// End minus start, nanoseconds.
    pub duration_ns: u64,
    /// Start minus the trace start, nanoseconds.
    pub offset_ns: u64,
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
    /// True when the parent span is missing from the trace.
    pub orphan: bool,
    /// Child spans ordered by start time.
    pub children: Vec<TreeNode>,
}

/// True when the spans form a settled tree: some span has no parent and every parent id
/// refers to a span of the trace (what `?wait=` waits for).
pub fn is_settled(spans: &[Span]) -> bool {
    let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    spans.iter().any(|s| s.parent_span_id.is_none())
        && spans
            .iter()
            .all(|s| s.parent_span_id.is_none_or(|p| ids.contains(&p)))
}

fn sort_key(s: &Span) -> (u64, SpanId, crate::model::SpanKind) {
    (s.start_time_unix_nano, s.span_id, s.kind)
}

/// Builds the tree of one trace. `spans` must all share a trace id and be non-empty for a
/// meaningful answer (an empty slice gives an empty, incomplete tree).
pub fn assemble(spans: &[Span]) -> TraceTree {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| sort_key(&spans[i]));
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
    let mut warnings = Vec::new();

    // Parent lookup by span id. With shared ids (Zipkin client+server), the earliest span of
    // that id other than the child itself is the parent.
    let mut by_id: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for &i in &order {
        by_id.entry(spans[i].span_id).or_default().push(i);
    }
    let mut parent: Vec<Option<usize>> = vec![None; spans.len()];
    let mut orphan = vec![false; spans.len()];
    for &i in &order {
        if let Some(pid) = spans[i].parent_span_id {
            match by_id
                .get(&pid)
                .and_then(|c| c.iter().copied().find(|&p| p != i))
            {
                Some(p) => parent[i] = Some(p),
                None => {
                    orphan[i] = true;
                    warnings.push(format!(
                        "span {} ({} {}) has parent {} which is not in the trace; shown as an extra root",
                        spans[i].span_id, spans[i].service_name, spans[i].name, pid
                    ));
                }
            }
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots: Vec<usize> = Vec::new();
    for &i in &order {
        match parent[i] {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    // Walk from the roots; whatever is not reached sits on a parent cycle.
    let mut depth: Vec<Option<usize>> = vec![None; spans.len()];
    let mut extra_roots: Vec<usize> = Vec::new();
    let mut stack: Vec<(usize, usize)> = roots.iter().map(|&r| (r, 0)).collect();
    let walk = |stack: &mut Vec<(usize, usize)>,
                depth: &mut Vec<Option<usize>>,
                extra: &mut Vec<usize>,
                warnings: &mut Vec<String>| {
        while let Some((i, d)) = stack.pop() {
            if depth[i].is_some() {
                continue;
            }
            depth[i] = Some(d);
            for &c in &children[i] {
                if d + 1 >= MAX_DEPTH {
                    if depth[c].is_none() && !extra.contains(&c) {
                        warnings.push(format!(
                            "span {} is nested deeper than {MAX_DEPTH} levels; shown as an extra root",
                            spans[c].span_id
                        ));
                        extra.push(c);
                        stack.push((c, 0));
                    }
                } else {
                    stack.push((c, d + 1));
                }
            }
        }
    };
    walk(&mut stack, &mut depth, &mut extra_roots, &mut warnings);
    for &i in &order {
        if depth[i].is_none() {
            warnings.push(format!(
                "span {} is part of a parent cycle; shown as an extra root",
                spans[i].span_id
            ));
            extra_roots.push(i);
            stack.push((i, 0));
            walk(&mut stack, &mut depth, &mut extra_roots, &mut warnings);
        }
    }
    let is_root = {
        let mut v = vec![false; spans.len()];
        for &r in roots.iter().chain(&extra_roots) {
            v[r] = true;
        }
        v
    };

    // Build nodes bottom-up (deepest first) so no recursion is needed.
    let mut by_depth: Vec<usize> = (0..spans.len()).collect();
    by_depth.sort_by_key(|&i| std::cmp::Reverse(depth[i].unwrap_or(0)));
    let mut built: Vec<Option<TreeNode>> = vec![None; spans.len()];
    for &i in &by_depth {
        let mut node = make_node(&spans[i], trace_start, orphan[i]);
        node.children = children[i]
            .iter()
            .filter(|&&c| !is_root[c])
            .filter_map(|&c| built[c].take())
            .collect();
        built[i] = Some(node);
    }
    let mut root_ids: Vec<usize> = roots.iter().chain(&extra_roots).copied().collect();
    // The real root(s) first, then orphans and re-rooted spans, each by start time.
    root_ids.sort_by_key(|&i| (parent[i].is_some() || orphan[i], sort_key(&spans[i])));
    let root_nodes: Vec<TreeNode> = root_ids.iter().filter_map(|&i| built[i].take()).collect();

    let parentless = roots.iter().filter(|&&r| !orphan[r]).count();
    if parentless == 0 && !spans.is_empty() {
        warnings.push("the root span has not arrived (no span without a parent)".to_owned());
    } else if parentless > 1 {
        warnings.push(format!(
            "{parentless} spans have no parent; expected one root"
        ));
    }
    let complete = parentless == 1 && root_nodes.len() == 1 && !spans.is_empty();
    for s in &order {
        for w in &spans[*s].warnings {
            warnings.push(format!("span {}: {w}", spans[*s].span_id));
        }
    }
    let mut services: Vec<String> = spans.iter().map(|s| s.service_name.clone()).collect();
    services.sort();
    services.dedup();
    TraceTree {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_hex())
            .unwrap_or_default(),
        complete,
        span_count: spans.len(),
        service_count: services.len(),
        services,
        start_time_unix_nano: trace_start,
        duration_ns: trace_end.saturating_sub(trace_start),
        roots: root_nodes,
        warnings,
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
        children: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanKind::*;
    use crate::testing::{MS, T0, sample_trace, span, trace_id};

    fn names(nodes: &[TreeNode]) -> Vec<String> {
        nodes.iter().map(|n| n.name.clone()).collect()
    }

    #[test]
    fn single_root_tree_is_complete_and_ordered() {
        let mut spans = sample_trace(1);
        spans.reverse(); // arrival order must not matter
        let tree = assemble(&spans);
        assert!(tree.complete, "{:?}", tree.warnings);
        assert_eq!(tree.span_count, 7);
        assert_eq!(tree.services, vec!["frontend", "order", "user"]);
        assert_eq!(tree.service_count, 3);
        assert_eq!(tree.start_time_unix_nano, T0);
        assert_eq!(tree.duration_ns, 1234 * MS);
        assert_eq!(tree.roots.len(), 1);
        let root = &tree.roots[0];
        assert_eq!(root.offset_ns, 0);
        assert_eq!(root.parent_span_id, None);
        assert_eq!(
            names(&root.children),
            vec!["GET /users/{id}", "POST /orders"]
        );
        let user = &root.children[0].children[0];
        assert_eq!(user.service, "user");
        assert_eq!(user.offset_ns, 1_600_000);
        assert_eq!(user.duration_ns, 29_800_000);
        assert_eq!(root.attributes["http.response.status_code"], 201);
        // The ingest warning of the order span is surfaced.
        assert!(tree.warnings.iter().any(|w| w.ends_with("clamped")));
    }

    #[test]
    fn missing_parent_makes_a_flagged_orphan_root() {
        let spans = sample_trace(2);
        // Drop "frontend POST /orders" client span (id 5): order's server span is orphaned.
        let spans: Vec<_> = spans
            .into_iter()
            .filter(|s| s.span_id != crate::testing::span_id(5))
            .collect();
        let tree = assemble(&spans);
        assert!(!tree.complete);
        assert_eq!(tree.roots.len(), 2);
        assert!(!tree.roots[0].orphan);
        assert!(tree.roots[1].orphan);
        assert_eq!(tree.roots[1].service, "order");
        assert_eq!(tree.roots[1].children.len(), 1);
        assert!(tree.warnings.iter().any(|w| w.contains("not in the trace")));
    }

    #[test]
    fn no_root_yet_is_incomplete() {
        let spans = sample_trace(3)[1..].to_vec();
        let tree = assemble(&spans);
        assert!(!tree.complete);
        assert!(tree.roots.iter().all(|r| r.orphan));
        assert!(!is_settled(&spans));
        assert!(is_settled(&sample_trace(3)));
    }

    #[test]
    fn two_parentless_spans_are_incomplete() {
        let t = trace_id(4);
        let spans = vec![
            span(t, 1, None, "a", "x", Server, 0.0, 1.0),
            span(t, 2, None, "a", "y", Server, 2.0, 1.0),
        ];
        let tree = assemble(&spans);
        assert!(!tree.complete);
        assert_eq!(names(&tree.roots), vec!["x", "y"]);
    }

    #[test]
    fn cycles_and_self_parents_terminate() {
        let t = trace_id(5);
        let spans = vec![
            span(t, 1, Some(2), "a", "x", Server, 0.0, 1.0),
            span(t, 2, Some(1), "a", "y", Server, 1.0, 1.0),
            span(t, 3, Some(3), "a", "self", Server, 2.0, 1.0),
        ];
        let tree = assemble(&spans);
        assert!(!tree.complete);
        let total: usize = tree.roots.iter().map(|r| 1 + r.children.len()).sum();
        assert_eq!(total, 3);
        assert!(tree.warnings.iter().any(|w| w.contains("cycle")));
    }

    #[test]
    fn very_deep_chains_are_cut_not_overflowed() {
        let t = trace_id(6);
        let spans: Vec<_> = (1..=2000u64)
            .map(|i| {
                span(
                    t,
                    i,
                    (i > 1).then(|| i - 1),
                    "a",
                    "n",
                    Internal,
                    i as f64,
                    1.0,
                )
            })
            .collect();
        let tree = assemble(&spans);
        assert!(!tree.complete);
        assert!(tree.roots.len() >= 2000 / MAX_DEPTH);
        assert!(serde_json::to_string(&tree).is_ok());
        assert!(!text::render(&tree).is_empty());
    }

    #[test]
    fn shared_span_ids_link_server_under_client() {
        let t = trace_id(7);
        let spans = vec![
            span(t, 1, None, "a", "root", Server, 0.0, 10.0),
            span(t, 2, Some(1), "a", "call", Client, 1.0, 8.0),
            span(t, 2, Some(2), "b", "call", Server, 2.0, 6.0),
        ];
        let tree = assemble(&spans);
        assert!(tree.complete, "{:?}", tree.warnings);
        assert_eq!(tree.roots[0].children[0].children[0].service, "b");
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let tree = assemble(&sample_trace(8));
        let v = serde_json::to_value(&tree).unwrap();
        let mut top: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        top.sort();
        assert_eq!(
            top,
            [
                "complete",
                "duration_ns",
                "roots",
                "service_count",
                "services",
                "span_count",
                "start_time_unix_nano",
                "trace_id",
                "warnings"
            ]
        );
        let mut node: Vec<_> = v["roots"][0].as_object().unwrap().keys().cloned().collect();
        node.sort();
        assert_eq!(
            node,
            [
                "attributes",
                "children",
                "duration_ns",
                "events",
                "kind",
                "links",
                "name",
                "offset_ns",
                "orphan",
                "parent_span_id",
                "service",
                "span_id",
                "start_time_unix_nano",
                "status",
                "status_message"
            ]
        );
    }
}
