//! Version 15 → 16: the `spans` rows move into `span_blocks` (`blocks.rs`), one block per
//! trace (at most [`MIGRATED_BLOCK_SPANS`] spans each), and the spans of 100 ms or longer
//! into `slow_spans`. `spans` is left empty, with its indexes, so that the earlier steps of
//! the ladder still apply to it; nothing reads it after 16.
//!
//! The rows are migrated rather than read alongside the blocks: every read of spans (a
//! trace by id, the same-span probe of searches, the dependency graph, the duplicate check)
//! then has one form to read, and old files get the smaller form too. Costs one read of
//! every span in trace-id order at the first open (a walk of `spans_identity`).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::blocks::{self, SCHEMA_V15, SpanColumns, encode_origins};
use super::codec::{blob_array, decode_origin, encode_origin};
use super::{map_sql, to_u64};
use crate::model::Scope;
use crate::store::StoreError;

/// Most spans of one trace in one migrated block (larger traces take several).
pub(super) const MIGRATED_BLOCK_SPANS: usize = 1000;

/// One `spans` row, its resource id already the one that holds its scope.
struct OldRow {
    trace_id: Vec<u8>,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: i32,
    status: i32,
    service: String,
    name: String,
    resource_id: i64,
    start_ns: u64,
    duration_ns: u64,
    detail: Vec<u8>,
}

/// Runs the step inside the caller's transaction: the tables of [`SCHEMA_V15`], the rows
/// of `spans` moved. Errors: SQLite's, or an undecodable stored resource.
pub(super) fn migrate_to_blocks(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA_V15).map_err(map_sql)?;
    conn.execute(
        "INSERT INTO slow_spans (trace_id, service, start_ns, duration_ns) \
         SELECT trace_id, service, start_ns, duration_ns FROM spans \
         WHERE duration_ns >= 100000000",
        [],
    )
    .map_err(map_sql)?;
    let mut scoped: HashMap<(i64, String, String), i64> = HashMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT trace_id, span_id, kind, parent_span_id, service, name, start_ns, \
             duration_ns, status_code, resource_id, scope_name, scope_version, detail \
             FROM spans INDEXED BY spans_identity ORDER BY trace_id",
        )
        .map_err(map_sql)?;
    let mut rows = stmt.query([]).map_err(map_sql)?;
    let mut trace: Vec<OldRow> = Vec::new();
    while let Some(row) = rows.next().map_err(map_sql)? {
        let trace_id: Vec<u8> = row.get(0).map_err(map_sql)?;
        if trace
            .first()
            .is_some_and(|r| r.trace_id != trace_id || trace.len() == MIGRATED_BLOCK_SPANS)
        {
            insert_block(conn, &trace)?;
            trace.clear();
        }
        let scope: (String, String) =
            (row.get(10).map_err(map_sql)?, row.get(11).map_err(map_sql)?);
        let mut resource_id: i64 = row.get(9).map_err(map_sql)?;
        if !scope.0.is_empty() || !scope.1.is_empty() {
            resource_id = with_scope(conn, &mut scoped, resource_id, scope)?;
        }
        let parent: Option<Vec<u8>> = row.get(3).map_err(map_sql)?;
        trace.push(OldRow {
            trace_id,
            span_id: blob_array::<8>(&row.get::<_, Vec<u8>>(1).map_err(map_sql)?)?,
            parent: parent.map(|p| blob_array::<8>(&p)).transpose()?,
            kind: row.get(2).map_err(map_sql)?,
            status: row.get(8).map_err(map_sql)?,
            service: row.get(4).map_err(map_sql)?,
            name: row.get(5).map_err(map_sql)?,
            resource_id,
            start_ns: to_u64(row.get(6).map_err(map_sql)?),
            duration_ns: to_u64(row.get(7).map_err(map_sql)?),
            detail: row.get(12).map_err(map_sql)?,
        });
    }
    if !trace.is_empty() {
        insert_block(conn, &trace)?;
    }
    drop(rows);
    drop(stmt);
    conn.execute("DELETE FROM spans", []).map_err(map_sql)?;
    Ok(())
}

