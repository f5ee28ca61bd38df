//! # Inbound links (schema version 6)
//!
//! ```sql
//! trace_links(target_trace_id BLOB, source_trace_id BLOB)   -- PK (target_trace_id, source_trace_id),
//!                                                           -- WITHOUT ROWID; INDEX (source_trace_id)
//! ```
//!
//! One row per (trace linked to, trace whose span links to it), other traces only: what
//! [`SpanStore::traces_linking_to`](crate::store::SpanStore::traces_linking_to) reads. Filled
//! by the writer for the new spans that have links (rare: spans without links cost one
//! `is_empty` each); deleted with either trace (`retention.rs`). Traces stored before
//! version 6 have no rows: their inbound links are not found.

use rusqlite::{Connection, params};

use super::codec::blob_array;
use super::map_sql;
use crate::model::{Span, TraceId};
use crate::store::StoreError;

/// Version 5 → 6 (also run on a new file): the inbound-link index. Self-contained, so it
/// can be renumbered.
pub(super) const SCHEMA_V6: &str = "
CREATE TABLE trace_links (
    target_trace_id BLOB NOT NULL,
    source_trace_id BLOB NOT NULL,
    PRIMARY KEY (target_trace_id, source_trace_id)
) WITHOUT ROWID;
CREATE INDEX trace_links_by_source ON trace_links (source_trace_id);
";

/// Records the links of the newly stored `spans` to other traces (one row per pair of
/// traces; existing rows are kept).
pub(super) fn insert_links(conn: &Connection, spans: &[&Span]) -> Result<(), StoreError> {
    let mut linking = spans.iter().filter(|s| !s.links.is_empty()).peekable();
    if linking.peek().is_none() {
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO trace_links (target_trace_id, source_trace_id) VALUES (?1, ?2)",
        )
        .map_err(map_sql)?;
    for span in linking {
        for link in span.links.iter().filter(|l| l.trace_id != span.trace_id) {
            stmt.execute(params![&link.trace_id.0[..], &span.trace_id.0[..]])
                .map_err(map_sql)?;
        }
    }
    Ok(())
}

/// Deletes the rows naming `trace_id`, as target or as source.
pub(super) fn delete_links(conn: &Connection, trace_id: TraceId) -> Result<(), StoreError> {
    let id = &trace_id.0[..];
    conn.prepare_cached("DELETE FROM trace_links WHERE target_trace_id = ?1")
        .map_err(map_sql)?
        .execute([id])
        .map_err(map_sql)?;
    conn.prepare_cached("DELETE FROM trace_links WHERE source_trace_id = ?1")
        .map_err(map_sql)?
        .execute([id])
        .map_err(map_sql)?;
    Ok(())
}

/// The traces with a span linking to `trace_id`, in ascending id order, at most `limit`.
pub(super) fn traces_linking_to(
    conn: &Connection,
    trace_id: TraceId,
    limit: usize,
) -> Result<Vec<TraceId>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT source_trace_id FROM trace_links WHERE target_trace_id = ?1 \
             ORDER BY source_trace_id LIMIT ?2",
        )
        .map_err(map_sql)?;
    let rows = stmt
        .query_map(
            params![&trace_id.0[..], i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .map_err(map_sql)?;
    let mut found = Vec::new();
    for row in rows {
        found.push(TraceId(blob_array::<16>(&row.map_err(map_sql)?)?));
    }
    Ok(found)
}
