//! The statements of trace search (`search.rs`), in the same dialect as [`super::sql`]
//! (ClickHouse 18.16 and current; checked the same ways).
//!
//! A search has two steps: which traces have a span meeting the span conditions (the
//! prefilter, on the `(service, start_ns)`-ordered `search_local`), then one aggregate per
//! candidate trace (trace start, end, duration, and what the prefilter could not check),
//! sorted, cut at the limit. The aggregate reads the per-trace summary rows
//! (`trace_summary_local`, schema 5: start and end) when the prefilter checked every span
//! condition, and the candidates' spans in the trace-ordered `spans_local` otherwise.
//! [`find_trace_ids`] does both over everything; newest-first searches do the first step in
//! a time window and keep the `k` newest candidates ([`window_candidates`]), then rank those
//! only ([`find_trace_ids_among`]; both in one statement per shard when the collector asks
//! each shard's node itself: [`window_step`]). A duration-sorted search ranks every candidate, from the
//! summaries when they suffice: one statement, no span read.
//!
//! Every per-trace aggregate runs on each shard alone (`distributed_group_by_no_merge`,
//! [`PER_SHARD`]): a trace lives on one shard, so each shard's answer is exact for its
//! traces, and the caller sorts the shards' rows together and cuts them at the limit.

use super::sql::{Tables, id_list, quote};
use crate::model::TraceId;
use crate::store::{SortOrder, TraceQuery};

/// Settings of the per-trace aggregates: on a cluster each shard answers its top rows and
/// the node asked only concatenates them (no states shipped and merged); the caller sorts.
pub(super) const PER_SHARD: &[(&str, &str)] = &[("distributed_group_by_no_merge", "1")];

fn and(conds: &[String]) -> String {
    if conds.is_empty() {
        "1".into()
    } else {
        conds.join(" AND ")
    }
}

/// A search row has attribute `key` = `value` (the key by its hash, schema 8: `ddl.rs`'s
/// `ATTR_KEY_HASHES`; ClickHouse hashes the literal as the writer hashed the key).
fn attr_cond(key: &str, value: &str) -> String {
    format!(
        "arrayExists((h, v) -> h = cityHash64({}) AND v = {}, attr_key_hashes, attr_values)",
        quote(key),
        quote(value)
    )
}

/// The ids of the traces matching `q`, in its order, at most its limit per shard (run with
/// [`PER_SHARD`]); each row is `(trace_id, t_start, t_end, t_dur)`.
///
/// Shape: an optional prefilter on the service/time-ordered `search_local` (traces with a
/// span meeting the span conditions), then one aggregate per candidate trace, filtered with
/// `HAVING` as [`TraceQuery`] defines (the span conditions together on one span when
/// [`TraceQuery::needs_span_check`], else each alone): over the summary rows when the
/// prefilter leaves only the trace's start and duration to check, else over its spans.
/// A trace's start bounds every span's start, so `start_time_min` also narrows the prefilter.
pub(super) fn find_trace_ids(t: &Tables, q: &TraceQuery) -> String {
    let c = conditions(q);
    let filter = c.prefilter.as_ref().map_or(String::new(), |p| {
        format!(
            " WHERE trace_id IN (SELECT trace_id FROM {} WHERE {p})",
            t.search_local()
        )
    });
    if c.span_terms_among.is_empty() {
        trace_aggregate(
            t,
            q,
            Source::Summaries,
            &filter,
            &and(&c.bounds),
            q.effective_limit(),
        )
    } else {
        let having = and(&[c.bounds, c.span_terms].concat());
        trace_aggregate(t, q, Source::Spans, &filter, &having, q.effective_limit())
    }
}

/// [`find_trace_ids`] among the traces `ids` only, which must each have a span meeting the
/// prefilter (the candidates of [`window_candidates`]): the `HAVING` leaves out what the
/// prefilter already checked, and the summaries answer when that is all but start and
/// duration.
pub(super) fn find_trace_ids_among(t: &Tables, q: &TraceQuery, ids: &[TraceId]) -> String {
    among(t, q, &format!(" WHERE trace_id IN {}", id_list(ids)))
}

