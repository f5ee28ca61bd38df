//! # Attribute keys as ids (schema version 14)
//!
//! The attribute index's rows name their key by an integer id from `attr_keys(id, key)`, not
//! by its text, in the staged segments (`span_attrs_new`, `attr_stage.rs`) and in the runs
//! created since version 14 (`attr_runs.key_ids = 1`, `attr_runs.rs`). The column keeps its
//! name, `key`: it holds the id (`INTEGER`) there, the text (`TEXT`) in the runs written before
//! version 14 (`key_ids = 0`, never rewritten: a 10M-span file keeps its runs as they are) and
//! in the legacy level `span_attrs` (versions 3 to 10). A key of the ingest benchmark's load
//! takes 10-25 bytes as text, 1 byte as an id (BENCHMARKS.md §3.1, "attribute keys as ids").
//!
//! Every statement that names a key does so in each place's own form ([`key_expr`]): the text
//! for text places, its id for id places, either as a bound id (the writer's probes) or as
//! [`id_of_key!`], a subquery on `attr_keys`' unique key that SQLite evaluates once per
//! statement (searches, deletes). A key never stored has no id: the subquery is NULL and
//! matches no row of an id place.
//!
//! The writer resolves the keys of a flush once each ([`resolve`]): a lookup, and an insert
//! for a key never seen. Nothing is cached across transactions, so a rolled-back group
//! cannot leave an id in memory that the file does not have; a flush has a few dozen distinct
//! keys. Ids are never reused or deleted.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};

use super::map_sql;
use crate::store::StoreError;

/// Version 13 → 14 (also run on a new file, on its empty tables): the key dictionary, the
/// staged rows rewritten with ids (at most ~100k rows: `attr_stage::MERGE_ROWS`), and the
/// runs marked as holding text keys (`key_ids = 0`); runs created from now on hold ids. Each
/// part can be re-run ([`schema_v14`]).
const SCHEMA_V14_KEYS: &str = "
CREATE TABLE IF NOT EXISTS attr_keys (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE
);
";

