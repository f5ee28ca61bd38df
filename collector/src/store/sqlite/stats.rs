//! Reads for `/v1/stats`, `/v1/dependencies` and the service and operation lists: the
//! `entry_spans` rows of a time window (one per SERVER/CONSUMER span, keyed by `(bucket, op,
//! start_ns, …)` since schema 18: a window is the range of its buckets, the two at its edges
//! read id by id, and a service's rows its ids' ranges in each; schema 15 had a second index
//! by start alone),
//! with their service and name from `operation_ids` (schema 12), with their parent span from
//! its trace's blocks for the dependency graph (schema 16), and the `operations` table.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, Row, params};

use super::blocks::for_each_block;
use super::buckets::bucket_of;
use super::codec::blob_array;
use super::{backend, to_i64, to_u64};
use crate::model::{SpanKind, StatusCode, TraceId};
use crate::store::{
    DependencyEdge, Operation, OperationSamples, StoreError, TimeWindow, group_samples,
};

/// At most this many (service, operation) ids ever stored make a window's two edge buckets
/// read by id (a seek to the window's starts per id and bucket) rather than whole.
const EDGE_SEEK_MAX_IDS: i64 = 256;

/// The `entry_spans` rows (`columns` of `e`, with `cond` on `e`) that start from `?1` to
/// before `?2`, as a subquery: the buckets strictly between the window's first and last
/// bucket whole (every row of them is in the window), and the two edge buckets either by id,
/// each id's range of starts (when at most [`EDGE_SEEK_MAX_IDS`] ids exist), or whole with
/// their rows outside the window dropped (`entry_spans` is keyed `(bucket, op, start_ns, …)`:
/// without the id, a bucket's rows are not in start order).
fn window_rows(conn: &Connection, columns: &str, cond: &str) -> Result<String, StoreError> {
    let ids: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM operation_ids")
        .map_err(backend)?
        .query_row([], |r| r.get(0))
        .map_err(backend)?;
    let by_id = if ids <= EDGE_SEEK_MAX_IDS {
        " AND e.op IN (SELECT id FROM operation_ids)"
    } else {
        ""
    };
    let (first, last) = (bucket_of!("?1"), bucket_of!("?2"));
    Ok(format!(
        "(SELECT {columns} FROM entry_spans e WHERE e.bucket > {first} AND e.bucket < {last} \
         AND e.start_ns >= ?1 AND e.start_ns < ?2{cond} \
         UNION ALL SELECT {columns} FROM entry_spans e WHERE e.bucket IN \
         (SELECT bucket FROM index_buckets WHERE bucket = {first} OR bucket = {last}){by_id} \
         AND e.start_ns >= ?1 AND e.start_ns < ?2{cond})"
    ))
}

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
///
/// The window's entry spans with a parent, by trace; each trace's blocks are read once for
/// its spans' services, status codes and kinds by span id; an edge for each parent found
/// in another service.
pub(super) fn dependencies(
    conn: &Connection,
    w: TimeWindow,
) -> Result<Vec<DependencyEdge>, StoreError> {
    let rows = window_rows(
        conn,
        "e.trace_id, e.parent_span_id, e.op, e.error, e.kind",
        " AND e.parent_span_id IS NOT NULL",
    )?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT w.trace_id, w.parent_span_id, o.service, o.name, w.error, w.kind \
             FROM {rows} w CROSS JOIN operation_ids o ON o.id = w.op ORDER BY w.trace_id"
        ))
        .map_err(backend)?;
    let mut rows = stmt
        .query(params![to_i64(w.start_unix_nano), to_i64(w.end_unix_nano)])
        .map_err(backend)?;
    let mut edges: BTreeMap<(String, String, Option<String>), (u64, u64)> = BTreeMap::new();
    let mut trace: Option<Vec<u8>> = None;
    let mut parents = Parents::default();
    while let Some(row) = rows.next().map_err(backend)? {
        let trace_id: Vec<u8> = row.get(0).map_err(backend)?;
        if trace.as_ref() != Some(&trace_id) {
            parents = Parents::of_trace(conn, TraceId(blob_array::<16>(&trace_id)?))?;
            trace = Some(trace_id);
        }
        let parent_id: Vec<u8> = row.get(1).map_err(backend)?;
        let service: String = row.get(2).map_err(backend)?;
        let name: String = row.get(3).map_err(backend)?;
        let error = row.get::<_, i64>(4).map_err(backend)? != 0;
        let kind: i64 = row.get(5).map_err(backend)?;
        for parent in parents.by_id.get(&parent_id[..]).into_iter().flatten() {
            if parent.service == service {
                continue;
            }
            // A producer's message consumed: the destination, the consumer's name after
            // its first space ("process orders" → "orders").
            let via = (parent.kind == SpanKind::Producer.as_i32()
                && kind == i64::from(SpanKind::Consumer.as_i32()))
            .then(|| name.split_once(' ').map(|(_, rest)| rest))
            .flatten()
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned);
            let counts = edges
                .entry((parent.service.clone(), service.clone(), via))
                .or_default();
            counts.0 += 1;
            if error || parent.status == StatusCode::Error.as_i32() {
                counts.1 += 1;
            }
        }
    }
    Ok(edges
        .into_iter()
        .map(|(key, counts)| DependencyEdge::from_counts(key, counts))
        .collect())
}

