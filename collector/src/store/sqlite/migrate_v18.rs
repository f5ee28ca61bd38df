//! # Version 17 → 18: smaller trace and entry-span rows
//!
//! Three tables are rewritten in their new layout (each in key order, appends only; one read
//! of every row of each: `traces`, `entry_spans`, `slow_spans`), each only when the file does
//! not have that layout yet, so the step is self-contained and can be renumbered or re-run:
//!
//! - `traces`: the root's service and operation and the two JSON lists become one value,
//!   `names`, the id of the set in `trace_name_sets` (`name_sets.rs`; the most common
//!   [`MAX_NAME_SETS`] sets of the file) or the set's text; `end_ns` goes (it is `start_ns +
//!   duration_ns`); `root_start_ns` becomes `root_offset_ns`, the root's start after the trace
//!   start (mostly 0 or small: a 1-4 byte integer where the time took 8).
//! - `entry_spans` (stats, dependencies: `stats.rs`): one B-tree keyed by `(bucket, op,
//!   start_ns, trace_id, span_id, kind)` (`WITHOUT ROWID`) instead of a rowid table and its two
//!   indexes (`entry_spans_by_start (start_ns)`, `entry_spans_by_op (bucket, op, start_ns)`): a
//!   window of starts is a range of buckets (`buckets.rs`), a service's rows its ids' ranges in
//!   them. The span id (an integer) makes the key unique; migrated rows, which have none, take
//!   their old rowid, negated.
//! - `slow_spans`: one B-tree keyed by `(service, start_ns, duration_ns, trace_id)` (what
//!   `slow_spans_by_start` indexed) and the index `slow_spans_by_duration`, without the rowid
//!   table (about 22 bytes a slow span).

use rusqlite::Connection;

use super::map_sql;
use super::name_sets::MAX_NAME_SETS;
use crate::store::StoreError;

/// A `traces` row's name set as SQLite's `json_array` writes it (the text `name_sets.rs`
/// writes), over the version-17 columns.
macro_rules! old_names {
    () => {
        "json_array(root_service, root_operation, json(services), json(operations))"
    };
}

/// The `traces` part (the file's `traces` has no `names` column).
fn traces_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS trace_name_sets (
    id INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO trace_name_sets (names)
    SELECT {names} FROM traces GROUP BY 1 ORDER BY count(*) DESC LIMIT {MAX_NAME_SETS};
DROP TABLE IF EXISTS traces_v18;
CREATE TABLE traces_v18 (
    trace_id BLOB PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    names NOT NULL,
    root_offset_ns INTEGER,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    span_mask INTEGER NOT NULL DEFAULT 0,
    root_http_status INTEGER,
    received_ns INTEGER NOT NULL DEFAULT 0,
    spans_refused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO traces_v18 (trace_id, start_ns, duration_ns, names, root_offset_ns, span_count,
        error_count, span_mask, root_http_status, received_ns, spans_refused)
    SELECT trace_id, start_ns, duration_ns,
        coalesce((SELECT n.id FROM trace_name_sets n WHERE n.names = {names}), {names}),
        root_start_ns - start_ns, span_count, error_count, span_mask, root_http_status,
        received_ns, spans_refused
    FROM traces ORDER BY trace_id;
DROP TABLE traces;
ALTER TABLE traces_v18 RENAME TO traces;
CREATE INDEX traces_by_start ON traces (start_ns);
CREATE INDEX traces_by_duration ON traces (duration_ns);
CREATE INDEX traces_by_received ON traces (received_ns);
",
        names = old_names!()
    )
}

/// The `entry_spans` part (the file's `entry_spans` has no `span_id` column).
const ENTRY_SPANS: &str = "
DROP TABLE IF EXISTS entry_spans_v18;
CREATE TABLE entry_spans_v18 (
    bucket INTEGER NOT NULL,
    op INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    span_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    parent_span_id BLOB,
    PRIMARY KEY (bucket, op, start_ns, trace_id, span_id, kind)
) WITHOUT ROWID;
INSERT INTO entry_spans_v18 (bucket, op, start_ns, trace_id, span_id, kind, duration_ns, error,
        parent_span_id)
    SELECT bucket, op, start_ns, trace_id, -rowid, kind, duration_ns, error, parent_span_id
    FROM entry_spans ORDER BY bucket, op, start_ns, trace_id, -rowid, kind;
