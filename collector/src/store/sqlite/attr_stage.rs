//! # Staged attribute-index rows (schema version 8)
//!
//! The attribute search index is a small log-structured merge (places described in
//! `attr_runs.rs`):
//!
//! - `span_attrs_new(seg, key, value, start_ns, trace_id)`, keyed by a segment number first
//!   (`key` the key's id in `attr_keys` since version 14, `attr_keys.rs`):
//!   each index flush of the writer (one per group commit, usually) gets a new segment
//!   number, so its rows, sorted, are appended at the end of that B-tree. A commit dirties
//!   about one page per 60 new rows, instead of one page per distinct (key, value) among its
//!   rows (about 1,000 pages per group in the ingest benchmark, whose `url.path` and
//!   `app.item.id` differ on every span). `attr_segments(seg, rows, min_start_ns,
//!   max_start_ns)` lists the segments, the rows written into each and the range of their
//!   trace starts (version 11).
//! - the posting rows `attr_postings` (version 17, `attr_postings.rs`), and in older files the
//!   runs `span_attrs_run<N>` (versions 11 to 16, `attr_runs.rs`) and the single merged level
//!   `span_attrs` of versions 3 to 10.
//!
//! When the segments hold [`MERGE_ROWS`] rows or there are [`MAX_SEGMENTS`] of them, the
//! writer moves them into new posting rows, one per distinct (key, value) (before version 17:
//! into the open run, in key order) and empties the staging tables, in the same transaction as
//! the group that reached the limit.
//! Acknowledge-after-commit and crash safety are unchanged: staged rows are committed with
//! their spans.
//!
//! Invariants the search and the deletes rely on:
//! - every row carries its trace's current start (`traces.start_ns`); a moved start deletes
//!   the trace's rows from every place and writes them again at the new start;
//! - a row (key, value, start, trace) is in at most one of the SQL places (staged, runs,
//!   `span_attrs`): the writer probes them before staging a row of a trace that was stored
//!   before this flush ([`retain_new`]). Posting rows are not probed (a late span may stage a
//!   pair whose entry moved already): searches keep each trace once (`attr_search.rs`).
//!
//! A search driven by an attribute walks `span_attrs`, each run and each staged segment in
//! start order (one `UNION ALL` arm each, all ordered by their primary keys, which SQLite
//! merges) and merges that with the pair's posting rows, stopping at the limit
//! (`attr_search.rs`). Sorting the staged rows of a common value
//! instead (one arm over all segments) cost 50-160 ms with 100k rows staged.

use rusqlite::{Connection, params};

use super::attr_keys::ID_OF_KEY_1;
use super::attr_runs;
use super::map_sql;
use crate::model::TraceId;
use crate::store::StoreError;

