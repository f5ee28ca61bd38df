//! # Attribute-index posting lists (schema version 17)
//!
//! Since version 17 the staged segments of the attribute index (`attr_stage.rs`) move into
//! **posting rows** instead of a run (`attr_runs.rs`): one row of `attr_postings` per distinct
//! (key id, value) of the moved rows, holding all its entries in one BLOB
//! (`posting_list.rs`: `(trace start, span_blocks id)` newest first, delta- and
//! varint-encoded, a few bytes each), keyed `(key, value, max_start_ns, move_id)` with the
//! entries' oldest start beside it. Each move is listed in `attr_moves` with the range of its
//! entries' starts. On the ingest benchmark's load one move of ~100k staged rows writes about
//! a thousand posting rows instead of ~100k run rows.
//!
//! An entry names the trace by the id of its first block (the smallest `span_blocks.id` of
//! the trace, looked up once per trace at the move), not by its 16-byte id: an entry costs
//! 4-6 bytes rather than ~19, and reaching the trace costs one more primary-key lookup
//! (`span_blocks` by id, then `traces`).
//!
//! **Stale entries.** Posting rows are never rewritten. An entry is valid while its trace is
//! stored with the same start; a search checks `traces.start_ns` = the entry's start for every
//! entry it reads ([`attr_search`](super::attr_search)), so the entries of a deleted trace
//! (retention, deletes: the block id is gone) and of a trace whose start moved (a late root:
//! its rows are staged again at the new start) are skipped. A late span of a trace whose
//! entries are here may stage a pair again (the writer's probe before staging,
//! `attr_stage::retain_new`, does not read posting rows): a search reads that trace twice at
//! one start and keeps it once. What bounds the stale entries: retention drops every posting
//! row whose newest entry is older than the oldest stored trace's start ([`prune`]), and every
//! move listed with it; an entry of a deleted trace lives as long as its row does.
//!
//! Runs and `span_attrs` of older files stay where they are, read and deleted from as before.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};

use super::posting_list::{self, Entry};
use super::{backend, map_sql};
use crate::fast_hash::FastHashMap as HashMap;
use crate::model::TraceId;
use crate::store::StoreError;

