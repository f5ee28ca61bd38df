//! The statements of trace search (`search.rs`), in the same dialect as [`super::sql`]
//! (ClickHouse 18.16 and current; checked the same ways).
//!
//! A search has two steps: which traces have a span meeting the span conditions (the
//! prefilter, on the `(service, start_ns)`-ordered `search_local`), then one aggregate per
//! candidate trace over its spans in the trace-ordered `spans_local` (trace start, end,
//! duration, and what the prefilter could not check), sorted, cut at the limit.
//! [`find_trace_ids`] does both over everything; newest-first searches do the first step in
//! a time window and keep the `k` newest candidates ([`window_candidates`]), then rank those
//! only ([`find_trace_ids_among`]).

use super::sql::{Tables, id_list, quote};
use crate::model::TraceId;
use crate::store::{SortOrder, TraceQuery};

fn and(conds: &[String]) -> String {
    if conds.is_empty() {
        "1".into()
    } else {
        conds.join(" AND ")
    }
}

fn attr_cond(key: &str, value: &str) -> String {
    format!(
        "arrayExists((k, v) -> k = {} AND v = {}, attr_keys, attr_values)",
        quote(key),
        quote(value)
    )
}

/// The ids of the traces matching `q`, in its order, at most its limit; each row is
/// `(trace_id, t_start, t_end, t_dur)`.
///
/// Shape: an optional prefilter on the service/time-ordered `search_local` (traces with a
/// span meeting the span conditions), then one aggregate per candidate trace over its spans
/// in the trace-ordered table, filtered with `HAVING` as [`TraceQuery`] defines (the span
/// conditions together on one span when [`TraceQuery::needs_span_check`], else each alone).
/// A trace's start bounds every span's start, so `start_time_min` also narrows the prefilter.
pub(super) fn find_trace_ids(t: &Tables, q: &TraceQuery) -> String {
    let c = conditions(q);
    let filter = c.prefilter.map_or(String::new(), |p| {
        format!(
            " WHERE trace_id IN (SELECT trace_id FROM {} WHERE {p})",
            t.search_local()
        )
    });
    trace_aggregate(t, q, &filter, &c.having)
}

/// [`find_trace_ids`] among the traces `ids` only, which must each have a span meeting the
/// prefilter (the candidates of [`window_candidates`]): the `HAVING` leaves out what the
/// prefilter already checked.
pub(super) fn find_trace_ids_among(t: &Tables, q: &TraceQuery, ids: &[TraceId]) -> String {
    let c = conditions(q);
    trace_aggregate(
        t,
        q,
        &format!(" WHERE trace_id IN {}", id_list(ids)),
        &c.having_among,
    )
}

/// For a newest-first search: the `k` traces with a span meeting the prefilter that starts
/// at or after `from_ns` (`None`: any time), by the start of their earliest such span,
/// newest first (ties: larger trace id first): rows `(trace_id, that start)`. A trace left
/// out either has no such span since `from_ns` (so it starts before `from_ns`), or sorts
/// after the last row by `(start, trace_id)` (so its own start, which is at most that
/// span's, and id do too): what `search::find_traces` checks its results against. The
/// earliest span, not the latest: its start is the tighter bound on the trace's start.
/// `None` for other orders.
pub(super) fn window_candidates(
    t: &Tables,
    q: &TraceQuery,
    from_ns: Option<u64>,
    k: usize,
) -> Option<String> {
    if q.sort != SortOrder::Newest {
        return None;
    }
    let mut conds: Vec<String> = conditions(q).prefilter.into_iter().collect();
    if let Some(from) = from_ns {
        conds.push(format!("start_ns >= {from}"));
    }
    Some(format!(
        "SELECT trace_id, min(start_ns) AS s FROM {} WHERE {} GROUP BY trace_id \
         ORDER BY s DESC, trace_id DESC LIMIT {k} FORMAT RowBinary",
        t.search(),
        and(&conds)
    ))
}

fn trace_aggregate(t: &Tables, q: &TraceQuery, filter: &str, having: &str) -> String {
    let order = match q.sort {
        SortOrder::Newest => "t_start DESC",
        SortOrder::Duration => "t_dur DESC",
    };
    format!(
        "SELECT trace_id, min(start_ns) AS t_start, max(end_ns) AS t_end, \
         if(t_end > t_start, t_end - t_start, 0) AS t_dur FROM {}{filter} GROUP BY trace_id \
         HAVING {having} ORDER BY {order}, trace_id DESC LIMIT {} FORMAT RowBinary",
        t.spans(),
        q.effective_limit()
    )
}

/// The conditions of a search.
struct Conditions {
    /// On `search_local`: a condition every matching trace has a span meeting.
    prefilter: Option<String>,
    /// The `HAVING` of the per-trace aggregate.
    having: String,
    /// `having` for traces known to have a span meeting `prefilter`.
    having_among: String,
}

