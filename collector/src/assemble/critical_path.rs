//! Self time and the critical path, on the adjusted times.
//!
//! - **Self time** (`self_time_ns`): a span's duration minus the union of its children's
//!   intervals, each clipped to the span.
//! - **Critical path** (`critical`, `critical_path`): the chain of spans that determines the
//!   root's duration, computed as Jaeger UI does: start at the root's end, step into the child
//!   that finished last before the current point, and when a span has no such child, walk
//!   back up to its parent from the span's start. Children are clipped to their parent first.
//!   `critical_path` lists the critical spans root first, then in tree (depth-first, time)
//!   order. Only the main root (the first) has a critical path.

use super::Adjusted;

/// Duration minus the union of the children's intervals clipped to the span.
pub(super) fn self_time_ns(adj: &Adjusted, i: usize) -> u64 {
    let s = &adj.spans[i];
    let (start, end) = (s.start_time_unix_nano, s.end_time_unix_nano);
    let mut intervals: Vec<(u64, u64)> = adj.forest.children[i]
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
pub(super) fn critical_spans(adj: &Adjusted, root: usize) -> Vec<bool> {
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
        for &c in &adj.forest.children[p] {
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
        let last_finishing = adj.forest.children[current]
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
                match adj.forest.parent[current] {
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
