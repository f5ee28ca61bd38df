//! # Attribute-index runs (schema versions 11 to 16)
//!
//! Since version 17 moves of staged rows write posting rows (`attr_postings.rs`); the runs of
//! older files stay, read and deleted from, and are dropped once emptied. The option
//! `SqliteOptions::attr_postings = false` still moves into runs (tests that make such files).
//!
//! The attribute search index has three places, all keyed by `(key, value, start_ns,
//! trace_id)`, and a row is in exactly one of them:
//!
//! - the staged segments of `span_attrs_new` (`attr_stage.rs`), one per index flush;
//! - the **runs**: tables `span_attrs_run<N>` (`WITHOUT ROWID`), listed in
//!   `attr_runs(run, rows, min_start_ns, max_start_ns)`. Every ~100k staged rows the writer
//!   moves the segments into the newest run, in key order ([`absorb_staged`]); once a run
//!   holds [`DEFAULT_ATTR_RUN_ROWS`] rows (`SqliteOptions::attr_run_rows`) the next move starts a
//!   new run, so the cost of a move no longer grows with the whole index. A run records the
//!   range of trace starts it holds: probes and deletes for one trace (whose rows all carry
//!   the trace's start) skip the runs whose range does not cover it, and a search with a time
//!   window skips the runs outside it;
//! - `span_attrs`, the single merged level of schema versions 3 to 10: read and deleted from,
//!   never written since version 11 (empty in a file created by version 11).
//!
//! Since version 14 (`attr_keys.rs`) the staged rows and the runs created since hold the key's
//! id in their `key` column (`attr_runs.key_ids = 1`); runs created before keep text keys and
//! are never written again (a move of staged rows opens a new run rather than add to one).
//!
//! Before version 11 the staged rows were merged into `span_attrs` itself: at ~3M rows
//! (about 1M spans of the ingest benchmark's shape) a merge cost 25-38 µs per row with
//! unique values (`scripts/bench-attr-merge.py`), the writer's largest cost.
//!
//! A run whose rows were all deleted (retention, moved starts) is dropped, except the newest,
//! which stays open for the next move; run numbers are never reused, so a cached statement
//! never names another run's table.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};

use super::attr_keys::{ID_OF_KEY_1, id_of_key, key_expr};
use super::map_sql;
use crate::model::TraceId;
use crate::store::StoreError;

/// Version 10 → 11 (also run on a new file): the run list, and the start range of each
/// staged segment (segments staged before version 11 get the widest range). Each statement
/// can be re-run: the columns are added only when missing ([`schema_v11`]).
pub(super) const SCHEMA_V11: &str = "
CREATE TABLE IF NOT EXISTS attr_runs (
    run INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    min_start_ns INTEGER NOT NULL,
    max_start_ns INTEGER NOT NULL
);
";

/// The columns version 11 adds to `attr_segments` (version 8).
const SCHEMA_V11_SEGMENTS: &str = "
ALTER TABLE attr_segments ADD COLUMN min_start_ns INTEGER NOT NULL DEFAULT -9223372036854775808;
ALTER TABLE attr_segments ADD COLUMN max_start_ns INTEGER NOT NULL DEFAULT 9223372036854775807;
";

/// The version 10 → 11 step for the file `conn` is open on: [`SCHEMA_V11`], and the
/// segment columns unless `attr_segments` has them already (a file whose recorded version
/// was set back, as the migration tests do). Run after [`SCHEMA_V8`](super::attr_stage::SCHEMA_V8)
/// on a new file, where `attr_segments` does not exist yet: the columns are added then.
///
/// # Errors
/// [`StoreError::Backend`] when the table's columns cannot be read.
pub(super) fn schema_v11(conn: &Connection) -> Result<String, StoreError> {
    let has_columns: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('attr_segments') \
             WHERE name = 'min_start_ns'",
            [],
            |r| r.get(0),
        )
        .map_err(map_sql)?;
    Ok(if has_columns {
        SCHEMA_V11.to_owned()
    } else {
        format!("{SCHEMA_V11}{SCHEMA_V11_SEGMENTS}")
    })
}

