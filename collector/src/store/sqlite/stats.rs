//! Reads for `/v1/stats`, `/v1/dependencies` and the service and operation lists: the
//! `entry_spans` rows of a time window (one per SERVER/CONSUMER span, index
//! `entry_spans_by_start`; a service's by `entry_spans_by_op`, bucket by bucket: schema 15),
//! with their service and name from `operation_ids` (schema 12), joined to their parent span
//! for the dependency graph, and the `operations` table.

use rusqlite::{Connection, Row, params};

use super::buckets::bucket_of;
use super::{backend, to_i64, to_u64};
use crate::model::SpanKind;
use crate::store::{
    DependencyEdge, Operation, OperationSamples, StoreError, TimeWindow, group_samples,
};

/// The services that have stored spans, sorted.
pub(super) fn services(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT DISTINCT service FROM operations ORDER BY service")
        .map_err(backend)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .map_err(backend)
}

/// The (name, kind) pairs stored for `service`, sorted.
pub(super) fn operations(conn: &Connection, service: &str) -> Result<Vec<Operation>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, kind FROM operations WHERE service = ?1 ORDER BY name, kind")
        .map_err(backend)?;
    let rows = stmt
        .query_map([service], |r| {
            Ok(Operation {
                name: r.get(0)?,
                kind: SpanKind::from_i32(r.get(1)?),
            })
        })
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

/// The service graph of `w`: caller → callee with call and error counts; a queue hop is
/// its own edge with the destination (see [`DependencyEdge::via`]).
pub(super) fn dependencies(
    conn: &Connection,
    w: TimeWindow,
) -> Result<Vec<DependencyEdge>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.service, o.service, count(*), \
             sum(CASE WHEN e.error != 0 OR p.status_code = 2 THEN 1 ELSE 0 END), \
             CASE WHEN p.kind = 4 AND e.kind = 5 AND instr(o.name, ' ') > 0 \
                  AND length(o.name) > instr(o.name, ' ') \
                  THEN substr(o.name, instr(o.name, ' ') + 1) END AS via \
             FROM entry_spans e CROSS JOIN operation_ids o ON o.id = e.op \
             JOIN spans p ON p.trace_id = e.trace_id AND p.span_id = e.parent_span_id \
             WHERE e.start_ns >= ?1 AND e.start_ns < ?2 AND e.parent_span_id IS NOT NULL \
             AND p.service != o.service \
             GROUP BY p.service, o.service, via ORDER BY p.service, o.service, via",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![to_i64(w.start_unix_nano), to_i64(w.end_unix_nano)],
            |r| {
                Ok(DependencyEdge::from_counts(
                    (r.get(0)?, r.get(1)?, r.get(4)?),
                    (to_u64(r.get(2)?), to_u64(r.get(3)?)),
                ))
            },
        )
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

/// The duration and error flag of every entry span of `w` (of `service` if given).
pub(super) fn operation_samples(
    conn: &Connection,
    w: TimeWindow,
    service: Option<&str>,
) -> Result<Vec<OperationSamples>, StoreError> {
    // The service's rows: each of its ids' `(bucket, op, start_ns)` range in each bucket of
    // the window (`entry_spans_by_op`, `buckets.rs`); all rows: the window of
    // `entry_spans_by_start` (`CROSS JOIN` keeps `entry_spans` the outer loop, not one seek
    // per id ever stored).
    let sql = if service.is_some() {
        concat!(
            "SELECT o.service, o.name, e.duration_ns, e.error \
             FROM entry_spans e INDEXED BY entry_spans_by_op JOIN operation_ids o ON o.id = e.op \
             WHERE e.bucket IN (SELECT bucket FROM index_buckets WHERE bucket >= ",
            bucket_of!("?1"),
            " AND lo_ns < ?2) \
             AND e.op IN (SELECT id FROM operation_ids WHERE service = ?3) \
             AND e.start_ns >= ?1 AND e.start_ns < ?2"
        )
    } else {
        "SELECT o.service, o.name, e.duration_ns, e.error \
         FROM entry_spans e CROSS JOIN operation_ids o ON o.id = e.op \
         WHERE e.start_ns >= ?1 AND e.start_ns < ?2"
    };
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let start = to_i64(w.start_unix_nano);
    let end = to_i64(w.end_unix_nano);
    let map = |r: &Row<'_>| -> rusqlite::Result<(String, String, u64, bool)> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            to_u64(r.get(2)?),
            r.get::<_, i64>(3)? != 0,
        ))
    };
    let rows = match service {
        Some(svc) => stmt.query_map(params![start, end, svc], map),
        None => stmt.query_map(params![start, end], map),
    }
    .map_err(backend)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(backend)?;
    Ok(group_samples(rows))
}
