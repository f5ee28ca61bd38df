//! A search driven by an attribute (`search.rs`, `Drive::Attribute`), newest first, over
//! every place of the attribute index: the posting rows (`attr_postings.rs`), read newest
//! first by their newest start and merged entry by entry in a heap, and the places SQLite
//! walks in start order (staged segments, runs and `span_attrs` of older files: one ordered
//! `SELECT` whose rows already meet the search's conditions). Each posting entry is checked
//! against `traces` (the trace still stored, at the entry's start) and the search's other
//! conditions, one primary-key lookup each; the walk stops at `limit` after `offset`.
//!
//! Traces of one start are gathered from every place, kept once each (a pair staged again
//! after its entry moved, `attr_postings.rs`) and given in descending trace-id order, the
//! order of the SQL walk alone.

use std::collections::BinaryHeap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Rows, params_from_iter};

use super::attr_postings::ROWS_OF_PAIR;
use super::backend;
use super::posting_list::{self, Entry};
use super::read::{SUMMARY_COLUMNS, SUMMARY_WIDTH, row_to_summary};
use crate::store::{StoreError, TraceSummary};

/// What the search asks beside the driving attribute.
pub(super) struct AttrWalk<'a> {
    /// The driving attribute.
    pub key: &'a str,
    pub value: &'a str,
    /// The query's start window, inclusive (`i64::MIN`, `i64::MAX` when open).
    pub from_ns: i64,
    pub to_ns: i64,
    /// The conditions on `t` (`traces`) and `x.start_ns` (the entry's start), and their values.
    pub conds: &'a [String],
    pub args: &'a [SqlValue],
    /// The ordered `SELECT` over the other places (summary columns, then the row's start),
    /// newest first, with its values; `None` when there is no such place.
    pub sql_places: Option<(String, Vec<SqlValue>)>,
}

/// One posting row being read: its entries (window applied) and the next one's index.
struct Cursor {
    entries: Vec<Entry>,
    next: usize,
}