/// Whether [`find_trace_ids_among`] ranks from the per-trace summaries: the prefilter
/// checked every span condition, so only the trace's start and duration are left to check.
pub(super) fn ranks_from_summaries(q: &TraceQuery) -> bool {
    conditions(q).span_terms_among.is_empty()
}

/// [`find_trace_ids_among`] the traces `filter` (` WHERE trace_id IN ...`) keeps.
fn among(t: &Tables, q: &TraceQuery, filter: &str) -> String {
    let c = conditions(q);
    let limit = q.effective_limit();
    if c.span_terms_among.is_empty() {
        trace_aggregate(t, q, Source::Summaries, filter, &and(&c.bounds), limit)
    } else {
        let having = and(&[c.bounds, c.span_terms_among].concat());
        trace_aggregate(t, q, Source::Spans, filter, &having, limit)
    }
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
    // With attributes, the window is a PREWHERE: the attribute arrays, the widest columns,
    // are then read only for the granules holding spans of the window.
    let mut prewhere = String::new();
    match from_ns {
        Some(from) if !q.attributes.is_empty() => {
            prewhere = format!(" PREWHERE start_ns >= {from}");
        }
        Some(from) => conds.push(format!("start_ns >= {from}")),
        None => {}
    }
    Some(format!(
        "SELECT trace_id, min(start_ns) AS s FROM {}{prewhere} WHERE {} GROUP BY trace_id \
         ORDER BY s DESC, trace_id DESC LIMIT {k} FORMAT RowBinary",
        t.search(),
        and(&conds)
    ))
}

/// For a newest-first search over one node's tables (a shard's `*_local`, or one node): its
/// `k` candidates as [`window_candidates`] picks them, and those ranked as
/// [`find_trace_ids_among`] ranks, in one statement. Rows `(0, trace_id, t_start, t_end,
/// t_dur)` for the ranked (at most the limit), then `(1, trace_id, start of its earliest
/// span in the window meeting the prefilter, 0, 0)` for every candidate. `None` for other
/// orders.
pub(super) fn window_step(
    t: &Tables,
    q: &TraceQuery,
    from_ns: Option<u64>,
    k: usize,
) -> Option<String> {
    let candidates = window_candidates(t, q, from_ns, k)?;
    let candidates = candidates.trim_end_matches(" FORMAT RowBinary");
    let ranked = among(
        t,
        q,
        &format!(" WHERE trace_id IN (SELECT trace_id FROM ({candidates}))"),
    );
    let ranked = ranked.trim_end_matches(" FORMAT RowBinary");
    // `t_dur` is signed (`UInt64` minus `UInt64`): the union needs one type.
    Some(format!(
        "SELECT toUInt8(0) AS b, trace_id, t_start, t_end, toUInt64(t_dur) AS d \
         FROM ({ranked}) UNION ALL SELECT toUInt8(1) AS b, trace_id, s AS t_start, \
         toUInt64(0) AS t_end, toUInt64(0) AS d FROM ({candidates}) FORMAT RowBinary"
    ))
}

