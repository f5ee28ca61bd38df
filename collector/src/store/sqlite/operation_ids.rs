//! # Operation ids (schema version 12)
//!
//! `trace_operations` and `entry_spans` rows name their (service, operation) pair by an integer
//! id from `operation_ids`, not by the two strings. A `trace_operations` row is `(op, start_ns,
//! trace_id)`, keyed in that order (`WITHOUT ROWID`), about 30 bytes where the strings took
//! 50-60 on the ingest benchmark's load (BENCHMARKS.md §3.1, "third session"); an `entry_spans`
//! row (stats, dependencies: `stats.rs`) joins `operation_ids` for its service and name, and a
//! service's rows are found by its ids (`operation_ids_by_service`) in `entry_spans_by_op`. A search by service and operation
//! looks the id up once (`op = (SELECT id FROM operation_ids WHERE …)`, a constant for the
//! statement) and walks `(op, start_ns, trace_id)` as it walked `(service, operation, …)`; a
//! search by operation alone reads the operation's ids from `operation_ids`' `(name, service)`
//! key. Ids are never reused or deleted (one row per pair ever seen, like `operations`).
//!
//! The writer resolves the pairs of a flush once each ([`resolve`]): a lookup, and an insert
//! for a pair never seen. Nothing is cached across transactions, so a rolled-back group
//! cannot leave an id in memory that the file does not have.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::map_sql;
use crate::store::StoreError;

/// Version 11 → 12 (also run on a new file, on its empty tables): the pair dictionary, and
/// `trace_operations` rewritten with ids, copied in key order (appends only; one read of every
/// row: about a minute per 10M spans, as version 3's rewrite); then `entry_spans` rewritten
/// with the id in place of its `service` and `name` columns, in its rowid order, its index by
/// service replaced by one by `(op, start_ns)`.
pub(super) const SCHEMA_V12: &str = "
CREATE TABLE operation_ids (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    UNIQUE (name, service)
);
INSERT INTO operation_ids (name, service)
    SELECT DISTINCT operation, service FROM trace_operations ORDER BY 1, 2;