/// The staged rows with ids (a version-13 `span_attrs_new`, keys as text, rewritten).
const SCHEMA_V14_STAGED: &str = "
INSERT OR IGNORE INTO attr_keys (key) SELECT DISTINCT key FROM span_attrs_new ORDER BY 1;
CREATE TABLE span_attrs_new_v14 (
    seg INTEGER NOT NULL,
    key INTEGER NOT NULL,
    value TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (seg, key, value, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO span_attrs_new_v14 (seg, key, value, start_ns, trace_id)
    SELECT s.seg, k.id, s.value, s.start_ns, s.trace_id
    FROM span_attrs_new s JOIN attr_keys k ON k.key = s.key
    ORDER BY 1, 2, 3, 4, 5;
DROP TABLE span_attrs_new;
ALTER TABLE span_attrs_new_v14 RENAME TO span_attrs_new;
";

/// The run list's new column: 1 for a run whose `key` column holds ids.
const SCHEMA_V14_RUNS: &str =
    "ALTER TABLE attr_runs ADD COLUMN key_ids INTEGER NOT NULL DEFAULT 0;";

/// The version 13 → 14 step for the file `conn` is open on: the dictionary, then the staged
/// rows rewritten unless `span_attrs_new.key` is already an `INTEGER` column, and the run
/// list's column unless it exists (a file whose recorded version was set back, as the
/// migration tests do, keeps its version-14 parts). On a new file, where the tables do not
/// exist yet when this is read (earlier steps of the same batch create them), every part runs.
///
/// # Errors
/// [`StoreError::Backend`] when the tables' columns cannot be read.
pub(super) fn schema_v14(conn: &Connection) -> Result<String, StoreError> {
    let column_type = |table: &str, column: &str| -> Result<Option<String>, StoreError> {
        conn.query_row(
            "SELECT type FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_sql)
    };
    let mut sql = SCHEMA_V14_KEYS.to_owned();
    if !column_type("span_attrs_new", "key")?.is_some_and(|t| t.eq_ignore_ascii_case("INTEGER")) {
        sql.push_str(SCHEMA_V14_STAGED);
    }
    if column_type("attr_runs", "key_ids")?.is_none() {
        sql.push_str(SCHEMA_V14_RUNS);
    }
    Ok(sql)
}

/// The id of one attribute key as an SQL expression (a string literal, for `concat!`): one
/// parameter, the key's text. NULL (no row matches) for a key never stored.
macro_rules! id_of_key {
    () => {
        "(SELECT id FROM attr_keys WHERE key = ?)"
    };
}
pub(super) use id_of_key;

/// [`id_of_key!`] on parameter `?1` (the key's text), for statements with numbered parameters.
pub(super) const ID_OF_KEY_1: &str = "(SELECT id FROM attr_keys WHERE key = ?1)";

/// How a place of the attribute index names a key in SQL: `text` (an SQL expression or
/// parameter giving the key's text) where the place holds text keys, `id` (one giving its
/// id) where it holds ids.
pub(super) fn key_expr<'e>(holds_ids: bool, text: &'e str, id: &'e str) -> &'e str {
    if holds_ids { id } else { text }
}

/// The ids of `keys` (any order, duplicates allowed), inserting the keys not stored yet,
/// inside the caller's transaction.
///
/// # Errors
/// [`StoreError`] from SQLite.
pub(super) fn resolve<'k>(
    conn: &Connection,
    keys: impl IntoIterator<Item = &'k str>,
) -> Result<BTreeMap<&'k str, i64>, StoreError> {
    let mut ids: BTreeMap<&str, i64> = keys.into_iter().map(|k| (k, 0)).collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    let mut find = conn
        .prepare_cached("SELECT id FROM attr_keys WHERE key = ?1")
        .map_err(map_sql)?;
    let mut add = conn
        .prepare_cached("INSERT INTO attr_keys (key) VALUES (?1)")
        .map_err(map_sql)?;
    for (&key, id) in &mut ids {
        *id = match find
            .query_row([key], |r| r.get(0))
            .optional()
            .map_err(map_sql)?
        {
            Some(found) => found,
            None => {
                add.execute([key]).map_err(map_sql)?;
                conn.last_insert_rowid()
            }
        };
    }
    Ok(ids)
}

/// Test support: SQL that puts a current file's attribute index back into the version-13
/// layout (text keys in the staged rows and in every run, no `key_ids`, no `attr_keys`)
/// with the same rows, for the tests that rebuild an older file from a new one.
#[cfg(test)]
pub(super) fn back_to_v13(conn: &Connection) -> String {
    let mut sql = String::from(
        "CREATE TABLE span_attrs_new_v13 (
            seg INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            start_ns INTEGER NOT NULL, trace_id BLOB NOT NULL,
            PRIMARY KEY (seg, key, value, start_ns, trace_id)) WITHOUT ROWID;
         INSERT INTO span_attrs_new_v13 SELECT s.seg, k.key, s.value, s.start_ns, s.trace_id
            FROM span_attrs_new s JOIN attr_keys k ON k.id = s.key;
         DROP TABLE span_attrs_new;
         ALTER TABLE span_attrs_new_v13 RENAME TO span_attrs_new;",
    );
    for run in super::attr_runs::runs(conn).unwrap() {
        let table = run.table();
        if run.key_ids {
            sql.push_str(&format!(
                "CREATE TABLE {table}_v13 (
                    key TEXT NOT NULL, value TEXT NOT NULL, start_ns INTEGER NOT NULL,
                    trace_id BLOB NOT NULL, PRIMARY KEY (key, value, start_ns, trace_id))
                    WITHOUT ROWID;
                 INSERT INTO {table}_v13 SELECT k.key, r.value, r.start_ns, r.trace_id
                    FROM {table} r JOIN attr_keys k ON k.id = r.key;
                 DROP TABLE {table};
                 ALTER TABLE {table}_v13 RENAME TO {table};"
            ));
        }
    }
    sql.push_str("ALTER TABLE attr_runs DROP COLUMN key_ids; DROP TABLE attr_keys;");
    sql
}

#[cfg(test)]
mod tests {
    use super::super::attr_runs::runs;
    use super::super::attr_stage::MAX_SEGMENTS;
    use super::super::schema::SCHEMA_VERSION;
    use super::super::{SqliteOptions, SqliteStore};
    use super::*;
    use crate::model::SpanId;
    use crate::store::{SpanStore, TraceQuery, conformance};

