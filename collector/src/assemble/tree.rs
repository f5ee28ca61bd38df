//! Spans linked into a forest by `parent_span_id` (DESIGN.md §4).
//!
//! - A span whose parent is not in the trace is an **orphan**: an extra root, with a warning.
//! - Zipkin shares one span id between a CLIENT span and the SERVER span it called
//!   (interop.md §2.8, §4): that SERVER span is the CLIENT's child, whatever parent id Zipkin
//!   gave it, and a span whose parent is a shared id hangs under the SERVER side.
//! - Parent cycles and nesting deeper than [`MAX_DEPTH`] are cut into extra roots, with a
//!   warning, so malformed input never recurses without bound.

use std::collections::HashMap;

use crate::model::{Span, SpanId, SpanKind};

/// Deepest nesting kept in one tree; deeper spans are re-rooted with a warning.
pub const MAX_DEPTH: usize = 256;

/// The parent/child structure of a trace's distinct spans (indexes into the span slice).
#[derive(Debug, Clone, Default)]
pub(super) struct Forest {
    /// Per span: index of its parent.
    pub(super) parent: Vec<Option<usize>>,
    /// Per span: the parent id is set but the parent is not in the trace.
    pub(super) orphan: Vec<bool>,
    /// Per span: its children (re-rooted spans excluded).
    pub(super) children: Vec<Vec<usize>>,
    /// Spans without a parent in the trace (true roots and orphans).
    pub(super) roots: Vec<usize>,
    /// Spans cut from their parent (cycles, too deep).
    pub(super) extra_roots: Vec<usize>,
    /// Per span: nesting depth below its root (a root is 0).
    pub(super) depth: Vec<usize>,
    /// Every span, parents before children.
    pub(super) preorder: Vec<usize>,
}

/// Links `spans` into a [`Forest`], adding orphan, cycle and depth warnings.
pub(super) fn link(
    spans: &[Span],
    span_warnings: &mut [Vec<String>],
    warnings: &mut Vec<String>,
) -> Forest {
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
    walk(&mut stack, &mut depth, &mut extra_roots, warnings);
    for i in 0..n {
        if depth[i].is_none() {
            warnings.push(format!(
                "span {} is part of a parent cycle; shown as an extra root",
                spans[i].span_id
            ));
            extra_roots.push(i);
            stack.push((i, 0));
            walk(&mut stack, &mut depth, &mut extra_roots, warnings);
        }
    }
    let depth: Vec<usize> = depth.into_iter().map(|d| d.unwrap_or(0)).collect();
    // Re-rooted spans are cut from their parent's children.
    for &r in &extra_roots {
        if let Some(p) = parent[r] {
            children[p].retain(|&c| c != r);
        }
    }
    Forest {
        parent,
        orphan,
        children,
        roots,
        extra_roots,
        depth,
        preorder,
    }
}
