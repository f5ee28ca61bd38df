//! # The schema (version 18, `PRAGMA user_version = 18`)
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)                      -- bookkeeping, health probes
//! resources(id INTEGER PRIMARY KEY, encoded BLOB UNIQUE)      -- OTLP `Resource` protobuf + the scope
//!                                                             -- (fields 100, 101; codec.rs), deduplicated
//! spans(id INTEGER PRIMARY KEY,
//!       trace_id BLOB(16), span_id BLOB(8), kind INTEGER,     -- UNIQUE (trace_id, span_id, kind)
//!       parent_span_id BLOB(8) NULL, service TEXT, name TEXT,
//!       start_ns INTEGER, duration_ns INTEGER, status_code INTEGER,
//!       resource_id INTEGER, scope_name TEXT, scope_version TEXT, -- scope: empty since the scope
//!                                                             -- moved to `resources` (older rows only)
//!       detail BLOB)                                          -- `SpanDetail` protobuf (codec.rs)
//! traces(trace_id BLOB PRIMARY KEY, start_ns, end_ns, duration_ns,
//!        root_service, root_operation, root_start_ns,
//!        span_count, error_count,
//!        services TEXT, operations TEXT)                      -- JSON arrays, sorted
//!        INDEX (start_ns), INDEX (duration_ns)
//! trace_services(service, start_ns, trace_id)                 -- PK (service, start_ns, trace_id)   (v3)
//! trace_operations(service, operation, start_ns, trace_id)    -- PK (service, operation, start_ns, trace_id);
//!                                                             -- INDEX (operation, start_ns, trace_id)   (v3)
//! operations(service, name, kind)                             -- PK (service, name, kind): service/operation lists
//! -- version 2:
//! traces.span_mask INTEGER                                    -- bit per span kind and status code (kind/status filters)
//! entry_spans(start_ns, service, name, duration_ns, error,    -- one row per SERVER/CONSUMER span: stats and the
//!             trace_id, parent_span_id, kind)                 -- dependency graph; INDEX (start_ns), (service, start_ns)
//! span_attrs(key, value, start_ns, trace_id)                  -- PK (key, value, start_ns, trace_id)   (v3):
//!                                                             -- attribute search (strings <= 256 bytes, ints, bools, doubles);
//!                                                             -- which keys: SqliteOptions::index_attributes (COLLECTOR_ATTRIBUTE_INDEX)
//! -- version 4:
//! traces.root_http_status INTEGER NULL                        -- the root span's HTTP status (summaries)
//! -- version 5:
//! traces.received_ns INTEGER                                  -- when the collector first received a span of
//!                                                             -- the trace (never moved by later spans):
//!                                                             -- what retention ages by; INDEX (received_ns)
//! traces.spans_refused INTEGER                                -- new spans refused at the per-trace span limit
//! -- version 6:
//! trace_links(target_trace_id, source_trace_id)               -- PK (target, source), WITHOUT ROWID;
//!                                                             -- INDEX (source): inbound links (links.rs)
//! -- version 7 (`durable.rs`):
//! sampling_decisions(trace_id BLOB PRIMARY KEY, kept, policies, -- tail sampling decisions (policies: JSON
//!                    finish, decided_ns)                        -- array); deleted with their trace
//! consumer_groups(destination, consumer_group, last_seen_ns)  -- PK (destination, consumer_group): the
//!                                                             -- consumer groups learnt from CONSUMER spans
//! -- version 8 (`attr_stage.rs`):
//! span_attrs_new(seg, key, value, start_ns, trace_id)         -- PK (seg, key, value, start_ns, trace_id):
//!                                                             -- attribute rows staged per index flush,
//!                                                             -- merged into span_attrs every ~100k rows
//! attr_segments(seg INTEGER PRIMARY KEY, rows)                -- the staged segments
//! -- version 9 (`search.rs`):
//! spans: INDEX spans_slow (service, duration_ns)              -- partial: spans of 100 ms or longer, for
//!        WHERE duration_ns >= 100000000                       -- searches with a service and a min duration
//! -- version 10 (`index.rs`):
//! trace_operations: no INDEX (operation, start_ns, trace_id)  -- searches by operation alone walk each
//! operations: INDEX operations_by_name (name, service)        -- service's (service, operation) range
//! -- version 11 (`attr_runs.rs`):
//! attr_runs(run INTEGER PRIMARY KEY, rows,                    -- the attribute index's runs: staged rows
//!           min_start_ns, max_start_ns)                       -- move into the newest, tables
//! span_attrs_run<N>(key, value, start_ns, trace_id)           -- PK (key, value, start_ns, trace_id);
//!                                                             -- span_attrs is no longer written
//! attr_segments.min_start_ns, attr_segments.max_start_ns      -- each staged segment's trace starts
//! -- version 12 (`operation_ids.rs`):
//! operation_ids(id INTEGER PRIMARY KEY, name, service)        -- UNIQUE (name, service): one id per
//!                                                             -- (service, operation) pair ever stored
//! trace_operations(op, start_ns, trace_id)                    -- PK (op, start_ns, trace_id), WITHOUT ROWID:
//!                                                             -- the pair as its id, not its two strings
//! entry_spans(start_ns, op, duration_ns, error, trace_id,     -- the same rows, the pair as its id;
//!             parent_span_id, kind)                           -- INDEX (start_ns), (op, start_ns)
//! operation_ids: INDEX operation_ids_by_service (service)
//! -- version 13 (`slow_walk.rs`):
//! spans: INDEX spans_slow_by_start                            -- partial: spans of 100 ms or longer, for
//!        (service, start_ns, duration_ns)                     -- newest-first searches with a service and a
//!        WHERE duration_ns >= 100000000                       -- min duration that many spans reach
//! -- version 14 (`attr_keys.rs`):
//! attr_keys(id INTEGER PRIMARY KEY, key TEXT UNIQUE)          -- one id per attribute key ever indexed
//! span_attrs_new(seg, key INTEGER, value, start_ns, trace_id) -- the staged rows: the key as its id
//! attr_runs.key_ids INTEGER                                   -- 1: the run's `key` column holds ids (runs
//!                                                             -- created since 14); 0: text (kept as they were)
//! -- version 15 (`buckets.rs`):
//! index_buckets(bucket INTEGER PRIMARY KEY, lo_ns UNIQUE,     -- ranges of start times: bucket b holds
//!               max_ns, rows)                                 -- [lo_ns, next lo_ns); bucket 0 from i64::MIN
//! trace_operations(bucket, op, start_ns, trace_id)            -- PK (bucket, op, start_ns, trace_id), WITHOUT
//!                                                             -- ROWID: a commit's rows adjacent
//! entry_spans.bucket INTEGER                                  -- the bucket of the row's start;
//!                                                             -- INDEX entry_spans_by_op (bucket, op, start_ns)
//! -- version 16 (`blocks.rs`, `migrate_v16.rs`):
//! span_blocks(id INTEGER PRIMARY KEY, trace_id BLOB,          -- the spans of one trace and request, columnar
//!             span_count INTEGER, origins BLOB, data BLOB)    -- and LZ4-compressed (`data`); `origins`: the
//!             INDEX (trace_id)                                -- `resources.id` of each origin index (varints)
//! slow_spans(trace_id, service, start_ns, duration_ns)        -- the spans of 100 ms or longer; INDEX
//!                                                             -- (service, duration_ns), (service, start_ns,
//!                                                             -- duration_ns); deleted by that key
//! spans                                                       -- empty (its rows moved into blocks), kept
//!                                                             -- with its indexes for the steps before 16
//! -- version 17 (`attr_postings.rs`):
//! attr_postings(key, value, max_start_ns, move_id,            -- PK (key, value, max_start_ns, move_id), WITHOUT
//!               min_start_ns, entries, list BLOB)             -- ROWID: one row per (key id, value) of a move of
//!               INDEX (max_start_ns)                          -- staged rows, its entries (start, block id) in
//!                                                             -- `list` (`posting_list.rs`); runs no longer written
//! attr_moves(move_id INTEGER PRIMARY KEY, rows, entries,      -- each move into posting rows and its starts
//!            min_start_ns, max_start_ns)
//! -- version 18 (`migrate_v18.rs`, `name_sets.rs`):
//! trace_name_sets(id INTEGER PRIMARY KEY, names TEXT UNIQUE)  -- distinct [root service, root operation,
//!                                                             -- [services], [operations]] (JSON), at most 16,384
//! traces(trace_id, start_ns, duration_ns, names,              -- names: a set's id (or, the sets full, its
//!        root_offset_ns, span_count, error_count, span_mask,  -- text); no end_ns (start + duration); the
//!        root_http_status, received_ns, spans_refused)        -- root's start after the trace start
//! entry_spans(bucket, op, start_ns, trace_id, span_id, kind,  -- PK (bucket, op, start_ns, trace_id,
//!             duration_ns, error, parent_span_id)             -- span_id, kind), WITHOUT ROWID; no other index
//! slow_spans(service, start_ns, duration_ns, trace_id)        -- PK (service, start_ns, duration_ns, trace_id),
//!                                                             -- WITHOUT ROWID; INDEX (service, duration_ns)
//! ```
//!
//! Older files are migrated in place at open, in one transaction. Version 1 → 2 adds columns
//! and tables (traces stored before it have no span mask, attribute index or entry rows).
//! Version 2 → 3 copies the three search-index tables into their one-B-tree form (in key
//! order) and drops the old ones: about a minute for a file of 10M spans (BENCHMARKS.md §3.5).
//! Version 3 → 4 adds a column (traces stored before it show no root HTTP status).
//! Version 4 → 5 adds `traces.received_ns`; a trace stored before it is given its start
//! clamped to the time of the migration (`min(start_ns, now)`), so a start claimed in the
//! future does not keep it forever.
//! Version 5 → 6 adds the inbound-link table (`links.rs`; traces stored before it have no
//! rows there).
//! Version 6 → 7 adds two tables (what the collector learns besides spans: tail sampling
//! decisions and consumer groups); nothing is copied.
//! Version 7 → 8 adds the staged level of the attribute index (`attr_stage.rs`); the rows
//! of a version-7 file stay in `span_attrs`, the merged level; nothing is copied.
//! Version 8 → 9 builds the partial index `spans_slow` (one read of every span: about 30 s
//! for 10M spans). Version 9 → 10 drops `trace_operations_by_name` and indexes `operations`
//! by name; nothing is copied. Version 10 → 11 adds the run list of the attribute index and
//! each staged segment's start range; the rows of `span_attrs` stay where they are (read and
//! deleted from, never written again); nothing is copied. Version 11 → 12 numbers the
//! (service, operation) pairs and rewrites `trace_operations` (in key order) and `entry_spans`
//! with the numbers (one read of every row of both: about a minute per 10M spans).
//! Version 12 → 13 builds the partial index `spans_slow_by_start` (one read of every span:
//! 10-40 s for 10M spans). Version 13 → 14 numbers the attribute keys and rewrites the staged
//! attribute rows (at most ~100k) with the numbers; runs and `span_attrs` keep their text keys
//! (read and deleted as such); nothing else is copied. Version 14 → 15 puts every row of
//! `trace_operations` and `entry_spans` in bucket 0, rewrites `trace_operations` with the
//! bucket first (in key order: one read of every row, as version 12's rewrite) and rebuilds
//! `entry_spans_by_op` (the `entry_spans` rows keep their place: the column's default);
//! new rows go to new buckets.
//! Version 15 → 16 moves every `spans` row
//! into `span_blocks` (one block per trace, in trace-id order) and the spans of 100 ms or
//! longer into `slow_spans`, then empties `spans` (one read of every span).
//! Version 16 → 17 adds the posting rows of the attribute index and the list of moves; runs
//! and staged rows stay where they are (read and deleted from; the next move of staged rows
//! writes posting rows); nothing is copied.
//! Version 16 (or 17) → 18 rewrites `traces` (the names as a set id), `entry_spans` and
//! `slow_spans` (one B-tree each) in their new layouts (`migrate_v18.rs`: one read of every
//! row of the three; each only if the file does not have its layout yet).
//! The search-index tables are described in `index.rs`.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::attr_keys::schema_v14;
use super::attr_postings::SCHEMA_V17;
use super::attr_runs::schema_v11;
use super::attr_stage::SCHEMA_V8;
use super::buckets::schema_v15;
use super::index::SCHEMA_V10;
use super::links::SCHEMA_V6;
use super::map_sql;
use super::migrate_v16::migrate_to_blocks;
use super::migrate_v18::schema_v18;
use super::operation_ids::SCHEMA_V12;
use super::options::{SqliteOptions, Synchronous};
use super::search::SCHEMA_V9;
use super::slow_walk::SCHEMA_V13;
use crate::store::StoreError;