/// A stored span as a parent in the dependency graph.
struct Parent {
    service: String,
    status: i32,
    kind: i32,
}

/// One trace's stored spans by span id (several when kinds differ).
#[derive(Default)]
struct Parents {
    by_id: HashMap<Vec<u8>, Vec<Parent>>,
}

impl Parents {
    fn of_trace(conn: &Connection, trace_id: TraceId) -> Result<Self, StoreError> {
        let mut out = Self::default();
        for_each_block(conn, trace_id, |block| {
            for span in &block.spans {
                out.by_id
                    .entry(span.span_id.to_vec())
                    .or_default()
                    .push(Parent {
                        service: block.string(span.service).to_owned(),
                        status: span.status,
                        kind: span.kind,
                    });
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The duration and error flag of every entry span of `w` (of `service` if given).
pub(super) fn operation_samples(
    conn: &Connection,
    w: TimeWindow,
    service: Option<&str>,
) -> Result<Vec<OperationSamples>, StoreError> {
    // The service's rows: each of its ids' `(bucket, op, start_ns)` range in each bucket of
    // the window (`buckets.rs`); all rows: the window's buckets (`CROSS JOIN` keeps
    // `entry_spans` the outer loop, not one seek per id ever stored).
    let sql = if service.is_some() {
        Cow::Borrowed(concat!(
            "SELECT o.service, o.name, e.duration_ns, e.error \
             FROM entry_spans e JOIN operation_ids o ON o.id = e.op \
             WHERE e.bucket IN (SELECT bucket FROM index_buckets WHERE bucket >= ",
            bucket_of!("?1"),
            " AND lo_ns < ?2) \
             AND e.op IN (SELECT id FROM operation_ids WHERE service = ?3) \
             AND e.start_ns >= ?1 AND e.start_ns < ?2"
        ))
    } else {
        let rows = window_rows(conn, "e.op, e.duration_ns, e.error", "")?;
        Cow::Owned(format!(
            "SELECT o.service, o.name, w.duration_ns, w.error \
             FROM {rows} w CROSS JOIN operation_ids o ON o.id = w.op"
        ))
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
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

#[cfg(test)]
mod tests {
    use crate::model::SpanKind;
    use crate::store::memory::MemoryStore;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{SpanStore, TimeWindow};
    use crate::testing::{MS, T0, span, trace_id};

    /// Windows over many buckets give the samples and the graph the in-memory store gives,
    /// with few operation ids (the edge buckets read id by id) and with more than
    /// [`super::EDGE_SEEK_MAX_IDS`] (read whole): windows inside one bucket, across several,
    /// at the first and the last, and empty.
    #[tokio::test]
    async fn windows_read_their_edge_buckets_by_id_or_whole_alike() {
        for names in [3u64, 300] {
            let dir = tempfile::tempdir().unwrap();
            let options = SqliteOptions {
                index_bucket_rows: 4,
                ..SqliteOptions::default()
            };
            let sqlite = SqliteStore::open(dir.path().join("spanline.db"), options).unwrap();
            let memory = MemoryStore::new();
            // Filler pairs first, so that the ids pass the bound when `names` is large.
            for n in 0..60u8 {
                let start = f64::from(n) * 10.0;
                let name = format!("op{}", u64::from(n) % names);
                let spans = vec![
                    span(
                        trace_id(n),
                        1,
                        None,
                        "a",
                        &name,
                        SpanKind::Server,
                        start,
                        5.0,
                    ),
                    span(
                        trace_id(n),
                        2,
                        Some(1),
                        "b",
                        "get",
                        SpanKind::Server,
                        start + 1.0,
                        2.0,
                    ),
                ];
                sqlite.write_spans(spans.clone()).await.unwrap();
                memory.write_spans(spans).await.unwrap();
            }
            if names > 256 {
                let filler: Vec<_> = (0..300u64)
                    .map(|i| {
                        let mut s = span(
                            trace_id(200),
                            i + 1,
                            None,
                            "z",
                            "x",
                            SpanKind::Client,
                            0.0,
                            1.0,
                        );
                        s.name = format!("filler {i}").into();
                        s
                    })
                    .collect();
                sqlite.write_spans(filler.clone()).await.unwrap();
                memory.write_spans(filler).await.unwrap();
            }
            for (from, to) in [
                (0, 600),
                (35, 275),
                (101, 102),
                (0, 5),
                (590, 700),
                (800, 900),
            ] {
                let w = TimeWindow {
                    start_unix_nano: T0 + from * MS,
                    end_unix_nano: T0 + to * MS,
                };
                let got = sqlite.operation_samples(w, None).await.unwrap();
                assert_eq!(
                    got,
                    memory.operation_samples(w, None).await.unwrap(),
                    "{names} {from}-{to}"
                );
                assert_eq!(
                    sqlite.dependencies(w).await.unwrap(),
                    memory.dependencies(w).await.unwrap(),
                    "{names} {from}-{to}"
                );
                if (from, to) == (35, 275) {
                    assert_eq!(got.iter().map(|s| s.durations_ns.len()).sum::<usize>(), 48);
                }
            }
            sqlite.shutdown().await;
        }
    }
}