/// Rows at which a run is closed and the next move of staged rows starts a new one: about
/// 700k spans of the ingest benchmark's shape (2.9 attribute rows per span). The cost of a
/// move grows with the run it goes into (with unique values, 1.0 µs per row into an empty
/// run and 3.6-4.7 µs at 1.5M rows in a trial with Python's sqlite3 on 2026-12-04), and a
/// search or probe seeks once per run: this bound keeps both small.
pub(super) const DEFAULT_ATTR_RUN_ROWS: u64 = 2_000_000;

/// One run of the attribute index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    /// Its number: the table is `span_attrs_run<id>`.
    pub id: i64,
    /// Rows in it (inserted minus deleted).
    pub rows: i64,
    /// Smallest and largest trace start of the rows ever moved into it, ns since the epoch.
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    /// Whether its `key` column holds ids from `attr_keys` (runs created since schema 14),
    /// else the keys' text.
    pub key_ids: bool,
}

impl Run {
    /// The run's table name (a plain identifier: `span_attrs_run` and a number).
    pub(super) fn table(&self) -> String {
        format!("span_attrs_run{}", self.id)
    }

    /// Whether rows of a trace starting at `start_ns` can be in this run.
    pub(super) fn covers(&self, start_ns: i64) -> bool {
        (self.min_start_ns..=self.max_start_ns).contains(&start_ns)
    }

    /// Whether the run can hold rows of traces starting within `[from_ns, to_ns]`.
    pub(super) fn overlaps(&self, from_ns: i64, to_ns: i64) -> bool {
        self.min_start_ns <= to_ns && from_ns <= self.max_start_ns
    }

    /// `EXISTS` probe of this run for the row (key, `value`, `start`, `trace_id`), SQL
    /// expressions or parameters, the key as `key.0` (its text) or `key.1` (its id) as
    /// the run holds it ([`key_expr`]), guarded by the run's start range (literals) so
    /// SQLite skips the seek for a start outside it.
    fn probe(&self, key: (&str, &str), value: &str, start: &str, trace_id: &str) -> String {
        let key = key_expr(self.key_ids, key.0, key.1);
        format!(
            "({start} BETWEEN {} AND {} AND EXISTS (SELECT 1 FROM {} r WHERE r.key = {key} \
             AND r.value = {value} AND r.start_ns = {start} AND r.trace_id = {trace_id}))",
            self.min_start_ns,
            self.max_start_ns,
            self.table()
        )
    }
}

/// The runs, oldest first (the last is the open one).
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn runs(conn: &Connection) -> Result<Vec<Run>, StoreError> {
    conn.prepare_cached(
        "SELECT run, rows, min_start_ns, max_start_ns, key_ids FROM attr_runs ORDER BY run",
    )
    .map_err(map_sql)?
    .query_map([], |r| {
        Ok(Run {
            id: r.get(0)?,
            rows: r.get(1)?,
            min_start_ns: r.get(2)?,
            max_start_ns: r.get(3)?,
            key_ids: r.get(4)?,
        })
    })
    .map_err(map_sql)?
    .collect::<rusqlite::Result<_>>()
    .map_err(map_sql)
}

/// Moves every staged row (`span_attrs_new`) into the open run, in key order, creating a
/// new run when there is none, the open one holds `run_rows` rows or more, or it holds text
/// keys (created before schema 14; the staged rows hold ids). The caller
/// empties the staging tables afterwards, in the same transaction.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn absorb_staged(conn: &Connection, run_rows: u64) -> Result<(), StoreError> {
    let (min_start, max_start): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(min_start_ns), max(max_start_ns) FROM attr_segments")
        .map_err(map_sql)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(map_sql)?;
    let (Some(min_start), Some(max_start)) = (min_start, max_start) else {
        return Ok(()); // nothing staged: no run to open
    };
    let run_rows = i64::try_from(run_rows).unwrap_or(i64::MAX);
    let newest = runs(conn)?.pop();
    if let Some(text) = newest.filter(|run| !run.key_ids && run.rows <= 0) {
        // An emptied run of text keys is never written again: no later delete drops it.
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; DELETE FROM attr_runs WHERE run = {};",
            text.table(),
            text.id
        ))
        .map_err(map_sql)?;
    }
    let open = newest.filter(|run| run.rows < run_rows && run.key_ids);
    let run = match open {
        Some(run) => run,
        None => create_run(conn)?,
    };
    let moved = conn
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {} (key, value, start_ns, trace_id) \
             SELECT key, value, start_ns, trace_id FROM span_attrs_new \
             ORDER BY key, value, start_ns, trace_id",
            run.table()
        ))
        .map_err(map_sql)?
        .execute([])
        .map_err(map_sql)?;
    conn.prepare_cached(
        "UPDATE attr_runs SET rows = rows + ?2, min_start_ns = min(min_start_ns, ?3), \
         max_start_ns = max(max_start_ns, ?4) WHERE run = ?1",
    )
    .map_err(map_sql)?
    .execute(params![
        run.id,
        i64::try_from(moved).unwrap_or(i64::MAX),
        min_start,
        max_start
    ])
    .map_err(map_sql)?;
    Ok(())
}

