//! Reads: the pool of read-only connections, and a trace by id.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::codec::{SharedOrigins, blob_array, row_to_span};
use super::{backend, to_u64};
use crate::model::TraceId;
use crate::store::{MAX_TRACE_SPANS, StoreError, StoredTrace, TraceSummary};

/// The `traces` columns [`row_to_summary`] reads, in its order.
pub(super) const SUMMARY_COLUMNS: &str = "t.trace_id, t.start_ns, t.end_ns, t.root_service, \
     t.root_operation, t.root_start_ns, t.span_count, t.error_count, t.services, t.operations, \
     t.span_mask, t.root_http_status, t.spans_refused";

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
    let json_list = |idx: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(idx)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
        })
    };
    let trace_id = blob_array::<16>(&id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
    })?;
    Ok(TraceSummary {
        trace_id: TraceId(trace_id),
        start_time_unix_nano: to_u64(row.get(1)?),
        end_time_unix_nano: to_u64(row.get(2)?),
        root_service: row.get(3)?,
        root_operation: row.get(4)?,
        root_start_time_unix_nano: row.get::<_, Option<i64>>(5)?.map(to_u64),
        span_count: to_u64(row.get(6)?),
        error_count: to_u64(row.get(7)?),
        services: json_list(8)?,
        operations: json_list(9)?,
        span_mask: u32::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
        root_http_status: row.get(11)?,
        spans_refused: to_u64(row.get(12)?),
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
    let mut stmt = tx
        .prepare_cached(
            "SELECT s.span_id, s.kind, s.parent_span_id, s.service, s.name, s.start_ns, \
             s.duration_ns, s.status_code, s.resource_id, s.scope_name, s.scope_version, \
             s.detail, r.encoded \
             FROM spans s LEFT JOIN resources r ON r.id = s.resource_id \
             WHERE s.trace_id = ?1 ORDER BY s.start_ns, s.span_id, s.kind LIMIT ?2",
        )
        .map_err(backend)?;
    let mut rows = stmt
        .query(params![&trace_id.0[..], MAX_TRACE_SPANS as i64])
        .map_err(backend)?;
    let mut shared = SharedOrigins::default();
    let mut spans = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        spans.push(row_to_span(row, trace_id, &mut shared)?);
    }
    drop(rows);
    drop(stmt);
    tx.finish().map_err(backend)?;
    Ok(Some(StoredTrace { summary, spans }))
}
