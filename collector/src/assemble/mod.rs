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
//! Before the tree is built, [`adjust`] applies two read-time adjusters (interop.md §3.5,
//! reliability.md §3.2; the stored spans are never changed):
//!
//! 1. **Duplicates merged.** Several copies of one `(span_id, kind)` (a retried export, a
//!    duplicated proxy) become one span: the copy with the most attributes and events, then
//!    the latest end. The merge is reported as a span and a trace warning.
//! 2. **Clock skew.** A child whose host differs from its parent's and that starts before its
//!    parent or ends after it is shifted to fit, as Jaeger's `CorrectClockSkew` does: if the
//!    child is longer than the parent its start is aligned, else it is moved just inside.
//!    Spans on the child's host below it inherit the same shift. The host is `host.id`,
//!    `host.ip` or `host.name` of the resource; without one, the service name stands for the
//!    host. Producer → consumer edges (asynchronous by nature) are never adjusted. A shift
//!    larger than [`AssembleOptions::clock_skew_max_delta_ns`] is not applied. Every shift,
//!    or refusal, is a warning on the span. `clock_skew_max_delta_ns: None` (`?raw=true`)
//!    turns the adjuster off.
//!
//! The tree also carries two analyses, computed on the adjusted times:
//!
//! - **Self time** (`self_time_ns`): a span's duration minus the union of its children's
//!   intervals, each clipped to the span.
//! - **Critical path** (`critical`, `critical_path`): the chain of spans that determines the
//!   root's duration, computed as Jaeger UI does: start at the root's end, step into the child
//!   that finished last before the current point, and when a span has no such child, walk
//!   back up to its parent from the span's start. Children are clipped to their parent first.
//!   `critical_path` lists the critical spans root first, then in tree (depth-first, time)
//!   order. Only the main root (the first) has a critical path.
//!
//! [`text::render`] draws the same tree as text.

pub mod text;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{self, AttrValue, Span, SpanId, SpanKind};

/// Deepest nesting kept in one tree; deeper spans are re-rooted with a warning.
pub const MAX_DEPTH: usize = 256;
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
    /// Deepest nesting, the root being 1 (0 for an empty tree).
    pub depth: usize,
    /// Span ids on the critical path of the main root, root first (see the module docs).
    pub critical_path: Vec<String>,
    /// The root span(s): normally one; orphans and re-rooted spans follow it.
    pub roots: Vec<TreeNode>,
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
    /// True when the parent span is missing from the trace.
    pub orphan: bool,
    /// What ingest and assembly changed on this span (clock skew, merged duplicates,
    /// truncation); empty when nothing.
    pub warnings: Vec<String>,
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

fn sort_key(s: &Span) -> (u64, SpanId, SpanKind) {
    (s.start_time_unix_nano, s.span_id, s.kind)
}

/// Spans after the read-time adjusters, linked into a forest (see the module docs).
#[derive(Debug, Clone)]
pub struct Adjusted {
    /// The distinct spans, with adjusted times, ordered by (start, span id, kind).
    pub spans: Vec<Span>,
    /// Per span: index of its parent in `spans`.
    pub parent: Vec<Option<usize>>,
    /// Per span: the parent id is set but the parent is not in the trace.
    pub orphan: Vec<bool>,
    /// Per span: warnings added by assembly (skew, merged duplicates).
    pub span_warnings: Vec<Vec<String>>,
    /// Trace-level warnings (orphans, cycles, duplicates, skew summary).
    pub warnings: Vec<String>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    extra_roots: Vec<usize>,
    depth: Vec<usize>,
}