    /// Every attribute-index row of every place as (key text, value, start, trace id, place),
    /// the ids of id places read back through `attr_keys`, sorted; in the layout of version
    /// 14, or of 13 (no `attr_runs.key_ids`: text keys everywhere).
    fn rows(conn: &Connection) -> Vec<(String, String, i64, Vec<u8>, String)> {
        let v14 = count(
            conn,
            "SELECT count(*) FROM pragma_table_info('attr_runs') WHERE name = 'key_ids'",
        ) > 0;
        let text = |place: &str, table: &str| {
            format!("SELECT key, value, start_ns, trace_id, '{place}' FROM {table}")
        };
        let ids = |place: &str, table: &str| {
            format!(
                "SELECT k.key, r.value, r.start_ns, r.trace_id, '{place}' FROM {table} r \
                 JOIN attr_keys k ON k.id = r.key"
            )
        };
        let mut places = vec![text("legacy", "span_attrs")];
        places.push(if v14 {
            ids("staged", "span_attrs_new")
        } else {
            text("staged", "span_attrs_new")
        });
        let list = if v14 {
            "SELECT run, key_ids FROM attr_runs"
        } else {
            "SELECT run, 0 FROM attr_runs"
        };
        let runs: Vec<(i64, bool)> = conn
            .prepare(list)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (run, key_ids) in runs {
            let (table, place) = (format!("span_attrs_run{run}"), format!("run{run}"));
            places.push(if key_ids {
                ids(&place, &table)
            } else {
                text(&place, &table)
            });
        }
        let mut all: Vec<_> = conn
            .prepare(&places.join(" UNION ALL "))
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        all.sort_unstable();
        all
    }

    /// The places (`legacy`, `staged`, `run<N>`) holding rows of the user `u<n>`'s trace.
    fn places_of_user(conn: &Connection, n: u8) -> Vec<String> {
        let all = rows(conn);
        let trace = all
            .iter()
            .find(|r| r.0 == "app.user.id" && r.1 == format!("u{n}"))
            .map(|r| r.3.clone())
            .expect("the user's row");
        let mut places: Vec<String> = all
            .into_iter()
            .filter(|r| r.3 == trace)
            .map(|r| r.4)
            .collect();
        places.dedup();
        places
    }

    /// `count(*)` of `sql`.
    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn by_user(n: u8) -> TraceQuery {
        TraceQuery {
            attributes: vec![("app.user.id".into(), format!("u{n}"))],
            ..TraceQuery::default()
        }
    }

    /// A file created at version 14 stores its attribute keys as ids: once each in
    /// `attr_keys`, as integers in the staged rows and in the runs the staged rows move into.
    #[tokio::test]
    async fn a_new_file_stores_key_ids_in_staged_rows_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let store = SqliteStore::open(&path, super::super::tests::with_runs()).unwrap();
        store
            .write_spans(conformance::demo_trace(1, true, 5.0))
            .await
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        let keys: Vec<String> = conn
            .prepare("SELECT key FROM attr_keys ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["app.user.id", "http.response.status_code"]);
        let staged = count(&conn, "SELECT count(*) FROM span_attrs_new");
        assert!(staged > 1);
        let as_ids = "SELECT count(*) FROM span_attrs_new s JOIN attr_keys k ON k.id = s.key \
                      WHERE typeof(s.key) = 'integer'";
        assert_eq!(count(&conn, as_ids), staged);
        // More traces until the staged rows move into a run.
        let mut n = 2u8;
        while runs(&conn).unwrap().is_empty() {
            assert!(i64::from(n) <= MAX_SEGMENTS + 1, "never moved");
            store
                .write_spans(conformance::demo_trace(n, false, 1.0))
                .await
                .unwrap();
            n += 1;
        }
        let run = runs(&conn).unwrap()[0];
        assert!(run.key_ids, "{run:?}");
        let in_run = count(&conn, &format!("SELECT count(*) FROM {}", run.table()));
        assert!(in_run > 0);
        let ids_in_run = count(
            &conn,
            &format!(
                "SELECT count(*) FROM {} r JOIN attr_keys k ON k.id = r.key \
                 WHERE typeof(r.key) = 'integer'",
                run.table()
            ),
        );
        assert_eq!(ids_in_run, in_run);
        assert_eq!(count(&conn, "SELECT count(*) FROM attr_keys"), 2);
        assert_eq!(store.find_traces(by_user(1)).await.unwrap().len(), 1);
        store.shutdown().await;
    }