/// Schema version written to `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 18;

/// Version 3 → 4 (also run on a new file).
const SCHEMA_V4: &str = "ALTER TABLE traces ADD COLUMN root_http_status INTEGER;";

/// Version 4 → 5 (also run on a new file): the time of receipt that retention ages by.
const SCHEMA_V5: &str = "
ALTER TABLE traces ADD COLUMN received_ns INTEGER NOT NULL DEFAULT 0;
UPDATE traces SET received_ns = min(start_ns, CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);
CREATE INDEX traces_by_received ON traces (received_ns);
ALTER TABLE traces ADD COLUMN spans_refused INTEGER NOT NULL DEFAULT 0;
";

/// Version 6 → 7 (also run on a new file): tail sampling decisions and the consumer groups
/// of each destination (`durable.rs`). `IF NOT EXISTS`: the step is self-contained and can be
/// renumbered or re-run.
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS sampling_decisions (
    trace_id BLOB PRIMARY KEY,
    kept INTEGER NOT NULL,
    policies TEXT NOT NULL,
    finish TEXT NOT NULL,
    decided_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_groups (
    destination TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (destination, consumer_group)
) WITHOUT ROWID;
";

/// Version 1 (run first on a new file).
const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE resources (id INTEGER PRIMARY KEY, encoded BLOB NOT NULL UNIQUE);
CREATE TABLE spans (
    id INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL,
    span_id BLOB NOT NULL,
    kind INTEGER NOT NULL,
    parent_span_id BLOB,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    resource_id INTEGER NOT NULL,
    scope_name TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    detail BLOB NOT NULL
);
CREATE UNIQUE INDEX spans_identity ON spans (trace_id, span_id, kind);
CREATE TABLE traces (
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
    operations TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX traces_by_start ON traces (start_ns);
CREATE INDEX traces_by_duration ON traces (duration_ns);
CREATE TABLE trace_services (
    service TEXT NOT NULL,
    trace_id BLOB NOT NULL,
    start_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, service)
) WITHOUT ROWID;
CREATE INDEX trace_services_by_service ON trace_services (service, start_ns);
CREATE TABLE trace_operations (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    trace_id BLOB NOT NULL,
    start_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, service, operation)
) WITHOUT ROWID;
CREATE INDEX trace_operations_by_service ON trace_operations (service, operation, start_ns);
CREATE INDEX trace_operations_by_name ON trace_operations (operation, start_ns);
CREATE TABLE operations (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    PRIMARY KEY (service, name, kind)
) WITHOUT ROWID;
";

