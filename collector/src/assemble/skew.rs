//! Clock-skew correction at read time (interop.md §3.5; Jaeger's `CorrectClockSkew`).
//!
//! A child whose host differs from its parent's and that starts before its parent or ends
//! after it is shifted to fit: if the child is longer than the parent its start is aligned,
//! else it is moved just inside. Spans on the child's host below it inherit the same shift.
//! The host is `host.id`, `host.ip` or `host.name` of the resource; without one, the service
//! name stands for the host. Producer → consumer edges (asynchronous by nature) are never
//! adjusted. A shift larger than the configured maximum is not applied. Every shift, or
//! refusal, is a warning on the span. The stored spans are never changed.

use crate::model::{self, AttrValue, Span, SpanKind};

use super::dedupe::sort_key;
use super::text::format_duration_ns;
use super::tree::Forest;

/// Shifts spans into their parents, parents first; `max_delta_ns` bounds one shift.
pub(super) fn correct(
    spans: &mut [Span],
    forest: &mut Forest,
    span_warnings: &mut [Vec<String>],
    warnings: &mut Vec<String>,
    max_delta_ns: u64,
) {
    let max_delta = i128::from(max_delta_ns);
    let hosts: Vec<String> = spans.iter().map(host_key).collect();
    let mut delta: Vec<i128> = vec![0; spans.len()];
    let mut adjusted = 0usize; // spans with a skew warning
    for &i in &forest.preorder {
        let Some(p) = forest.parent[i].filter(|_| !forest.extra_roots.contains(&i)) else {
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
                    format_duration_ns(max_delta_ns),
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
        for &i in &forest.preorder {
            for w in &span_warnings[i] {
                if !w.contains("copies of this span") {
                    warnings.push(format!("span {}: {w}", spans[i].span_id));
                }
            }
        }
    }
    // Children stay ordered by (adjusted) start.
    for list in &mut forest.children {
        list.sort_by_key(|&c| sort_key(&spans[c]));
    }
    forest.roots.sort_by_key(|&c| sort_key(&spans[c]));
}

/// The host of a span for clock-skew purposes: `host.id`, `host.ip` or `host.name`, else
/// the service name.
fn host_key(s: &Span) -> String {
    for key in ["host.id", "host.ip", "host.name"] {
        if let Some(AttrValue::String(v)) = model::find_attribute(&s.resource.attributes, key)
            && !v.is_empty()
        {
            return v.to_string();
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
        format_duration_ns(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX))
    )
}