    /// Version 13 → 14: a version-13 file with rows in each place (trace 1's in the legacy
    /// `span_attrs`, traces 2 and 4's in a run with text keys, trace 3's staged) is migrated at open:
    /// the staged rows get ids, the others keep their text. Searches driven by an attribute,
    /// with an attribute as a condition, and with two attributes find each trace; an unknown
    /// key finds nothing; a late span adds no second row; a moved start rewrites its trace's
    /// rows as ids; the next move of the staged rows opens a new run of ids beside the text
    /// run; retention deletes the rows of every place and drops the emptied text run.
    #[tokio::test]
    async fn version_13_file_is_migrated_and_every_place_is_searched_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let batches = (1..=4)
            .map(|n| conformance::demo_trace(n, true, 5.0))
            .collect();
        super::super::tests::file_with(&path, batches).await;
        let conn = Connection::open(&path).unwrap();
        assert!(runs(&conn).unwrap().is_empty(), "all staged so far");
        let trace = |n: u8| conformance::demo_trace(n, true, 5.0)[0].trace_id;
        let (t1, t2, t4) = (trace(1), trace(2), trace(4));
        let start_of = |t: crate::model::TraceId| -> i64 {
            conn.query_row(
                "SELECT start_ns FROM traces WHERE trace_id = ?1",
                [&t.0[..]],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (start1, start2, start4) = (start_of(t1), start_of(t2), start_of(t4));
        conn.execute_batch(&format!("BEGIN; {} COMMIT;", back_to_v13(&conn)))
            .unwrap();
        // Trace 1's rows to `span_attrs`, traces 2 and 4's to a run of text keys (version 13's).
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute(
            "INSERT INTO span_attrs SELECT key, value, start_ns, trace_id \
             FROM span_attrs_new WHERE trace_id = ?1",
            [&t1.0[..]],
        )
        .unwrap();
        tx.execute_batch(
            "CREATE TABLE span_attrs_run1 (key TEXT NOT NULL, value TEXT NOT NULL,
                start_ns INTEGER NOT NULL, trace_id BLOB NOT NULL,
                PRIMARY KEY (key, value, start_ns, trace_id)) WITHOUT ROWID;",
        )
        .unwrap();
        let moved = tx
            .execute(
                "INSERT INTO span_attrs_run1 SELECT key, value, start_ns, trace_id \
                 FROM span_attrs_new WHERE trace_id IN (?1, ?2)",
                [&t2.0[..], &t4.0[..]],
            )
            .unwrap();
        tx.execute(
            "INSERT INTO attr_runs (run, rows, min_start_ns, max_start_ns) VALUES (1, ?1, ?2, ?3)",
            rusqlite::params![i64::try_from(moved).unwrap(), start2, start4],
        )
        .unwrap();
        tx.execute(
            "DELETE FROM span_attrs_new WHERE trace_id IN (?1, ?2, ?3)",
            [&t1.0[..], &t2.0[..], &t4.0[..]],
        )
        .unwrap();
        tx.execute_batch("PRAGMA user_version = 13;").unwrap();
        tx.commit().unwrap();
        let text_keys = |conn: &Connection, table: &str| {
            count(
                conn,
                &format!("SELECT count(*) FROM {table} WHERE typeof(key) = 'text'"),
            )
        };
        assert!(text_keys(&conn, "span_attrs") > 0 && text_keys(&conn, "span_attrs_new") > 0);
        let before = rows(&conn);
        drop(conn);

        let options = SqliteOptions {
            attr_run_rows: 1,
            ..super::super::tests::with_runs()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(rows(&conn), before, "the same rows, in the same places");
        assert_eq!(
            text_keys(&conn, "span_attrs_new"),
            0,
            "staged rows rewritten with ids"
        );
        assert_eq!(
            count(&conn, "SELECT count(*) FROM span_attrs_new"),
            count(
                &conn,
                "SELECT count(*) FROM span_attrs_new s JOIN attr_keys k ON k.id = s.key"
            )
        );
        let text_run = runs(&conn).unwrap();
        assert_eq!(text_run.len(), 1);
        assert!(!text_run[0].key_ids);
        assert_eq!(
            text_keys(&conn, "span_attrs_run1"),
            i64::try_from(moved).unwrap()
        );
        assert_eq!(places_of_user(&conn, 1), ["legacy"]);
        assert_eq!(places_of_user(&conn, 2), ["run1"]);
        assert_eq!(places_of_user(&conn, 3), ["staged"]);
        assert_eq!(places_of_user(&conn, 4), ["run1"]);

        let found = |q: TraceQuery| {
            let store = &store;
            async move { store.find_traces(q).await.unwrap().len() }
        };
        let failed_charges = TraceQuery {
            operation: Some("charge card".into()),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            limit: 1000,
            ..TraceQuery::default()
        };
        let searches = |n: u8| {
            let user = ("app.user.id".to_owned(), format!("u{n}"));
            // The root span's status (conditions on one span, as the user's).
            let status = ("http.response.status_code".to_owned(), "201".to_owned());
            [
                by_user(n),
                // The attribute as a condition on the operation's walk.
                TraceQuery {
                    operation: Some("POST /orders".into()),
                    attributes: vec![user.clone()],
                    ..TraceQuery::default()
                },
                // The second attribute as a condition on the first's walk, both ways.
                TraceQuery {
                    attributes: vec![status.clone(), user.clone()],
                    limit: 1000,
                    ..TraceQuery::default()
                },
                TraceQuery {
                    attributes: vec![user, status],
                    ..TraceQuery::default()
                },
            ]
        };
        for n in 1..=4 {
            for q in searches(n) {
                assert_eq!(found(q.clone()).await, 1, "u{n}: {q:?}");
            }
        }
        assert_eq!(found(failed_charges.clone()).await, 4);
        let unknown = TraceQuery {
            attributes: vec![("no.such.key".into(), "u1".into())],
            ..TraceQuery::default()
        };
        assert_eq!(found(unknown).await, 0);

        // A late span of traces 1 (legacy rows) and 3 (staged) with indexed attributes: the
        // writer's probe finds their rows, none is added.
        for n in [1, 3] {
            let mut late = conformance::demo_trace(n, true, 5.0)[0].clone();
            late.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 99]);
            late.start_time_unix_nano += 1_000_000;
            store.write_spans(vec![late]).await.unwrap();
        }
        // Trace 2 (text run) gets a span before its root: its rows move to the new start, as ids.
        let mut early = conformance::demo_trace(2, true, 5.0)[9].clone();
        early.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 98]);
        early.start_time_unix_nano -= 500_000_000;
        let new_start2 = i64::try_from(early.start_time_unix_nano).unwrap();
        assert!(new_start2 < start2);
        store.write_spans(vec![early]).await.unwrap();
        let after = rows(&conn);
        assert_eq!(after.len(), before.len(), "no row added twice");
        assert_eq!(
            places_of_user(&conn, 2),
            ["staged"],
            "trace 2's rows left the text run"
        );
        assert_eq!(places_of_user(&conn, 4), ["run1"]);
        assert!(
            after
                .iter()
                .filter(|r| r.3 == t2.0)
                .all(|r| r.2 == new_start2),
            "at the new start"
        );
        assert!(after.iter().filter(|r| r.3 == t1.0).all(|r| r.2 == start1));
        for n in 1..=4 {
            for q in searches(n) {
                assert_eq!(found(q.clone()).await, 1, "u{n} after: {q:?}");
            }
        }

        // The next move of the staged rows opens a run of ids (run 1 holds text keys).
        let mut n = 10u8;
        while runs(&conn).unwrap().len() < 2 {
            assert!(i64::from(n) < 10 + MAX_SEGMENTS + 1, "never moved");
            store
                .write_spans(conformance::demo_trace(n, true, 5.0))
                .await
                .unwrap();
            n += 1;
        }
        let both = runs(&conn).unwrap();
        assert!(!both[0].key_ids && both[1].key_ids, "{both:?}");
        assert_eq!(places_of_user(&conn, 3), [format!("run{}", both[1].id)]);
        assert_eq!(places_of_user(&conn, 1), ["legacy"]);
        assert_eq!(places_of_user(&conn, 4), ["run1"]);
        let written = usize::from(n - 10);
        assert_eq!(found(failed_charges).await, 4 + written);
        for user in [1, 2, 3, 4, n - 1] {
            for q in searches(user) {
                assert_eq!(found(q.clone()).await, 1, "u{user} after the move: {q:?}");
            }
        }
        let duplicate_keys = count(
            &conn,
            "SELECT count(*) - count(DISTINCT key) FROM attr_keys",
        );
        assert_eq!(duplicate_keys, 0);

        let deleted = super::super::tests::delete_every_trace(&store).await;
        let mut total = deleted;
        while total < 4 + u64::try_from(written).unwrap() {
            let more = super::super::tests::delete_every_trace(&store).await;
            assert!(more > 0, "retention stopped at {total}");
            total += more;
        }
        assert!(rows(&conn).is_empty(), "every place emptied");
        let left = runs(&conn).unwrap();
        assert_eq!(left.len(), 1, "the emptied text run was dropped: {left:?}");
        assert!(left[0].key_ids);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'span_attrs_run1'"
            ),
            0
        );
        store.shutdown().await;
    }
}