/// Version 1 → 2 (also run after [`SCHEMA`] on a new file).
const SCHEMA_V2: &str = "
ALTER TABLE traces ADD COLUMN span_mask INTEGER NOT NULL DEFAULT 0;
CREATE TABLE entry_spans (
    start_ns INTEGER NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    parent_span_id BLOB,
    kind INTEGER NOT NULL
);
CREATE INDEX entry_spans_by_start ON entry_spans (start_ns);
CREATE INDEX entry_spans_by_service ON entry_spans (service, start_ns);
CREATE TABLE span_attrs (
    trace_id BLOB NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, key, value)
) WITHOUT ROWID;
CREATE INDEX span_attrs_by_value ON span_attrs (key, value, start_ns);
";

/// Version 2 → 3 (also run after [`SCHEMA_V2`] on a new file): the three search-index tables
/// become one B-tree each, keyed by what a search walks (`…, start_ns, trace_id`), with no
/// separate trace-id key. Their rows are copied in key order, so a large file migrates with
/// appends only.
const SCHEMA_V3: &str = "
CREATE TABLE trace_services_v3 (
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (service, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_services_v3 (service, start_ns, trace_id)
    SELECT service, start_ns, trace_id FROM trace_services ORDER BY 1, 2, 3;
DROP TABLE trace_services;
ALTER TABLE trace_services_v3 RENAME TO trace_services;
CREATE TABLE trace_operations_v3 (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (service, operation, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_operations_v3 (service, operation, start_ns, trace_id)
    SELECT service, operation, start_ns, trace_id FROM trace_operations ORDER BY 1, 2, 3, 4;
DROP TABLE trace_operations;
ALTER TABLE trace_operations_v3 RENAME TO trace_operations;
CREATE INDEX trace_operations_by_name ON trace_operations (operation, start_ns, trace_id);
CREATE TABLE span_attrs_v3 (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (key, value, start_ns, trace_id)
) WITHOUT ROWID;
INSERT INTO span_attrs_v3 (key, value, start_ns, trace_id)
    SELECT key, value, start_ns, trace_id FROM span_attrs ORDER BY 1, 2, 3, 4;
DROP TABLE span_attrs;
ALTER TABLE span_attrs_v3 RENAME TO span_attrs;
";

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Opens (or creates) the database at `path` as the writer's read-write connection: checks
/// the file before writing anything (header, schema version, `PRAGMA quick_check` on files up
/// to [`SqliteOptions::quick_check_max_bytes`]), turns on WAL with the configured sync mode,
/// and migrates an older schema in one transaction.
///
/// # Errors
/// [`StoreError::Corrupt`] for a damaged file (left untouched), [`StoreError::Incompatible`]
/// for a database of another application or a newer schema, [`StoreError::Io`] when the
/// file cannot be opened or migrated.
pub(super) fn open_read_write(
    path: &Path,
    options: &SqliteOptions,
) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path).ok();
    let file_bytes = metadata.as_ref().map_or(0, std::fs::Metadata::len);
    if metadata.is_some() && file_bytes == 0 {
        let marker = marker_path(path);
        if marker.exists() {
            return Err(StoreError::Corrupt {
                path: shown,
                detail: format!(
                    "the file is empty (0 bytes), but this directory held a Spanline database \
                     before ({} exists): the data may have been lost (a truncated file, a \
                     failed copy, the wrong volume)",
                    marker.display()
                ),
            });
        }
        eprintln!(
            "collector: WARNING: database {shown} is an empty (0-byte) file; starting with an \
             empty database"
        );
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Io {
        context: format!("opening database {shown}"),
        detail: e.to_string(),
    })?;
    let corrupt = |e: rusqlite::Error| {
        if is_corruption(&e) {
            StoreError::Corrupt {
                path: shown.clone(),
                detail: e.to_string(),
            }
        } else {
            StoreError::Io {
                context: format!("reading database {shown}"),
                detail: e.to_string(),
            }
        }
    };
    // Verify before writing anything (journal mode and schema both write).
    let table_count: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(corrupt)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(corrupt)?;
    if file_bytes > 0 && file_bytes <= options.quick_check_max_bytes {
        let verdict: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(corrupt)?;
        if verdict != "ok" {
            return Err(StoreError::Corrupt {
                path: shown,
                detail: verdict,
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible {
            path: shown,
            detail: format!(
                "schema version {version} is newer than this collector's {SCHEMA_VERSION}"
            ),
        });
    }
    if version == 0 && table_count > 0 {
        return Err(StoreError::Incompatible {
            path: shown,
            detail: "not a Spanline database (tables without a schema version)".to_owned(),
        });
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(corrupt)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io {
            context: format!("enabling WAL on {shown}"),
            detail: format!("journal mode stayed {mode}"),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -16000;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;"
    ))
    .map_err(corrupt)?;
    // Room for every statement the writer runs (spans, index tables, retention).
    conn.set_prepared_statement_cache_capacity(64);
    if version < SCHEMA_VERSION {
        let base = if version == 0 { SCHEMA } else { "" };
        let v2 = if version < 2 { SCHEMA_V2 } else { "" };
        let v3 = if version < 3 { SCHEMA_V3 } else { "" };
        let v4 = if version < 4 { SCHEMA_V4 } else { "" };
        let v5 = if version < 5 { SCHEMA_V5 } else { "" };
        let v6 = if version < 6 { SCHEMA_V6 } else { "" };
        let v7 = if version < 7 { SCHEMA_V7 } else { "" };
        let v8 = if version < 8 { SCHEMA_V8 } else { "" };
        let v9 = if version < 9 { SCHEMA_V9 } else { "" };
        let v10 = if version < 10 { SCHEMA_V10 } else { "" };
        // The steps whose SQL depends on what the file holds (columns added only when missing).
        let unreadable = |e: StoreError| StoreError::Io {
            context: format!("reading the schema of {shown}"),
            detail: e.to_string(),
        };
        let v11 = if version < 11 {
            schema_v11(&conn).map_err(unreadable)?
        } else {
            String::new()
        };
        let v12 = if version < 12 { SCHEMA_V12 } else { "" };
        let v17 = if version < 17 { SCHEMA_V17 } else { "" };
        let v13 = if version < 13 { SCHEMA_V13 } else { "" };
        let v14 = if version < 14 {
            schema_v14(&conn).map_err(unreadable)?
        } else {
            String::new()
        };
        let v15 = if version < 15 {
            schema_v15(&conn).map_err(unreadable)?
        } else {
            String::new()
        };
        if version > 0 {
            eprintln!(
                "collector: migrating {shown} from schema version {version} to {SCHEMA_VERSION}{}",
                if version < 3 {
                    " (rewrites the search indexes; about a minute per 10M spans)"
                } else if version < 9 {
                    " (indexes the spans of 100 ms or longer: one read of every span, \
                     about 30 s per 10M spans)"
                } else if version < 12 {
                    " (rewrites the operation index and the entry-span rows; about a minute \
                     per 10M spans)"
                } else if version < 13 {
                    " (indexes the spans of 100 ms or longer by start: one read of every \
                     span, 10-40 s per 10M spans)"
                } else if version < 15 {
                    " (rewrites the operation index and rebuilds the entry-span index by \
                     bucket; about a minute per 10M spans)"
                } else if version < 16 {
                    " (moves the spans into compressed blocks: one read of every span)"
                } else if version < 18 {
                    " (rewrites the trace summaries and the entry-span rows: one read of each)"
                } else {
                    ""
                }
            );
        }
        // One transaction: on failure (e.g. disk full) the file is left as it was.
        let failed = |e: StoreError| {
            let _ = conn.execute_batch("ROLLBACK");
            match e {
                StoreError::Corrupt { .. } => e,
                e if version == 0 => StoreError::Corrupt {
                    path: shown.clone(),
                    detail: e.to_string(),
                },
                e => StoreError::Io {
                    context: format!(
                        "migrating {shown} from schema version {version} to \
                         {SCHEMA_VERSION} (nothing was changed)"
                    ),
                    detail: e.to_string(),
                },
            }
        };
        let sql_step = |sql: &str| {
            conn.execute_batch(sql).map_err(|e| {
                if is_corruption(&e) {
                    corrupt(e)
                } else {
                    map_sql(e)
                }
            })
        };
        sql_step(&format!(
            "BEGIN; {base} {v2} {v3} {v4} {v5} {v6} {v7} {v8} {v9} {v10} {v11} {v12} {v13} {v14} \
             {v15} {v17}"
        ))
        .map_err(failed)?;
        // Version 15 → 16 (`migrate_v16.rs`): the spans into blocks.
        if version < 16 {
            migrate_to_blocks(&conn).map_err(failed)?;
        }
        // Version 17 → 18 (`migrate_v18.rs`): what it rewrites depends on the file's tables
        // as the steps before left them, so it is read here, inside the transaction.
        if version < 18 {
            sql_step(&schema_v18(&conn).map_err(failed)?).map_err(failed)?;
        }
        sql_step(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")).map_err(failed)?;
    }

    super::block_probe::register(&conn).map_err(corrupt)?;
    // The WAL is checkpointed by a background connection (see `Checkpointer`), not by the
    // writer after its commits.
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
        .map_err(corrupt)?;
    let marker = marker_path(path);
    if !marker.exists() {
        std::fs::write(&marker, MARKER_TEXT).map_err(|e| StoreError::Io {
            context: format!("writing {}", marker.display()),
            detail: e.to_string(),
        })?;
    }
    Ok(conn)
}

/// What the marker file says.
const MARKER_TEXT: &str = "This directory holds a Spanline database. While this file exists, \
the collector refuses to open an empty (0-byte) database file here: that would mean the data \
was lost. Delete the database file to start empty on purpose.\n";

/// `<db>.marker`, written next to the database once it has been opened: a later open that
/// finds the database empty (0 bytes) refuses to start instead of starting silently empty.
/// A missing database file is created as usual (deleting it is how to start empty).
pub(super) fn marker_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".marker");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanKind;
    use crate::store::sqlite::SqliteStore;
    use crate::store::sqlite::operation_ids::BACK_TO_V11;
    use crate::store::{SpanStore, TraceQuery, conformance};

    #[test]
    fn corrupt_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("refusing to start"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "file untouched");
    }

    #[test]
    fn corrupt_page_in_valid_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            drop(store);
        }
        // Keep the 100-byte header and page 1, smash the pages after it.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192, "schema spans several pages");
        for b in &mut bytes[4096..] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "file untouched");
    }

    /// Issue 16 item 6: an empty database file where a database was before is refused;
    /// without the marker it is opened (with a warning); a deleted file starts empty.
    #[test]
    fn empty_file_where_a_database_was_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        assert!(marker_path(&path).exists());
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("spanline.db{suffix}")));
        }
        std::fs::write(&path, b"").unwrap();
        let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("0 bytes"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "file untouched");
        std::fs::remove_file(&path).unwrap();
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        let other = tempfile::tempdir().unwrap();
        let empty = other.path().join("spanline.db");
        std::fs::write(&empty, b"").unwrap();
        drop(SqliteStore::open(&empty, SqliteOptions::default()).unwrap());
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Incompatible { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn version_1_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let spans = conformance::demo_trace(3, true, 5.0);
        store.write_spans(spans.clone()).await.unwrap();
        let q = TraceQuery {
            kind: Some(SpanKind::Server),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            ..TraceQuery::default()
        };
        assert_eq!(store.find_traces(q).await.unwrap().len(), 1);
        store.shutdown().await;
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn version_4_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        super::super::tests::file_with(&path, vec![conformance::demo_trace(4, false, 1.0)]).await;
        // Back to version 4: no time of receipt.
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "BEGIN; {BACK_TO_V11} DROP INDEX traces_by_received; DROP TABLE trace_links;
                 ALTER TABLE traces DROP COLUMN received_ns;
                 ALTER TABLE traces DROP COLUMN spans_refused;
                 UPDATE traces SET start_ns = 9000000000000000000;
                 PRAGMA user_version = 4; COMMIT;"
            ))
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // A start claimed in the future is clamped to the time of the migration.
        let received: i64 = conn
            .query_row("SELECT received_ns FROM traces", [], |r| r.get(0))
            .unwrap();
        let now = i64::try_from(crate::time::now_unix_nano()).unwrap();
        assert!(received > 0 && received <= now, "{received}");
    }

    /// Version 6 → 7 adds the decision and consumer-group tables; the spans stay.
    #[tokio::test]
    async fn version_6_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::demo_trace(6, false, 1.0);
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            store.write_spans(spans.clone()).await.unwrap();
            store.shutdown().await;
        }
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "BEGIN; {BACK_TO_V11} DROP TABLE sampling_decisions; DROP TABLE consumer_groups;
                 PRAGMA user_version = 6; COMMIT;"
            ))
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert!(store.get_trace(spans[0].trace_id).await.unwrap().is_some());
        let seen = crate::store::ConsumerGroupSeen {
            destination: "q".into(),
            group: "g".into(),
            last_seen_unix_nano: 7,
        };
        store
            .record_consumer_groups(vec![seen.clone()])
            .await
            .unwrap();
        assert_eq!(store.consumer_groups(0).await.unwrap(), vec![seen]);
        assert!(
            store
                .sampling_decision(spans[0].trace_id)
                .await
                .unwrap()
                .is_none()
        );
        store.shutdown().await;
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// Version 12 → 13 builds `spans_slow_by_start` over the spans already stored (since 15
    /// on the empty `spans`: a file put back to 12 keeps its blocks and `slow_spans`).
    #[tokio::test]
    async fn version_12_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::demo_trace(12, false, 1.0);
        super::super::tests::file_with(&path, vec![spans.clone()]).await;
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "BEGIN; DROP INDEX spans_slow_by_start; PRAGMA user_version = 12; COMMIT;",
            )
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let root = spans.iter().find(|s| s.parent_span_id.is_none()).unwrap();
        let rebuilt: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'spans_slow_by_start'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rebuilt, 1);
        // Since version 16 the spans of 100 ms or longer are in `slow_spans` (since 18 keyed by
        // service and start, as `spans_slow_by_start` was).
        let indexed: i64 = conn
            .query_row(
                "SELECT count(*) FROM slow_spans WHERE service = ?1 AND duration_ns >= 100000000",
                [root.service_name.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(indexed >= 1, "{indexed}");
    }

    /// The search-index tables of schema version 2 (two B-trees each, keyed by trace id).
    const V2_INDEX_TABLES: &str = "
        CREATE TABLE trace_services (
            service TEXT NOT NULL, trace_id BLOB NOT NULL, start_ns INTEGER NOT NULL,
            PRIMARY KEY (trace_id, service)) WITHOUT ROWID;
        CREATE INDEX trace_services_by_service ON trace_services (service, start_ns);
        CREATE TABLE trace_operations (
            service TEXT NOT NULL, operation TEXT NOT NULL, trace_id BLOB NOT NULL,
            start_ns INTEGER NOT NULL,
            PRIMARY KEY (trace_id, service, operation)) WITHOUT ROWID;
        CREATE INDEX trace_operations_by_service ON trace_operations (service, operation, start_ns);
        CREATE INDEX trace_operations_by_name ON trace_operations (operation, start_ns);
        CREATE TABLE span_attrs (
            trace_id BLOB NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            PRIMARY KEY (trace_id, key, value)) WITHOUT ROWID;
        CREATE INDEX span_attrs_by_value ON span_attrs (key, value, start_ns);";

    #[tokio::test]
    async fn version_2_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        // A version-2 file with data: written by this version, then its index tables put
        // back into the version-2 layout with the same rows.
        let spans = conformance::demo_trace(4, true, 5.0);
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            store.write_spans(spans.clone()).await.unwrap();
            store
                .write_spans(conformance::demo_trace(5, false, 1.0))
                .await
                .unwrap();
            store.shutdown().await;
        }
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "BEGIN;
                 {BACK_TO_V11}
                 ALTER TABLE trace_services RENAME TO ts3;
                 ALTER TABLE trace_operations RENAME TO to3;
                 ALTER TABLE span_attrs RENAME TO sa3;
                 DROP INDEX operations_by_name;
                 {V2_INDEX_TABLES}
                 INSERT INTO trace_services SELECT service, trace_id, start_ns FROM ts3;
                 INSERT INTO trace_operations
                     SELECT service, operation, trace_id, start_ns FROM to3;
                 INSERT INTO span_attrs SELECT trace_id, key, value, start_ns FROM sa3;
                 DROP TABLE ts3; DROP TABLE to3; DROP TABLE sa3;
                 ALTER TABLE traces DROP COLUMN root_http_status;
                 DROP INDEX traces_by_received;
                 ALTER TABLE traces DROP COLUMN received_ns;
                 ALTER TABLE traces DROP COLUMN spans_refused;
                 DROP TABLE trace_links;
                 PRAGMA user_version = 2;
                 COMMIT;"
            ))
            .unwrap();
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let count = |q: TraceQuery| {
            let store = &store;
            async move { store.find_traces(q).await.unwrap().len() }
        };
        let by_attr = TraceQuery {
            service: Some("payment".into()),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            ..TraceQuery::default()
        };
        assert_eq!(count(by_attr.clone()).await, 1);
        let by_op = TraceQuery {
            operation: Some("charge card".into()),
            ..TraceQuery::default()
        };
        assert_eq!(count(by_op).await, 2);
        let by_service = TraceQuery {
            service: Some("user".into()),
            ..TraceQuery::default()
        };
        assert_eq!(count(by_service).await, 2);
        // Writes after the migration dedupe against the migrated rows.
        let again = store.write_spans(spans.clone()).await.unwrap();
        assert_eq!(again.duplicates, spans.len());
        assert_eq!(count(by_attr).await, 1);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(super::super::tests::delete_every_trace(&store).await, 2);
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        for table in ["trace_services", "trace_operations", "span_attrs"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}: retention deleted every row by key");
        }
    }
}