/// The id of a `resources` row holding the resource of row `resource_id` with `scope` (a
/// row written before the scope moved to `resources` keeps it in its own columns).
fn with_scope(
    conn: &Connection,
    cache: &mut HashMap<(i64, String, String), i64>,
    resource_id: i64,
    scope: (String, String),
) -> Result<i64, StoreError> {
    let key = (resource_id, scope.0, scope.1);
    if let Some(id) = cache.get(&key) {
        return Ok(*id);
    }
    let encoded: Option<Vec<u8>> = conn
        .query_row(
            "SELECT encoded FROM resources WHERE id = ?1",
            [resource_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_sql)?;
    let resource = match encoded {
        Some(bytes) => decode_origin(&bytes)?.0,
        None => crate::format::convert::resource_from_pb(None),
    };
    let scope = Scope {
        name: key.1.clone(),
        version: key.2.clone(),
    };
    let bytes = encode_origin(&resource, &scope);
    conn.execute(
        "INSERT OR IGNORE INTO resources (encoded) VALUES (?1)",
        [&bytes],
    )
    .map_err(map_sql)?;
    let id: i64 = conn
        .query_row(
            "SELECT id FROM resources WHERE encoded = ?1",
            [&bytes],
            |r| r.get(0),
        )
        .map_err(map_sql)?;
    cache.insert(key, id);
    Ok(id)
}

/// One block of `rows` (all of one trace).
fn insert_block(conn: &Connection, rows: &[OldRow]) -> Result<(), StoreError> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut origins: Vec<i64> = Vec::new();
    let mut columns = Vec::with_capacity(rows.len());
    let mut details = Vec::new();
    let mut lens = Vec::with_capacity(rows.len());
    for row in rows {
        let origin = match origins.iter().position(|&id| id == row.resource_id) {
            Some(i) => i,
            None => {
                origins.push(row.resource_id);
                origins.len() - 1
            }
        };
        details.extend_from_slice(&row.detail);
        lens.push(row.detail.len());
        columns.push(SpanColumns {
            span_id: row.span_id,
            parent: row.parent,
            kind: row.kind,
            status: row.status,
            service: &row.service,
            name: &row.name,
            origin: origin as u32,
            start_ns: row.start_ns,
            duration_ns: row.duration_ns,
        });
    }
    conn.prepare_cached(
        "INSERT INTO span_blocks (trace_id, span_count, origins, data) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(map_sql)?
    .execute(params![
        first.trace_id,
        rows.len() as i64,
        encode_origins(&origins),
        blocks::encode(&columns, &details, &lens),
    ])
    .map_err(map_sql)?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use prost::Message;
    use rusqlite::Connection;

    use super::*;
    use crate::format::convert;
    use crate::store::detail::SpanDetail;
    use crate::store::sqlite::blocks::{Block, decode_origins};
    use crate::store::sqlite::codec::tests::{by_id, spans_with_scopes};
    use crate::store::sqlite::schema::SCHEMA_VERSION;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{SpanStore, TimeWindow, TraceQuery, conformance};

    /// Puts a file back into schema 15's layout: every block's spans as `spans` rows (their
    /// resource ids as the blocks name them), no `span_blocks` or `slow_spans`.
    pub(crate) fn back_to_v15(conn: &Connection) {
        let blocks: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT trace_id, origins, data FROM span_blocks")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (trace_id, origins, data) in blocks {
            let origins = decode_origins(&origins).unwrap();
            let block = Block::decode(&data).unwrap();
            for span in &block.spans {
                conn.execute(
                    "INSERT INTO spans (trace_id, span_id, kind, parent_span_id, service, name, \
                     start_ns, duration_ns, status_code, resource_id, scope_name, \
                     scope_version, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '', '', ?11)",
                    params![
                        trace_id,
                        &span.span_id[..],
                        span.kind,
                        span.parent.as_ref().map(|p| &p[..]),
                        block.string(span.service),
                        block.string(span.name),
                        i64::try_from(span.start_ns).unwrap(),
                        i64::try_from(span.duration_ns).unwrap(),
                        span.status,
                        origins[span.origin],
                        block.detail(span),
                    ],
                )
                .unwrap();
            }
        }
        conn.execute_batch(
            "DROP TABLE span_blocks; DROP TABLE slow_spans; PRAGMA user_version = 15;",
        )
        .unwrap();
    }

    fn version(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// A version-15 file (its spans as `spans` rows) is migrated at open: every trace reads
    /// back the same, resent spans are duplicates, the slow-span searches and the dependency
    /// graph answer as before, retention deletes the migrated blocks.
    #[tokio::test]
    async fn version_15_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let traces = vec![
            conformance::demo_trace(1, false, 1.0),
            conformance::demo_trace(2, true, 250.0),
            conformance::demo_trace(3, false, 400.0),
        ];
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for spans in &traces {
            store.write_spans(spans.clone()).await.unwrap();
        }
        let slow = TraceQuery {
            service: Some("payment".into()),
            min_duration_ns: Some(200_000_000),
            ..TraceQuery::default()
        };
        let window = TimeWindow {
            start_unix_nano: 0,
            end_unix_nano: u64::MAX,
        };
        let mut before = Vec::new();
        for spans in &traces {
            before.push(store.get_trace(spans[0].trace_id).await.unwrap().unwrap());
        }
        let slow_before = store.find_traces(slow.clone()).await.unwrap();
        let edges_before = store.dependencies(window).await.unwrap();
        assert_eq!(slow_before.len(), 2);
        assert!(!edges_before.is_empty());
        store.shutdown().await;
        back_to_v15(&Connection::open(&path).unwrap());
        assert_eq!(version(&path), 15);

        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for (spans, want) in traces.iter().zip(&before) {
            let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
            assert_eq!(got.spans, want.spans);
            let again = store.write_spans(spans.clone()).await.unwrap();
            assert_eq!((again.stored, again.duplicates), (0, spans.len()));
        }
        assert_eq!(store.find_traces(slow).await.unwrap(), slow_before);
        assert_eq!(store.dependencies(window).await.unwrap(), edges_before);
        assert_eq!(super::super::tests::delete_every_trace(&store).await, 3);
        store.shutdown().await;
        assert_eq!(version(&path), SCHEMA_VERSION);
        let conn = Connection::open(&path).unwrap();
        for table in ["spans", "span_blocks", "slow_spans"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
    }

    /// Rows as versions before this one wrote them (attributes and events in `detail` fields 1
    /// and 2, the scope in the span's columns, a resource row without a scope) are migrated
    /// into blocks and read back as before.
    #[tokio::test]
    async fn rows_of_older_versions_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = spans_with_scopes(42);
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.write_spans(spans.clone()).await.unwrap();
        let before = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        store.shutdown().await;
        {
            let conn = Connection::open(&path).unwrap();
            back_to_v15(&conn);
            let resource = convert::resource_to_pb(&spans[0].resource).encode_to_vec();
            conn.execute(
                "INSERT OR IGNORE INTO resources (encoded) VALUES (?1)",
                [&resource],
            )
            .unwrap();
            let old_id: i64 = conn
                .query_row(
                    "SELECT id FROM resources WHERE encoded = ?1",
                    [&resource],
                    |r| r.get(0),
                )
                .unwrap();
            for span in &spans {
                let changed = conn
                    .execute(
                        "UPDATE spans SET detail = ?1, scope_name = ?2, scope_version = ?3, \
                         resource_id = ?4 WHERE span_id = ?5 AND kind = ?6",
                        rusqlite::params![
                            SpanDetail::encode_as_older_versions(span),
                            span.scope.name,
                            span.scope.version,
                            old_id,
                            &span.span_id.0[..],
                            span.kind.as_i32(),
                        ],
                    )
                    .unwrap();
                assert_eq!(changed, 1);
            }
        }
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let after = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        store.shutdown().await;
        assert_eq!(by_id(after.spans), by_id(before.spans));
    }
}
