//! # Index buckets (schema version 15)
//!
//! `trace_operations` and `entry_spans_by_op` are keyed by a bucket before the (service,
//! operation) pair: `(bucket, op, start_ns, trace_id)` and `(bucket, op, start_ns)` (since
//! schema 18 `entry_spans` itself, `(bucket, op, start_ns, trace_id, span_id, kind)`, with no
//! other index: a window of starts is a range of buckets, `migrate_v18.rs`). Keyed by
//! the pair first (schema 12-14), a commit's rows landed at each of the load's pairs and
//! dirtied (and often split) a leaf at each: 45% of a commit's WAL frames on the ingest
//! benchmark's 80 pairs (BENCHMARKS.md §3.1, fifth session). With the bucket first, the rows
//! of one commit are adjacent, at the right edge of each B-tree.
//!
//! A bucket is a range of start times, `[lo_ns, next bucket's lo_ns)`, listed in
//! `index_buckets`; a row's bucket is the one whose range holds its start ([`bucket_of`]), so
//! a row is found again by its key (late roots and retention recompute and delete it, as
//! `index.rs` describes), and walking the buckets newest first and each bucket's rows newest
//! first walks the rows in start order. Bucket 0 starts at `i64::MIN`. The writer opens a new
//! bucket at the start of a group once the newest holds [`BUCKET_ROWS`] rows (of both
//! tables): its `lo_ns` is the group's earliest span start, or just past the newest start
//! already placed in the bucket before it (`max_ns`), whichever is later, so no placed row
//! changes bucket. Buckets are bounded by rows, not time: a search seeks once per bucket
//! (about 1,800 buckets per 10M spans of the benchmark's load), whatever the ingest rate.
//!
//! A start claimed far in the future raises the newest bucket's `max_ns` and holds back new
//! buckets until that time: the rows then go on filling one bucket, laid out as in schema 14
//! (still correct, only not adjacent). Retention removes the oldest buckets once they hold
//! no rows ([`prune`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::map_sql;
use crate::store::StoreError;

/// Rows (of `trace_operations` and `entry_spans` together) at which the newest bucket is
/// closed by default (`SqliteOptions::index_bucket_rows`). At ~80k spans/s a group holds ~4k spans, ~6k rows: a bucket every one or two
/// groups, so a commit's rows share leaves; 8,192 rows also keep a search's seeks to ~1,800
/// per 10M spans (BENCHMARKS.md §3.1, "2026-12-06").
pub(super) const BUCKET_ROWS: u64 = 8192;

/// The bucket of a start time as an SQL expression (a string literal, for `concat!`), the
/// start given as SQL text (a parameter such as `"?3"` or a column such as `"t.start_ns"`).
macro_rules! bucket_of {
    ($start:literal) => {
        concat!(
            "(SELECT bucket FROM index_buckets WHERE lo_ns <= ",
            $start,
            " ORDER BY lo_ns DESC LIMIT 1)"
        )
    };
}
pub(super) use bucket_of;

/// The start of bucket 0 (`i64::MIN`, written so SQLite reads an integer, not a real).
macro_rules! min_ns {
    () => {
        "(-9223372036854775807 - 1)"
    };
}

/// Version 14 → 15, when `trace_operations` has no `bucket` column yet (also run on a new
/// file): the bucket list with bucket 0 (every row stored so far), `trace_operations`
/// rewritten with the bucket first in key order (appends only), and `entry_spans_by_op`
/// rebuilt on `(bucket, op, start_ns)`. The `entry_spans` part is [`SCHEMA_V15_ENTRY_COLUMN`]
/// or [`SCHEMA_V15_ENTRY_RESET`].
const SCHEMA_V15_OPERATIONS: &str = concat!(
    "DROP TABLE IF EXISTS index_buckets;
CREATE TABLE index_buckets (
    bucket INTEGER PRIMARY KEY,
    lo_ns INTEGER NOT NULL UNIQUE,
    max_ns INTEGER NOT NULL,
    rows INTEGER NOT NULL
);
INSERT INTO index_buckets (bucket, lo_ns, max_ns, rows) VALUES (0, ",
    min_ns!(),
    ", coalesce((SELECT max(m) FROM (SELECT max(start_ns) AS m FROM trace_operations
                 UNION ALL SELECT max(start_ns) FROM entry_spans)), ",
    min_ns!(),
    "), (SELECT count(*) FROM trace_operations) + (SELECT count(*) FROM entry_spans));