/// Version 7 → 8 (also run on a new file): the staging tables. The rows of a version-7 file
/// stay in `span_attrs` (the merged level). `IF NOT EXISTS`: the step can be re-run.
pub(super) const SCHEMA_V8: &str = "
CREATE TABLE IF NOT EXISTS attr_segments (
    seg INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS span_attrs_new (
    seg INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (seg, key, value, start_ns, trace_id)
) WITHOUT ROWID;
";

/// Staged rows (counted as written, deletes not subtracted) at which the writer moves the
/// segments into the open run: about 35,000 spans of the ingest benchmark's shape.
pub(super) const MERGE_ROWS: i64 = 100_000;

/// Segments at which the writer moves them whatever their size: a search and a probe seek
/// once per segment.
pub(super) const MAX_SEGMENTS: i64 = 32;

/// The `WHERE` restriction that makes a lookup in `span_attrs_new` a seek per segment
/// (the table is keyed by segment first).
pub(super) const IN_SEGMENTS: &str = "seg IN (SELECT seg FROM attr_segments)";

/// One attribute-index row: (key, the key's id in `attr_keys`, value text, trace start, trace
/// id).
pub(super) type AttrRow<'a> = (&'a str, i64, &'a str, i64, TraceId);

/// Removes from `rows` those already in the index (merged or staged). Only rows of traces
/// stored before this flush can be there; `stored_before` says which.
pub(super) fn retain_new(
    conn: &Connection,
    rows: &mut Vec<AttrRow<'_>>,
    stored_before: impl Fn(&TraceId) -> bool,
) -> Result<(), StoreError> {
    if !rows.iter().any(|row| stored_before(&row.4)) {
        return Ok(());
    }
    let runs = attr_runs::runs(conn)?;
    // Parameters: ?1 key text, ?2 value, ?3 start, ?4 trace id, ?5 key id.
    let mut probe = conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM span_attrs WHERE key = ?1 AND value = ?2 \
             AND start_ns = ?3 AND trace_id = ?4) \
             OR EXISTS (SELECT 1 FROM span_attrs_new WHERE {IN_SEGMENTS} AND key = ?5 \
             AND value = ?2 AND start_ns = ?3 AND trace_id = ?4) OR {}",
            attr_runs::exists_in_runs(&runs, ("?1", "?5"), "?2", "?3", "?4")
        ))
        .map_err(map_sql)?;
    let mut err = None;
    rows.retain(|&(key, key_id, value, start, trace_id)| {
        if err.is_some() || !stored_before(&trace_id) {
            return true;
        }
        match probe.query_row(params![key, value, start, &trace_id.0[..], key_id], |r| {
            r.get::<_, bool>(0)
        }) {
            Ok(found) => !found,
            Err(e) => {
                err = Some(e);
                true
            }
        }
    });
    err.map_or(Ok(()), |e| Err(map_sql(e)))
}

/// Stages `rows` (sorted by key id, value, start and trace id; distinct) as a new segment, then moves the segments into the open
/// run (a new one once it holds `run_rows` rows) if they reached [`MERGE_ROWS`] rows or
/// [`MAX_SEGMENTS`] segments.
pub(super) fn stage(
    conn: &Connection,
    rows: &[AttrRow<'_>],
    settings: &super::index::IndexSettings,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Read from the file, not kept in memory: a rolled-back group leaves nothing behind.
    let (seg, segments, staged): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT coalesce(max(seg), 0) + 1, count(*), coalesce(sum(rows), 0) \
             FROM attr_segments",
        )
        .map_err(map_sql)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(map_sql)?;
    let with_seg: Vec<(i64, i64, &str, i64, TraceId)> = rows
        .iter()
        .map(|&(_, key_id, value, start, id)| (seg, key_id, value, start, id))
        .collect();
    super::index::insert_rows(
        conn,
        "span_attrs_new (seg, key, value, start_ns, trace_id)",
        &with_seg,
    )?;
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let min_start = rows.iter().map(|row| row.3).min().unwrap_or(i64::MIN);
    let max_start = rows.iter().map(|row| row.3).max().unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO attr_segments (seg, rows, min_start_ns, max_start_ns) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(map_sql)?
    .execute(params![seg, count, min_start, max_start])
    .map_err(map_sql)?;
    if staged.saturating_add(count) >= MERGE_ROWS || segments + 1 >= MAX_SEGMENTS {
        merge(conn, settings)?;
    }
    Ok(())
}

/// Moves every staged row into new posting rows ([`attr_postings::absorb_staged`]; or into
/// the open run, [`attr_runs::absorb_staged`], when `settings` say so) and empties the
/// staging tables.
pub(super) fn merge(
    conn: &Connection,
    settings: &super::index::IndexSettings,
) -> Result<(), StoreError> {
    if settings.attr_postings {
        super::attr_postings::absorb_staged(conn)?;
    } else {
        attr_runs::absorb_staged(conn, settings.attr_run_rows)?;
    }
    conn.prepare_cached("DELETE FROM span_attrs_new")
        .map_err(map_sql)?
        .execute([])
        .map_err(map_sql)?;
    conn.prepare_cached("DELETE FROM attr_segments")
        .map_err(map_sql)?
        .execute([])
        .map_err(map_sql)?;
    Ok(())
}

