//! The search SQL builder: a [`TraceQuery`] becomes one `SELECT` over `traces` and the
//! search-index tables (see `index.rs`), every value a bound parameter. A search driven by
//! an attribute is a `UNION ALL` of the attribute index's SQL places (`attr_runs.rs`) merged
//! with the pair's posting rows (`attr_search.rs`, schema 17).

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::attr_keys::id_of_key;
use super::attr_postings;
use super::attr_runs::{self, Run};
use super::attr_search::{self, AttrWalk};
use super::buckets::bucket_of;
use super::operation_ids::{id_of_pair, services_with_operation};
use super::read::{SUMMARY_COLUMNS, read_trace, row_to_summary};
use super::slow_walk::{self, SlowWalk};
use super::{backend, to_i64};
use crate::model::StatusCode;
use crate::store::{
    SortOrder, StoreError, TraceQuery, TraceSummary, span_mask_bit_kind, span_mask_bit_status,
};

/// Search. Newest-first searches walk the most selective start-ordered index (operation,
/// service, then the first attribute, else `traces_by_start`) and stop at the limit, or read
/// a few candidates and sort them: the traces of a service's slow spans (`slow_spans`, when
/// fewer than [`SLOW_DRIVE_MAX`] spans of the service reach a minimum duration of at least
/// [`SLOW_SPAN_NS`]), or the traces that reach the minimum duration (when fewer than
/// [`DURATION_DRIVE_MAX`] do, from `traces_by_duration`); with more such spans, they walk
/// the service's slow spans newest first (`slow_walk.rs`). The other filters are `EXISTS`
/// probes on primary keys. Duration-ordered searches walk `traces_by_duration` from the
/// longest. Every value is a bound parameter.
pub(super) fn find(conn: &Connection, q: &TraceQuery) -> Result<Vec<TraceSummary>, StoreError> {
    let drive = Drive::choose(conn, q)?;
    if !q.needs_span_check() {
        return find_by_index(conn, q, drive, q.effective_limit(), 0, None);
    }
    let want = q.effective_limit();
    let candidates = q.candidates();
    if q.attributes.is_empty() {
        // Every same-span condition is a column of the span blocks: the probe is exact, and no
        // candidate needs to be read.
        return find_by_index(conn, &candidates, drive, want, 0, Some(q));
    }
    // Same-span conditions with attributes: the indexes give a superset in the query's
    // order, page by page; each candidate's spans decide. At most MAX_SPAN_CHECKED traces
    // are read.
    let page = (want * 4).clamp(64, 1000);
    let mut found = Vec::with_capacity(want);
    let mut offset = 0;
    while found.len() < want && offset < MAX_SPAN_CHECKED {
        let batch = find_by_index(conn, &candidates, drive, page, offset, Some(q))?;
        let exhausted = batch.len() < page;
        offset += batch.len();
        for summary in batch {
            if let Some(trace) = read_trace(conn, summary.trace_id)?
                && q.matches_trace(&trace.summary, &trace.spans)
            {
                found.push(summary);
                if found.len() == want {
                    break;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(found)
}

/// Most candidate traces read to check same-span conditions in one search.
pub(super) const MAX_SPAN_CHECKED: usize = 10_000;

/// The span conditions of `q` that are columns of a span block (service, name, kind, status,
/// error, duration bounds) as one `EXISTS` over the trace's blocks (the SQL function of
/// `block_probe.rs`, which decodes each), binding its values into `args`; `None` when it has
/// none. Necessary for [`TraceQuery::matches_trace`] (candidates
/// failing it are never read), and sufficient without attribute conditions (then no
/// candidate is read at all).
fn same_span_probe(q: &TraceQuery, args: &mut Vec<SqlValue>) -> Option<String> {
    let has_any = q.service.is_some()
        || q.operation.is_some()
        || q.kind.is_some()
        || q.status.is_some()
        || q.errors_only
        || q.min_duration_ns.is_some()
        || q.max_duration_ns.is_some();
    if !has_any {
        return None;
    }
    let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
    let int = |v: Option<i64>| v.map_or(SqlValue::Null, SqlValue::Integer);
    args.push(text(&q.service));
    args.push(text(&q.operation));
    args.push(int(q.kind.map(|k| i64::from(k.as_i32()))));
    args.push(int(q.status.map(|s| i64::from(s.as_i32()))));
    args.push(int(q
        .errors_only
        .then_some(i64::from(StatusCode::Error.as_i32()))));
    args.push(int(q.min_duration_ns.map(to_i64)));
    args.push(int(q.max_duration_ns.map(to_i64)));
    Some(
        "EXISTS (SELECT 1 FROM span_blocks s WHERE s.trace_id = t.trace_id \
         AND spanline_block_has(s.data, ?, ?, ?, ?, ?, ?, ?))"
            .to_owned(),
    )
}

/// Version 8 → 9 (also run on a new file; since 15 on the empty `spans`, whose spans of 100 ms
/// or longer moved to `slow_spans`, `blocks.rs`): `spans_slow`, a partial index of the spans that
/// last [`SLOW_SPAN_NS`] or longer, by service and duration. Slow spans are few, so it costs
/// the writer little (none in the ingest benchmark, whose spans last 250 µs); it finds the
/// traces of a service's slow spans without walking all of that service's traces. Building
/// it on an existing file reads every span once.
pub(super) const SCHEMA_V9: &str = "CREATE INDEX IF NOT EXISTS spans_slow \
    ON spans (service, duration_ns) WHERE duration_ns >= 100000000;";

/// The shortest span in `slow_spans`, in ns: the bound of its rows, [`SCHEMA_V9`] and
/// `slow_spans!`.
pub(super) const SLOW_SPAN_NS: u64 = 100_000_000;

/// The trace ids of a service's spans at or above a minimum duration (`?` service, `?` min
/// in ns), when the minimum is at least [`SLOW_SPAN_NS`]. The index's own condition is
/// written out so that SQLite may use the partial index (a bound parameter would not prove
/// that the rows are all in it).
macro_rules! slow_spans {
    () => {
        "SELECT s.trace_id FROM slow_spans s INDEXED BY slow_spans_by_duration \
         WHERE s.service = ? AND s.duration_ns >= ? AND s.duration_ns >= 100000000"
    };
}

/// At most this many spans of a service at or above a search's minimum duration make it
/// read their traces from `slow_spans_by_duration` and sort them: a random read of `traces` each (about
/// 8 µs), where the walk of `slow_spans_by_start` reads a few covering index entries per
/// result while such spans are not rare among the service's spans of 100 ms or longer
/// (3,000 of them at 1M demo spans: 23 ms p50 sorted, BENCHMARKS.md §3.5).
const SLOW_DRIVE_MAX: i64 = 500;

/// At most this many traces at or above a search's minimum duration make it walk
/// `traces_by_duration` (read them all, sort by start) instead of the service's or
/// operation's traces newest first.
const DURATION_DRIVE_MAX: i64 = 2_000;

/// Whether fewer than `max` rows answer `sql` (a `SELECT 1 … LIMIT ?` counted up to `max`,
/// with `args` bound before the limit).
fn fewer_than(
    conn: &Connection,
    sql: &str,
    mut args: Vec<SqlValue>,
    max: i64,
) -> Result<bool, StoreError> {
    args.push(SqlValue::Integer(max));
    let count: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM ({sql} LIMIT ?)"))
        .map_err(backend)?
        .query_row(rusqlite::params_from_iter(args), |r| r.get(0))
        .map_err(backend)?;
    Ok(count < max)
}

/// Which index a newest-first search walks (chosen once per search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// `traces_by_start`, or `traces_by_duration` for searches by duration.
    Traces,
    /// `trace_operations`, newest first.
    Operation,
    /// `trace_services`, newest first.
    Service,
    /// The first attribute's rows (both levels), newest first.
    Attribute,
    /// The few traces that reach the minimum duration, sorted.
    Duration,
    /// The traces of the service's few spans that reach the minimum duration, sorted.
    SlowSpans,
    /// The service's many spans that reach the minimum duration, newest first
    /// (`slow_walk.rs`).
    SlowWalk,
}

impl Drive {
    fn choose(conn: &Connection, q: &TraceQuery) -> Result<Self, StoreError> {
        if q.sort != SortOrder::Newest {
            return Ok(Self::Traces);
        }
        let first_attribute = q.attributes.first();
        // A service and a minimum duration of 100 ms or more: the service's spans that long,
        // sorted when they are few, else walked newest first (`slow_walk.rs`).
        if first_attribute.is_none()
            && let (Some(service), Some(min)) = (&q.service, q.min_duration_ns)
            && min >= SLOW_SPAN_NS
        {
            let few = fewer_than(
                conn,
                slow_spans!(),
                vec![
                    SqlValue::Text(service.clone()),
                    SqlValue::Integer(to_i64(min)),
                ],
                SLOW_DRIVE_MAX,
            )?;
            return Ok(if few { Self::SlowSpans } else { Self::SlowWalk });
        }
        // A minimum duration few traces reach: walking the service's (or operation's)
        // traces newest first would read all of them to find the few; read the few and sort.
        if first_attribute.is_none()
            && let Some(min) = q.min_duration_ns
            && fewer_than(
                conn,
                "SELECT 1 FROM traces INDEXED BY traces_by_duration WHERE duration_ns >= ?",
                vec![SqlValue::Integer(to_i64(min))],
                DURATION_DRIVE_MAX,
            )?
        {
            return Ok(Self::Duration);
        }
        Ok(match (&q.service, &q.operation, first_attribute) {
            (_, Some(_), _) => Self::Operation,
            // An attribute value is nearly always more selective than a service: walking the
            // service's traces newest first and probing each for the attribute reads the
            // whole service when the value is rare.
            (_, None, Some(_)) => Self::Attribute,
            (Some(_), None, None) => Self::Service,
            (None, None, None) => Self::Traces,
        })
    }
}

/// The indexed search: `limit` summaries from `offset` in the query's order. With
/// `same_span`, only traces with one stored span that meets its column conditions
/// ([`same_span_probe`]).
fn find_by_index(
    conn: &Connection,
    q: &TraceQuery,
    drive: Drive,
    limit: usize,
    offset: usize,
    same_span: Option<&TraceQuery>,
) -> Result<Vec<TraceSummary>, StoreError> {
    // With attributes, one read transaction (rolled back, nothing to undo, when dropped; none
    // if the caller holds one), so the attribute index's run and segment lists match the
    // rows the statement reads.
    let _snapshot = if q.attributes.is_empty() || !conn.is_autocommit() {
        None
    } else {
        Some(conn.unchecked_transaction().map_err(backend)?)
    };
    let (runs, width) = if q.attributes.is_empty() {
        (Vec::new(), None)
    } else {
        (attr_runs::runs(conn)?, attr_postings::widest_move(conn)?)
    };
    let mut args: Vec<SqlValue> = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    let text = |v: &String| SqlValue::Text(v.clone());
    let newest = q.sort == SortOrder::Newest;
    // Operation and attribute walks are arms ([`Arm`]): one per service of the operation, one
    // per level or staged segment of the attribute index.
    let mut arms: Vec<Arm> = Vec::new();
    let (from, order) = match drive {
        Drive::Traces | Drive::SlowWalk => ("traces t", "t"),
        Drive::Duration => ("traces t INDEXED BY traces_by_duration", "t"),
        Drive::SlowSpans => {
            args.push(text(q.service.as_ref().unwrap_or(&String::new())));
            args.push(SqlValue::Integer(to_i64(q.min_duration_ns.unwrap_or(0))));
            // CROSS JOIN: the few slow spans' traces first, then each trace by its key.
            (
                concat!(
                    "(SELECT DISTINCT trace_id FROM (",
                    slow_spans!(),
                    ")) x CROSS JOIN traces t ON t.trace_id = x.trace_id"
                ),
                "t",
            )
        }
        Drive::Operation => {
            let operation = q.operation.clone().unwrap_or_default();
            let services = match &q.service {
                Some(service) => vec![service.clone()],
                None => services_with_operation(conn, &operation)?,
            };
            // One arm per service, each walking the buckets that meet the query's window
            // newest first and the pair's rows of each newest first (`buckets.rs`): the
            // bucket list is the outer loop, so SQLite stops at the limit without sorting.
            let from = SqlValue::Integer(q.start_time_min_unix_nano.map_or(i64::MIN, to_i64));
            let to = SqlValue::Integer(q.start_time_max_unix_nano.map_or(i64::MAX, to_i64));
            arms = services
                .into_iter()
                .map(|service| Arm {
                    table: "index_buckets ib CROSS JOIN trace_operations".to_owned(),
                    conds: concat!(
                        "ib.bucket >= ",
                        bucket_of!("?"),
                        " AND ib.lo_ns <= ? AND x.bucket = ib.bucket AND x.op = ",
                        id_of_pair!()
                    ),
                    args: vec![
                        from.clone(),
                        to.clone(),
                        SqlValue::Text(service),
                        SqlValue::Text(operation.clone()),
                    ],
                })
                .collect();
            ("", "x")
        }
        Drive::Service => {
            conds.push("x.service = ?".to_owned());
            args.push(text(q.service.as_ref().unwrap_or(&String::new())));
            (
                "trace_services x JOIN traces t ON t.trace_id = x.trace_id",
                "x",
            )
        }
        Drive::Attribute => ("", "x"),
    };
    if !matches!(drive, Drive::Operation | Drive::Service | Drive::SlowSpans)
        && let Some(service) = &q.service
    {
        conds.push(
            "EXISTS (SELECT 1 FROM trace_services s WHERE s.service = ? \
             AND s.start_ns = t.start_ns AND s.trace_id = t.trace_id)"
                .to_owned(),
        );
        args.push(text(service));
    }
    if !matches!(drive, Drive::Operation)
        && let Some(operation) = &q.operation
    {
        // The pair's id, or without a service the operation's ids (`operation_ids`' key is
        // `(name, service)`), then an exact key per id (`trace_operations` has no index by
        // operation alone).
        conds.push(match &q.service {
            Some(service) => {
                args.push(text(service));
                args.push(text(operation));
                concat!(
                    "EXISTS (SELECT 1 FROM trace_operations o WHERE o.bucket = ",
                    bucket_of!("t.start_ns"),
                    " AND o.op = ",
                    id_of_pair!(),
                    " AND o.start_ns = t.start_ns AND o.trace_id = t.trace_id)"
                )
                .to_owned()
            }
            None => {
                args.push(text(operation));
                concat!(
                    "EXISTS (SELECT 1 FROM operation_ids p JOIN trace_operations o ON o.bucket = ",
                    bucket_of!("t.start_ns"),
                    " AND o.op = p.id AND o.start_ns = t.start_ns AND o.trace_id = t.trace_id \
                     WHERE p.name = ?)"
                )
                .to_owned()
            }
        });
    }
    let skip_attrs = usize::from(matches!(drive, Drive::Attribute));
    for (key, value) in q.attributes.iter().skip(skip_attrs) {
        let old = attr_runs::search_condition(&runs, key, value, &mut args);
        let posted = attr_postings::search_condition(width, key, value, &mut args);
        conds.push(format!("({old} OR {posted})"));
    }
    if let Some(v) = q.start_time_min_unix_nano {
        conds.push(format!("{order}.start_ns >= ?"));
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.start_time_max_unix_nano {
        conds.push(format!("{order}.start_ns <= ?"));
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.min_duration_ns {
        conds.push("t.duration_ns >= ?".to_owned());
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.max_duration_ns {
        conds.push("t.duration_ns <= ?".to_owned());
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if q.errors_only {
        conds.push("t.error_count > 0".to_owned());
    }
    let mut mask_bits = Vec::new();
    if let Some(kind) = q.kind {
        mask_bits.push(span_mask_bit_kind(kind));
    }
    if let Some(status) = q.status {
        mask_bits.push(span_mask_bit_status(status));
    }
    for bit in mask_bits {
        conds.push("(t.span_mask & ?) != 0".to_owned());
        args.push(SqlValue::Integer(i64::from(bit)));
    }
    // Last: the probe decodes the trace's blocks, which the conditions on `traces` above
    // spare the traces they rule out.
    if let Some(probe) = same_span.and_then(|q| same_span_probe(q, &mut args)) {
        conds.push(probe);
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    match drive {
        Drive::Attribute => {
            let (key, value) = &q.attributes[0];
            let arms = attribute_arms(conn, q, &runs, key, value)?;
            let walk = AttrWalk {
                key,
                value,
                from_ns: q.start_time_min_unix_nano.map_or(i64::MIN, to_i64),
                to_ns: q.start_time_max_unix_nano.map_or(i64::MAX, to_i64),
                conds: &conds,
                args: &args,
                sql_places: arms_sql(&arms, Walk::Attribute, &conds, &args),
            };
            return attr_search::find(conn, &walk, limit, offset);
        }
        Drive::Operation => {
            return query_arms(conn, &arms, Walk::Operation, &conds, &args, limit, offset);
        }
        Drive::SlowWalk => {
            let walk = SlowWalk {
                service: q.service.as_deref().unwrap_or_default(),
                min_duration_ns: q.min_duration_ns.unwrap_or(SLOW_SPAN_NS),
                start_min_ns: q.start_time_min_unix_nano,
                conds: &conds,
                args: &args,
            };
            return slow_walk::find(conn, &walk, limit, offset);
        }
        _ => {}
    }
    args.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    args.push(SqlValue::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    let order_by = if newest {
        format!("{order}.start_ns DESC, {order}.trace_id DESC")
    } else {
        "t.duration_ns DESC, t.trace_id DESC".to_owned()
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM {from} {where_clause} \
         ORDER BY {order_by} LIMIT ? OFFSET ?"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), row_to_summary)
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

/// Which arms [`query_arms`] merges, newest first.
#[derive(Debug, Clone, Copy)]
enum Walk {
    /// The attribute index's places: one key range each, by `x.start_ns`, `x.trace_id`; a row
    /// is in one place only, so no trace comes from two arms (`UNION ALL`).
    Attribute,
    /// An operation's services: each arm walks `index_buckets ib` newest first (the outer
    /// loop) and each bucket's range of the pair's rows (`buckets.rs`), by bucket, then start
    /// and trace id (the same order: a bucket is a range of starts). Without a service, one
    /// trace can match through several services (`UNION`).
    Operation,
}

/// One walk of a start-ordered index table (aliased `x`): the conditions that select its
/// range of keys, ending in `(start_ns, trace_id)`, and their values.
struct Arm {
    table: String,
    conds: &'static str,
    args: Vec<SqlValue>,
}

/// The arms of a search driven by the attribute `key` = `value`: one per place of the
/// attribute index (`span_attrs`, each run whose start range meets the query's window, each
/// staged segment), each naming the key as the place holds it (text, or its id: `attr_keys.rs`).
/// A row is in one place only, so no trace comes from two arms.
fn attribute_arms(
    conn: &Connection,
    q: &TraceQuery,
    runs: &[Run],
    key: &str,
    value: &str,
) -> Result<Vec<Arm>, StoreError> {
    // Every arm binds the key's text: as the key (text places) or to look its id up.
    let pair = || {
        vec![
            SqlValue::Text(key.to_owned()),
            SqlValue::Text(value.to_owned()),
        ]
    };
    let mut arms = vec![Arm {
        table: "span_attrs".to_owned(),
        conds: "x.key = ? AND x.value = ?",
        args: pair(),
    }];
    let from = q.start_time_min_unix_nano.map_or(i64::MIN, to_i64);
    let to = q.start_time_max_unix_nano.map_or(i64::MAX, to_i64);
    arms.extend(
        runs.iter()
            .filter(|run| run.overlaps(from, to))
            .map(|run| Arm {
                table: run.table(),
                conds: if run.key_ids {
                    concat!("x.key = ", id_of_key!(), " AND x.value = ?")
                } else {
                    "x.key = ? AND x.value = ?"
                },
                args: pair(),
            }),
    );
    let segments: Vec<i64> = conn
        .prepare_cached("SELECT seg FROM attr_segments ORDER BY seg")
        .map_err(backend)?
        .query_map([], |r| r.get(0))
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    arms.extend(segments.into_iter().map(|seg| Arm {
        table: "span_attrs_new".to_owned(),
        conds: concat!("x.seg = ? AND x.key = ", id_of_key!(), " AND x.value = ?"),
        args: vec![
            SqlValue::Integer(seg),
            SqlValue::Text(key.to_owned()),
            SqlValue::Text(value.to_owned()),
        ],
    }));
    Ok(arms)
}

/// `limit` summaries from `offset`, newest first, over `arms` (joined and ordered as `walk`
/// says), each arm restricted by `conds` (values `args`). Each arm is walked in start order by
/// its primary key and SQLite merges the ordered arms, stopping at the limit; no arms, no
/// summaries.
fn query_arms(
    conn: &Connection,
    arms: &[Arm],
    walk: Walk,
    conds: &[String],
    args: &[SqlValue],
    limit: usize,
    offset: usize,
) -> Result<Vec<TraceSummary>, StoreError> {
    let Some((sql, mut all)) = arms_sql(arms, walk, conds, args) else {
        return Ok(Vec::new());
    };
    let sql = format!("{sql} LIMIT ? OFFSET ?");
    all.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    all.push(SqlValue::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(all), row_to_summary)
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

/// The `SELECT` of [`query_arms`] without its limit, and its values; `None` for no arms.
/// Its first columns are [`SUMMARY_COLUMNS`], the next (for [`Walk::Attribute`]) the row's
/// start.
fn arms_sql(
    arms: &[Arm],
    walk: Walk,
    conds: &[String],
    args: &[SqlValue],
) -> Option<(String, Vec<SqlValue>)> {
    if arms.is_empty() {
        return None;
    }
    let (columns, order_by, union) = match walk {
        Walk::Attribute => (
            format!("{SUMMARY_COLUMNS}, x.start_ns AS by_start, x.trace_id AS by_id"),
            "by_start DESC, by_id DESC",
            "UNION ALL",
        ),
        Walk::Operation => (
            format!(
                "{SUMMARY_COLUMNS}, ib.bucket AS by_bucket, x.start_ns AS by_start, \
                 x.trace_id AS by_id"
            ),
            "by_bucket DESC, by_start DESC, by_id DESC",
            "UNION",
        ),
    };
    let mut selects = Vec::with_capacity(arms.len());
    let mut all = Vec::new();
    for arm in arms {
        let mut select = format!(
            "SELECT {columns} FROM {} x JOIN traces t ON t.trace_id = x.trace_id WHERE {}",
            arm.table, arm.conds
        );
        for cond in conds {
            select.push_str(" AND ");
            select.push_str(cond);
        }
        selects.push(select);
        all.extend(arm.args.iter().cloned());
        all.extend(args.iter().cloned());
    }
    let sql = format!(
        "{} ORDER BY {order_by}",
        selects.join(&format!(" {union} "))
    );
    Some((sql, all))
}

#[cfg(test)]
mod tests {
    use super::{DURATION_DRIVE_MAX, Drive, SLOW_DRIVE_MAX};
    use crate::model::{SpanKind, TraceId};
    use crate::store::sqlite::tests::fresh;
    use crate::store::{SpanStore, TraceQuery};
    use crate::testing::span;

    /// Each found trace's start, in ms after T0, in the order found.
    fn starts(found: Vec<crate::store::TraceSummary>) -> Vec<u64> {
        found
            .iter()
            .map(|s| (s.start_time_unix_nano - crate::testing::T0) / crate::testing::MS)
            .collect()
    }

    /// Trace `n` (a distinct 16-byte id): one SERVER span of `service`, `op`, starting `n` ms
    /// after T0 and lasting `duration_ms`.
    fn one_span_trace(n: u32, service: &str, op: &str, duration_ms: f64) -> crate::model::Span {
        let mut id = [0u8; 16];
        id[0] = 0x5c;
        id[12..].copy_from_slice(&n.to_be_bytes());
        span(
            TraceId(id),
            1,
            None,
            service,
            op,
            SpanKind::Server,
            f64::from(n),
            duration_ms,
        )
    }

    /// Each walk of a newest-first search with a minimum duration gives the newest matches:
    /// through `traces_by_duration` when few traces are that long (no service), through the
    /// slow-span index with a service, through the service's or operation's index when many
    /// traces are that long (a minimum under 100 ms).
    #[tokio::test]
    async fn min_duration_searches_are_newest_first_whether_few_or_many_traces_are_that_long() {
        let (store, dir) = fresh().await;
        let many = u32::try_from(DURATION_DRIVE_MAX).unwrap() + 100;
        let mut spans: Vec<_> = (0..many)
            .map(|n| one_span_trace(n, "a", "x", 10.0))
            .collect();
        // Three long traces: two of `a`/`x` (older than most short ones), one of `b`.
        spans.push(one_span_trace(many + 1, "a", "x", 2000.0));
        spans.push(one_span_trace(many + 2, "b", "x", 2000.0));
        spans.push(one_span_trace(many + 3, "a", "x", 2000.0));
        spans.push(one_span_trace(many + 4, "a", "y", 2000.0));
        store.write_spans(spans).await.unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("spanline.db")).unwrap();
        super::super::block_probe::register(&conn).unwrap();
        let n = u64::from(many);
        // Few traces last 1 s or more: the duration walk without a service.
        let rare = TraceQuery {
            operation: Some("x".into()),
            min_duration_ns: Some(1_000_000_000),
            ..TraceQuery::default()
        };
        assert_eq!(Drive::choose(&conn, &rare).unwrap(), Drive::Duration);
        assert_eq!(
            starts(store.find_traces(rare.clone()).await.unwrap()),
            [n + 3, n + 2, n + 1]
        );
        // With a service: its few slow spans.
        let rare = TraceQuery {
            service: Some("a".into()),
            ..rare
        };
        assert_eq!(Drive::choose(&conn, &rare).unwrap(), Drive::SlowSpans);
        assert_eq!(
            starts(store.find_traces(rare.clone()).await.unwrap()),
            [n + 3, n + 1]
        );
        let rare_service = TraceQuery {
            operation: None,
            ..rare.clone()
        };
        assert_eq!(
            starts(store.find_traces(rare_service).await.unwrap()),
            [n + 4, n + 3, n + 1]
        );
        // Every trace lasts 5 ms or more: the service's index, newest first, 3 of them.
        let common = TraceQuery {
            service: Some("a".into()),
            operation: Some("x".into()),
            min_duration_ns: Some(5_000_000),
            limit: 3,
            ..TraceQuery::default()
        };
        assert_eq!(
            starts(store.find_traces(common).await.unwrap()),
            [n + 3, n + 1, n - 1]
        );
    }

    /// Newest-first searches with a service and a minimum duration give the same newest
    /// matches through each walk: the slow-span index (few spans of the service that long,
    /// or none), the duration index (a minimum under 100 ms that few traces reach), and the
    /// service's slow spans newest first (many spans that long, `slow_walk.rs`).
    #[tokio::test]
    async fn service_and_min_duration_searches_agree_through_the_slow_span_index() {
        let (store, dir) = fresh().await;
        let short = u32::try_from(DURATION_DRIVE_MAX).unwrap() + 100;
        let slow = u32::try_from(SLOW_DRIVE_MAX).unwrap() + 100;
        let mut spans: Vec<_> = (0..short)
            .map(|n| one_span_trace(n, "a", "x", 10.0))
            .collect();
        // Many slow spans of `z`; three of `b` (two old, one newest); one 60 ms span of `a`.
        spans.extend((0..slow).map(|n| one_span_trace(short + n, "z", "x", 2000.0)));
        let end = short + slow;
        // (Other trace ids than `a`'s traces starting at 1 and 2 ms.)
        let mut old = [(1, 1500.0), (2, 150.0)].map(|(n, ms)| one_span_trace(n, "b", "x", ms));
        for span in &mut old {
            span.trace_id.0[0] = 0x5d;
        }
        spans.extend(old);
        spans.push(one_span_trace(end + 1, "b", "y", 3000.0));
        spans.push(one_span_trace(end + 2, "a", "y", 60.0));
        store.write_spans(spans).await.unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("spanline.db")).unwrap();
        super::super::block_probe::register(&conn).unwrap();
        let query = |service: &str, min_ms: u64, limit: usize| TraceQuery {
            service: Some(service.into()),
            min_duration_ns: Some(min_ms * 1_000_000),
            limit,
            ..TraceQuery::default()
        };
        let search = |q: TraceQuery| {
            let drive = Drive::choose(&conn, &q).unwrap();
            let store = &store;
            async move { (drive, starts(store.find_traces(q).await.unwrap())) }
        };
        let (end, slow) = (u64::from(end), u64::from(slow));
        let short = u64::from(short);
        assert_eq!(
            search(query("b", 1000, 20)).await,
            (Drive::SlowSpans, vec![end + 1, 1])
        );
        assert_eq!(
            search(query("b", 100, 2)).await,
            (Drive::SlowSpans, vec![end + 1, 2])
        );
        assert_eq!(
            search(query("nobody", 100, 20)).await,
            (Drive::SlowSpans, vec![])
        );
        // Under 100 ms: not in the slow-span index; few traces that long (the service's
        // is one of them).
        assert_eq!(search(query("a", 50, 20)).await.1, vec![end + 2]);
        // Many slow spans of `z` and many traces that long: `z`'s traces newest first.
        assert_eq!(
            search(query("z", 1000, 2)).await,
            (Drive::SlowWalk, vec![short + slow - 1, short + slow - 2])
        );
    }

    /// The walk of a service's slow spans newest first (`slow_walk.rs`) finds what walking
    /// its traces newest first finds, page for page: traces whose slow span starts long
    /// after the trace (so span order is not trace order), spans of other services, kinds
    /// and statuses the query refuses, and time bounds.
    #[tokio::test]
    async fn the_slow_span_walk_answers_as_the_service_walk_does() {
        use super::find_by_index;
        use crate::model::StatusCode;
        let (store, dir) = fresh().await;
        let mut rng = fastrand::Rng::with_seed(18);
        let mut spans = Vec::new();
        for n in 0..400u32 {
            let mut id = [0u8; 16];
            id[0] = 0x5e;
            id[12..].copy_from_slice(&n.to_be_bytes());
            // Trace starts 10 ms apart, sometimes equal (ties broken by trace id).
            let start = f64::from(n / 2) * 10.0;
            for no in 1..=rng.u64(1..5) {
                let service = ["a", "b"][rng.usize(..2)];
                let kind = [SpanKind::Server, SpanKind::Client][rng.usize(..2)];
                // The first span starts the trace; later ones up to 3 s after it.
                let offset = if no == 1 { 0.0 } else { rng.f64() * 3000.0 };
                let duration = [50.0, 150.0, 1200.0, 3000.0][rng.usize(..4)];
                let parent = (no > 1).then_some(1);
                let mut s = span(
                    TraceId(id),
                    no,
                    parent,
                    service,
                    "x",
                    kind,
                    start + offset,
                    duration,
                );
                if rng.u32(..4) == 0 {
                    s.status.code = StatusCode::Error;
                }
                spans.push(s);
            }
        }
        store.write_spans(spans).await.unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("spanline.db")).unwrap();
        super::super::block_probe::register(&conn).unwrap();
        let mut compared = 0;
        for min_ms in [100, 1000, 2000] {
            for (limit, offset) in [(1, 0), (3, 2), (20, 0), (500, 0)] {
                for kind in [None, Some(SpanKind::Client)] {
                    for errors_only in [false, true] {
                        for start_min_ms in [None, Some(1000)] {
                            let q = TraceQuery {
                                service: Some("a".into()),
                                min_duration_ns: Some(min_ms * 1_000_000),
                                kind,
                                errors_only,
                                start_time_min_unix_nano: start_min_ms
                                    .map(|ms| crate::testing::T0 + ms * crate::testing::MS),
                                limit,
                                ..TraceQuery::default()
                            };
                            let candidates = q.candidates();
                            let by = |drive| {
                                starts_and_ids(
                                    find_by_index(
                                        &conn,
                                        &candidates,
                                        drive,
                                        limit,
                                        offset,
                                        Some(&q),
                                    )
                                    .unwrap(),
                                )
                            };
                            let walked = by(Drive::SlowWalk);
                            assert_eq!(walked, by(Drive::Service), "{q:?} offset {offset}");
                            compared += usize::from(!walked.is_empty());
                        }
                    }
                }
            }
        }
        // Most of the 96 searches find traces (not an agreement on empty answers).
        assert!(compared > 60, "{compared}");
    }

    /// Each found trace's start (ms after T0) and id, in the order found.
    fn starts_and_ids(found: Vec<crate::store::TraceSummary>) -> Vec<(u64, TraceId)> {
        let ids = found.iter().map(|s| s.trace_id).collect::<Vec<_>>();
        starts(found).into_iter().zip(ids).collect()
    }

    /// A search by an operation alone (no service) merges the operation's traces of every
    /// service that has it, newest first, each trace once even when two of its services have
    /// the operation; pages by offset; the duration-ordered search probes the same rows.
    #[tokio::test]
    async fn an_operation_alone_is_searched_across_its_services() {
        let (store, _dir) = fresh().await;
        let mut spans = vec![
            one_span_trace(1, "a", "x", 5.0),
            one_span_trace(2, "b", "x", 7.0),
            one_span_trace(3, "a", "y", 9.0),
            one_span_trace(4, "c", "x", 3.0),
        ];
        // Trace 5 has `x` in two services.
        let mut both = one_span_trace(5, "a", "x", 4.0);
        spans.push(both.clone());
        both.span_id = crate::model::SpanId([2; 8]);
        both.service_name = "b".into();
        spans.push(both);
        store.write_spans(spans).await.unwrap();
        let by_op = TraceQuery {
            operation: Some("x".into()),
            ..TraceQuery::default()
        };
        assert_eq!(
            starts(store.find_traces(by_op.clone()).await.unwrap()),
            [5, 4, 2, 1]
        );
        let page = TraceQuery {
            limit: 2,
            ..by_op.clone()
        };
        assert_eq!(starts(store.find_traces(page).await.unwrap()), [5, 4]);
        let longest = TraceQuery {
            sort: crate::store::SortOrder::Duration,
            ..by_op.clone()
        };
        assert_eq!(
            starts(store.find_traces(longest).await.unwrap()),
            [2, 1, 5, 4]
        );
        let with_service = TraceQuery {
            service: Some("b".into()),
            ..by_op
        };
        assert_eq!(
            starts(store.find_traces(with_service).await.unwrap()),
            [5, 2]
        );
        let unknown = TraceQuery {
            operation: Some("nowhere".into()),
            ..TraceQuery::default()
        };
        assert!(store.find_traces(unknown).await.unwrap().is_empty());
    }
}