/// `limit` summaries from `offset`, newest first (see the module docs).
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors and for a damaged posting list.
pub(super) fn find(
    conn: &Connection,
    walk: &AttrWalk<'_>,
    limit: usize,
    offset: usize,
) -> Result<Vec<TraceSummary>, StoreError> {
    let mut found = Vec::with_capacity(limit);
    if limit == 0 {
        return Ok(found);
    }
    let mut rows_stmt = conn.prepare_cached(ROWS_OF_PAIR).map_err(backend)?;
    let mut posting_rows = rows_stmt
        .query(rusqlite::params![
            walk.key,
            walk.value,
            walk.from_ns,
            walk.to_ns
        ])
        .map_err(backend)?;
    let mut check = conn
        .prepare_cached(&check_sql(walk.conds))
        .map_err(backend)?;
    let mut sql_stmt = match &walk.sql_places {
        Some((sql, _)) => Some(conn.prepare_cached(sql).map_err(backend)?),
        None => None,
    };
    let mut sql_rows = match (&mut sql_stmt, &walk.sql_places) {
        (Some(stmt), Some((_, args))) => {
            Some(stmt.query(params_from_iter(args.iter())).map_err(backend)?)
        }
        _ => None,
    };
    let mut next_sql = next_sql_row(&mut sql_rows)?;
    let mut next_row = next_posting_row(&mut posting_rows)?;
    let mut cursors: Vec<Cursor> = Vec::new();
    // (start, block, cursor): the head entry of each cursor.
    let mut heap: BinaryHeap<(i64, i64, usize)> = BinaryHeap::new();
    let mut skipped = 0usize;
    loop {
        let heap_top = heap.peek().map(|e| e.0);
        let sql_top = next_sql.as_ref().map(|(start, _)| *start);
        let top = heap_top.max(sql_top);
        // A posting row whose newest entry is at least as new as anything pending is opened
        // before anything of that start is given.
        if let Some((max, _)) = &next_row
            && top.is_none_or(|t| *max >= t)
        {
            if let Some((_, list)) = next_row.take() {
                let mut entries = posting_list::decode(&list).map_err(backend)?;
                entries.retain(|&(s, _)| (walk.from_ns..=walk.to_ns).contains(&s));
                if let Some(&(s, b)) = entries.first() {
                    heap.push((s, b, cursors.len()));
                    cursors.push(Cursor { entries, next: 1 });
                }
            }
            next_row = next_posting_row(&mut posting_rows)?;
            continue;
        }
        let Some(start) = top else { break };
        // Every candidate at `start`, from both sides.
        let mut group: Vec<TraceSummary> = Vec::new();
        while let Some(&(s, block, c)) = heap.peek() {
            if s != start {
                break;
            }
            heap.pop();
            if let Some(cursor) = cursors.get_mut(c) {
                if let Some(&(s2, b2)) = cursor.entries.get(cursor.next) {
                    heap.push((s2, b2, c));
                }
                cursor.next += 1;
            }
            let mut args: Vec<SqlValue> = vec![SqlValue::Integer(start), SqlValue::Integer(block)];
            args.extend(walk.args.iter().cloned());
            let mut hits = check
                .query_map(params_from_iter(args), row_to_summary)
                .map_err(backend)?;
            if let Some(summary) = hits.next() {
                group.push(summary.map_err(backend)?);
            }
        }
        while next_sql.as_ref().is_some_and(|(s, _)| *s == start) {
            if let Some((_, summary)) = next_sql.take() {
                group.push(summary);
            }
            next_sql = next_sql_row(&mut sql_rows)?;
        }
        group.sort_unstable_by_key(|s| std::cmp::Reverse(s.trace_id.0));
        group.dedup_by(|a, b| a.trace_id == b.trace_id);
        for summary in group {
            if skipped < offset {
                skipped += 1;
                continue;
            }
            found.push(summary);
            if found.len() == limit {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// The check of one posting entry: the summary of the trace of block `?2` if it is stored at
/// start `?1` and meets `conds` (values after those two).
fn check_sql(conds: &[String]) -> String {
    let mut sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM (SELECT ? AS start_ns) x, span_blocks b \
         JOIN traces t ON t.trace_id = b.trace_id WHERE b.id = ? AND t.start_ns = x.start_ns"
    );
    for cond in conds {
        sql.push_str(" AND ");
        sql.push_str(cond);
    }
    sql
}

/// The next row of the ordered `SELECT` over the other places: its start (the column after
/// the summary's) and summary.
fn next_sql_row(rows: &mut Option<Rows<'_>>) -> Result<Option<(i64, TraceSummary)>, StoreError> {
    let Some(rows) = rows else { return Ok(None) };
    let Some(row) = rows.next().map_err(backend)? else {
        return Ok(None);
    };
    let start: i64 = row.get(SUMMARY_WIDTH).map_err(backend)?;
    Ok(Some((start, row_to_summary(row).map_err(backend)?)))
}

/// The next posting row of the pair: its newest start and encoded list.
fn next_posting_row(rows: &mut Rows<'_>) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    match rows.next().map_err(backend)? {
        Some(row) => Ok(Some((
            row.get(0).map_err(backend)?,
            row.get(1).map_err(backend)?,
        ))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::attr_stage::MAX_SEGMENTS;
    use super::super::{SqliteOptions, SqliteStore};
    use super::{AttrWalk, SUMMARY_COLUMNS, SqlValue};
    use crate::model::{AttrValue, KeyValue, SpanId, TraceId};
    use crate::store::{RetentionPolicy, SpanStore, TraceQuery, conformance};

    /// Trace `n` of the comparison: the demo trace, failed for every 5th, with `app.tier`
    /// (three values) on its seventh span (`order INSERT orders`); every 7th starts at trace `n - 1`'s start (ties).
    fn trace(n: u8) -> Vec<crate::model::Span> {
        let mut spans = conformance::demo_trace(n, n.is_multiple_of(5), 1.0);
        spans[6].attributes.push(KeyValue::new(
            "app.tier",
            AttrValue::String(format!("t{}", n % 3).into()),
        ));
        if n.is_multiple_of(7) {
            for s in &mut spans {
                s.start_time_unix_nano -= 1_000_000_000;
                s.end_time_unix_nano -= 1_000_000_000;
            }
        }
        spans
    }

    fn q(attributes: &[(&str, &str)]) -> TraceQuery {
        TraceQuery {
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            limit: 1000,
            ..TraceQuery::default()
        }
    }

    /// The searches compared: newest first with offsets, time windows, two attributes, an
    /// attribute with an operation or a service, a value no trace has.
    fn queries() -> Vec<TraceQuery> {
        let t0 = crate::testing::T0;
        let s = 1_000_000_000u64;
        let mut all = vec![
            q(&[("app.user.id", "u3")]),
            q(&[("app.user.id", "u77")]),
            q(&[("app.tier", "t1")]),
            q(&[("http.response.status_code", "503")]),
            q(&[("http.response.status_code", "201")]),
            q(&[("app.tier", "t2"), ("http.response.status_code", "503")]),
            q(&[("http.response.status_code", "503"), ("app.tier", "t0")]),
            q(&[("app.tier", "none")]),
        ];
        for limit in [1, 5, 7, 60] {
            let mut paged = q(&[("http.response.status_code", "201")]);
            paged.limit = limit;
            all.push(paged);
        }
        let mut window = q(&[("app.tier", "t1")]);
        window.start_time_min_unix_nano = Some(t0 + 20 * s);
        window.start_time_max_unix_nano = Some(t0 + 70 * s);
        all.push(window);
        let mut op = q(&[("http.response.status_code", "503")]);
        op.operation = Some("charge card".into());
        all.push(op);
        let mut op2 = q(&[("app.tier", "t2")]);
        op2.operation = Some("INSERT orders".into());
        op2.service = Some("order".into());
        all.push(op2);
        let mut service = q(&[("app.tier", "t0")]);
        service.service = Some("order".into());
        service.limit = 9;
        all.push(service);
        let mut errors = q(&[("http.response.status_code", "503")]);
        errors.errors_only = true;
        all.push(errors);
        all
    }

    async fn answers(store: &SqliteStore) -> Vec<Vec<(u64, TraceId)>> {
        let mut out = Vec::new();
        for query in queries() {
            let found = store.find_traces(query).await.unwrap();
            out.push(
                found
                    .iter()
                    .map(|s| (s.start_time_unix_nano, s.trace_id))
                    .collect(),
            );
        }
        out
    }

    fn count(path: &std::path::Path, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The same writes into a store whose moves write posting rows and one whose moves write
    /// runs (schema 16's way): every search answers the same, with rows in posting rows (or
    /// runs) and staged; after a late span, a moved start, retention of the oldest traces and
    /// of all of them (which drops every posting row).
    #[tokio::test]
    async fn searches_answer_as_with_runs_across_every_place() {
        let dir = tempfile::tempdir().unwrap();
        let (posted, ran) = (dir.path().join("p.db"), dir.path().join("r.db"));
        let options = |postings| SqliteOptions {
            attr_postings: postings,
            ..SqliteOptions::default()
        };
        let a = SqliteStore::open(&posted, options(true)).unwrap();
        let b = SqliteStore::open(&ran, options(false)).unwrap();
        let traces = u8::try_from(3 * MAX_SEGMENTS + 5).unwrap();
        for n in 1..=traces {
            for store in [&a, &b] {
                store.write_spans(trace(n)).await.unwrap();
            }
        }
        assert!(count(&posted, "SELECT count(*) FROM attr_postings") > 0);
        assert!(count(&posted, "SELECT count(*) FROM span_attrs_new") > 0);
        assert_eq!(count(&posted, "SELECT count(*) FROM attr_runs"), 0);
        assert!(count(&ran, "SELECT count(*) FROM attr_runs") > 0);
        assert_eq!(count(&ran, "SELECT count(*) FROM attr_postings"), 0);
        let before = answers(&a).await;
        assert_eq!(before, answers(&b).await);
        assert_eq!(before[0].len(), 1);
        assert_eq!(before[2].len(), usize::from(traces / 3) + 1);
        assert!(before[3].len() > 10 && before[5].len() > 2);
        assert!(before.iter().skip(8).all(|found| !found.is_empty()));

        // A late span of trace 3 (its rows moved) with the same attributes and a new one; a
        // span of trace 4 that starts before its root (its start moves).
        let mut late = trace(3)[6].clone();
        late.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 99]);
        late.attributes
            .push(KeyValue::new("app.tier", AttrValue::String("late".into())));
        let mut early = trace(4)[6].clone();
        early.span_id = SpanId([0, 0, 0, 0, 0, 0, 0, 98]);
        early.start_time_unix_nano -= 500_000_000;
        for store in [&a, &b] {
            store.write_spans(vec![late.clone()]).await.unwrap();
            store.write_spans(vec![early.clone()]).await.unwrap();
        }
        let after = answers(&a).await;
        assert_eq!(after, answers(&b).await);
        let by_tier_one = &after[2];
        assert!(
            by_tier_one
                .iter()
                .any(|(start, _)| *start == early.start_time_unix_nano)
        );
        for store in [&a, &b] {
            let found = store.find_traces(q(&[("app.tier", "late")])).await.unwrap();
            assert_eq!(found.len(), 1);
            // Enough more traces that the late rows move too.
            for n in 200..200 + u8::try_from(MAX_SEGMENTS).unwrap() {
                store.write_spans(trace(n)).await.unwrap();
            }
        }
        assert_eq!(answers(&a).await, answers(&b).await);

        let oldest = RetentionPolicy {
            delete_before_unix_nano: Some(u64::MAX),
            max_bytes: None,
            batch_traces: 40,
        };
        for store in [&a, &b] {
            store.enforce_retention(oldest).await.unwrap();
        }
        let kept = answers(&a).await;
        assert_eq!(kept, answers(&b).await);
        assert!(kept[0].is_empty(), "trace 3 was among the oldest");
        assert!(!kept[4].is_empty());
        for store in [&a, &b] {
            while store.enforce_retention(oldest).await.unwrap().more {}
            assert!(answers(store).await.iter().all(Vec::is_empty));
            store.shutdown().await;
        }
        assert_eq!(count(&posted, "SELECT count(*) FROM attr_postings"), 0);
        assert_eq!(count(&posted, "SELECT count(*) FROM attr_moves"), 0);
    }

    /// Offsets: each page of the walk over posting rows and staged rows is the slice of the
    /// whole answer.
    #[tokio::test]
    async fn pages_are_slices_of_the_whole_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for n in 1..=u8::try_from(2 * MAX_SEGMENTS + 9).unwrap() {
            store.write_spans(trace(n)).await.unwrap();
        }
        store.shutdown().await;
        let conn = rusqlite::Connection::open(&path).unwrap();
        super::super::block_probe::register(&conn).unwrap();
        let staged = format!(
            "SELECT {SUMMARY_COLUMNS}, x.start_ns FROM span_attrs_new x JOIN traces t \
             ON t.trace_id = x.trace_id WHERE x.key = (SELECT id FROM attr_keys WHERE key = ?) \
             AND x.value = ? ORDER BY x.start_ns DESC, x.trace_id DESC"
        );
        for (key, value) in [("http.response.status_code", "201"), ("app.tier", "t0")] {
            let walk = AttrWalk {
                key,
                value,
                from_ns: i64::MIN,
                to_ns: i64::MAX,
                conds: &[],
                args: &[],
                sql_places: Some((
                    staged.clone(),
                    vec![SqlValue::Text(key.into()), SqlValue::Text(value.into())],
                )),
            };
            let all = super::find(&conn, &walk, 1000, 0).unwrap();
            assert!(all.len() > 20, "{key}");
            let ids: Vec<_> = all.iter().map(|s| s.trace_id).collect();
            for (limit, offset) in [(1, 0), (5, 3), (7, 20), (1000, 15), (3, all.len())] {
                let page: Vec<_> = super::find(&conn, &walk, limit, offset)
                    .unwrap()
                    .iter()
                    .map(|s| s.trace_id)
                    .collect();
                let end = (offset + limit).min(ids.len());
                assert_eq!(page, ids[offset.min(end)..end], "{key} {limit} {offset}");
            }
        }
    }

    /// Version 16 → 17: a file whose moved rows are in runs (and some staged) is migrated at
    /// open; its rows stay in the runs and are found; the next moves write posting rows, and
    /// searches find traces of every place, with an attribute as the drive or as a condition.
    #[tokio::test]
    async fn version_16_runs_stay_searchable_beside_posting_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let options = SqliteOptions {
            attr_postings: false,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let first = u8::try_from(MAX_SEGMENTS + 3).unwrap();
        for n in 1..=first {
            store.write_spans(trace(n)).await.unwrap();
        }
        store.shutdown().await;
        assert!(count(&path, "SELECT count(*) FROM attr_runs") > 0);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "BEGIN; DROP TABLE attr_postings; DROP TABLE attr_moves;
                 PRAGMA user_version = 16; COMMIT;",
            )
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(
            count(&path, "PRAGMA user_version"),
            super::super::schema::SCHEMA_VERSION
        );
        for n in first + 1..=first + u8::try_from(MAX_SEGMENTS).unwrap() + 2 {
            store.write_spans(trace(n)).await.unwrap();
        }
        assert!(count(&path, "SELECT count(*) FROM attr_postings") > 0);
        assert!(count(&path, "SELECT count(*) FROM span_attrs_new") > 0);
        let last = first + u8::try_from(MAX_SEGMENTS).unwrap() + 2;
        for n in [1, first, first + 1, last] {
            let found = store
                .find_traces(q(&[("app.user.id", &format!("u{n}"))]))
                .await
                .unwrap();
            assert_eq!(found.len(), 1, "u{n}");
            // As a condition beside an operation (on the same span).
            let mut op = q(&[("app.user.id", &format!("u{n}"))]);
            op.operation = Some("POST /orders".into());
            op.service = Some("frontend".into());
            assert_eq!(store.find_traces(op).await.unwrap().len(), 1, "u{n}");
        }
        let tier = store.find_traces(q(&[("app.tier", "t1")])).await.unwrap();
        assert_eq!(tier.len(), (1..=last).filter(|n| n % 3 == 1).count());
        assert!(
            tier.windows(2)
                .all(|w| w[0].start_time_unix_nano >= w[1].start_time_unix_nano)
        );
        store.shutdown().await;
    }
}
