//! Reads: the pool of read-only connections, and a trace by id.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::blocks::{Block, decode_origins};
use super::codec::{SharedOrigins, blob_array, block_spans};
use super::name_sets::{decode, names_text};
use super::{backend, to_u64};
use crate::model::{Span, TraceId};
use crate::store::{MAX_TRACE_SPANS, StoreError, StoredTrace, TraceSummary};

/// The `traces` columns [`row_to_summary`] reads, in its order (the name set's text from
/// `trace_name_sets`: `name_sets.rs`).
pub(super) const SUMMARY_COLUMNS: &str = concat!(
    "t.trace_id, t.start_ns, t.duration_ns, ",
    names_text!(),
    ", t.root_offset_ns, t.span_count, t.error_count, t.span_mask, t.root_http_status, \
     t.spans_refused"
);

/// How many columns [`SUMMARY_COLUMNS`] has: a statement that selects more after them reads
/// those from this index on (`attr_search.rs`).
pub(super) const SUMMARY_WIDTH: usize = 10;

/// Idle read-only connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// Read-only connections to the database file, opened on demand and kept for reuse.
#[derive(Debug)]
pub(super) struct ReaderPool {
    path: PathBuf,
    idle_readers: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    /// A pool for the database at `path` (no connection is opened yet).
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle_readers: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on an idle connection (or a new one), then keeps the connection for reuse
    /// unless [`MAX_IDLE_READERS`] are already idle or `f` left a transaction open.
    pub(super) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(backend)?;
                c.execute_batch(
                    "PRAGMA busy_timeout = 5000; PRAGMA cache_size = -8000; PRAGMA query_only = 1;",
                )
                .map_err(backend)?;
                super::block_probe::register(&c).map_err(backend)?;
                c
            }
        };
        let result = f(&conn);
        let mut idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        }
        result
    }
}
/// A `traces` row (selected with [`SUMMARY_COLUMNS`]) as a summary.
pub(super) fn row_to_summary(row: &Row<'_>) -> rusqlite::Result<TraceSummary> {
    let id: Vec<u8> = row.get(0)?;
    let trace_id = blob_array::<16>(&id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
    })?;
    let start: i64 = row.get(1)?;
    let duration: i64 = row.get(2)?;
    let names: String = row.get(3)?;
    let (root_service, root_operation, services, operations) = decode(&names).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(TraceSummary {
        trace_id: TraceId(trace_id),
        start_time_unix_nano: to_u64(start),
        // Clamped at `i64::MAX`, as every stored time.
        end_time_unix_nano: to_u64(start.saturating_add(duration.max(0))),
        root_service,
        root_operation,
        root_start_time_unix_nano: row
            .get::<_, Option<i64>>(4)?
            .map(|offset| to_u64(start.saturating_add(offset))),
        span_count: to_u64(row.get(5)?),
        error_count: to_u64(row.get(6)?),
        services,
        operations,
        span_mask: u32::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
        root_http_status: row.get(8)?,
        spans_refused: to_u64(row.get(9)?),
    })
}

/// The `traces` row of `trace_id`, if stored.
pub(super) fn read_summary(
    conn: &Connection,
    trace_id: TraceId,
) -> rusqlite::Result<Option<TraceSummary>> {
    conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ?1"
    ))?
    .query_row([&trace_id.0[..]], row_to_summary)
    .optional()
}

/// Up to [`MAX_TRACE_SPANS`] stored spans of `trace_id`, earliest first (then by span id and
/// kind): every block of the trace decoded, sorted, cut.
pub(super) fn trace_spans(conn: &Connection, trace_id: TraceId) -> Result<Vec<Span>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT origins, data FROM span_blocks WHERE trace_id = ?1")
        .map_err(backend)?;
    let mut rows = stmt.query([&trace_id.0[..]]).map_err(backend)?;
    let mut shared = SharedOrigins::default();
    let mut spans = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let origins = decode_origins(
            row.get_ref(0)
                .map_err(backend)?
                .as_blob()
                .map_err(backend)?,
        )?;
        let block = Block::decode(
            row.get_ref(1)
                .map_err(backend)?
                .as_blob()
                .map_err(backend)?,
        )?;
        spans.extend(block_spans(conn, &block, &origins, trace_id, &mut shared)?);
    }
    spans.sort_by(|a, b| {
        (a.start_time_unix_nano, a.span_id.0, a.kind.as_i32()).cmp(&(
            b.start_time_unix_nano,
            b.span_id.0,
            b.kind.as_i32(),
        ))
    });
    spans.truncate(MAX_TRACE_SPANS);
    Ok(spans)
}

/// A stored trace: its summary and up to [`MAX_TRACE_SPANS`] spans, earliest first.
pub(super) fn read_trace(
    conn: &Connection,
    trace_id: TraceId,
) -> Result<Option<StoredTrace>, StoreError> {
    // One read transaction so spans and summary are from the same commit.
    let tx = conn.unchecked_transaction().map_err(backend)?;
    let summary = read_summary(&tx, trace_id).map_err(backend)?;
    let Some(summary) = summary else {
        return Ok(None);
    };
    let spans = trace_spans(&tx, trace_id)?;
    tx.finish().map_err(backend)?;
    Ok(Some(StoredTrace { summary, spans }))
}

#[cfg(test)]
mod tests {
    use super::{SUMMARY_COLUMNS, SUMMARY_WIDTH};

    #[test]
    fn summary_width_counts_the_summary_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(
            dir.path().join("spanline.db"),
            crate::store::SqliteOptions::default(),
        )
        .unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("spanline.db")).unwrap();
        let stmt = conn
            .prepare(&format!("SELECT {SUMMARY_COLUMNS} FROM traces t"))
            .unwrap();
        assert_eq!(stmt.column_count(), SUMMARY_WIDTH);
    }
}