CREATE TABLE trace_operations_v12 (
    op INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (op, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_operations_v12 (op, start_ns, trace_id)
    SELECT o.id, t.start_ns, t.trace_id FROM trace_operations t
    JOIN operation_ids o ON o.name = t.operation AND o.service = t.service
    ORDER BY 1, 2, 3;
DROP TABLE trace_operations;
ALTER TABLE trace_operations_v12 RENAME TO trace_operations;
INSERT OR IGNORE INTO operation_ids (name, service)
    SELECT DISTINCT name, service FROM entry_spans ORDER BY 1, 2;
CREATE INDEX operation_ids_by_service ON operation_ids (service);
CREATE TABLE entry_spans_v12 (
    start_ns INTEGER NOT NULL,
    op INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    parent_span_id BLOB,
    kind INTEGER NOT NULL
);
INSERT INTO entry_spans_v12 (start_ns, op, duration_ns, error, trace_id, parent_span_id, kind)
    SELECT e.start_ns, o.id, e.duration_ns, e.error, e.trace_id, e.parent_span_id, e.kind
    FROM entry_spans e JOIN operation_ids o ON o.name = e.name AND o.service = e.service
    ORDER BY e.rowid;
DROP TABLE entry_spans;
ALTER TABLE entry_spans_v12 RENAME TO entry_spans;
CREATE INDEX entry_spans_by_start ON entry_spans (start_ns);
CREATE INDEX entry_spans_by_op ON entry_spans (op, start_ns);
";

/// The id of one (service, operation) pair as an SQL expression (a string literal, for
/// `concat!`): one parameter for the service, then one for the operation. NULL (no row
/// matches) for a pair never stored.
macro_rules! id_of_pair {
    () => {
        "(SELECT id FROM operation_ids WHERE service = ? AND name = ?)"
    };
}
pub(super) use id_of_pair;

/// The ids of `pairs` (`(service, operation)`, any order, duplicates allowed), inserting the
/// pairs not stored yet, inside the caller's transaction.
///
/// # Errors
/// [`StoreError`] from SQLite.
pub(super) fn resolve<'p>(
    conn: &Connection,
    pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<BTreeMap<(&'p str, &'p str), i64>, StoreError> {
    let mut ids: BTreeMap<(&str, &str), i64> = pairs.into_iter().map(|p| (p, 0)).collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    let mut find = conn
        .prepare_cached("SELECT id FROM operation_ids WHERE name = ?1 AND service = ?2")
        .map_err(map_sql)?;
    let mut add = conn
        .prepare_cached("INSERT INTO operation_ids (name, service) VALUES (?1, ?2)")
        .map_err(map_sql)?;
    for (&(service, operation), id) in &mut ids {
        *id = match find
            .query_row(params![operation, service], |r| r.get(0))
            .optional()
            .map_err(map_sql)?
        {
            Some(found) => found,
            None => {
                add.execute(params![operation, service]).map_err(map_sql)?;
                conn.last_insert_rowid()
            }
        };
    }
    Ok(ids)
}

/// Test support: SQL that puts a current file's `trace_operations` and `entry_spans` back into
/// the version-11 layout (with the two strings) with the same rows and drops `operation_ids`,
/// for the tests that rebuild an older file from a new one.
/// The services that have an operation named `operation` (`operations_by_name`, schema 10).
pub(super) fn services_with_operation(
    conn: &rusqlite::Connection,
    operation: &str,
) -> Result<Vec<String>, crate::store::StoreError> {
    conn.prepare_cached(
        "SELECT DISTINCT service FROM operations INDEXED BY operations_by_name \
         WHERE name = ?1 ORDER BY service",
    )
    .map_err(super::backend)?
    .query_map([operation], |r| r.get(0))
    .map_err(super::backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(super::backend)
}

#[cfg(test)]
pub(super) const BACK_TO_V11: &str = "
CREATE TABLE trace_operations_v11 (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (service, operation, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_operations_v11
    SELECT o.service, o.name, t.start_ns, t.trace_id FROM trace_operations t
    JOIN operation_ids o ON o.id = t.op;
DROP TABLE trace_operations;
ALTER TABLE trace_operations_v11 RENAME TO trace_operations;
CREATE TABLE entry_spans_v11 (
    start_ns INTEGER NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    parent_span_id BLOB,
    kind INTEGER NOT NULL
);
INSERT INTO entry_spans_v11
    SELECT e.start_ns, o.service, o.name, e.duration_ns, e.error, e.trace_id,
           e.parent_span_id, e.kind
    FROM entry_spans e JOIN operation_ids o ON o.id = e.op ORDER BY e.start_ns;
DROP TABLE entry_spans;
ALTER TABLE entry_spans_v11 RENAME TO entry_spans;
CREATE INDEX entry_spans_by_start ON entry_spans (start_ns);
CREATE INDEX entry_spans_by_service ON entry_spans (service, start_ns);
DROP TABLE operation_ids;
";

#[cfg(test)]
mod tests {
    use super::BACK_TO_V11;
    use crate::store::sqlite::SqliteStore;
    use crate::store::sqlite::schema::SCHEMA_VERSION;
    use crate::store::{SpanStore, TraceQuery, conformance};
    use rusqlite::Connection;

    /// Version 11 → 12: a file written at version 11 (the layout with strings) is migrated at
    /// open; the stats and dependencies read the same as before, searches by service and
    /// operation, by operation alone and with an operation as a condition still find its
    /// traces, new writes reuse the migrated ids, and retention deletes the migrated rows by
    /// key.
    #[tokio::test]
    async fn version_11_file_is_migrated_in_place() {
        let (_dir, path) = super::super::tests::two_demo_traces().await;
        // What the stats read, as written by this version, to compare after the migration.
        async fn stats(store: &SqliteStore) -> String {
            let all_time = || crate::store::TimeWindow {
                start_unix_nano: 0,
                end_unix_nano: u64::MAX >> 1,
            };
            let samples = store.operation_samples(all_time(), None).await.unwrap();
            let payment = store
                .operation_samples(all_time(), Some("payment".into()))
                .await
                .unwrap();
            let edges = store.dependencies(all_time()).await.unwrap();
            assert!(!edges.is_empty() && !payment.is_empty());
            format!("{samples:?} {payment:?} {edges:?}")
        }
        let before = {
            let store = SqliteStore::open(&path, Default::default()).unwrap();
            let before = stats(&store).await;
            store.shutdown().await;
            before
        };
        assert!(before.contains("payment"), "{before}");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {BACK_TO_V11} PRAGMA user_version = 11; COMMIT;"
        ))
        .unwrap();
        let v11_rows: i64 = conn
            .query_row("SELECT count(*) FROM trace_operations", [], |r| r.get(0))
            .unwrap();
        assert!(v11_rows > 0);
        drop(conn);
        let store = SqliteStore::open(&path, Default::default()).unwrap();
        assert_eq!(
            stats(&store).await,
            before,
            "stats and dependencies read the migrated rows"
        );
        let count = |q: TraceQuery| {
            let store = &store;
            async move { store.find_traces(q).await.unwrap().len() }
        };
        let by_op = TraceQuery {
            operation: Some("charge card".into()),
            ..TraceQuery::default()
        };
        assert_eq!(count(by_op.clone()).await, 2);
        let by_service_op = TraceQuery {
            service: Some("payment".into()),
            ..by_op.clone()
        };
        assert_eq!(count(by_service_op.clone()).await, 2);
        let wrong_service = TraceQuery {
            service: Some("user".into()),
            ..by_op.clone()
        };
        assert_eq!(count(wrong_service).await, 0);
        // The operation as a condition on another walk (longest first walks `traces`).
        let slowest = TraceQuery {
            sort: crate::store::SortOrder::Duration,
            ..by_service_op
        };
        assert_eq!(count(slowest).await, 2);
        let slowest_any_service = TraceQuery {
            sort: crate::store::SortOrder::Duration,
            ..by_op.clone()
        };
        assert_eq!(count(slowest_any_service).await, 2);
        let unknown = TraceQuery {
            operation: Some("no such operation".into()),
            ..TraceQuery::default()
        };
        assert_eq!(count(unknown).await, 0);
        // A new trace with the same operations reuses the migrated ids.
        store
            .write_spans(conformance::demo_trace(6, false, 1.0))
            .await
            .unwrap();
        assert_eq!(count(by_op).await, 3);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let migrated: i64 = conn
            .query_row("SELECT count(*) FROM trace_operations", [], |r| r.get(0))
            .unwrap();
        assert!(migrated > v11_rows, "{migrated} rows after one more trace");
        let duplicate_pairs: i64 = conn
            .query_row(
                "SELECT count(*) - count(DISTINCT service || '/' || name) FROM operation_ids",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(duplicate_pairs, 0);
        assert_eq!(super::super::tests::delete_every_trace(&store).await, 3);
        store.shutdown().await;
        let left: i64 = conn
            .query_row("SELECT count(*) FROM trace_operations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "retention deleted every row by key");
    }
}