/// For a duration-sorted search: the `walk` longest rows of each shard's
/// `trace_duration_local` (by `(duration_ns, trace_id)`, descending) among those at or
/// after `from` (`None`: all), and among their traces the ones matching `q`, ranked over
/// their spans as [`find_trace_ids`] ranks (run with [`PER_SHARD`]). Rows
/// `(0, trace_id, t_start, t_end, t_dur)` for the matches, at most the limit per shard, then
/// one row per shard `(1, trace_id, rows walked, 0, duration_ns)` naming the last row walked
/// (the shortest; id and duration are defaults when the shard walked none). `from` bounds
/// the primary key range read: without it every row of the table is sorted.
/// `None` when the walk cannot decide: another order, a `max_duration` (a trace whose
/// rows overstate its duration could match it and sort anywhere), or attribute conditions
/// (since schema 6 only `search_local` holds the attributes, and it is not ordered by trace:
/// those searches take the full search's prefilter).
pub(super) fn longest_walk(
    t: &Tables,
    q: &TraceQuery,
    walk: usize,
    from: Option<(u64, TraceId)>,
) -> Option<String> {
    if !walks_longest_first(q) {
        return None;
    }
    let c = conditions(q);
    let region = region(from);
    let walked = format!(
        "SELECT trace_id, duration_ns FROM {}{region} ORDER BY duration_ns DESC, \
         trace_id DESC LIMIT {walk}",
        t.trace_durations_local()
    );
    let filter = format!(" WHERE trace_id IN (SELECT trace_id FROM ({walked}))");
    let having = and(&[c.bounds, c.span_terms].concat());
    let ranked = trace_aggregate(t, q, Source::Spans, &filter, &having, q.effective_limit());
    let ranked = ranked.trim_end_matches(" FORMAT RowBinary");
    // `t_dur` is signed (`UInt64` minus `UInt64`): the union needs one type.
    // The last row walked: on a cluster over the `Distributed` table, so each shard answers
    // for its own walk (a row walked twice is counted twice: more than `walk` rows then,
    // which only means "rows left"); over one node's tables, from the walk itself.
    let last = match t.cluster {
        Some(_) => format!(
            "{} WHERE (duration_ns, trace_id) IN (SELECT duration_ns, trace_id FROM ({walked}))",
            t.trace_durations()
        ),
        None => format!("({walked})"),
    };
    Some(format!(
        "SELECT toUInt8(0) AS b, trace_id, t_start, t_end, toUInt64(t_dur) AS d \
         FROM ({ranked}) UNION ALL SELECT toUInt8(1) AS b, tupleElement(m, 2) AS trace_id, \
         t_start, toUInt64(0) AS t_end, tupleElement(m, 1) AS d FROM (SELECT \
         min((duration_ns, trace_id)) AS m, count() AS t_start FROM {last}) FORMAT RowBinary"
    ))
}

/// Whether [`longest_walk`] can answer `q`: sorted by duration, with no maximum duration
/// and no attribute condition.
pub(super) fn walks_longest_first(q: &TraceQuery) -> bool {
    q.sort == SortOrder::Duration && q.max_duration_ns.is_none() && q.attributes.is_empty()
}

/// The rows of `trace_duration_local` at or after `from` by `(duration_ns, trace_id)`, as a
/// `WHERE` clause (empty: every row). A key range: the server reads only its granules.
fn region(from: Option<(u64, TraceId)>) -> String {
    from.map_or(String::new(), |(d, id)| {
        format!(
            " WHERE duration_ns > {d} OR duration_ns = {d} AND trace_id >= {}",
            super::sql::bytes_lit(&id.0)
        )
    })
}

/// Where a duration-sorted search can start its walk (run with [`PER_SHARD`]): per shard,
/// `(duration_ns, trace_id, rows)` of the last of its `walk` longest `trace_duration_local`
/// rows at or after `from` (`rows` < `walk`: the shard has fewer such rows, and defaults).
/// With `from`, only that key range is read and sorted; without, the whole table.
pub(super) fn longest_start(t: &Tables, walk: usize, from: Option<(u64, TraceId)>) -> String {
    format!(
        "SELECT tupleElement(m, 1), tupleElement(m, 2), n FROM (SELECT \
         min((duration_ns, trace_id)) AS m, count() AS n FROM {} WHERE (duration_ns, trace_id) \
         IN (SELECT duration_ns, trace_id FROM {}{} ORDER BY duration_ns DESC, trace_id DESC \
         LIMIT {walk})) FORMAT RowBinary",
        t.trace_durations(),
        t.trace_durations_local(),
        region(from)
    )
}

/// Where a per-trace aggregate reads a trace's start and end.
#[derive(Clone, Copy)]
enum Source {
    /// Its spans (`spans_local`): every condition can be checked.
    Spans,
    /// Its summary rows (`trace_summary_local`): start and end only.
    Summaries,
}