/// Merges duplicates, links parents and corrects clock skew (see the module docs).
pub fn adjust(input: &[Span], options: &AssembleOptions) -> Adjusted {
    let mut warnings = Vec::new();
    // 1. Merge copies of one (span_id, kind).
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
    let mut spans: Vec<Span> = Vec::with_capacity(keep.len());
    let mut span_warnings: Vec<Vec<String>> = Vec::with_capacity(keep.len());
    for (i, copies) in keep {
        let s = input[i].clone();
        let mut w = Vec::new();
        if copies > 1 {
            let msg = format!("{copies} copies of this span were merged into one");
            warnings.push(format!("span {}: {msg}", s.span_id));
            w.push(msg);
        }
        spans.push(s);
        span_warnings.push(w);
    }

    // 2. Parent lookup by span id. Zipkin shares one id between a CLIENT span and the SERVER
    // span it called (interop.md §2.8, §4): that SERVER span is the CLIENT's child, whatever
    // parent id Zipkin gave it (the client's parent), and a span whose parent is a shared id
    // ran inside the SERVER side, so it hangs under the SERVER span.
    let n = spans.len();
    let mut by_id: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.span_id).or_default().push(i);
    }
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut orphan = vec![false; n];
    for i in 0..n {
        let same_id = |kind: SpanKind| {
            by_id
                .get(&spans[i].span_id)
                .and_then(|c| c.iter().copied().find(|&p| p != i && spans[p].kind == kind))
        };
        if spans[i].kind == SpanKind::Server
            && let Some(client) = same_id(SpanKind::Client)
        {
            parent[i] = Some(client);
            span_warnings[i].push(
                "span id shared with the CLIENT span that called it (Zipkin-style); shown under it"
                    .to_owned(),
            );
            continue;
        }
        if let Some(pid) = spans[i].parent_span_id {
            let pick = by_id.get(&pid).and_then(|c| {
                let mut others = c.iter().copied().filter(|&p| p != i);
                let first = others.clone().next();
                others
                    .find(|&p| spans[p].kind == SpanKind::Server)
                    .or(first)
            });
            match pick {
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
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match *p {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    // Walk from the roots; whatever is not reached sits on a parent cycle.
    let mut depth: Vec<Option<usize>> = vec![None; n];
    let mut extra_roots: Vec<usize> = Vec::new();
    let mut preorder: Vec<usize> = Vec::with_capacity(n);
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
    let mut walk = |stack: &mut Vec<(usize, usize)>,
                    depth: &mut Vec<Option<usize>>,
                    extra: &mut Vec<usize>,
                    warnings: &mut Vec<String>| {
        while let Some((i, d)) = stack.pop() {
            if depth[i].is_some() {
                continue;
            }
            depth[i] = Some(d);
            preorder.push(i);
            for &c in children[i].iter().rev() {
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
    for i in 0..n {
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
    let depth: Vec<usize> = depth.into_iter().map(|d| d.unwrap_or(0)).collect();
    // Re-rooted spans are cut from their parent's children.
    for &r in &extra_roots {
        if let Some(p) = parent[r] {
            children[p].retain(|&c| c != r);
        }
    }

    // 3. Clock skew, parents before children (pre-order).
    if let Some(max_delta) = options.clock_skew_max_delta_ns {
        let max_delta = i128::from(max_delta);
        let hosts: Vec<String> = spans.iter().map(host_key).collect();
        let mut delta: Vec<i128> = vec![0; n];
        let mut adjusted = 0usize; // spans with a skew warning
        for &i in &preorder {
            let Some(p) = parent[i].filter(|_| !extra_roots.contains(&i)) else {
                continue;
            };
            if hosts[i] == hosts[p] {
                delta[i] = delta[p];
            } else if spans[i].kind == SpanKind::Consumer || spans[p].kind == SpanKind::Producer {
                delta[i] = 0;
            } else {
                let d = calculate_skew(&spans[i], &spans[p]);
                if d.abs() > max_delta {
                    span_warnings[i].push(format!(
                        "max clock skew adjustment delta of {} exceeded; not applying calculated delta of {}",
                        text::format_duration_ns(u64::try_from(max_delta).unwrap_or(u64::MAX)),
                        signed_duration(d)
                    ));
                    delta[i] = 0;
                } else {
                    delta[i] = d;
                    if d != 0 {
                        span_warnings[i].push(format!(
                            "clock skew adjusted: shifted by {} to fit in parent {} (host {} vs parent host {})",
                            signed_duration(d),
                            spans[p].span_id,
                            hosts[i],
                            hosts[p]
                        ));
                    }
                }
            }
            if delta[i] != 0 {
                shift(&mut spans[i], delta[i]);
            }
            if hosts[i] != hosts[p] && span_warnings[i].iter().any(|w| w.contains("skew")) {
                adjusted += 1;
            }
        }
        if adjusted > 0 {
            for &i in &preorder {
                for w in &span_warnings[i] {
                    if !w.contains("copies of this span") {
                        warnings.push(format!("span {}: {w}", spans[i].span_id));
                    }
                }
            }
        }
        // Children stay ordered by (adjusted) start.
        for list in &mut children {
            list.sort_by_key(|&c| sort_key(&spans[c]));
        }
        roots.sort_by_key(|&c| sort_key(&spans[c]));
    }
    Adjusted {
        spans,
        parent,
        orphan,
        span_warnings,
        warnings,
        children,
        roots,
        extra_roots,
        depth,
    }
}

/// The host of a span for clock-skew purposes: `host.id`, `host.ip` or `host.name`, else
/// the service name.
fn host_key(s: &Span) -> String {
    for key in ["host.id", "host.ip", "host.name"] {
        if let Some(AttrValue::String(v)) = model::find_attribute(&s.resource.attributes, key)
            && !v.is_empty()
        {
            return v.clone();
        }
    }
    format!("service:{}", s.service_name)
}

/// Jaeger's `calculateSkew`: the shift that puts `child` inside (the adjusted) `parent`.
fn calculate_skew(child: &Span, parent: &Span) -> i128 {
    let (cs, ce) = (
        i128::from(child.start_time_unix_nano),
        i128::from(child.end_time_unix_nano),
    );
    let (ps, pe) = (
        i128::from(parent.start_time_unix_nano),
        i128::from(parent.end_time_unix_nano),
    );
    if ce - cs > pe - ps {
        return if cs < ps { ps - cs } else { 0 };
    }
    if cs < ps {
        ps - cs
    } else if ce > pe {
        pe - ce
    } else {
        0
    }
}

fn shift(s: &mut Span, delta: i128) {
    let move_t = |t: u64| -> u64 {
        u64::try_from((i128::from(t) + delta).clamp(0, i128::from(u64::MAX))).unwrap_or(0)
    };
    s.start_time_unix_nano = move_t(s.start_time_unix_nano);
    s.end_time_unix_nano = move_t(s.end_time_unix_nano);
    for e in &mut s.events {
        e.time_unix_nano = move_t(e.time_unix_nano);
    }
}

fn signed_duration(d: i128) -> String {
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        text::format_duration_ns(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

/// Builds the tree of one trace with the default options. `spans` must all share a trace id
/// and be non-empty for a meaningful answer (an empty slice gives an empty, incomplete tree).
pub fn assemble(spans: &[Span]) -> TraceTree {
    assemble_with(spans, &AssembleOptions::default())
}

/// Builds the tree of one trace (see the module docs).
pub fn assemble_with(input: &[Span], options: &AssembleOptions) -> TraceTree {
    let adj = adjust(input, options);
    let spans = &adj.spans;
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
        for &r in adj.roots.iter().chain(&adj.extra_roots) {
            v[r] = true;
        }
        v
    };
    let self_time: Vec<u64> = (0..n).map(|i| self_time_ns(&adj, i)).collect();
    let mut root_ids: Vec<usize> = adj.roots.iter().chain(&adj.extra_roots).copied().collect();
    // The real root(s) first, then orphans and re-rooted spans, each by start time.
    root_ids.sort_by_key(|&i| {
        (
            adj.parent[i].is_some() || adj.orphan[i],
            sort_key(&spans[i]),
        )
    });
    let critical = match root_ids.first() {
        Some(&root) if !adj.orphan[root] && adj.parent[root].is_none() => {
            critical_spans(&adj, root)
        }
        _ => vec![false; n],
    };

    // Build nodes bottom-up (deepest first) so no recursion is needed.
    let mut by_depth: Vec<usize> = (0..n).collect();
    by_depth.sort_by_key(|&i| std::cmp::Reverse(adj.depth[i]));
    let mut built: Vec<Option<TreeNode>> = vec![None; n];
    for &i in &by_depth {
        let mut node = make_node(&spans[i], trace_start, adj.orphan[i]);
        node.self_time_ns = self_time[i];
        node.critical = critical[i];
        node.warnings = spans[i]
            .warnings
            .iter()
            .chain(&adj.span_warnings[i])
            .cloned()
            .collect();
        node.children = adj.children[i]
            .iter()
            .filter(|&&c| !is_root[c])
            .filter_map(|&c| built[c].take())
            .collect();
        built[i] = Some(node);
    }
    let root_nodes: Vec<TreeNode> = root_ids.iter().filter_map(|&i| built[i].take()).collect();
    let mut critical_path = Vec::new();
    if let Some(root) = root_nodes.first() {
        collect_critical(root, &mut critical_path);
    }

    let parentless = adj.roots.iter().filter(|&&r| !adj.orphan[r]).count();
    if parentless == 0 && n > 0 {
        warnings.push("the root span has not arrived (no span without a parent)".to_owned());
    } else if parentless > 1 {
        warnings.push(format!(
            "{parentless} spans have no parent; expected one root"
        ));
    }
    let complete = parentless == 1 && root_nodes.len() == 1 && n > 0;
    for s in spans {
        for w in &s.warnings {
            warnings.push(format!("span {}: {w}", s.span_id));
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
        span_count: n,
        service_count: services.len(),
        services,
        start_time_unix_nano: trace_start,
        duration_ns: trace_end.saturating_sub(trace_start),
        depth: if n == 0 {
            0
        } else {
            adj.depth.iter().max().copied().unwrap_or(0) + 1
        },
        critical_path,
        roots: root_nodes,
        warnings,
    }
}

fn collect_critical(node: &TreeNode, out: &mut Vec<String>) {
    // Pre-order without recursion (trees may be up to MAX_DEPTH deep).
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.critical {
            out.push(n.span_id.clone());
        }
        stack.extend(n.children.iter().rev());
    }
}

/// Duration minus the union of the children's intervals clipped to the span.
fn self_time_ns(adj: &Adjusted, i: usize) -> u64 {
    let s = &adj.spans[i];
    let (start, end) = (s.start_time_unix_nano, s.end_time_unix_nano);
    let mut intervals: Vec<(u64, u64)> = adj.children[i]
        .iter()
        .map(|&c| {
            let c = &adj.spans[c];
            (
                c.start_time_unix_nano.clamp(start, end),
                c.end_time_unix_nano.clamp(start, end),
            )
        })
        .filter(|(a, b)| b > a)
        .collect();
    intervals.sort_unstable();
    let mut covered = 0u64;
    let mut cursor = start;
    for (a, b) in intervals {
        let a = a.max(cursor);
        if b > a {
            covered += b - a;
            cursor = b;
        }
    }
    (end - start).saturating_sub(covered)
}

/// Marks the spans on the critical path below `root` (Jaeger UI's algorithm, iterative).
fn critical_spans(adj: &Adjusted, root: usize) -> Vec<bool> {
    let n = adj.spans.len();
    // Effective intervals: each child clipped to its (effective) parent; children entirely
    // outside their parent are left out.
    let mut eff: Vec<Option<(u64, u64)>> = vec![None; n];
    let r = &adj.spans[root];
    eff[root] = Some((r.start_time_unix_nano, r.end_time_unix_nano));
    let mut stack = vec![root];
    let mut visited_order = Vec::new();
    while let Some(p) = stack.pop() {
        visited_order.push(p);
        let Some((ps, pe)) = eff[p] else { continue };
        for &c in &adj.children[p] {
            let s = &adj.spans[c];
            let (cs, ce) = (s.start_time_unix_nano.max(ps), s.end_time_unix_nano.min(pe));
            if cs <= ce && s.start_time_unix_nano <= pe && s.end_time_unix_nano >= ps {
                eff[c] = Some((cs, ce));
                stack.push(c);
            }
        }
    }
    let mut critical = vec![false; n];
    let mut used = vec![false; n];
    let mut current = root;
    let mut returning: Option<u64> = None;
    // Each step either descends into an unused child or climbs; bounded by 2n steps.
    for _ in 0..(2 * n + 2) {
        critical[current] = true;
        used[current] = true;
        let Some((cur_start, cur_end)) = eff[current] else {
            break;
        };
        let limit = returning.unwrap_or(cur_end);
        let last_finishing = adj.children[current]
            .iter()
            .copied()
            .filter(|&c| !used[c])
            .filter_map(|c| eff[c].map(|(cs, ce)| (c, cs, ce)))
            .filter(|&(_, _, ce)| ce <= limit)
            .max_by_key(|&(c, cs, ce)| (ce, cs, std::cmp::Reverse(c)));
        match last_finishing {
            Some((c, _, _)) => {
                current = c;
                returning = None;
            }
            None => {
                if current == root {
                    break;
                }
                match adj.parent[current] {
                    Some(p) => {
                        returning = Some(cur_start);
                        current = p;
                    }
                    None => break,
                }
            }
        }
    }
    critical
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
        warnings: Vec::new(),
        self_time_ns: 0,
        critical: false,
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
        // Zipkin's shape: the shared SERVER span carries the CLIENT's parent id, and the
        // server's own work names the shared id as its parent.
        let t = trace_id(7);
        let spans = vec![
            span(t, 1, None, "a", "root", Server, 0.0, 10.0),
            span(t, 2, Some(1), "a", "call", Client, 1.0, 8.0),
            span(t, 2, Some(1), "b", "call", Server, 2.0, 6.0),
            span(t, 3, Some(2), "b", "query", Client, 3.0, 4.0),
        ];
        let tree = assemble(&spans);
        assert!(tree.complete, "{:?}", tree.warnings);
        assert_eq!(tree.roots.len(), 1);
        let client = &tree.roots[0].children[0];
        assert_eq!(client.service, "a");
        assert_eq!(
            client.children.len(),
            1,
            "the server is the client's only child"
        );
        let server = &client.children[0];
        assert_eq!(server.service, "b");
        assert_eq!(server.children[0].name, "query");
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
                "critical_path",
                "depth",
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
                "critical",
                "duration_ns",
                "events",
                "kind",
                "links",
                "name",
                "offset_ns",
                "orphan",
                "parent_span_id",
                "self_time_ns",
                "service",
                "span_id",
                "start_time_unix_nano",
                "status",
                "status_message",
                "warnings"
            ]
        );
    }

    fn find(nodes: &[TreeNode], id: u64) -> Option<&TreeNode> {
        let want = crate::testing::span_id(id).to_hex();
        let mut stack: Vec<&TreeNode> = nodes.iter().collect();
        while let Some(n) = stack.pop() {
            if n.span_id == want {
                return Some(n);
            }
            stack.extend(n.children.iter());
        }
        None
    }

    fn hex(ids: &[u64]) -> Vec<String> {
        ids.iter()
            .map(|&i| crate::testing::span_id(i).to_hex())
            .collect()
    }

    #[test]
    fn sequential_calls_are_all_critical_and_self_time_subtracts_children() {
        let tree = assemble(&sample_trace(9));
        assert_eq!(tree.depth, 4);
        assert_eq!(tree.critical_path, hex(&[1, 2, 3, 4, 5, 6, 7]));
        let root = &tree.roots[0];
        assert!(root.critical);
        // 412.3 ms minus the two calls (31.2 ms and 370 ms).
        assert_eq!(root.self_time_ns, 11_100_000);
        let db = find(&tree.roots, 4).unwrap();
        assert_eq!(db.self_time_ns, db.duration_ns, "leaf: all self");
        // order (34 ms .. 1234 ms) overruns its parent; its own child is clipped to it.
        let order = find(&tree.roots, 6).unwrap();
        assert_eq!(order.self_time_ns, 1200 * MS - 2_500_000);
        assert!(order.warnings.contains(&"clamped".to_owned()));
        assert!(find(&tree.roots, 2).unwrap().warnings.is_empty());
    }

    #[test]
    fn parallel_children_only_the_last_finishing_chain_is_critical() {
        let t = trace_id(20);
        // root 0..100; a 10..40 and b 10..90 in parallel; c 92..95 after them; b has child
        // b1 20..80; a has child a1 15..35 (not critical: a finished before b).
        let spans = vec![
            span(t, 1, None, "fe", "root", Server, 0.0, 100.0),
            span(t, 2, Some(1), "fe", "a", Client, 10.0, 30.0),
            span(t, 3, Some(1), "fe", "b", Client, 10.0, 80.0),
            span(t, 4, Some(1), "fe", "c", Internal, 92.0, 3.0),
            span(t, 5, Some(3), "be", "b1", Server, 20.0, 60.0),
            span(t, 6, Some(2), "be", "a1", Server, 15.0, 20.0),
        ];
        let tree = assemble(&spans);
        assert_eq!(tree.critical_path, hex(&[1, 3, 5, 4]));
        assert!(!find(&tree.roots, 2).unwrap().critical);
        assert!(!find(&tree.roots, 6).unwrap().critical);
        // root: 100 - union(10..90, 92..95) = 100 - 83 = 17 ms.
        assert_eq!(tree.roots[0].self_time_ns, 17 * MS);
        // b: 80 - 60.
        assert_eq!(find(&tree.roots, 3).unwrap().self_time_ns, 20 * MS);
        assert_eq!(tree.depth, 3);
        let text = text::render(&tree);
        assert!(text.contains("(◆ critical path)"), "{text}");
        assert!(text.contains("├─ ◆ fe b [client]"), "{text}");
        assert!(text.contains("├─ fe a [client]"), "{text}");
        // root: 17 of 100 ms is its own work; b: 20 of 80 ms.
        assert!(
            text.contains("fe root [server] 100.0 ms  self 17.0 ms"),
            "{text}"
        );
        assert!(
            text.contains("fe b [client] 80.0 ms  self 20.0 ms"),
            "{text}"
        );
    }

    fn on_host(mut s: Span, host: &str) -> Span {
        let mut r = (*s.resource).clone();
        r.attributes.retain(|kv| kv.key != "host.name");
        r.attributes.push(model::KeyValue::new(
            "host.name",
            AttrValue::String(host.into()),
        ));
        s.resource = std::sync::Arc::new(r);
        s
    }

    #[test]
    fn clock_skew_on_another_host_is_corrected_with_a_warning() {
        let t = trace_id(21);
        // The child host's clock is 5 s ahead: its server span starts after the client ends.
        let spans = vec![
            on_host(span(t, 1, None, "fe", "root", Server, 0.0, 100.0), "a"),
            on_host(span(t, 2, Some(1), "fe", "call", Client, 10.0, 50.0), "a"),
            on_host(
                span(t, 3, Some(2), "be", "handle", Server, 5015.0, 40.0),
                "b",
            ),
            on_host(span(t, 4, Some(3), "be", "db", Client, 5020.0, 10.0), "b"),
        ];
        let tree = assemble(&spans);
        assert!(tree.complete);
        let server = find(&tree.roots, 3).unwrap();
        // Moved back to end with its parent (10..60): starts at 20 ms.
        assert_eq!(server.offset_ns, 20 * MS);
        assert_eq!(server.duration_ns, 40 * MS);
        assert!(
            server.warnings[0].contains("clock skew adjusted"),
            "{:?}",
            server.warnings
        );
        // Its child on the same host moves with it, without a warning of its own.
        let db = find(&tree.roots, 4).unwrap();
        assert_eq!(db.offset_ns, 25 * MS);
        assert!(db.warnings.is_empty());
        assert_eq!(tree.duration_ns, 100 * MS, "no span sticks out any more");
        assert!(tree.warnings.iter().any(|w| w.contains("clock skew")));

        // raw: nothing moves.
        let raw = assemble_with(&spans, &AssembleOptions::raw());
        assert_eq!(find(&raw.roots, 3).unwrap().offset_ns, 5015 * MS);
        // Over the maximum delta: not applied, but reported.
        let small = AssembleOptions {
            clock_skew_max_delta_ns: Some(1000 * MS),
        };
        let capped = assemble_with(&spans, &small);
        let server = find(&capped.roots, 3).unwrap();
        assert_eq!(server.offset_ns, 5015 * MS);
        assert!(
            server.warnings[0].contains("exceeded"),
            "{:?}",
            server.warnings
        );
    }

    #[test]
    fn child_starting_early_on_another_host_is_moved_forward() {
        let t = trace_id(22);
        let spans = vec![
            on_host(span(t, 1, None, "fe", "root", Server, 100.0, 100.0), "a"),
            on_host(span(t, 2, Some(1), "be", "early", Server, 90.0, 20.0), "b"),
            // Same host as the parent: never adjusted even when outside.
            on_host(
                span(t, 3, Some(1), "fe", "async", Internal, 150.0, 100.0),
                "a",
            ),
        ];
        let tree = assemble(&spans);
        assert_eq!(find(&tree.roots, 2).unwrap().offset_ns, 0);
        assert_eq!(find(&tree.roots, 3).unwrap().offset_ns, 50 * MS);
        assert!(find(&tree.roots, 3).unwrap().warnings.is_empty());
    }

    #[test]
    fn duplicate_copies_are_merged_with_a_warning() {
        let mut spans = sample_trace(23);
        let mut richer = spans[2].clone();
        richer
            .attributes
            .push(model::KeyValue::new("extra", AttrValue::Bool(true)));
        spans.push(spans[2].clone());
        spans.push(richer);
        let tree = assemble(&spans);
        assert_eq!(tree.span_count, 7);
        assert!(tree.complete);
        let user = find(&tree.roots, 3).unwrap();
        assert!(
            user.attributes.contains_key("extra"),
            "the richest copy wins"
        );
        assert!(user.warnings[0].contains("3 copies"), "{:?}", user.warnings);
        assert!(tree.warnings.iter().any(|w| w.contains("3 copies")));
    }
}