fn conditions(q: &TraceQuery) -> Conditions {
    let mut pair = Vec::new();
    if let Some(s) = &q.service {
        pair.push(format!("service = {}", quote(s)));
    }
    if let Some(o) = &q.operation {
        pair.push(format!("name = {}", quote(o)));
    }
    let kind = q.kind.map(|k| format!("kind = {}", k.as_i32()));
    let status = q.status.map(|c| format!("status = {}", c.as_i32()));
    let errors = q.errors_only.then(|| "status = 2".to_owned());
    let attrs: Vec<String> = q.attributes.iter().map(|(k, v)| attr_cond(k, v)).collect();
    let mut having = Vec::new();
    if let Some(m) = q.start_time_min_unix_nano {
        having.push(format!("t_start >= {m}"));
    }
    if let Some(m) = q.start_time_max_unix_nano {
        having.push(format!("t_start <= {m}"));
    }
    let (prefilter, having_among) = if q.needs_span_check() {
        let mut span = pair.clone();
        span.extend(kind.iter().chain(&status).chain(&errors).cloned());
        if let Some(m) = q.min_duration_ns {
            span.push(format!("duration_ns >= {m}"));
        }
        if let Some(m) = q.max_duration_ns {
            span.push(format!("duration_ns <= {m}"));
        }
        span.extend(attrs.iter().cloned());
        let all = and(&span);
        // The prefilter is every span condition on one span: a candidate meets them all.
        let among = having.clone();
        having.push(format!("max({all}) = 1"));
        (Some(all), among)
    } else {
        if let Some(m) = q.min_duration_ns {
            having.push(format!("t_dur >= {m}"));
        }
        if let Some(m) = q.max_duration_ns {
            having.push(format!("t_dur <= {m}"));
        }
        for c in kind.iter().chain(&status).chain(&errors) {
            having.push(format!("max({c}) = 1"));
        }
        if !pair.is_empty() {
            having.push(format!("max({}) = 1", and(&pair)));
        }
        for a in &attrs {
            having.push(format!("max({a}) = 1"));
        }
        let prefilter = if pair.is_empty() {
            attrs
                .first()
                .or(kind.as_ref())
                .or(status.as_ref())
                .or(errors.as_ref())
                .cloned()
        } else {
            Some(and(&pair))
        };
        // A candidate meets the prefilter: that term of the `HAVING` holds.
        let met = prefilter.as_ref().map(|p| format!("max({p}) = 1"));
        let among = having
            .iter()
            .filter(|h| met.as_ref() != Some(*h))
            .cloned()
            .collect();
        (prefilter, among)
    };
    let prefilter = match (prefilter, q.start_time_min_unix_nano) {
        (Some(p), Some(m)) => Some(format!("{p} AND start_ns >= {m}")),
        (None, Some(m)) => Some(format!("start_ns >= {m}")),
        (p, None) => p,
    };
    Conditions {
        prefilter,
        having: and(&having),
        having_among: and(&having_among),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables {
            db: "d".into(),
            cluster: None,
            replicated: false,
        }
    }

    #[test]
    fn candidates_skip_only_the_condition_the_prefilter_checked() {
        let q = TraceQuery {
            service: Some("a".into()),
            errors_only: true,
            ..TraceQuery::default()
        };
        // Two groups: the prefilter checks both on one span; the aggregate needs neither.
        let among = find_trace_ids_among(&tables(), &q, &[]);
        assert!(among.contains("HAVING 1 ORDER BY"), "{among}");
        assert!(find_trace_ids(&tables(), &q).contains("max(service = 'a' AND status = 2)"));
        // One group plus a trace duration: the prefilter is the service; the duration stays.
        let q = TraceQuery {
            service: Some("a".into()),
            min_duration_ns: None,
            start_time_min_unix_nano: Some(5),
            ..TraceQuery::default()
        };
        let among = find_trace_ids_among(&tables(), &q, &[]);
        assert!(among.contains("HAVING t_start >= 5 ORDER BY"), "{among}");
        // Status and errors_only are one group, but the prefilter checks only the status.
        let q = TraceQuery {
            status: Some(crate::model::StatusCode::Ok),
            errors_only: true,
            ..TraceQuery::default()
        };
        let among = find_trace_ids_among(&tables(), &q, &[]);
        assert!(
            among.contains("HAVING max(status = 2) = 1 ORDER BY"),
            "{among}"
        );
    }

    #[test]
    fn window_candidates_bound_the_start_and_exist_for_newest_first_only() {
        let q = TraceQuery::default();
        let sql = window_candidates(&tables(), &q, Some(7), 40).unwrap();
        assert!(sql.contains("WHERE start_ns >= 7 GROUP BY"), "{sql}");
        assert!(sql.contains("LIMIT 40 FORMAT"), "{sql}");
        let sql = window_candidates(&tables(), &q, None, 40).unwrap();
        assert!(sql.contains("WHERE 1 GROUP BY"), "{sql}");
        let q = TraceQuery {
            sort: SortOrder::Duration,
            ..q
        };
        assert!(window_candidates(&tables(), &q, None, 40).is_none());
    }
}