fn trace_aggregate(
    t: &Tables,
    q: &TraceQuery,
    source: Source,
    filter: &str,
    having: &str,
    limit: usize,
) -> String {
    let order = match q.sort {
        SortOrder::Newest => "t_start DESC",
        SortOrder::Duration => "t_dur DESC",
    };
    let (table, start, end) = match source {
        Source::Spans => (t.spans(), "min(start_ns)", "max(end_ns)"),
        Source::Summaries => (
            t.trace_summaries(),
            "minMerge(start_state)",
            "maxMerge(end_state)",
        ),
    };
    format!(
        "SELECT trace_id, {start} AS t_start, {end} AS t_end, \
         if(t_end > t_start, t_end - t_start, 0) AS t_dur FROM {table}{filter} \
         GROUP BY trace_id HAVING {having} ORDER BY {order}, trace_id DESC LIMIT {limit} \
         FORMAT RowBinary"
    )
}

/// The conditions of a search.
struct Conditions {
    /// On `search_local`: a condition every matching trace has a span meeting.
    prefilter: Option<String>,
    /// Bounds on the trace's start (`t_start`) and, when the span conditions are not
    /// checked together, its duration (`t_dur`): what a summary row can check.
    bounds: Vec<String>,
    /// `max(<condition on a span>) = 1` terms: what only the spans can check.
    span_terms: Vec<String>,
    /// `span_terms` for traces known to have a span meeting `prefilter` (that term left
    /// out; none when the prefilter is every span condition on one span).
    span_terms_among: Vec<String>,
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
    let mut bounds = Vec::new();
    if let Some(m) = q.start_time_min_unix_nano {
        bounds.push(format!("t_start >= {m}"));
    }
    if let Some(m) = q.start_time_max_unix_nano {
        bounds.push(format!("t_start <= {m}"));
    }
    let (prefilter, span_terms, span_terms_among) = if q.needs_span_check() {
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
        (
            Some(all.clone()),
            vec![format!("max({all}) = 1")],
            Vec::new(),
        )
    } else {
        if let Some(m) = q.min_duration_ns {
            bounds.push(format!("t_dur >= {m}"));
        }
        if let Some(m) = q.max_duration_ns {
            bounds.push(format!("t_dur <= {m}"));
        }
        let mut terms = Vec::new();
        for c in kind.iter().chain(&status).chain(&errors) {
            terms.push(format!("max({c}) = 1"));
        }
        if !pair.is_empty() {
            terms.push(format!("max({}) = 1", and(&pair)));
        }
        for a in &attrs {
            terms.push(format!("max({a}) = 1"));
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
        // A candidate meets the prefilter: that term holds.
        let met = prefilter.as_ref().map(|p| format!("max({p}) = 1"));
        let among = terms
            .iter()
            .filter(|h| met.as_ref() != Some(*h))
            .cloned()
            .collect();
        (prefilter, terms, among)
    };
    let prefilter = match (prefilter, q.start_time_min_unix_nano) {
        (Some(p), Some(m)) => Some(format!("{p} AND start_ns >= {m}")),
        (None, Some(m)) => Some(format!("start_ns >= {m}")),
        (p, None) => p,
    };
    Conditions {
        prefilter,
        bounds,
        span_terms,
        span_terms_among,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables::one_node_for_tests()
    }

    #[test]
    fn candidates_skip_only_the_condition_the_prefilter_checked() {
        let q = TraceQuery {
            service: Some("a".into()),
            errors_only: true,
            ..TraceQuery::default()
        };
        // Two groups: the prefilter checks both on one span; the aggregate needs neither,
        // so the summaries rank the candidates, no span read.
        let among = find_trace_ids_among(&tables(), &q, &[]);
        assert!(among.contains("HAVING 1 ORDER BY"), "{among}");
        assert!(
            among.contains("FROM `d`.`trace_summary_local` WHERE"),
            "{among}"
        );
        let all = find_trace_ids(&tables(), &q);
        assert!(
            all.contains(
                "FROM `d`.`trace_summary_local` WHERE trace_id IN (SELECT trace_id FROM \
                 `d`.`search_local` WHERE service = 'a' AND status = 2) GROUP BY trace_id \
                 HAVING 1 ORDER BY"
            ),
            "{all}"
        );
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
        // That term needs the spans.
        assert!(among.contains("FROM `d`.`spans_local` WHERE"), "{among}");
        let all = find_trace_ids(&tables(), &q);
        assert!(
            all.contains("HAVING max(status = 1) = 1 AND max(status = 2) = 1 ORDER BY"),
            "{all}"
        );
        // A duration alone is a bound on the trace: the summaries of every trace answer.
        let q = TraceQuery {
            min_duration_ns: Some(9),
            sort: SortOrder::Duration,
            ..TraceQuery::default()
        };
        let all = find_trace_ids(&tables(), &q);
        assert!(
            all.contains(
                "FROM `d`.`trace_summary_local` GROUP BY trace_id HAVING t_dur >= 9 \
                 ORDER BY t_dur DESC, trace_id DESC"
            ),
            "{all}"
        );
    }

    /// Schema 6: the attribute arrays are in `search_local` only, so no statement may
    /// match attributes over `spans_local`.
    #[test]
    fn attributes_are_matched_in_the_search_rows_only() {
        let attr = || vec![("k".to_owned(), "v".to_owned())];
        let queries = [
            TraceQuery {
                attributes: attr(),
                ..TraceQuery::default()
            },
            TraceQuery {
                attributes: attr(),
                service: Some("a".into()),
                ..TraceQuery::default()
            },
            TraceQuery {
                attributes: [attr(), vec![("k2".into(), "v2".into())]].concat(),
                status: Some(crate::model::StatusCode::Error),
                errors_only: true,
                min_duration_ns: Some(3),
                sort: SortOrder::Duration,
                ..TraceQuery::default()
            },
        ];
        for q in &queries {
            // The prefilter on the search rows matches them ...
            let all = find_trace_ids(&tables(), q);
            assert!(all.contains("FROM `d`.`search_local` WHERE"), "{all}");
            assert!(all.contains("attr_key_hashes"), "{all}");
            assert!(!all.contains("spans_local"), "{all}");
            // ... so the candidates it found need no attribute check again.
            let among = find_trace_ids_among(&tables(), q, &[]);
            assert!(!among.contains("attr_key"), "{among}");
            let window = window_candidates(&tables(), q, Some(1), 8);
            assert!(window.is_none_or(|w| !w.contains("spans_local")));
        }
    }

    #[test]
    fn the_window_step_ranks_the_candidates_it_lists_on_one_node() {
        let q = TraceQuery {
            service: Some("a".into()),
            min_duration_ns: Some(9),
            ..TraceQuery::default()
        };
        let sql = window_step(&tables(), &q, Some(7), 40).unwrap();
        let candidates = window_candidates(&tables(), &q, Some(7), 40).unwrap();
        let candidates = candidates.trim_end_matches(" FORMAT RowBinary");
        // The same candidates twice: in the ranking's IN, and listed for the bound.
        assert_eq!(sql.matches(candidates).count(), 2, "{sql}");
        assert!(
            sql.contains(&format!(
                "WHERE trace_id IN (SELECT trace_id FROM ({candidates}))"
            )),
            "{sql}"
        );
        assert!(!sql.contains("_dist"), "{sql}");
        let q = TraceQuery {
            sort: SortOrder::Duration,
            ..q
        };
        assert!(window_step(&tables(), &q, None, 40).is_none());
    }

    /// 18.16 cannot run a scalar subquery in a query over a `Distributed` table: trace by
    /// id reads the refusal count in the same statement over one node's tables only.
    #[test]
    fn trace_by_id_counts_refusals_in_the_statement_over_one_node_only() {
        let id = TraceId([7; 16]);
        let local = super::super::sql::trace_spans(&tables(), id);
        assert!(local.contains("(SELECT toUInt64(sum(refused)) FROM `d`.`refusals_local`"));
        let cluster = Tables {
            cluster: Some("c".into()),
            ..tables()
        };
        let dist = super::super::sql::trace_spans(&cluster, id);
        assert!(dist.contains("toUInt64(0) FROM `d`.`spans_dist`"), "{dist}");
        assert!(!dist.contains("(SELECT"), "{dist}");
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