/// Creates the next run's table and lists it (empty, with an empty start range).
fn create_run(conn: &Connection) -> Result<Run, StoreError> {
    let id: i64 = conn
        .query_row("SELECT coalesce(max(run), 0) + 1 FROM attr_runs", [], |r| {
            r.get(0)
        })
        .map_err(map_sql)?;
    let run = Run {
        id,
        rows: 0,
        min_start_ns: i64::MAX,
        max_start_ns: i64::MIN,
        key_ids: true,
    };
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
            key INTEGER NOT NULL,
            value TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            trace_id BLOB NOT NULL,
            PRIMARY KEY (key, value, start_ns, trace_id)
        ) WITHOUT ROWID;",
        run.table()
    ))
    .map_err(map_sql)?;
    conn.execute(
        "INSERT INTO attr_runs (run, rows, min_start_ns, max_start_ns, key_ids) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            run.id,
            run.rows,
            run.min_start_ns,
            run.max_start_ns,
            run.key_ids
        ],
    )
    .map_err(map_sql)?;
    Ok(run)
}

/// SQL that is true when the row (key, `value`, `start`, `trace_id`: SQL expressions or
/// parameters; the key as `key.0`, its text, or `key.1`, its id, as each run holds it) is in
/// one of `runs`; `FALSE` for no runs. Each run's probe is guarded by its start range.
pub(super) fn exists_in_runs(
    runs: &[Run],
    key: (&str, &str),
    value: &str,
    start: &str,
    trace_id: &str,
) -> String {
    if runs.is_empty() {
        return "FALSE".to_owned();
    }
    runs.iter()
        .map(|run| run.probe(key, value, start, trace_id))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// A search condition on trace `t` (aliased so): it has the attribute `key` = `value` in
/// some place of the index (`span_attrs`, a staged segment, a run). Appends the values its
/// `?` parameters take to `args`.
pub(super) fn search_condition(
    runs: &[Run],
    key: &str,
    value: &str,
    args: &mut Vec<SqlValue>,
) -> String {
    let places = 2 + runs.len();
    for _ in 0..places {
        args.push(SqlValue::Text(key.to_owned()));
        args.push(SqlValue::Text(value.to_owned()));
    }
    format!(
        "(EXISTS (SELECT 1 FROM span_attrs a WHERE a.key = ? AND a.value = ? \
         AND a.start_ns = t.start_ns AND a.trace_id = t.trace_id) \
         OR EXISTS (SELECT 1 FROM span_attrs_new a WHERE a.{} AND a.key = {} AND a.value = ? \
         AND a.start_ns = t.start_ns AND a.trace_id = t.trace_id) OR {})",
        super::attr_stage::IN_SEGMENTS,
        id_of_key!(),
        exists_in_runs(runs, ("?", id_of_key!()), "?", "t.start_ns", "t.trace_id")
    )
}

/// Deletes the rows (key, value) of `trace_id` at trace start `start` from the runs that can
/// hold them, and drops each run (but the newest) left empty.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn delete_rows(
    conn: &Connection,
    trace_id: TraceId,
    start: i64,
    attrs: &[(String, String)],
) -> Result<(), StoreError> {
    let all = runs(conn)?;
    let newest = all.last().map(|run| run.id);
    for run in all.iter().filter(|run| run.covers(start)) {
        let delete = format!(
            "DELETE FROM {} WHERE key = {} AND value = ?2 AND start_ns = ?3 AND trace_id = ?4",
            run.table(),
            key_expr(run.key_ids, "?1", ID_OF_KEY_1)
        );
        let deleted = delete_each(conn, &delete, trace_id, start, attrs)?;
        if deleted == 0 {
            continue;
        }
        if run.rows - deleted <= 0 && Some(run.id) != newest {
            conn.execute_batch(&format!(
                "DROP TABLE IF EXISTS {}; DELETE FROM attr_runs WHERE run = {};",
                run.table(),
                run.id
            ))
            .map_err(map_sql)?;
        } else {
            conn.prepare_cached("UPDATE attr_runs SET rows = rows - ?2 WHERE run = ?1")
                .map_err(map_sql)?
                .execute(params![run.id, deleted])
                .map_err(map_sql)?;
        }
    }
    Ok(())
}