CREATE TABLE trace_operations_v15 (
    bucket INTEGER NOT NULL,
    op INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (bucket, op, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_operations_v15 (bucket, op, start_ns, trace_id)
    SELECT 0, op, start_ns, trace_id FROM trace_operations ORDER BY 2, 3, 4;
DROP TABLE trace_operations;
ALTER TABLE trace_operations_v15 RENAME TO trace_operations;
DROP INDEX IF EXISTS entry_spans_by_op;
"
);

/// `entry_spans` without a `bucket` column: every row in bucket 0 (the column's default, no
/// row rewritten), the index rebuilt.
const SCHEMA_V15_ENTRY_COLUMN: &str = "
ALTER TABLE entry_spans ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0;
CREATE INDEX entry_spans_by_op ON entry_spans (bucket, op, start_ns);
";

/// `entry_spans` with the column already (a file whose recorded version was set back):
/// every row back in bucket 0, the index rebuilt.
const SCHEMA_V15_ENTRY_RESET: &str = "
UPDATE entry_spans SET bucket = 0;
CREATE INDEX entry_spans_by_op ON entry_spans (bucket, op, start_ns);
";

/// The version 14 → 15 step for the file `conn` is open on: nothing when `trace_operations`
/// already has its `bucket` column (a file whose recorded version was set back, as the
/// migration tests do), else [`SCHEMA_V15_OPERATIONS`] and the `entry_spans` part. On a new
/// file, where the tables do not exist yet when this is read, every part runs.
///
/// # Errors
/// [`StoreError::Backend`] when the tables' columns cannot be read.
pub(super) fn schema_v15(conn: &Connection) -> Result<String, StoreError> {
    let has_bucket = |table: &str| -> Result<bool, StoreError> {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'bucket'",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(map_sql)
    };
    if has_bucket("trace_operations")? {
        return Ok(String::new());
    }
    let entry = if has_bucket("entry_spans")? {
        SCHEMA_V15_ENTRY_RESET
    } else {
        SCHEMA_V15_ENTRY_COLUMN
    };
    Ok(format!("{SCHEMA_V15_OPERATIONS}{entry}"))
}

/// The writer's view of the newest bucket during one group (one transaction): which bucket a
/// row goes to, and how full the newest one is. Read from `index_buckets` when the group
/// starts ([`Buckets::open`]) and written back before its commit ([`Buckets::save`]); a
/// group rolled back leaves nothing behind. A request rolled back to its savepoint leaves
/// its rows counted: the counts only decide when to open the next bucket, and a `max_ns`
/// too high only starts it later.
#[derive(Debug)]
pub(super) struct Buckets {
    /// The newest bucket.
    newest: i64,
    /// Its first start, ns.
    lo_ns: i64,
    /// The latest start placed in it, ns (at least `lo_ns`).
    max_ns: i64,
    /// Rows placed in it.
    rows: i64,
}

impl Buckets {
    /// Reads the newest bucket and, when it holds `bucket_rows` rows ([`BUCKET_ROWS`] by
    /// default) and the group has a span starting at `group_start_ns` (the earliest), opens
    /// the next one inside the caller's transaction.
    ///
    /// # Errors
    /// [`StoreError`] from SQLite, or [`StoreError::Backend`] when `index_buckets` is empty
    /// (a damaged file: the migration writes bucket 0).
    pub(super) fn open(
        conn: &Connection,
        group_start_ns: Option<i64>,
        bucket_rows: u64,
    ) -> Result<Self, StoreError> {
        let newest = conn
            .prepare_cached(
                "SELECT bucket, lo_ns, max_ns, rows FROM index_buckets ORDER BY bucket DESC LIMIT 1",
            )
            .map_err(map_sql)?
            .query_row([], |r| {
                Ok(Self {
                    newest: r.get(0)?,
                    lo_ns: r.get(1)?,
                    max_ns: r.get(2)?,
                    rows: r.get(3)?,
                })
            })
            .optional()
            .map_err(map_sql)?;
        let Some(mut buckets) = newest else {
            return Err(super::backend("index_buckets has no bucket (damaged file)"));
        };
        if buckets.rows >= i64::try_from(bucket_rows).unwrap_or(i64::MAX)
            && let Some(start) = group_start_ns
            && buckets.max_ns < i64::MAX
        {
            let lo_ns = start.max(buckets.max_ns + 1);
            buckets = Self {
                newest: buckets.newest + 1,
                lo_ns,
                max_ns: lo_ns,
                rows: 0,
            };
            conn.prepare_cached(
                "INSERT INTO index_buckets (bucket, lo_ns, max_ns, rows) VALUES (?1, ?2, ?2, 0)",
            )
            .map_err(map_sql)?
            .execute(params![buckets.newest, lo_ns])
            .map_err(map_sql)?;
        }
        Ok(buckets)
    }

    /// The bucket of a row starting at `start_ns`, counted as placed.
    ///
    /// # Errors
    /// [`StoreError`] from SQLite (a start before the newest bucket is looked up).
    pub(super) fn place(&mut self, conn: &Connection, start_ns: i64) -> Result<i64, StoreError> {
        if start_ns >= self.lo_ns {
            self.rows += 1;
            self.max_ns = self.max_ns.max(start_ns);
            return Ok(self.newest);
        }
        conn.prepare_cached(concat!("SELECT ", bucket_of!("?1")))
            .map_err(map_sql)?
            .query_row([start_ns], |r| r.get::<_, Option<i64>>(0))
            .map_err(map_sql)
            .map(|b| b.unwrap_or(0))
    }

    /// Writes the newest bucket's count and latest start back (before the commit).
    ///
    /// # Errors
    /// [`StoreError`] from SQLite.
    pub(super) fn save(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.prepare_cached("UPDATE index_buckets SET max_ns = ?1, rows = ?2 WHERE bucket = ?3")
            .map_err(map_sql)?
            .execute(params![self.max_ns, self.rows, self.newest])
            .map_err(map_sql)?;
        Ok(())
    }
}

/// Removes the oldest buckets that hold no row of either table (retention deleted them),
/// never the newest, and makes the oldest left start at `i64::MIN` again (the starts of the
/// removed ranges now map to it, and none of them has a row). Returns the buckets removed.
///
/// # Errors
/// [`StoreError`] from SQLite.
pub(super) fn prune(conn: &Connection) -> Result<usize, StoreError> {
    let mut oldest = conn
        .prepare_cached(
            "SELECT bucket FROM index_buckets \
             WHERE bucket < (SELECT max(bucket) FROM index_buckets) ORDER BY bucket LIMIT 64",
        )
        .map_err(map_sql)?;
    let candidates: Vec<i64> = oldest
        .query_map([], |r| r.get(0))
        .map_err(map_sql)?
        .collect::<rusqlite::Result<_>>()
        .map_err(map_sql)?;
    let mut used = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM trace_operations WHERE bucket = ?1) \
             OR EXISTS (SELECT 1 FROM entry_spans WHERE bucket = ?1)",
        )
        .map_err(map_sql)?;
    let mut removed = 0;
    for bucket in candidates {
        if used.query_row([bucket], |r| r.get(0)).map_err(map_sql)? {
            break;
        }
        conn.prepare_cached("DELETE FROM index_buckets WHERE bucket = ?1")
            .map_err(map_sql)?
            .execute([bucket])
            .map_err(map_sql)?;
        removed += 1;
    }
    if removed > 0 {
        conn.execute(
            concat!(
                "UPDATE index_buckets SET lo_ns = ",
                min_ns!(),
                " WHERE bucket = (SELECT min(bucket) FROM index_buckets)"
            ),
            [],
        )
        .map_err(map_sql)?;
    }
    Ok(removed)
}

