//! The assembled tree over indexes: everything [`TraceTree`] says, computed once, with each
//! [`TreeNode`] made only when asked for. A trace at the per-trace span limit is then
//! written node by node ([`super::page`], the text tree) instead of being built whole.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    Adjusted, TraceTree, TreeNode, completeness, critical_path, dedupe, error_cause, outcome_reason,
};
use crate::model::{self, Span, SpanId};

/// One trace's spans after the adjusters, linked and measured (see the module docs).
#[derive(Debug, Clone)]
pub struct Layout {
    adj: Adjusted,
    trace_start: u64,
    /// Per span: the children shown under it (spans re-rooted elsewhere excluded), by start.
    children: Vec<Vec<usize>>,
    /// The roots in tree order: the real root(s), then orphans and re-rooted spans.
    roots: Vec<usize>,
    self_time: Vec<u64>,
    critical: Vec<bool>,
    linked_from: HashMap<SpanId, Vec<Value>>,
    /// Everything of the tree but its nodes (`roots` is empty).
    header: TraceTree,
}

impl Layout {
    /// Lays out adjusted spans ([`super::adjust`], [`super::adjust_owned`]).
    pub fn new(adj: Adjusted) -> Self {
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
        let mut is_root = vec![false; n];
        for &r in forest.roots.iter().chain(&forest.extra_roots) {
            is_root[r] = true;
        }
        let children: Vec<Vec<usize>> = forest
            .children
            .iter()
            .map(|c| c.iter().copied().filter(|&c| !is_root[c]).collect())
            .collect();
        let self_time: Vec<u64> = (0..n)
            .map(|i| critical_path::self_time_ns(&adj, i))
            .collect();
        let mut roots: Vec<usize> = forest
            .roots
            .iter()
            .chain(&forest.extra_roots)
            .copied()
            .collect();
        roots.sort_by_key(|&i| {
            (
                forest.parent[i].is_some() || forest.orphan[i],
                dedupe::sort_key(&spans[i]),
            )
        });
        let main_root = roots
            .first()
            .copied()
            .filter(|&r| !forest.orphan[r] && forest.parent[r].is_none());
        let critical = match main_root {
            Some(root) => critical_path::critical_spans(&adj, root),
            None => vec![false; n],
        };
        // The critical spans of the first root's tree, in tree order (depth first).
        let mut critical_path = Vec::new();
        let mut stack: Vec<usize> = roots.first().copied().into_iter().collect();
        while let Some(i) = stack.pop() {
            if critical[i] {
                critical_path.push(spans[i].span_id.to_hex());
            }
            stack.extend(children[i].iter().rev());
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
        let complete = verdict.is_complete() && roots.len() == 1;
        for s in spans {
            for w in &s.warnings {
                warnings.push(format!("span {}: {w}", s.span_id));
            }
        }
        let mut services: Vec<String> = spans.iter().map(|s| s.service_name.to_string()).collect();
        services.sort();
        services.dedup();
        let http_status = main_root.and_then(|r| spans[r].http_status());
        let outcome_reason = main_root
            .filter(|&r| {
                spans[r].status.code == model::StatusCode::Error
                    || http_status.is_some_and(|c| c >= 400)
            })
            .and_then(|_| outcome_reason(spans, forest));
        let header = TraceTree {
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
            roots: Vec::new(),
            missing,
            http_status,
            outcome_reason,
            warnings,
        };
        let linked_from = linked_from_map(spans);
        Self {
            adj,
            trace_start,
            children,
            roots,
            self_time,
            critical,
            linked_from,
            header,
        }
    }

    /// Everything of the tree but its nodes (`roots` is empty).
    pub fn header(&self) -> &TraceTree {
        &self.header
    }

    /// The header, to add warnings or clear `complete`.
    pub fn header_mut(&mut self) -> &mut TraceTree {
        &mut self.header
    }

    /// The roots, in tree order (indexes for [`node`](Self::node)).
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// The children of span `i` in tree order (empty for an index out of range).
    pub fn children(&self, i: usize) -> &[usize] {
        self.children.get(i).map_or(&[], Vec::as_slice)
    }

    /// The index of the span `span_id` (the first of its kinds, by start), if in the trace.
    pub fn index_of(&self, span_id: SpanId) -> Option<usize> {
        self.adj.spans.iter().position(|s| s.span_id == span_id)
    }

    /// The node of span `i` with no children filled in; `i` must be below `span_count`.
    pub fn node(&self, i: usize) -> TreeNode {
        let s = &self.adj.spans[i];
        let mut node = make_node(s, self.trace_start, self.adj.forest.orphan[i]);
        node.self_time_ns = self.self_time[i];
        node.critical = self.critical[i];
        node.linked_from = self
            .linked_from
            .get(&s.span_id)
            .cloned()
            .unwrap_or_default();
        node.warnings = s
            .warnings
            .iter()
            .chain(&self.adj.span_warnings[i])
            .cloned()
            .collect();
        node
    }

    /// The whole tree, every node built.
    pub fn into_tree(self) -> TraceTree {
        let n = self.adj.spans.len();
        // Build nodes bottom-up (deepest first) so no recursion is needed.
        let mut by_depth: Vec<usize> = (0..n).collect();
        by_depth.sort_by_key(|&i| std::cmp::Reverse(self.adj.forest.depth[i]));
        let mut built: Vec<Option<TreeNode>> = vec![None; n];
        for &i in &by_depth {
            let mut node = self.node(i);
            node.children = self.children[i]
                .iter()
                .filter_map(|&c| built[c].take())
                .collect();
            built[i] = Some(node);
        }
        let mut tree = self.header;
        tree.roots = self.roots.iter().filter_map(|&i| built[i].take()).collect();
        tree
    }
}

fn make_node(s: &Span, trace_start: u64, orphan: bool) -> TreeNode {
    TreeNode {
        span_id: s.span_id.to_hex(),
        parent_span_id: s.parent_span_id.map(|p| p.to_hex()),
        name: s.name.to_string(),
        service: s.service_name.to_string(),
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