/// Runs `delete` (a `DELETE` with parameters `?1` key text, `?2` value, `?3` trace start, `?4`
/// trace id) once per pair of `attrs`; returns the rows deleted.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn delete_each(
    conn: &Connection,
    delete: &str,
    trace_id: TraceId,
    start: i64,
    attrs: &[(String, String)],
) -> Result<i64, StoreError> {
    let mut stmt = conn.prepare_cached(delete).map_err(map_sql)?;
    let mut deleted = 0i64;
    for (key, value) in attrs {
        let n = stmt
            .execute(params![key, value, start, &trace_id.0[..]])
            .map_err(map_sql)?;
        deleted = deleted.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::super::attr_stage::MAX_SEGMENTS;
    use super::super::{SqliteOptions, SqliteStore};
    use super::*;
    use crate::model::SpanId;
    use crate::store::{RetentionPolicy, SpanStore, TraceQuery, conformance};

    fn by_user(n: u8) -> TraceQuery {
        TraceQuery {
            attributes: vec![("app.user.id".into(), format!("u{n}"))],
            ..TraceQuery::default()
        }
    }

    /// Rows of the attribute index in every place, and how many of them are in more than
    /// one place or stale (not at their trace's current start).
    fn index_rows(conn: &Connection) -> (i64, i64, i64) {
        let mut places = vec![
            "SELECT key, value, start_ns, trace_id FROM span_attrs".to_owned(),
            "SELECT key, value, start_ns, trace_id FROM span_attrs_new".to_owned(),
        ];
        for run in runs(conn).unwrap() {
            places.push(format!(
                "SELECT key, value, start_ns, trace_id FROM {}",
                run.table()
            ));
        }
        let all = places.join(" UNION ALL ");
        let count = |sql: String| -> i64 { conn.query_row(&sql, [], |r| r.get(0)).unwrap() };
        (
            count(format!("SELECT count(*) FROM ({all})")),
            count(format!(
                "SELECT count(*) FROM (SELECT key, value, start_ns, trace_id FROM ({all}) \
                 GROUP BY 1, 2, 3, 4 \
                 HAVING count(*) > 1)"
            )),
            count(format!(
                "SELECT count(*) FROM ({all}) x LEFT JOIN traces t ON t.trace_id = x.trace_id \
                 WHERE t.start_ns IS NOT x.start_ns"
            )),
        )
    }

    /// With runs of one row, each move of the staged segments starts a new run. Searches
    /// find rows in every run (driven by an attribute, and with an attribute as a condition
    /// beside an operation); a late span of a trace whose rows are in a closed run adds no
    /// second row; a moved start rewrites the trace's rows; deleting every trace drops every
    /// run but the newest.
    #[tokio::test]
    async fn moves_start_new_runs_that_searches_read_and_deletes_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let options = SqliteOptions {
            attr_run_rows: 1,
            ..super::super::tests::with_runs()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let traces = u8::try_from(2 * MAX_SEGMENTS + 3).unwrap();
        for n in 1..=traces {
            store
                .write_spans(conformance::demo_trace(n, n % 5 == 0, 1.0))
                .await
                .unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let two = runs(&conn).unwrap();
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(two[0].max_start_ns < two[1].min_start_ns, "{two:?}");
        assert!(two.iter().all(|run| run.rows > 0));
        for n in [1, 40, traces] {
            let found = store.find_traces(by_user(n)).await.unwrap();
            assert_eq!(found.len(), 1, "u{n}");
        }
        let failed = TraceQuery {
            operation: Some("charge card".into()),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            limit: 1000,
            ..TraceQuery::default()
        };
        let expected = (1..=traces).filter(|n| n % 5 == 0).count();
        assert_eq!(store.find_traces(failed).await.unwrap().len(), expected);
        let (rows, twice, stale) = index_rows(&conn);
        assert!(rows > 0);
        assert_eq!((twice, stale), (0, 0));

        // A late span of trace 1 with the same attribute (its row is in the first run).
        let mut late = conformance::demo_trace(1, false, 1.0)[1].clone();
        late.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 99]);
        store.write_spans(vec![late]).await.unwrap();
        // A span of trace 2 that starts before its root: the trace's start moves.
        let mut early = conformance::demo_trace(2, false, 1.0)[1].clone();
        early.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 98]);
        early.start_time_unix_nano -= 500_000_000;
        store.write_spans(vec![early.clone()]).await.unwrap();
        assert_eq!(index_rows(&conn), (rows, 0, 0));
        let found = store.find_traces(by_user(2)).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start_time_unix_nano, early.start_time_unix_nano);

        let policy = RetentionPolicy {
            delete_before_unix_nano: Some(u64::MAX),
            max_bytes: None,
            batch_traces: 1000,
        };
        while store.enforce_retention(policy).await.unwrap().more {}
        assert_eq!(index_rows(&conn).0, 0);
        let left = runs(&conn).unwrap();
        assert_eq!(left.len(), 1, "the newest run stays open: {left:?}");
        assert_eq!(left[0].rows, 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'span_attrs_run%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "the emptied runs were dropped");
        assert!(store.find_traces(by_user(40)).await.unwrap().is_empty());
        store.shutdown().await;
    }

    /// A version-10 file: its merged rows stay in `span_attrs` and are still found; later
    /// rows go to runs; a trace with rows in both is found once.
    #[tokio::test]
    async fn version_10_rows_stay_searchable_beside_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        super::super::tests::file_with(&path, vec![conformance::demo_trace(3, true, 5.0)]).await;
        let conn = Connection::open(&path).unwrap();
        // The trace's rows as version 10 left them: merged into `span_attrs`.
        conn.execute_batch(&format!(
            "BEGIN; {} {}
             INSERT INTO span_attrs SELECT key, value, start_ns, trace_id FROM span_attrs_new;
             DELETE FROM span_attrs_new; DELETE FROM attr_segments;
             DROP TABLE attr_runs;
             CREATE TABLE attr_segments_v10 (seg INTEGER PRIMARY KEY, rows INTEGER NOT NULL);
             DROP TABLE attr_segments;
             ALTER TABLE attr_segments_v10 RENAME TO attr_segments;
             PRAGMA user_version = 10; COMMIT;",
            super::super::attr_keys::back_to_v13(&conn),
            super::super::operation_ids::BACK_TO_V11
        ))
        .unwrap();
        let store = SqliteStore::open(&path, super::super::tests::with_runs()).unwrap();
        let mut late = conformance::demo_trace(3, true, 5.0)[2].clone();
        late.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 99]);
        late.attributes.push(crate::model::KeyValue::new(
            "app.note",
            crate::model::AttrValue::String("late".into()),
        ));
        store.write_spans(vec![late]).await.unwrap();
        for n in 10..10 + u8::try_from(MAX_SEGMENTS).unwrap() {
            store
                .write_spans(conformance::demo_trace(n, false, 1.0))
                .await
                .unwrap();
        }
        for (key, value) in [("app.user.id", "u3"), ("app.note", "late")] {
            let q = TraceQuery {
                attributes: vec![(key.into(), value.into())],
                ..TraceQuery::default()
            };
            assert_eq!(store.find_traces(q).await.unwrap().len(), 1, "{key}");
        }
        let both = TraceQuery {
            attributes: vec![
                // Both on the late span: the first in `span_attrs`, the second in a run.
                ("http.response.status_code".into(), "201".into()),
                ("app.note".into(), "late".into()),
            ],
            ..TraceQuery::default()
        };
        assert_eq!(store.find_traces(both).await.unwrap().len(), 1);
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        assert_eq!(runs(&conn).unwrap().len(), 1);
        assert_eq!(index_rows(&conn).1, 0, "no row in two places");
    }
}