DROP TABLE entry_spans;
ALTER TABLE entry_spans_v18 RENAME TO entry_spans;
";

/// The `slow_spans` part (the file's `slow_spans` has a rowid).
const SLOW_SPANS: &str = "
DROP TABLE IF EXISTS slow_spans_v18;
CREATE TABLE slow_spans_v18 (
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (service, start_ns, duration_ns, trace_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO slow_spans_v18 (service, start_ns, duration_ns, trace_id)
    SELECT service, start_ns, duration_ns, trace_id FROM slow_spans ORDER BY 1, 2, 3, 4;
DROP TABLE slow_spans;
ALTER TABLE slow_spans_v18 RENAME TO slow_spans;
CREATE INDEX slow_spans_by_duration ON slow_spans (service, duration_ns);
";

/// The version 17 → 18 step for the file `conn` is open on, run after the steps before it in
/// the same transaction: the part of each table not in its new layout yet (none for a file
/// whose recorded version was set back after it was migrated).
///
/// # Errors
/// [`StoreError`] when the tables' columns cannot be read.
pub(super) fn schema_v18(conn: &Connection) -> Result<String, StoreError> {
    let has_column = |table: &str, column: &str| -> Result<bool, StoreError> {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(map_sql)
    };
    let slow_has_rowid: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'slow_spans' \
             AND sql NOT LIKE '%WITHOUT ROWID%'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(map_sql)?;
    let mut sql = String::new();
    if !has_column("traces", "names")? {
        sql.push_str(&traces_sql());
    }
    if !has_column("entry_spans", "span_id")? {
        sql.push_str(ENTRY_SPANS);
    }
    if slow_has_rowid {
        sql.push_str(SLOW_SPANS);
    }
    Ok(sql)
}

/// Test support: SQL that puts a current file's `traces` back into the version-16 layout with
/// the same rows (the names out of their sets) and drops `trace_name_sets`.
#[cfg(test)]
const TRACES_BACK_TO_V16: &str = "
CREATE TABLE traces_v16 (
    trace_id BLOB PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    root_service TEXT,
    root_operation TEXT,
    root_start_ns INTEGER,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    services TEXT NOT NULL,
    operations TEXT NOT NULL,
    span_mask INTEGER NOT NULL DEFAULT 0,
    root_http_status INTEGER,
    received_ns INTEGER NOT NULL DEFAULT 0,
    spans_refused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO traces_v16
    SELECT trace_id, start_ns, start_ns + duration_ns, duration_ns,
        json_extract(n, '$[0]'), json_extract(n, '$[1]'), start_ns + root_offset_ns,
        span_count, error_count, json_extract(n, '$[2]'), json_extract(n, '$[3]'),
        span_mask, root_http_status, received_ns, spans_refused
    FROM (SELECT *, CASE WHEN typeof(names) = 'integer'
            THEN (SELECT s.names FROM trace_name_sets s WHERE s.id = t.names)
            ELSE names END AS n FROM traces t);
DROP TABLE traces;
ALTER TABLE traces_v16 RENAME TO traces;
CREATE INDEX traces_by_start ON traces (start_ns);
CREATE INDEX traces_by_duration ON traces (duration_ns);
CREATE INDEX traces_by_received ON traces (received_ns);
DROP TABLE trace_name_sets;
";

/// Test support: SQL that puts a current file's `entry_spans` back into the version-16 layout
/// (a rowid table and two indexes) with the same rows.
#[cfg(test)]
pub(super) const ENTRY_SPANS_BACK_TO_V16: &str = "
CREATE TABLE entry_spans_v16 (
    start_ns INTEGER NOT NULL,
    op INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    parent_span_id BLOB,
    kind INTEGER NOT NULL,
    bucket INTEGER NOT NULL DEFAULT 0
);
INSERT INTO entry_spans_v16
    SELECT start_ns, op, duration_ns, error, trace_id, parent_span_id, kind, bucket
    FROM entry_spans ORDER BY start_ns;
DROP TABLE entry_spans;
ALTER TABLE entry_spans_v16 RENAME TO entry_spans;
CREATE INDEX entry_spans_by_start ON entry_spans (start_ns);
CREATE INDEX entry_spans_by_op ON entry_spans (bucket, op, start_ns);
";

/// Test support: SQL that puts a current file's `slow_spans` back into the version-16 layout.
#[cfg(test)]
const SLOW_SPANS_BACK_TO_V16: &str = "
CREATE TABLE slow_spans_v16 (
    trace_id BLOB NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL
);
INSERT INTO slow_spans_v16 SELECT trace_id, service, start_ns, duration_ns FROM slow_spans;
DROP TABLE slow_spans;
ALTER TABLE slow_spans_v16 RENAME TO slow_spans;
CREATE INDEX slow_spans_by_duration ON slow_spans (service, duration_ns);
CREATE INDEX slow_spans_by_start ON slow_spans (service, start_ns, duration_ns);
";

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{ENTRY_SPANS_BACK_TO_V16, SLOW_SPANS_BACK_TO_V16, TRACES_BACK_TO_V16};
    use crate::model::SpanKind;
    use crate::store::sqlite::name_sets::MAX_NAME_SETS;
    use crate::store::sqlite::schema::SCHEMA_VERSION;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{SortOrder, SpanStore, TimeWindow, TraceQuery, conformance};

    /// The traces of the migration test: the demo's (failing, slow, fast), and one whose
    /// root has not arrived (no root names).
    fn traces() -> Vec<Vec<crate::model::Span>> {
        let mut rootless = conformance::demo_trace(7, false, 150.0);
        rootless.retain(|s| s.parent_span_id.is_some());
        vec![
            conformance::demo_trace(1, false, 1.0),
            conformance::demo_trace(2, true, 250.0),
            conformance::demo_trace(3, false, 400.0),
            conformance::demo_trace(4, true, 5.0),
            rootless,
        ]
    }

    /// The searches compared before and after the migration.
    fn searches() -> Vec<TraceQuery> {
        let base = TraceQuery::default;
        vec![
            base(),
            TraceQuery {
                service: Some("payment".into()),
                ..base()
            },
            TraceQuery {
                operation: Some("charge card".into()),
                ..base()
            },
            TraceQuery {
                service: Some("payment".into()),
                min_duration_ns: Some(200_000_000),
                ..base()
            },
            TraceQuery {
                errors_only: true,
                ..base()
            },
            TraceQuery {
                kind: Some(SpanKind::Server),
                sort: SortOrder::Duration,
                ..base()
            },
            TraceQuery {
                attributes: vec![("http.response.status_code".into(), "503".into())],
                ..base()
            },
        ]
    }

    /// Everything a store answers about the test's traces, as text.
    async fn answers(store: &SqliteStore) -> Vec<String> {
        let all = || TimeWindow {
            start_unix_nano: 0,
            end_unix_nano: u64::MAX >> 1,
        };
        let mut out = Vec::new();
        for spans in traces() {
            let trace = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
            out.push(format!("{trace:?}"));
        }
        for q in searches() {
            let found = store.find_traces(q.clone()).await.unwrap();
            assert!(!found.is_empty(), "{q:?}");
            out.push(format!("{q:?} {found:?}"));
        }
        let samples = store.operation_samples(all(), None).await.unwrap();
        let payment = store
            .operation_samples(all(), Some("payment".into()))
            .await
            .unwrap();
        let edges = store.dependencies(all()).await.unwrap();
        assert!(!samples.is_empty() && !payment.is_empty() && !edges.is_empty());
        out.push(format!("{samples:?} {payment:?} {edges:?}"));
        out.push(format!(
            "{:?} {:?}",
            store.services().await.unwrap(),
            store.operations("payment".into()).await.unwrap()
        ));
        out
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A version-16 file (the three tables in their old layouts) is migrated at open: every
    /// trace, search, stat and the dependency graph read back the same; resent spans are
    /// duplicates; retention deletes every migrated row.
    #[tokio::test]
    async fn version_16_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for spans in traces() {
            store.write_spans(spans).await.unwrap();
        }
        let before = answers(&store).await;
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        assert!(count(&conn, "SELECT count(*) FROM trace_name_sets") >= 2);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM traces WHERE typeof(names) != 'integer'"
            ),
            0
        );
        conn.execute_batch(&format!(
            "BEGIN; {TRACES_BACK_TO_V16} {ENTRY_SPANS_BACK_TO_V16} {SLOW_SPANS_BACK_TO_V16}
             PRAGMA user_version = 16; COMMIT;"
        ))
        .unwrap();
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM pragma_table_info('traces') WHERE name = 'end_ns'"
            ),
            1
        );
        drop(conn);

        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(answers(&store).await, before);
        for spans in traces() {
            let again = store.write_spans(spans.clone()).await.unwrap();
            assert_eq!((again.stored, again.duplicates), (0, spans.len()));
        }
        assert_eq!(answers(&store).await, before, "after the resent spans");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM traces WHERE typeof(names) != 'integer'"
            ),
            0,
            "every migrated trace names its set by id"
        );
        assert!(count(&conn, "SELECT count(*) FROM entry_spans") > 0);
        assert!(count(&conn, "SELECT count(*) FROM slow_spans") > 0);
        assert_eq!(
            super::super::tests::delete_every_trace(&store).await,
            traces().len() as u64
        );
        store.shutdown().await;
        for table in ["traces", "entry_spans", "slow_spans", "trace_operations"] {
            assert_eq!(
                count(&conn, &format!("SELECT count(*) FROM {table}")),
                0,
                "{table}"
            );
        }
    }

    /// With the set dictionary full, a new set is stored in the trace's row and reads back
    /// the same as one named by its id; a set already there is still named by its id.
    #[tokio::test]
    async fn a_full_dictionary_keeps_new_sets_in_their_rows() {
        let stored = |fill: bool| async move {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("spanline.db");
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            store
                .write_spans(conformance::demo_trace(1, false, 1.0))
                .await
                .unwrap();
            if fill {
                let conn = Connection::open(&path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                conn.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                     INSERT INTO trace_name_sets (names) SELECT 'filler ' || i FROM n",
                    [MAX_NAME_SETS],
                )
                .unwrap();
            }
            let mut rootless = conformance::demo_trace(2, true, 250.0);
            rootless.retain(|s| s.parent_span_id.is_some());
            store.write_spans(rootless.clone()).await.unwrap();
            store
                .write_spans(conformance::demo_trace(3, false, 1.0))
                .await
                .unwrap();
            let mut out = Vec::new();
            for n in 1..=3 {
                let id = crate::testing::trace_id(n);
                out.push(format!("{:?}", store.get_trace(id).await.unwrap().unwrap()));
            }
            let q = TraceQuery {
                service: Some("payment".into()),
                ..TraceQuery::default()
            };
            out.push(format!("{:?}", store.find_traces(q).await.unwrap()));
            store.shutdown().await;
            let conn = Connection::open(&path).unwrap();
            let inline = count(
                &conn,
                "SELECT count(*) FROM traces WHERE typeof(names) = 'text'",
            );
            (out, inline)
        };
        let (free, inline_free) = stored(false).await;
        let (full, inline_full) = stored(true).await;
        assert_eq!(free, full);
        assert_eq!(inline_free, 0);
        assert_eq!(inline_full, 1, "only the rootless trace's set is new");
    }
}