/// Test support: SQL that puts a current file's `trace_operations` and `entry_spans` back into
/// the version-14 layout (no bucket) with the same rows and drops `index_buckets`; run after
/// `migrate_v18::ENTRY_SPANS_BACK_TO_V16`.
#[cfg(test)]
pub(super) const BACK_TO_V14: &str = "
CREATE TABLE trace_operations_v14 (
    op INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (op, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_operations_v14 SELECT op, start_ns, trace_id FROM trace_operations;
DROP TABLE trace_operations;
ALTER TABLE trace_operations_v14 RENAME TO trace_operations;
DROP INDEX entry_spans_by_op;
ALTER TABLE entry_spans DROP COLUMN bucket;
CREATE INDEX entry_spans_by_op ON entry_spans (op, start_ns);
DROP TABLE index_buckets;
";

#[cfg(test)]
mod tests {
    use super::BACK_TO_V14;
    use crate::model::{SpanKind, TraceId};
    use crate::store::sqlite::migrate_v18::ENTRY_SPANS_BACK_TO_V16;
    use crate::store::sqlite::schema::SCHEMA_VERSION;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{RetentionPolicy, SpanStore, TimeWindow, TraceQuery, conformance};
    use crate::testing::{MS, T0, span};
    use rusqlite::Connection;

    /// A store that opens a new bucket at every group (every awaited write).
    fn small_buckets(path: &std::path::Path) -> SqliteStore {
        let options = SqliteOptions {
            index_bucket_rows: 1,
            ..SqliteOptions::default()
        };
        SqliteStore::open(path, options).unwrap()
    }

    /// The conformance suite with a bucket per group.
    mod one_bucket_per_group {
        use crate::store::conformance;

        async fn fresh() -> (crate::store::sqlite::SqliteStore, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let store = super::small_buckets(&dir.path().join("spanline.db"));
            (store, dir)
        }

        conformance::conformance_tests!(fresh());
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Rows whose bucket is not their start's, or (`trace_operations`) whose start is not
    /// their trace's: a row that retention or a late root could not find by its key.
    fn misplaced(conn: &Connection) -> i64 {
        count(
            conn,
            concat!(
                "SELECT (SELECT count(*) FROM trace_operations x JOIN traces t \
                 ON t.trace_id = x.trace_id WHERE x.start_ns != t.start_ns OR x.bucket != ",
                bucket_of!("x.start_ns"),
                ") + (SELECT count(*) FROM entry_spans e WHERE e.bucket != ",
                bucket_of!("e.start_ns"),
                ")"
            ),
        )
    }

    /// A stored trace as the test sees it: start (ms after T0), id, (service, operation) pairs.
    type Stored<'a> = (u64, TraceId, Vec<(&'a str, &'a str)>);

    /// Trace ids found, in the order found.
    async fn found(store: &SqliteStore, q: TraceQuery) -> Vec<TraceId> {
        let found = store.find_traces(q).await.unwrap();
        found.iter().map(|s| s.trace_id).collect()
    }

    /// Searches by service and operation and by operation alone walk the buckets newest first
    /// and give what one walk of the whole index gives: traces written out of start order
    /// (placed in older buckets), a trace whose root arrives later with an earlier start
    /// (its rows deleted by key and placed in an older bucket), limits, time windows; the
    /// stats of a service read its entry rows bucket by bucket; retention deletes every row
    /// by key and then the empty buckets.
    #[tokio::test]
    async fn searches_walk_the_buckets_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let store = small_buckets(&path);
        // (start ms, trace id, [(service, operation)]) of every trace, as stored.
        let mut model: Vec<Stored<'_>> = Vec::new();
        let id = |n: u64| {
            let mut id = [0u8; 16];
            id[0] = 0x15;
            id[8..].copy_from_slice(&n.to_be_bytes());
            TraceId(id)
        };
        for n in 0..40u64 {
            // Every fifth trace starts before the three written before it.
            let start = if n % 5 == 4 { n * 10 - 35 } else { n * 10 };
            let service = ["a", "b"][(n % 2) as usize];
            let op = ["x", "y"][((n / 2) % 2) as usize];
            let mut spans = vec![span(
                id(n),
                1,
                None,
                service,
                op,
                SpanKind::Server,
                start as f64,
                1.0,
            )];
            let mut pairs = vec![(service, op)];
            if n % 3 == 0 {
                // A second service with the same operation: found once by the operation alone.
                spans.push(span(
                    id(n),
                    2,
                    Some(1),
                    "c",
                    op,
                    SpanKind::Server,
                    start as f64 + 0.5,
                    1.0,
                ));
                pairs.push(("c", op));
            }
            store.write_spans(spans).await.unwrap();
            model.push((start, id(n), pairs));
        }
        // A late root: a child first at 200 ms, its root at 12 ms in a later group.
        let late = id(99);
        store
            .write_spans(vec![span(
                late,
                2,
                Some(1),
                "b",
                "x",
                SpanKind::Server,
                200.0,
                1.0,
            )])
            .await
            .unwrap();
        store
            .write_spans(vec![span(
                late,
                1,
                None,
                "a",
                "x",
                SpanKind::Server,
                12.0,
                300.0,
            )])
            .await
            .unwrap();
        model.push((12, late, vec![("b", "x"), ("a", "x")]));
        let conn = Connection::open(&path).unwrap();
        assert!(
            count(&conn, "SELECT count(DISTINCT bucket) FROM trace_operations") > 20,
            "rows spread over many buckets"
        );
        assert_eq!(misplaced(&conn), 0);
        let expect = |service: Option<&str>, op: &str, window: (u64, u64), limit: usize| {
            let mut hits: Vec<(u64, TraceId)> = model
                .iter()
                .filter(|(start, _, pairs)| {
                    (window.0..=window.1).contains(start)
                        && pairs
                            .iter()
                            .any(|&(s, o)| o == op && service.is_none_or(|want| want == s))
                })
                .map(|(start, id, _)| (*start, *id))
                .collect();
            hits.sort_unstable_by(|a, b| b.cmp(a));
            hits.into_iter()
                .take(limit)
                .map(|(_, id)| id)
                .collect::<Vec<_>>()
        };
        let mut compared = 0;
        for service in [None, Some("a"), Some("b"), Some("c")] {
            for op in ["x", "y"] {
                for window in [(0, u64::MAX >> 24), (100, 300), (0, 12)] {
                    for limit in [1, 3, 100] {
                        let q = TraceQuery {
                            service: service.map(str::to_owned),
                            operation: Some(op.to_owned()),
                            start_time_min_unix_nano: Some(T0 + window.0 * MS),
                            start_time_max_unix_nano: Some(T0 + window.1.min(1 << 30) * MS),
                            limit,
                            ..TraceQuery::default()
                        };
                        let want = expect(service, op, window, limit);
                        assert_eq!(found(&store, q.clone()).await, want, "{q:?}");
                        compared += usize::from(!want.is_empty());
                    }
                }
            }
        }
        assert!(compared > 40, "{compared}");
        // The stats of a service: its entry spans in the window, from every bucket.
        let all_time = TimeWindow {
            start_unix_nano: T0,
            end_unix_nano: T0 + 1000 * MS,
        };
        let samples = store
            .operation_samples(all_time, Some("c".into()))
            .await
            .unwrap();
        let spans_of_c: usize = samples.iter().map(|s| s.durations_ns.len()).sum();
        assert_eq!(spans_of_c, (0..40).filter(|n| n % 3 == 0).count());
        let window = TimeWindow {
            start_unix_nano: T0 + 100 * MS,
            end_unix_nano: T0 + 200 * MS,
        };
        let in_window = store
            .operation_samples(window, Some("a".into()))
            .await
            .unwrap();
        let spans_of_a: usize = in_window.iter().map(|s| s.durations_ns.len()).sum();
        let expected = model
            .iter()
            .filter(|(start, id, _)| *id != late && (100..200).contains(start))
            .filter(|(_, _, pairs)| pairs[0].0 == "a")
            .count();
        assert_eq!(spans_of_a, expected);
        // Retention: every row found by its key, then the empty buckets removed.
        let deleted = store
            .enforce_retention(RetentionPolicy {
                delete_before_unix_nano: Some(u64::MAX),
                max_bytes: None,
                batch_traces: 1000,
            })
            .await
            .unwrap()
            .traces_deleted;
        assert_eq!(deleted, 41);
        for table in ["trace_operations", "entry_spans"] {
            assert_eq!(
                count(&conn, &format!("SELECT count(*) FROM {table}")),
                0,
                "{table}"
            );
        }
        assert_eq!(count(&conn, "SELECT count(*) FROM index_buckets"), 1);
        assert_eq!(
            count(
                &conn,
                "SELECT lo_ns = (-9223372036854775807 - 1) FROM index_buckets"
            ),
            1
        );
        // Writes go on after the prune.
        store
            .write_spans(vec![span(
                id(7),
                1,
                None,
                "a",
                "x",
                SpanKind::Server,
                5.0,
                1.0,
            )])
            .await
            .unwrap();
        let by_op = TraceQuery {
            operation: Some("x".into()),
            ..TraceQuery::default()
        };
        assert_eq!(found(&store, by_op).await, vec![id(7)]);
        assert_eq!(misplaced(&conn), 0);
        store.shutdown().await;
    }

    /// Version 14 → 15: a file written at version 14 (keys without a bucket) is migrated at
    /// open; its rows are in bucket 0, searches and stats read them as before, new groups open
    /// new buckets, and retention deletes the migrated rows by key.
    #[tokio::test]
    async fn version_14_file_is_migrated_in_place() {
        let (_dir, path) = super::super::tests::two_demo_traces().await;
        let before = {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "BEGIN; {ENTRY_SPANS_BACK_TO_V16} {BACK_TO_V14} PRAGMA user_version = 14; COMMIT;"
            ))
            .unwrap();
            count(&conn, "SELECT count(*) FROM trace_operations")
        };
        assert!(before > 0);
        let store = small_buckets(&path);
        let conn = Connection::open(&path).unwrap();
        assert_eq!(count(&conn, "PRAGMA user_version"), SCHEMA_VERSION);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM trace_operations WHERE bucket = 0"
            ),
            before
        );
        assert_eq!(misplaced(&conn), 0);
        let by_op = TraceQuery {
            operation: Some("charge card".into()),
            ..TraceQuery::default()
        };
        assert_eq!(found(&store, by_op.clone()).await.len(), 2);
        let all_time = TimeWindow {
            start_unix_nano: 0,
            end_unix_nano: u64::MAX >> 1,
        };
        let payment = store
            .operation_samples(all_time, Some("payment".into()))
            .await
            .unwrap();
        assert!(!payment.is_empty());
        // A later trace goes to a new bucket; the search reads both.
        let mut later = conformance::demo_trace(6, false, 1.0);
        for s in &mut later {
            s.start_time_unix_nano += 3_600_000 * MS;
            s.end_time_unix_nano += 3_600_000 * MS;
        }
        store.write_spans(later).await.unwrap();
        assert!(count(&conn, "SELECT count(*) FROM index_buckets") > 1);
        assert!(
            count(
                &conn,
                "SELECT count(*) FROM trace_operations WHERE bucket > 0"
            ) > 0
        );
        assert_eq!(misplaced(&conn), 0);
        assert_eq!(found(&store, by_op).await.len(), 3);
        assert_eq!(super::super::tests::delete_every_trace(&store).await, 3);
        store.shutdown().await;
        assert_eq!(count(&conn, "SELECT count(*) FROM trace_operations"), 0);
    }
}