/// Deletes the rows (key, value) of `trace_id` at trace start `start` from every place.
pub(super) fn delete_rows(
    conn: &Connection,
    trace_id: TraceId,
    start: i64,
    attrs: &[(String, String)],
) -> Result<(), StoreError> {
    let merged = "DELETE FROM span_attrs WHERE key = ?1 AND value = ?2 AND start_ns = ?3 \
                  AND trace_id = ?4";
    attr_runs::delete_each(conn, merged, trace_id, start, attrs)?;
    attr_runs::delete_rows(conn, trace_id, start, attrs)?;
    let staged: i64 = conn
        .prepare_cached("SELECT count(*) FROM attr_segments")
        .map_err(map_sql)?
        .query_row([], |r| r.get(0))
        .map_err(map_sql)?;
    if staged == 0 {
        return Ok(());
    }
    let staged = format!(
        "DELETE FROM span_attrs_new WHERE {IN_SEGMENTS} AND key = {ID_OF_KEY_1} \
         AND value = ?2 AND start_ns = ?3 AND trace_id = ?4"
    );
    attr_runs::delete_each(conn, &staged, trace_id, start, attrs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::fresh;
    use super::*;
    use crate::store::{SpanStore, TraceQuery, conformance};

    /// Entries moved (into runs or posting rows), staged rows, and the segments.
    fn counts(conn: &Connection) -> (i64, i64, i64) {
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let in_runs: i64 = attr_runs::runs(conn)
            .unwrap()
            .iter()
            .map(|run| count(&format!("SELECT count(*) FROM {}", run.table())))
            .sum();
        let in_runs = in_runs + count("SELECT coalesce(sum(entries), 0) FROM attr_postings");
        assert_eq!(count("SELECT count(*) FROM span_attrs"), 0, "never written");
        (
            in_runs,
            count("SELECT count(*) FROM span_attrs_new"),
            count("SELECT count(*) FROM attr_segments"),
        )
    }

    /// A write stages its rows in a new segment; a trace written again in parts finds each
    /// attribute row once across the places (no duplicates in results); at the segment
    /// limit the writer moves everything into a run and searches still find it.
    #[tokio::test]
    async fn writes_stage_segments_and_the_limit_merges_them() {
        let (store, dir) = fresh().await;
        let conn = Connection::open(dir.path().join("spanline.db")).unwrap();
        let spans = conformance::demo_trace(3, true, 5.0);
        let (first, rest) = spans.split_at(spans.len() / 2);
        store.write_spans(first.to_vec()).await.unwrap();
        let (merged, staged, segments) = counts(&conn);
        assert_eq!((merged, segments), (0, 1));
        assert!(staged > 0);
        store.write_spans(rest.to_vec()).await.unwrap();
        let by_attr = TraceQuery {
            attributes: vec![("http.response.status_code".into(), "503".into())],
            ..TraceQuery::default()
        };
        assert_eq!(store.find_traces(by_attr.clone()).await.unwrap().len(), 1);
        // Every staged row is distinct across segments.
        let dupes: i64 = conn
            .query_row(
                "SELECT count(*) FROM (SELECT key, value, start_ns, trace_id FROM span_attrs_new \
                 GROUP BY 1, 2, 3, 4 HAVING count(*) > 1)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dupes, 0);
        let mut n = 10u8;
        while counts(&conn).0 == 0 {
            assert!(i64::from(n) < 10 + MAX_SEGMENTS + 1, "never merged");
            store
                .write_spans(conformance::demo_trace(n, false, 1.0))
                .await
                .unwrap();
            n += 1;
        }
        let (merged, staged, segments) = counts(&conn);
        assert!(merged > 0);
        assert_eq!(
            (staged, segments),
            (0, 0),
            "the move empties the staging tables"
        );
        assert_eq!(store.find_traces(by_attr).await.unwrap().len(), 1);
        let by_path = TraceQuery {
            service: Some("frontend".into()),
            ..TraceQuery::default()
        };
        assert_eq!(
            store.find_traces(by_path).await.unwrap().len(),
            usize::from(n - 10) + 1
        );
        store.shutdown().await;
    }
}