/// Version 16 → 17 (also run on a new file): the posting rows, their index by newest start
/// (retention drops the oldest rows by it), and the list of moves. Nothing is copied; each
/// statement can be re-run.
pub(super) const SCHEMA_V17: &str = "
CREATE TABLE IF NOT EXISTS attr_postings (
    key INTEGER NOT NULL,
    value TEXT NOT NULL,
    max_start_ns INTEGER NOT NULL,
    move_id INTEGER NOT NULL,
    min_start_ns INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    list BLOB NOT NULL,
    PRIMARY KEY (key, value, max_start_ns, move_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attr_postings_by_max ON attr_postings (max_start_ns);
CREATE TABLE IF NOT EXISTS attr_moves (
    move_id INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    min_start_ns INTEGER NOT NULL,
    max_start_ns INTEGER NOT NULL
);
";

/// The staged entries of one pair as (start, trace), before the traces' blocks are known.
type Staged = Vec<(i64, TraceId)>;

/// Moves every staged row (`span_attrs_new`) into new posting rows, one per distinct (key,
/// value), and lists the move in `attr_moves`. The caller empties the staging tables
/// afterwards, in the same transaction. A staged row of a trace without a block (none is
/// written so: rows are staged for stored spans and deleted with them) is dropped.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn absorb_staged(conn: &Connection) -> Result<(), StoreError> {
    // Per key id, per value: the pair's entries as (start, trace) until the blocks are known.
    let mut pairs: HashMap<i64, HashMap<String, Staged>> = HashMap::default();
    let mut blocks: HashMap<TraceId, Option<i64>> = HashMap::default();
    {
        let mut read = conn
            .prepare_cached("SELECT key, value, start_ns, trace_id FROM span_attrs_new")
            .map_err(map_sql)?;
        let mut rows = read.query([]).map_err(map_sql)?;
        while let Some(row) = rows.next().map_err(map_sql)? {
            let key: i64 = row.get(0).map_err(map_sql)?;
            let value = row.get_ref(1).map_err(map_sql)?.as_str().map_err(backend)?;
            let start: i64 = row.get(2).map_err(map_sql)?;
            let id = row
                .get_ref(3)
                .map_err(map_sql)?
                .as_blob()
                .map_err(backend)?;
            let trace = TraceId(super::codec::blob_array::<16>(id)?);
            let values = pairs.entry(key).or_default();
            // The text is copied once per distinct value, not per row.
            match values.get_mut(value) {
                Some(entries) => entries.push((start, trace)),
                None => {
                    values.insert(value.to_owned(), vec![(start, trace)]);
                }
            }
            blocks.entry(trace).or_insert(None);
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let mut first_block = conn
        .prepare_cached("SELECT min(id) FROM span_blocks WHERE trace_id = ?1")
        .map_err(map_sql)?;
    for (trace, block) in &mut blocks {
        *block = first_block
            .query_row([&trace.0[..]], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map_err(map_sql)?
            .flatten();
    }
    let move_id: i64 = conn
        .query_row(
            "SELECT coalesce(max(move_id), 0) + 1 FROM attr_moves",
            [],
            |r| r.get(0),
        )
        .map_err(map_sql)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO attr_postings \
             (key, value, max_start_ns, move_id, min_start_ns, entries, list) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(map_sql)?;
    let (mut rows, mut total) = (0i64, 0i64);
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut entries: Vec<Entry> = Vec::new();
    // In key order: neighbouring inserts touch the same pages.
    let mut sorted: Vec<(i64, &String, &Staged)> = pairs
        .iter()
        .flat_map(|(key, values)| values.iter().map(move |(v, staged)| (*key, v, staged)))
        .collect();
    sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    {
        for (key, value, staged) in sorted {
            entries.clear();
            entries.extend(staged.iter().filter_map(|(start, trace)| {
                blocks.get(trace).copied().flatten().map(|b| (*start, b))
            }));
            posting_list::sort_entries(&mut entries);
            let (Some(&(max, _)), Some(&(min, _))) = (entries.first(), entries.last()) else {
                continue;
            };
            let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
            insert
                .execute(params![
                    key,
                    value,
                    max,
                    move_id,
                    min,
                    count,
                    posting_list::encode(&entries)
                ])
                .map_err(map_sql)?;
            rows += 1;
            total += count;
            (lo, hi) = (lo.min(min), hi.max(max));
        }
    }
    if rows > 0 {
        conn.prepare_cached(
            "INSERT INTO attr_moves (move_id, rows, entries, min_start_ns, max_start_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(map_sql)?
        .execute(params![move_id, rows, total, lo, hi])
        .map_err(map_sql)?;
    }
    Ok(())
}

/// Drops the posting rows (and moves) whose newest entry is older than the oldest stored
/// trace's start: no entry of theirs can still be valid. All of them when no trace is left.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn prune(conn: &Connection) -> Result<(), StoreError> {
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT min(start_ns) FROM traces")
        .map_err(map_sql)?
        .query_row([], |r| r.get(0))
        .map_err(map_sql)?;
    let cutoff = oldest.unwrap_or(i64::MAX);
    for sql in [
        "DELETE FROM attr_postings WHERE max_start_ns < ?1",
        "DELETE FROM attr_moves WHERE max_start_ns < ?1",
    ] {
        conn.prepare_cached(sql)
            .map_err(map_sql)?
            .execute([cutoff])
            .map_err(map_sql)?;
    }
    Ok(())
}

/// The widest start range of any move (newest minus oldest start), or `None` with no moves
/// listed: a posting row holding an entry at start `s` has its newest start in `[s, s + width]`.
///
/// # Errors
/// [`StoreError::Backend`] on SQLite errors.
pub(super) fn widest_move(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let width: Option<i64> = conn
        .prepare_cached("SELECT max(max_start_ns - min_start_ns) FROM attr_moves")
        .map_err(map_sql)?
        .query_row([], |r| r.get(0))
        .map_err(map_sql)?;
    Ok(width.map(|w| w.max(0)))
}

/// A search condition on trace `t`: some posting row of the attribute `key` = `value` holds
/// the entry (`t.start_ns`, the trace's first block). The rows read are those whose newest
/// start is within `width` ([`widest_move`]) after the trace's start and whose oldest is not
/// after it; each is decoded up to the trace's start (`posting_list::POSTING_HAS`).
/// `FALSE` without moves. Appends the values of its `?` parameters to `args`.
pub(super) fn search_condition(
    width: Option<i64>,
    key: &str,
    value: &str,
    args: &mut Vec<SqlValue>,
) -> String {
    let Some(width) = width else {
        return "FALSE".to_owned();
    };
    args.push(SqlValue::Text(key.to_owned()));
    args.push(SqlValue::Text(value.to_owned()));
    format!(
        "EXISTS (SELECT 1 FROM attr_postings p WHERE p.key = {} AND p.value = ? \
         AND p.max_start_ns BETWEEN t.start_ns AND t.start_ns + {width} \
         AND p.min_start_ns <= t.start_ns AND {}(p.list, t.start_ns, \
         (SELECT min(b.id) FROM span_blocks b WHERE b.trace_id = t.trace_id)))",
        super::attr_keys::id_of_key!(),
        posting_list::POSTING_HAS
    )
}

/// The posting rows of the attribute `key` = `value` that can hold entries within `[from,
/// to]`, newest first by their newest start: `(newest start, list)`. Parameters `?1` key
/// text, `?2` value, `?3` from, `?4` to.
pub(super) const ROWS_OF_PAIR: &str = concat!(
    "SELECT max_start_ns, list FROM attr_postings WHERE key = ",
    "(SELECT id FROM attr_keys WHERE key = ?1)",
    " AND value = ?2 AND max_start_ns >= ?3 AND min_start_ns <= ?4 \
     ORDER BY max_start_ns DESC, move_id DESC"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema step can be run twice on the same file.
    #[test]
    fn the_schema_step_can_be_re_run() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V17).unwrap();
        conn.execute_batch(SCHEMA_V17).unwrap();
        assert_eq!(widest_move(&conn).unwrap(), None);
        let mut args = Vec::new();
        assert_eq!(search_condition(None, "k", "v", &mut args), "FALSE");
        assert!(args.is_empty());
    }
}
