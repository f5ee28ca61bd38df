//! # Durable storage in SQLite
//!
//! One file, `<data dir>/spanline.db`, in WAL mode.
//!
//! **Writes** go through ONE dedicated writer thread that owns the only read-write connection.
//! Handlers send their batch on a bounded channel with a oneshot reply. The writer takes every
//! pending request (up to [`MAX_GROUP_SPANS`] spans), inserts their spans, then writes the
//! search-index rows of the whole group at once (trace summaries, `trace_services`,
//! `trace_operations`, `span_attrs`), commits everything in ONE transaction (group commit), and
//! only then replies (acknowledge-after-commit, C1). Requests are applied without savepoints;
//! if one fails, the group is rolled back and applied again with a `SAVEPOINT` per request, so
//! a request is all-or-nothing (reliability.md §6 C6). If the index pass or the commit fails,
//! every request of the group gets the error and nothing of it is acknowledged. The WAL is
//! checkpointed by a background connection (see `Checkpointer`).
//!
//! **Reads** use a small pool of read-only connections on blocking threads; WAL lets them run
//! alongside the writer and see only committed data.
//!
//! **Durability.** `synchronous=NORMAL` (default) in WAL mode survives a crash of the process
//! (`kill -9`): a commit is in the WAL file before the reply. It may lose the last commits on
//! power loss or an OS crash, without corruption. `synchronous=FULL` (`COLLECTOR_SQLITE_SYNC=full`)
//! also survives power loss, at a throughput cost (reliability.md §6 C2).
//!
//! **Corruption.** At open, the header and schema are read, and `PRAGMA quick_check` runs on
//! files up to [`SqliteOptions::quick_check_max_bytes`]; a damaged file makes `open` fail with
//! [`StoreError::Corrupt`] before anything is written to it (C12).
//!
//! ## Schema (version 3, `PRAGMA user_version = 3`)
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)                      -- bookkeeping, health probes
//! resources(id INTEGER PRIMARY KEY, encoded BLOB UNIQUE)      -- OTLP `Resource` protobuf, deduplicated
//! spans(id INTEGER PRIMARY KEY,
//!       trace_id BLOB(16), span_id BLOB(8), kind INTEGER,     -- UNIQUE (trace_id, span_id, kind)
//!       parent_span_id BLOB(8) NULL, service TEXT, name TEXT,
//!       start_ns INTEGER, duration_ns INTEGER, status_code INTEGER,
//!       resource_id INTEGER, scope_name TEXT, scope_version TEXT,
//!       detail BLOB)                                          -- `SpanDetail` protobuf, see below
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
//! ```
//!
//! Older files are migrated in place at open, in one transaction. Version 1 → 2 adds columns
//! and tables (traces stored before it have no span mask, attribute index or entry rows).
//! Version 2 → 3 copies the three search-index tables into their one-B-tree form (in key
//! order) and drops the old ones: about a minute for a file of 10M spans (BENCHMARKS.md §3.2).
//!
//! **Search-index tables (v3).** `trace_services`, `trace_operations` and `span_attrs` are
//! one B-tree each (`WITHOUT ROWID`), keyed by what a search walks and ending in
//! `(start_ns, trace_id)`; version 2 had a second B-tree per table keyed by trace id, which
//! doubled the index work of every write. Every row carries its trace's current start
//! (`traces.start_ns`), so a probe for one trace is an exact key lookup
//! (`… AND start_ns = t.start_ns AND trace_id = t.trace_id`), and `INSERT OR IGNORE` on that
//! key deduplicates rows across groups. When a late span moves a trace's start earlier, or
//! retention deletes a trace, the trace's rows are recomputed from its stored spans
//! (`StoredRows`: services, names and the attributes in `detail`) and deleted by key.
//!
//! `entry_spans` lets `/v1/stats` and `/v1/dependencies` read only the SERVER/CONSUMER spans
//! of their window through `entry_spans_by_start`; the dependency query joins each row to its
//! parent span through the `spans_identity` index. `span_attrs` carries the trace start like
//! `trace_services`, so an attribute search walks one index newest-first.
//!
//! **Retention** ([`SpanStore::enforce_retention`]) runs in the writer like a write: each
//! call deletes at most one small batch of the oldest traces (by age, or while the live data,
//! `(page_count - freelist_count) * page_size`, is above the size limit) in one short
//! transaction, so ingest waits for at most one batch (reliability.md §6 C10). Freed pages are
//! reused; the file does not shrink (no `VACUUM` while running).
//!
//! `traces` is maintained on write, so search never scans `spans`; `trace_services` and
//! `trace_operations` carry the trace's start time so a search by service or operation walks
//! one index newest-first and stops at the limit. Times are unix nanoseconds as `INTEGER`
//! (values past `i64::MAX`, year 2262, are clamped).
//!
//! `detail` is a protobuf message of our own (`SpanDetail`, fields 1–10: attributes, events,
//! links as OTLP messages; status message; trace state; flags; the three dropped counts;
//! collector warnings). Protobuf is compact, fast and extends without migrations.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as PbEvent, Link as PbLink};
use prost::Message;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    BoxFuture, DependencyEdge, MAX_TRACE_SPANS, Operation, OperationSamples, RetentionOutcome,
    RetentionPolicy, SortOrder, SpanStore, StoreError, StoredTrace, TimeWindow, TraceQuery,
    TraceSummary, WriteOutcome, attr_index_text, group_samples, span_mask_bit_kind,
    span_mask_bit_status,
};
use crate::convert;
use crate::model::{Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId};

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 3;
/// Most spans the writer puts in one group commit (more requests wait for the next one).
pub const MAX_GROUP_SPANS: usize = 50_000;
/// Idle read-only connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// Which span attributes the SQLite store indexes for attribute search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AttributeIndex {
    /// Every searchable attribute ([`attr_index_text`](super::attr_index_text)).
    #[default]
    All,
    /// None: fastest writes, no attribute search.
    None,
    /// Only these keys.
    Keys(HashSet<String>),
}

impl AttributeIndex {
    fn wants(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Keys(keys) => keys.contains(key),
        }
    }
}

impl FromStr for AttributeIndex {
    type Err = String;
    /// `all`, `none`, or a comma-separated list of keys.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => Ok(Self::All),
            "none" | "" => Ok(Self::None),
            list => Ok(Self::Keys(
                list.split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect(),
            )),
        }
    }
}

/// SQLite `synchronous` setting for the WAL (reliability.md §6 C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Durable across process crashes; the last commits may roll back on power loss.
    #[default]
    Normal,
    /// Durable across power loss; slower commits.
    Full,
}

impl FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err("expected `normal` or `full`".to_owned()),
        }
    }
}

/// Options for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// WAL sync mode (default [`Synchronous::Normal`]).
    pub synchronous: Synchronous,
    /// Requests that may wait for the writer (default 1024).
    pub queue_capacity: usize,
    /// How long a request waits for room in the queue before failing with
    /// [`StoreError::Overloaded`] (default 5 s).
    pub enqueue_timeout: Duration,
    /// Run `PRAGMA quick_check` at open when the file is at most this big, bytes (default 256 MiB).
    pub quick_check_max_bytes: u64,
    /// Which span attributes go into the attribute search index (`span_attrs`; default
    /// all). Attribute filters find nothing for attributes that were not indexed.
    pub index_attributes: AttributeIndex,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            queue_capacity: 1024,
            enqueue_timeout: Duration::from_secs(5),
            quick_check_max_bytes: 256 * 1024 * 1024,
            index_attributes: AttributeIndex::All,
        }
    }
}

/// The durable [`SpanStore`]: SQLite in WAL mode with a group-committing writer thread.
///
/// Cheap to share through `Arc<dyn SpanStore>`; [`SpanStore::shutdown`] commits what is
/// queued, checkpoints the WAL and closes the writer.
#[derive(Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    tx: mpsc::Sender<WriterMsg>,
    commits: watch::Receiver<u64>,
    enqueue_timeout: Duration,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    idle_readers: Mutex<Vec<Connection>>,
}

#[derive(Debug)]
enum WriterMsg {
    Write {
        batch: Prepared,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Retention {
        policy: RetentionPolicy,
        reply: oneshot::Sender<Result<RetentionOutcome, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl WriterMsg {
    fn span_count(&self) -> usize {
        match self {
            Self::Write { batch, .. } => batch.spans.len(),
            _ => 0,
        }
    }
}

/// Batches larger than this (spans) are encoded on a blocking thread.
const PREPARE_INLINE_MAX_SPANS: usize = 2048;

/// A batch with its blobs already encoded, so the single writer thread only runs SQL.
#[derive(Debug)]
struct Prepared {
    spans: Vec<Span>,
    /// `SpanDetail` bytes, one per span.
    details: Vec<Vec<u8>>,
    /// Encoded resources, keyed by `Arc` address (the spans keep the `Arc`s alive).
    resources: HashMap<usize, Vec<u8>>,
}

impl Prepared {
    fn new(spans: Vec<Span>) -> Self {
        let details = spans.iter().map(encode_detail).collect();
        let mut resources: HashMap<usize, Vec<u8>> = HashMap::new();
        for span in &spans {
            resources
                .entry(Arc::as_ptr(&span.resource) as usize)
                .or_insert_with(|| convert::resource_to_pb(&span.resource).encode_to_vec());
        }
        Self {
            spans,
            details,
            resources,
        }
    }
}

/// The protobuf stored in `spans.detail`.
#[derive(Clone, PartialEq, prost::Message)]
struct SpanDetail {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<pb::KeyValue>,
    #[prost(message, repeated, tag = "2")]
    events: Vec<PbEvent>,
    #[prost(message, repeated, tag = "3")]
    links: Vec<PbLink>,
    #[prost(string, tag = "4")]
    status_message: String,
    #[prost(string, tag = "5")]
    trace_state: String,
    #[prost(fixed32, tag = "6")]
    flags: u32,
    #[prost(uint32, tag = "7")]
    dropped_attributes_count: u32,
    #[prost(uint32, tag = "8")]
    dropped_events_count: u32,
    #[prost(uint32, tag = "9")]
    dropped_links_count: u32,
    #[prost(string, repeated, tag = "10")]
    warnings: Vec<String>,
}

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

const INSERT_SPAN: &str = "INSERT OR IGNORE INTO spans (trace_id, span_id, kind, parent_span_id, \
     service, name, start_ns, duration_ns, status_code, resource_id, scope_name, scope_version, \
     detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

const SUMMARY_COLUMNS: &str = "t.trace_id, t.start_ns, t.end_ns, t.root_service, \
     t.root_operation, t.root_start_ns, t.span_count, t.error_count, t.services, t.operations, \
     t.span_mask";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Maps a SQLite error: disk full is retryable, corruption is named, the rest is a backend error.
fn map_sql(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full,
        _ => backend(e),
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and starts the writer thread.
    ///
    /// Blocking: call it before serving, or from a blocking context.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a damaged file (left untouched), [`StoreError::Incompatible`]
    /// for a database of another application or a newer schema, [`StoreError::Io`] when the
    /// file cannot be opened.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let conn = Connection::open_with_flags(
            &path,
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
            if version > 0 {
                eprintln!(
                    "collector: migrating {shown} from schema version {version} to \
                     {SCHEMA_VERSION} (rewrites the search indexes; about a minute per 10M spans)"
                );
            }
            // One transaction: on failure (e.g. disk full) the file is left as it was.
            conn.execute_batch(&format!(
                "BEGIN; {base} {v2} {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| {
                if is_corruption(&e) || version == 0 {
                    corrupt(e)
                } else {
                    StoreError::Io {
                        context: format!(
                            "migrating {shown} from schema version {version} to \
                             {SCHEMA_VERSION} (nothing was changed)"
                        ),
                        detail: e.to_string(),
                    }
                }
            })?;
        }

        // The WAL is checkpointed by a background connection (see `Checkpointer`), not by the
        // writer after its commits.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(corrupt)?;
        let checkpointer = Checkpointer::start(path.clone())?;
        let index_attributes = Arc::new(options.index_attributes.clone());
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let (commit_tx, commit_rx) = watch::channel(0u64);
        let writer = std::thread::Builder::new()
            .name("spanline-sqlite-writer".to_owned())
            .spawn(move || run_writer(conn, rx, commit_tx, index_attributes, checkpointer))
            .map_err(|e| StoreError::Io {
                context: "starting the writer thread".to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                idle_readers: Mutex::new(Vec::new()),
            }),
            tx,
            commits: commit_rx,
            enqueue_timeout: options.enqueue_timeout,
            writer: Mutex::new(Some(writer)),
        })
    }

    async fn enqueue(&self, msg: WriterMsg) -> Result<(), StoreError> {
        match tokio::time::timeout(self.enqueue_timeout, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Overloaded),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(backend)?
    }
}

impl Inner {
    fn with_reader<T>(
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

// ---------------------------------------------------------------------------------------------
// Writer thread
// ---------------------------------------------------------------------------------------------

fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriterMsg>,
    commits: watch::Sender<u64>,
    index_attributes: Arc<AttributeIndex>,
    mut checkpointer: Checkpointer,
) {
    // Freeing a group's spans (every `String` and `Vec` of the model) is about 5% of the
    // writer's CPU; a helper thread does it after the replies went out.
    let (free, to_free) = std::sync::mpsc::channel::<Vec<Item>>();
    let freer = std::thread::Builder::new()
        .name("spanline-free".to_owned())
        .spawn(move || to_free.into_iter().for_each(drop))
        .ok();
    let mut shutdown_replies = Vec::new();
    while shutdown_replies.is_empty() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut spans_in_group = first.span_count();
        let mut group = vec![first];
        while spans_in_group < MAX_GROUP_SPANS {
            match rx.try_recv() {
                Ok(msg) => {
                    spans_in_group += msg.span_count();
                    group.push(msg);
                }
                Err(_) => break,
            }
        }
        let done = process_group(
            &mut conn,
            group,
            &mut shutdown_replies,
            &commits,
            &index_attributes,
        );
        if freer.is_some() {
            // Without the helper thread (it could not start), `done` is dropped here.
            let _ = free.send(done);
        }
        checkpointer.after_commit(&conn, spans_in_group);
    }
    // Refuse what is still queued: those requests were never acknowledged.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        match msg {
            WriterMsg::Write { reply, .. } => {
                let _ = reply.send(Err(StoreError::Closed));
            }
            WriterMsg::Probe { reply } => {
                let _ = reply.send(Err(StoreError::Closed));
            }
            WriterMsg::Retention { reply, .. } => {
                let _ = reply.send(Err(StoreError::Closed));
            }
            WriterMsg::Shutdown { reply } => shutdown_replies.push(reply),
        }
    }
    drop(free);
    if let Some(freer) = freer {
        let _ = freer.join();
    }
    checkpointer.stop();
    if let Err(e) = conn.execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);") {
        eprintln!("collector: final WAL checkpoint failed (data is safe in the WAL): {e}");
    }
    drop(conn);
    for reply in shutdown_replies {
        let _ = reply.send(());
    }
}

/// WAL frames (pages) above which the writer checkpoints itself: bounds the WAL at about
/// 32 MiB of 4 KiB pages when the background checkpoints cannot catch up with a busy writer.
const WAL_LIMIT_FRAMES: i64 = 8192;
/// Spans after which the writer checkpoints itself even without a WAL size from the
/// background connection.
const WRITER_CHECKPOINT_SPANS: usize = 200_000;
/// How often the background connection checkpoints the WAL.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// Checkpoints the WAL from a second connection on its own thread, so the writer does not pay
/// for copying pages into the database file (`wal_autocheckpoint = 0` on the writer).
///
/// A `PASSIVE` checkpoint never blocks the writer, but while the writer keeps appending it may
/// never back-fill the whole WAL, and SQLite only restarts the WAL from its beginning once it
/// has. So the writer runs a `PASSIVE` checkpoint itself when the background connection saw
/// more than [`WAL_LIMIT_FRAMES`] frames in the WAL (or after [`WRITER_CHECKPOINT_SPANS`]):
/// cheap, since the background connection has already copied nearly all frames, and it bounds
/// the WAL (`journal_size_limit` truncates it after).
struct Checkpointer {
    /// Frames in the WAL at the background connection's last checkpoint.
    wal_frames: Arc<std::sync::atomic::AtomicI64>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    spans_since: usize,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Result<Self, StoreError> {
        let io = |e: &dyn std::fmt::Display| StoreError::Io {
            context: "starting the WAL checkpointer".to_owned(),
            detail: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&e))?;
        conn.execute_batch("PRAGMA busy_timeout = 1000; PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| io(&e))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let wal_frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let frames = Arc::clone(&wal_frames);
        let thread = std::thread::Builder::new()
            .name("spanline-ckpt".to_owned())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    // Busy (another checkpoint running) or an I/O error: try again later;
                    // the writer's own checkpoints still bound the WAL.
                    if let Ok(log) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                    {
                        frames.store(log, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| io(&e))?;
        Ok(Self {
            wal_frames,
            stop: Some(stop),
            thread: Some(thread),
            spans_since: 0,
        })
    }

    /// Called by the writer after each group.
    fn after_commit(&mut self, conn: &Connection, spans: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.spans_since += spans;
        if self.spans_since >= WRITER_CHECKPOINT_SPANS
            || self.wal_frames.load(Relaxed) >= WAL_LIMIT_FRAMES
        {
            self.spans_since = 0;
            self.wal_frames.store(0, Relaxed);
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }

    /// Stops the background thread (before the writer's final `TRUNCATE` checkpoint).
    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Pending {
    Write(
        oneshot::Sender<Result<WriteOutcome, StoreError>>,
        Result<WriteOutcome, StoreError>,
    ),
    Probe(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Retention(
        oneshot::Sender<Result<RetentionOutcome, StoreError>>,
        Result<RetentionOutcome, StoreError>,
    ),
}

impl Pending {
    fn finish(self) {
        match self {
            Self::Write(reply, r) => {
                let _ = reply.send(r);
            }
            Self::Probe(reply, r) => {
                let _ = reply.send(r);
            }
            Self::Retention(reply, r) => {
                let _ = reply.send(r);
            }
        }
    }
}

/// One message of a group, without its reply channel.
enum Item {
    Write(Prepared),
    Probe,
    Retention(RetentionPolicy),
}

/// The reply channel of an [`Item`].
enum Reply {
    Write(oneshot::Sender<Result<WriteOutcome, StoreError>>),
    Probe(oneshot::Sender<Result<(), StoreError>>),
    Retention(oneshot::Sender<Result<RetentionOutcome, StoreError>>),
}

/// What an [`Item`] came to.
enum ItemResult {
    Write(Result<WriteOutcome, StoreError>),
    Probe(Result<(), StoreError>),
    Retention(Result<RetentionOutcome, StoreError>),
}

/// Why [`apply_group`] gave up.
enum GroupFailure {
    /// A request failed without savepoints: roll back and apply again with them.
    Retry,
    /// The transaction is lost (or could not start / commit): every request gets this error.
    Fatal(StoreError),
}

/// Applies a group of requests in one transaction, commits, then replies.
///
/// The requests are applied without savepoints first (savepoints make SQLite copy every page
/// a request touches into a statement journal). Only if a request fails is the whole group
/// rolled back and applied again with a `SAVEPOINT` per request, so a failing request is all
/// or nothing and the others still commit (reliability.md §6 C6).
///
/// Returns the group's items, for the caller to free off the writer thread.
fn process_group(
    conn: &mut Connection,
    group: Vec<WriterMsg>,
    shutdown_replies: &mut Vec<oneshot::Sender<()>>,
    commits: &watch::Sender<u64>,
    index_attributes: &AttributeIndex,
) -> Vec<Item> {
    let mut items = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    for msg in group {
        match msg {
            WriterMsg::Shutdown { reply } => shutdown_replies.push(reply),
            WriterMsg::Write { batch, reply } => {
                items.push(Item::Write(batch));
                replies.push(Reply::Write(reply));
            }
            WriterMsg::Probe { reply } => {
                items.push(Item::Probe);
                replies.push(Reply::Probe(reply));
            }
            WriterMsg::Retention { policy, reply } => {
                items.push(Item::Retention(policy));
                replies.push(Reply::Retention(reply));
            }
        }
    }
    if items.is_empty() {
        return items;
    }
    let mut outcome = apply_group(conn, &items, false, index_attributes);
    if matches!(outcome, Err(GroupFailure::Retry)) {
        outcome = apply_group(conn, &items, true, index_attributes);
    }
    let results = match outcome {
        Ok(results) => results,
        Err(GroupFailure::Fatal(err)) => replies
            .iter()
            .map(|r| match r {
                Reply::Write(_) => ItemResult::Write(Err(err.clone())),
                Reply::Probe(_) => ItemResult::Probe(Err(err.clone())),
                Reply::Retention(_) => ItemResult::Retention(Err(err.clone())),
            })
            .collect(),
        Err(GroupFailure::Retry) => {
            let err = backend("a request failed and the retry with savepoints asked again");
            replies
                .iter()
                .map(|_| ItemResult::Write(Err(err.clone())))
                .collect()
        }
    };
    let committed = results.iter().any(|r| match r {
        ItemResult::Write(r) => r.is_ok(),
        ItemResult::Probe(r) => r.is_ok(),
        ItemResult::Retention(r) => r.is_ok(),
    });
    for (reply, result) in replies.into_iter().zip(results) {
        let p = match (reply, result) {
            (Reply::Write(tx), ItemResult::Write(r)) => Pending::Write(tx, r),
            (Reply::Probe(tx), ItemResult::Probe(r)) => Pending::Probe(tx, r),
            (Reply::Retention(tx), ItemResult::Retention(r)) => Pending::Retention(tx, r),
            (reply, _) => {
                // Unreachable: results are built in the order of the items.
                let err = backend("writer reply mismatch");
                match reply {
                    Reply::Write(tx) => Pending::Write(tx, Err(err)),
                    Reply::Probe(tx) => Pending::Probe(tx, Err(err)),
                    Reply::Retention(tx) => Pending::Retention(tx, Err(err)),
                }
            }
        };
        p.finish();
    }
    if committed {
        commits.send_modify(|n| *n += 1);
    }
    items
}

/// One attempt at a group: BEGIN, every item, the group's index rows, COMMIT.
fn apply_group(
    conn: &mut Connection,
    items: &[Item],
    savepoints: bool,
    index_attributes: &AttributeIndex,
) -> Result<Vec<ItemResult>, GroupFailure> {
    let fatal = |e: StoreError| GroupFailure::Fatal(e);
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| fatal(map_sql(e)))?;
    let mut index = GroupIndex::default();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Write(batch) => {
                let result = if savepoints {
                    let sp = tx.savepoint().map_err(|e| fatal(map_sql(e)))?;
                    match insert_spans(&sp, batch) {
                        Ok(done) => sp.commit().map_err(map_sql).map(|()| done),
                        Err(e) => Err(e),
                    }
                } else {
                    insert_spans(&tx, batch)
                };
                match result {
                    Ok((outcome, inserted)) => {
                        index.add(inserted);
                        results.push(ItemResult::Write(Ok(outcome)));
                    }
                    // SQLite rolled the whole transaction back (disk full, I/O error).
                    Err(e) if tx.is_autocommit() => return Err(fatal(e)),
                    Err(_) if !savepoints => return Err(GroupFailure::Retry),
                    Err(e) => results.push(ItemResult::Write(Err(e))),
                }
            }
            Item::Probe => {
                let result = tx
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('health_probe', ?1) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [format!("{:?}", std::time::SystemTime::now())],
                    )
                    .map(|_| ())
                    .map_err(map_sql);
                if let Err(e) = &result
                    && tx.is_autocommit()
                {
                    return Err(fatal(e.clone()));
                }
                results.push(ItemResult::Probe(result));
            }
            Item::Retention(policy) => {
                // Index rows of earlier requests first: retention may delete their traces.
                index.flush(&tx, index_attributes).map_err(fatal)?;
                let result = retention_batch(&mut tx, policy);
                if let Err(e) = &result
                    && tx.is_autocommit()
                {
                    return Err(fatal(e.clone()));
                }
                results.push(ItemResult::Retention(result));
            }
        }
    }
    index.flush(&tx, index_attributes).map_err(fatal)?;
    tx.commit().map_err(|e| fatal(map_sql(e)))?;
    Ok(results)
}

/// The search-index work for the spans a group stored, folded per trace and written once
/// before the commit, in trace-id order: one summary upsert per trace per group, not one per
/// request.
#[derive(Default)]
struct GroupIndex<'a> {
    traces: std::collections::BTreeMap<TraceId, Vec<&'a Span>>,
    operations: HashSet<(&'a str, &'a str, i32)>,
}

impl<'a> GroupIndex<'a> {
    fn add(&mut self, inserted: Vec<&'a Span>) {
        for span in inserted {
            self.operations
                .insert((&span.service_name, &span.name, span.kind.as_i32()));
            self.traces.entry(span.trace_id).or_default().push(span);
        }
    }

    fn flush(&mut self, conn: &Connection, which: &AttributeIndex) -> Result<(), StoreError> {
        let traces = std::mem::take(&mut self.traces);
        // Summaries first. A trace whose start moved had its index rows deleted and read back
        // from its stored spans (`rebuilt`); they are inserted again below at the new start.
        let mut starts: Vec<(i64, bool)> = Vec::with_capacity(traces.len());
        let mut rebuilt: Vec<(TraceId, i64, StoredRows)> = Vec::new();
        for (trace_id, spans) in &traces {
            let (start, rows) = update_trace(conn, *trace_id, spans)?;
            starts.push((start, rows.is_some()));
            if let Some(rows) = rows {
                rebuilt.push((*trace_id, start, rows));
            }
        }
        let mut services: Vec<(&str, i64, TraceId)> = Vec::new();
        let mut pairs: Vec<(&str, &str, i64, TraceId)> = Vec::new();
        // Attribute rows grouped by (key, value): sorting the few distinct pairs and then each
        // pair's (start, trace) list is much cheaper than sorting every row by its strings.
        let mut attrs: HashMap<AttrPair<'_>, Vec<(i64, TraceId)>> = HashMap::new();
        for ((trace_id, spans), &(start, was_rebuilt)) in traces.iter().zip(&starts) {
            if was_rebuilt {
                continue;
            }
            for span in spans {
                services.push((&span.service_name, start, *trace_id));
                pairs.push((&span.service_name, &span.name, start, *trace_id));
                if *which == AttributeIndex::None {
                    continue;
                }
                for kv in span.attributes.iter().filter(|kv| which.wants(&kv.key)) {
                    if let Some(text) = attr_index_text(&kv.value) {
                        attrs
                            .entry((&kv.key, text))
                            .or_default()
                            .push((start, *trace_id));
                    }
                }
            }
        }
        for (trace_id, start, rows) in &rebuilt {
            for service in &rows.services {
                services.push((service, *start, *trace_id));
            }
            for (service, operation) in &rows.pairs {
                pairs.push((service, operation, *start, *trace_id));
            }
            for (key, value) in rows.attrs.iter().filter(|(k, _)| which.wants(k)) {
                attrs
                    .entry((key, Cow::Borrowed(value)))
                    .or_default()
                    .push((*start, *trace_id));
            }
        }
        // In key order (each table is one B-tree), once per trace: neighbouring inserts touch
        // the same pages, and a trace's rows go to the end of each (key, value) run.
        services.sort_unstable();
        services.dedup();
        insert_rows(
            conn,
            "trace_services (service, start_ns, trace_id)",
            3,
            &services,
            |stmt, at, (service, start, trace_id)| {
                stmt.raw_bind_parameter(at, service)?;
                stmt.raw_bind_parameter(at + 1, start)?;
                stmt.raw_bind_parameter(at + 2, trace_id.0)
            },
        )?;
        pairs.sort_unstable();
        pairs.dedup();
        insert_rows(
            conn,
            "trace_operations (service, operation, start_ns, trace_id)",
            4,
            &pairs,
            |stmt, at, (service, operation, start, trace_id)| {
                stmt.raw_bind_parameter(at, service)?;
                stmt.raw_bind_parameter(at + 1, operation)?;
                stmt.raw_bind_parameter(at + 2, start)?;
                stmt.raw_bind_parameter(at + 3, trace_id.0)
            },
        )?;
        let mut pairs_of_attrs: Vec<_> = attrs.into_iter().collect();
        pairs_of_attrs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut attrs: Vec<(&str, &str, i64, TraceId)> = Vec::new();
        for (_, rows) in &mut pairs_of_attrs {
            rows.sort_unstable();
            rows.dedup();
        }
        for ((key, value), rows) in &pairs_of_attrs {
            attrs.extend(
                rows.iter()
                    .map(|&(start, id)| (*key, value.as_ref(), start, id)),
            );
        }
        insert_rows(
            conn,
            "span_attrs (key, value, start_ns, trace_id)",
            4,
            &attrs,
            |stmt, at, (key, value, start, trace_id)| {
                stmt.raw_bind_parameter(at, key)?;
                stmt.raw_bind_parameter(at + 1, value)?;
                stmt.raw_bind_parameter(at + 2, start)?;
                stmt.raw_bind_parameter(at + 3, trace_id.0)
            },
        )?;
        if !self.operations.is_empty() {
            let mut insert_op = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO operations (service, name, kind) VALUES (?1, ?2, ?3)",
                )
                .map_err(map_sql)?;
            for (service, name, kind) in std::mem::take(&mut self.operations) {
                insert_op
                    .execute(params![service, name, kind])
                    .map_err(map_sql)?;
            }
        }
        Ok(())
    }
}

/// Rows per multi-row `INSERT` into the search-index tables.
const ROWS_PER_INSERT: usize = 32;

/// `INSERT OR IGNORE INTO <into> VALUES (...), ...`: chunks of [`ROWS_PER_INSERT`] rows in
/// one statement each, the rest one row per statement (two cached statements per table).
fn insert_rows<R>(
    conn: &Connection,
    into: &str,
    columns: usize,
    rows: &[R],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let sql = |n: usize| {
        let one = format!("({})", vec!["?"; columns].join(", "));
        format!(
            "INSERT OR IGNORE INTO {into} VALUES {}",
            vec![one; n].join(", ")
        )
    };
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = conn
            .prepare_cached(&sql(ROWS_PER_INSERT))
            .map_err(map_sql)?;
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut stmt, i * columns + 1, row).map_err(map_sql)?;
            }
            stmt.raw_execute().map_err(map_sql)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(&sql(1)).map_err(map_sql)?;
        for row in rest {
            bind(&mut stmt, 1, row).map_err(map_sql)?;
            stmt.raw_execute().map_err(map_sql)?;
        }
    }
    Ok(())
}

/// Inserts one request's spans (and their `entry_spans` rows); returns the outcome and the
/// spans that were new (not duplicates).
fn insert_spans<'a>(
    conn: &Connection,
    batch: &'a Prepared,
) -> Result<(WriteOutcome, Vec<&'a Span>), StoreError> {
    let spans = &batch.spans;
    let mut outcome = WriteOutcome::default();
    let mut insert = conn.prepare_cached(INSERT_SPAN).map_err(map_sql)?;
    let mut resource_ids: HashMap<usize, i64> = HashMap::new();
    let mut inserted: Vec<&Span> = Vec::with_capacity(spans.len());
    for (span, detail) in spans.iter().zip(&batch.details) {
        let key = Arc::as_ptr(&span.resource) as usize;
        let resource_id = match resource_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = match batch.resources.get(&key) {
                    Some(bytes) => resource_id(conn, bytes)?,
                    None => resource_id(
                        conn,
                        &convert::resource_to_pb(&span.resource).encode_to_vec(),
                    )?,
                };
                resource_ids.insert(key, id);
                id
            }
        };
        let changed = insert
            .execute(params![
                &span.trace_id.0[..],
                &span.span_id.0[..],
                span.kind.as_i32(),
                span.parent_span_id.as_ref().map(|p| &p.0[..]),
                span.service_name,
                span.name,
                to_i64(span.start_time_unix_nano),
                to_i64(span.duration_ns()),
                span.status.code.as_i32(),
                resource_id,
                span.scope.name,
                span.scope.version,
                detail,
            ])
            .map_err(map_sql)?;
        if changed == 1 {
            outcome.stored += 1;
            inserted.push(span);
        } else {
            outcome.duplicates += 1;
        }
    }
    insert_entry_spans(conn, &inserted)?;
    Ok((outcome, inserted))
}

fn resource_id(conn: &Connection, encoded: &[u8]) -> Result<i64, StoreError> {
    let mut insert = conn
        .prepare_cached("INSERT OR IGNORE INTO resources (encoded) VALUES (?1)")
        .map_err(map_sql)?;
    if insert.execute([encoded]).map_err(map_sql)? == 1 {
        return Ok(conn.last_insert_rowid());
    }
    conn.prepare_cached("SELECT id FROM resources WHERE encoded = ?1")
        .map_err(map_sql)?
        .query_row([encoded], |r| r.get(0))
        .map_err(map_sql)
}

/// An attribute index entry's (key, value text).
type AttrPair<'a> = (&'a str, Cow<'a, str>);

/// Folds newly inserted spans into the trace's summary row; returns the trace start (as
/// stored). When an existing trace's start moved, its index rows at the old start are deleted
/// and returned (read back from all its stored spans, the new ones included) so the caller
/// inserts them at the new start.
fn update_trace(
    conn: &Connection,
    trace_id: TraceId,
    spans: &[&Span],
) -> Result<(i64, Option<StoredRows>), StoreError> {
    let existing = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ?1"
        ))
        .map_err(map_sql)?
        .query_row([&trace_id.0[..]], row_to_summary)
        .optional()
        .map_err(map_sql)?;
    let existed = existing.is_some();
    let mut summary = existing.unwrap_or_else(|| TraceSummary::new(trace_id));
    let old_start = summary.start_time_unix_nano;
    for span in spans {
        summary.add_span(span);
    }
    let start = to_i64(summary.start_time_unix_nano);
    conn.prepare_cached(
        "INSERT INTO traces (trace_id, start_ns, end_ns, duration_ns, root_service, \
         root_operation, root_start_ns, span_count, error_count, services, operations, \
         span_mask) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (trace_id) DO UPDATE SET start_ns = excluded.start_ns, \
         end_ns = excluded.end_ns, duration_ns = excluded.duration_ns, \
         root_service = excluded.root_service, root_operation = excluded.root_operation, \
         root_start_ns = excluded.root_start_ns, span_count = excluded.span_count, \
         error_count = excluded.error_count, services = excluded.services, \
         operations = excluded.operations, span_mask = excluded.span_mask",
    )
    .map_err(map_sql)?
    .execute(params![
        &trace_id.0[..],
        start,
        to_i64(summary.end_time_unix_nano),
        to_i64(summary.duration_ns()),
        summary.root_service,
        summary.root_operation,
        summary.root_start_time_unix_nano.map(to_i64),
        to_i64(summary.span_count),
        to_i64(summary.error_count),
        serde_json::to_string(&summary.services).map_err(backend)?,
        serde_json::to_string(&summary.operations).map_err(backend)?,
        i64::from(summary.span_mask),
    ])
    .map_err(map_sql)?;
    if existed && old_start != summary.start_time_unix_nano {
        let rows = StoredRows::read(conn, trace_id)?;
        rows.delete(conn, trace_id, to_i64(old_start))?;
        return Ok((start, Some(rows)));
    }
    Ok((start, None))
}

/// The search-index rows of one trace (`trace_services`, `trace_operations`, `span_attrs`),
/// computed from its stored spans. The index tables are keyed by what a search walks, with no
/// trace-id key, so a trace's rows are found by recomputing their keys: every row of a trace
/// carries the trace's current start (`traces.start_ns`).
#[derive(Default)]
struct StoredRows {
    services: Vec<String>,
    pairs: Vec<(String, String)>,
    /// Every indexable attribute, whatever [`AttributeIndex`] says (deleting a row that was
    /// never written is harmless; the option may have changed since).
    attrs: Vec<(String, String)>,
}

impl StoredRows {
    fn read(conn: &Connection, trace_id: TraceId) -> Result<Self, StoreError> {
        let mut stmt = conn
            .prepare_cached("SELECT service, name, detail FROM spans WHERE trace_id = ?1")
            .map_err(map_sql)?;
        let mut rows = stmt.query([&trace_id.0[..]]).map_err(map_sql)?;
        let mut out = Self::default();
        while let Some(row) = rows.next().map_err(map_sql)? {
            let service: String = row.get(0).map_err(map_sql)?;
            let name: String = row.get(1).map_err(map_sql)?;
            let detail = row
                .get_ref(2)
                .map_err(map_sql)?
                .as_blob()
                .map_err(backend)?;
            let detail = SpanDetail::decode(detail).map_err(backend)?;
            for kv in convert::attributes_from_pb(detail.attributes) {
                if let Some(text) = attr_index_text(&kv.value) {
                    out.attrs.push((kv.key, text.into_owned()));
                }
            }
            out.pairs.push((service.clone(), name));
            out.services.push(service);
        }
        out.services.sort_unstable();
        out.services.dedup();
        out.pairs.sort_unstable();
        out.pairs.dedup();
        out.attrs.sort_unstable();
        out.attrs.dedup();
        Ok(out)
    }

    /// Deletes these rows of `trace_id` at trace start `start`.
    fn delete(&self, conn: &Connection, trace_id: TraceId, start: i64) -> Result<(), StoreError> {
        let id = &trace_id.0[..];
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM trace_services WHERE service = ?1 AND start_ns = ?2 AND trace_id = ?3",
            )
            .map_err(map_sql)?;
        for service in &self.services {
            stmt.execute(params![service, start, id]).map_err(map_sql)?;
        }
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM trace_operations WHERE service = ?1 AND operation = ?2 \
                 AND start_ns = ?3 AND trace_id = ?4",
            )
            .map_err(map_sql)?;
        for (service, operation) in &self.pairs {
            stmt.execute(params![service, operation, start, id])
                .map_err(map_sql)?;
        }
        let mut stmt = conn
            .prepare_cached(
                "DELETE FROM span_attrs WHERE key = ?1 AND value = ?2 AND start_ns = ?3 \
                 AND trace_id = ?4",
            )
            .map_err(map_sql)?;
        for (key, value) in &self.attrs {
            stmt.execute(params![key, value, start, id])
                .map_err(map_sql)?;
        }
        Ok(())
    }
}

// Write-path additions of schema version 2 (kept apart from the span insert above).

/// One `entry_spans` row per newly stored SERVER or CONSUMER span (stats, dependencies).
fn insert_entry_spans(conn: &Connection, inserted: &[&Span]) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO entry_spans (start_ns, service, name, duration_ns, error, trace_id, \
             parent_span_id, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(map_sql)?;
    for span in inserted.iter().filter(|s| super::memory::is_entry(s)) {
        insert
            .execute(params![
                to_i64(span.start_time_unix_nano),
                span.service_name,
                span.name,
                to_i64(span.duration_ns()),
                i64::from(span.is_error()),
                &span.trace_id.0[..],
                span.parent_span_id.as_ref().map(|p| p.0.to_vec()),
                span.kind.as_i32(),
            ])
            .map_err(map_sql)?;
    }
    Ok(())
}

/// Deletes one retention batch (see the module docs) inside the writer's transaction.
fn retention_batch(
    tx: &mut Transaction<'_>,
    policy: &RetentionPolicy,
) -> Result<RetentionOutcome, StoreError> {
    let batch = policy.batch_traces.max(1);
    let sp = tx.savepoint().map_err(map_sql)?;
    let mut outcome = RetentionOutcome::default();
    let mut victims: Vec<(Vec<u8>, i64)> = Vec::new();
    if let Some(cutoff) = policy.delete_before_unix_nano {
        let mut stmt = sp
            .prepare_cached(
                "SELECT trace_id, start_ns FROM traces WHERE start_ns < ?1 \
                 ORDER BY start_ns LIMIT ?2",
            )
            .map_err(map_sql)?;
        let rows = stmt
            .query_map(params![to_i64(cutoff), (batch + 1) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(map_sql)?;
        victims = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_sql)?;
        if victims.len() > batch {
            victims.truncate(batch);
            outcome.more = true;
        }
    }
    if victims.len() < batch
        && let Some(max) = policy.max_bytes
        && live_bytes(&sp)? > max
    {
        let mut stmt = sp
            .prepare_cached("SELECT trace_id, start_ns FROM traces ORDER BY start_ns LIMIT ?1")
            .map_err(map_sql)?;
        let rows = stmt
            .query_map(params![batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_sql)?;
        let have: HashSet<Vec<u8>> = victims.iter().map(|(id, _)| id.clone()).collect();
        for row in rows {
            let row: (Vec<u8>, i64) = row.map_err(map_sql)?;
            if victims.len() < batch && !have.contains(&row.0) {
                victims.push(row);
            }
        }
    }
    let mut entry_cutoff = policy.delete_before_unix_nano.map(to_i64);
    for (id, start) in &victims {
        let trace_id = TraceId(blob_array::<16>(id)?);
        StoredRows::read(&sp, trace_id)?.delete(&sp, trace_id, *start)?;
        outcome.spans_deleted += sp
            .prepare_cached("DELETE FROM spans WHERE trace_id = ?1")
            .map_err(map_sql)?
            .execute([id])
            .map_err(map_sql)? as u64;
        sp.prepare_cached("DELETE FROM traces WHERE trace_id = ?1")
            .map_err(map_sql)?
            .execute([id])
            .map_err(map_sql)?;
        outcome.traces_deleted += 1;
        entry_cutoff = Some(entry_cutoff.unwrap_or(0).max(start.saturating_add(1)));
    }
    if let Some(cutoff) = entry_cutoff {
        let limit = (batch * 20) as i64;
        let n = sp
            .prepare_cached(
                "DELETE FROM entry_spans WHERE rowid IN (SELECT rowid FROM entry_spans \
                 WHERE start_ns < ?1 ORDER BY start_ns LIMIT ?2)",
            )
            .map_err(map_sql)?
            .execute(params![cutoff, limit])
            .map_err(map_sql)?;
        if n as i64 == limit {
            outcome.more = true;
        }
    }
    if let Some(max) = policy.max_bytes
        && outcome.traces_deleted > 0
        && live_bytes(&sp)? > max
    {
        outcome.more = true;
    }
    sp.commit().map_err(map_sql)?;
    Ok(outcome)
}

/// Bytes of live (non-free) pages.
fn live_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(map_sql)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok(to_u64(pages.saturating_mul(pragma("page_size")?)))
}

fn encode_detail(span: &Span) -> Vec<u8> {
    SpanDetail {
        attributes: convert::attributes_to_pb(&span.attributes),
        events: span.events.iter().map(convert::event_to_pb).collect(),
        links: span.links.iter().map(convert::link_to_pb).collect(),
        status_message: span.status.message.clone(),
        trace_state: span.trace_state.clone(),
        flags: span.flags,
        dropped_attributes_count: span.dropped_attributes_count,
        dropped_events_count: span.dropped_events_count,
        dropped_links_count: span.dropped_links_count,
        warnings: span.warnings.clone(),
    }
    .encode_to_vec()
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

fn blob_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| backend(format!("stored id has {} bytes, expected {N}", bytes.len())))
}

fn row_to_summary(row: &Row<'_>) -> rusqlite::Result<TraceSummary> {
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
    })
}

fn read_trace(conn: &Connection, trace_id: TraceId) -> Result<Option<StoredTrace>, StoreError> {
    // One read transaction so spans and summary are from the same commit.
    let tx = conn.unchecked_transaction().map_err(backend)?;
    let summary = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ?1"
        ))
        .map_err(backend)?
        .query_row([&trace_id.0[..]], row_to_summary)
        .optional()
        .map_err(backend)?;
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
    let mut resources: HashMap<i64, Arc<Resource>> = HashMap::new();
    let mut scopes: HashMap<(String, String), Arc<Scope>> = HashMap::new();
    let mut spans = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        spans.push(row_to_span(row, trace_id, &mut resources, &mut scopes)?);
    }
    drop(rows);
    drop(stmt);
    tx.finish().map_err(backend)?;
    Ok(Some(StoredTrace { summary, spans }))
}

fn row_to_span(
    row: &Row<'_>,
    trace_id: TraceId,
    resources: &mut HashMap<i64, Arc<Resource>>,
    scopes: &mut HashMap<(String, String), Arc<Scope>>,
) -> Result<Span, StoreError> {
    let span_id: Vec<u8> = row.get(0).map_err(backend)?;
    let parent: Option<Vec<u8>> = row.get(2).map_err(backend)?;
    let resource_id: i64 = row.get(8).map_err(backend)?;
    let resource = match resources.get(&resource_id) {
        Some(r) => Arc::clone(r),
        None => {
            let encoded: Option<Vec<u8>> = row.get(12).map_err(backend)?;
            let pb = match encoded {
                Some(bytes) => Some(PbResource::decode(&bytes[..]).map_err(backend)?),
                None => None,
            };
            let r = Arc::new(convert::resource_from_pb(pb));
            resources.insert(resource_id, Arc::clone(&r));
            r
        }
    };
    let scope_key: (String, String) = (row.get(9).map_err(backend)?, row.get(10).map_err(backend)?);
    let scope = Arc::clone(scopes.entry(scope_key.clone()).or_insert_with(|| {
        Arc::new(Scope {
            name: scope_key.0,
            version: scope_key.1,
        })
    }));
    let detail_bytes: Vec<u8> = row.get(11).map_err(backend)?;
    let detail = SpanDetail::decode(&detail_bytes[..]).map_err(backend)?;
    let start = to_u64(row.get(5).map_err(backend)?);
    let duration = to_u64(row.get(6).map_err(backend)?);
    let mut links = Vec::with_capacity(detail.links.len());
    for l in detail.links {
        links.push(convert::link_from_pb(l).map_err(backend)?);
    }
    Ok(Span {
        trace_id,
        span_id: SpanId(blob_array::<8>(&span_id)?),
        parent_span_id: match parent {
            Some(p) => Some(SpanId(blob_array::<8>(&p)?)),
            None => None,
        },
        trace_state: detail.trace_state,
        flags: detail.flags,
        name: row.get(4).map_err(backend)?,
        kind: SpanKind::from_i32(row.get(1).map_err(backend)?),
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(duration),
        status: Status {
            code: StatusCode::from_i32(row.get(7).map_err(backend)?),
            message: detail.status_message,
        },
        attributes: convert::attributes_from_pb(detail.attributes),
        events: detail
            .events
            .into_iter()
            .map(convert::event_from_pb)
            .collect(),
        links,
        dropped_attributes_count: detail.dropped_attributes_count,
        dropped_events_count: detail.dropped_events_count,
        dropped_links_count: detail.dropped_links_count,
        resource,
        scope,
        service_name: row.get(3).map_err(backend)?,
        warnings: detail.warnings,
    })
}

/// Search. Newest-first searches walk the most selective start-ordered index (operation,
/// service, then the first attribute, else `traces_by_start`) and stop at the limit; the
/// other filters are `EXISTS` probes on primary keys. Duration-ordered searches walk
/// `traces_by_duration` from the longest. Every value is a bound parameter.
fn find(conn: &Connection, q: &TraceQuery) -> Result<Vec<TraceSummary>, StoreError> {
    let mut args: Vec<SqlValue> = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    let text = |v: &String| SqlValue::Text(v.clone());
    let newest = q.sort == SortOrder::Newest;
    // Which filter drives the walk (newest first only).
    enum Drive {
        Traces,
        Operation,
        Service,
        Attribute,
    }
    let drive = match (&q.service, &q.operation, q.attributes.first()) {
        _ if !newest => Drive::Traces,
        (_, Some(_), _) => Drive::Operation,
        // An attribute value is nearly always more selective than a service: walking the
        // service's traces newest first and probing each for the attribute reads the whole
        // service when the value is rare.
        (_, None, Some(_)) => Drive::Attribute,
        (Some(_), None, None) => Drive::Service,
        (None, None, None) => Drive::Traces,
    };
    let (from, order, distinct) = match drive {
        Drive::Traces => ("traces t", "t", ""),
        Drive::Operation => {
            conds.push("x.operation = ?".to_owned());
            args.push(text(q.operation.as_ref().unwrap_or(&String::new())));
            if let Some(service) = &q.service {
                conds.push("x.service = ?".to_owned());
                args.push(text(service));
            }
            (
                "trace_operations x JOIN traces t ON t.trace_id = x.trace_id",
                "x",
                // Without a service, one trace can match through several services.
                if q.service.is_none() { "DISTINCT" } else { "" },
            )
        }
        Drive::Service => {
            conds.push("x.service = ?".to_owned());
            args.push(text(q.service.as_ref().unwrap_or(&String::new())));
            (
                "trace_services x JOIN traces t ON t.trace_id = x.trace_id",
                "x",
                "",
            )
        }
        Drive::Attribute => {
            let (key, value) = &q.attributes[0];
            conds.push("x.key = ? AND x.value = ?".to_owned());
            args.push(text(key));
            args.push(text(value));
            (
                "span_attrs x JOIN traces t ON t.trace_id = x.trace_id",
                "x",
                "",
            )
        }
    };
    if !matches!(drive, Drive::Operation | Drive::Service)
        && let Some(service) = &q.service
    {
        conds.push(
            "EXISTS (SELECT 1 FROM trace_services s WHERE s.service = ? \
             AND s.start_ns = t.start_ns AND s.trace_id = t.trace_id)"
                .to_owned(),
        );
        args.push(text(service));
    }
    if !matches!(drive, Drive::Operation)
        && let Some(operation) = &q.operation
    {
        let mut cond = "EXISTS (SELECT 1 FROM trace_operations o WHERE o.trace_id = t.trace_id \
             AND o.start_ns = t.start_ns AND o.operation = ?"
            .to_owned();
        args.push(text(operation));
        if let Some(service) = &q.service {
            cond.push_str(" AND o.service = ?");
            args.push(text(service));
        }
        cond.push(')');
        conds.push(cond);
    }
    let skip_attrs = usize::from(matches!(drive, Drive::Attribute));
    for (key, value) in q.attributes.iter().skip(skip_attrs) {
        conds.push(
            "EXISTS (SELECT 1 FROM span_attrs a WHERE a.key = ? AND a.value = ? \
             AND a.start_ns = t.start_ns AND a.trace_id = t.trace_id)"
                .to_owned(),
        );
        args.push(text(key));
        args.push(text(value));
    }
    if let Some(v) = q.start_time_min_unix_nano {
        conds.push(format!("{order}.start_ns >= ?"));
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.start_time_max_unix_nano {
        conds.push(format!("{order}.start_ns <= ?"));
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.min_duration_ns {
        conds.push("t.duration_ns >= ?".to_owned());
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if let Some(v) = q.max_duration_ns {
        conds.push("t.duration_ns <= ?".to_owned());
        args.push(SqlValue::Integer(to_i64(v)));
    }
    if q.errors_only {
        conds.push("t.error_count > 0".to_owned());
    }
    let mut mask_bits = Vec::new();
    if let Some(kind) = q.kind {
        mask_bits.push(span_mask_bit_kind(kind));
    }
    if let Some(status) = q.status {
        mask_bits.push(span_mask_bit_status(status));
    }
    for bit in mask_bits {
        conds.push("(t.span_mask & ?) != 0".to_owned());
        args.push(SqlValue::Integer(i64::from(bit)));
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    args.push(SqlValue::Integer(q.effective_limit() as i64));
    let order_by = if newest {
        format!("{order}.start_ns DESC, {order}.trace_id DESC")
    } else {
        "t.duration_ns DESC, t.trace_id DESC".to_owned()
    };
    let sql = format!(
        "SELECT {distinct} {SUMMARY_COLUMNS} FROM {from} {where_clause} \
         ORDER BY {order_by} LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), row_to_summary)
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

fn dependencies(conn: &Connection, w: TimeWindow) -> Result<Vec<DependencyEdge>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.service, e.service, count(*), \
             sum(CASE WHEN e.error != 0 OR p.status_code = 2 THEN 1 ELSE 0 END) \
             FROM entry_spans e \
             JOIN spans p ON p.trace_id = e.trace_id AND p.span_id = e.parent_span_id \
             WHERE e.start_ns >= ?1 AND e.start_ns < ?2 AND e.parent_span_id IS NOT NULL \
             AND p.service != e.service \
             GROUP BY p.service, e.service ORDER BY p.service, e.service",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![to_i64(w.start_unix_nano), to_i64(w.end_unix_nano)],
            |r| {
                Ok(DependencyEdge {
                    parent: r.get(0)?,
                    child: r.get(1)?,
                    call_count: to_u64(r.get(2)?),
                    error_count: to_u64(r.get(3)?),
                })
            },
        )
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
}

fn operation_samples(
    conn: &Connection,
    w: TimeWindow,
    service: Option<&str>,
) -> Result<Vec<OperationSamples>, StoreError> {
    let sql = if service.is_some() {
        "SELECT service, name, duration_ns, error FROM entry_spans \
         WHERE service = ?3 AND start_ns >= ?1 AND start_ns < ?2"
    } else {
        "SELECT service, name, duration_ns, error FROM entry_spans \
         WHERE start_ns >= ?1 AND start_ns < ?2"
    };
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let start = to_i64(w.start_unix_nano);
    let end = to_i64(w.end_unix_nano);
    let map = |r: &Row<'_>| -> rusqlite::Result<(String, String, u64, bool)> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            to_u64(r.get(2)?),
            r.get::<_, i64>(3)? != 0,
        ))
    };
    let rows = match service {
        Some(svc) => stmt.query_map(params![start, end, svc], map),
        None => stmt.query_map(params![start, end], map),
    }
    .map_err(backend)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(backend)?;
    Ok(group_samples(rows))
}

impl SpanStore for SqliteStore {
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        Box::pin(async move {
            if spans.is_empty() {
                return Ok(WriteOutcome::default());
            }
            let (reply, wait) = oneshot::channel();
            let batch = if spans.len() > PREPARE_INLINE_MAX_SPANS {
                tokio::task::spawn_blocking(move || Prepared::new(spans))
                    .await
                    .map_err(backend)?
            } else {
                Prepared::new(spans)
            };
            self.enqueue(WriterMsg::Write { batch, reply }).await?;
            wait.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>> {
        Box::pin(self.read(move |c| read_trace(c, trace_id)))
    }

    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>> {
        Box::pin(self.read(move |c| find(c, &query)))
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT DISTINCT service FROM operations ORDER BY service")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        }))
    }

    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, kind FROM operations WHERE service = ?1 ORDER BY name, kind",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([service], |r| {
                    Ok(Operation {
                        name: r.get(0)?,
                        kind: SpanKind::from_i32(r.get(1)?),
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        }))
    }

    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>> {
        Box::pin(self.read(move |c| dependencies(c, window)))
    }

    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>> {
        Box::pin(self.read(move |c| operation_samples(c, window, service.as_deref())))
    }

    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(async move {
            let (reply, wait) = oneshot::channel();
            self.enqueue(WriterMsg::Retention { policy, reply }).await?;
            wait.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn storage_bytes(&self) -> Option<u64> {
        let size = |suffix: &str| {
            let mut path = self.inner.path.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        };
        Some(size("") + size("-wal") + size("-shm"))
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (reply, wait) = oneshot::channel();
            self.enqueue(WriterMsg::Probe { reply }).await?;
            wait.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (reply, wait) = oneshot::channel();
            if self.tx.send(WriterMsg::Shutdown { reply }).await.is_ok() {
                let _ = wait.await;
            }
            let handle = self
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(handle) = handle {
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without an explicit shutdown, dropping the sender ends the writer after it has
        // committed everything queued; joining here keeps the file closed when we return.
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let (tx, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut self.tx, tx));
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default())
            .expect("open");
        (store, dir)
    }

    conformance::conformance_tests!(fresh());

    /// reliability.md §6 C6: one request of a group fails, the group is rolled back and
    /// applied again with a savepoint per request; the failing request stores nothing and
    /// the others commit.
    #[tokio::test]
    async fn a_failing_request_is_replayed_alone_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        SqliteStore::open(&path, SqliteOptions::default())
            .unwrap()
            .shutdown()
            .await;
        let mut conn = Connection::open(&path).unwrap();
        // A statement-level failure (the transaction survives): a request-level error,
        // not a lost transaction. A temporary trigger stands in for, say, a value SQLite
        // refuses.
        conn.execute_batch(
            "CREATE TEMP TRIGGER fail_marked BEFORE INSERT ON main.spans \
             WHEN NEW.name = 'fail-me' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
        let good_a = conformance::sample_trace(11);
        let mut bad = conformance::sample_trace(12);
        // Not the first span: the request fails part-way, after some of its rows went in.
        bad[2].name = "fail-me".to_owned();
        let good_b = conformance::sample_trace(13);

        let mut group = Vec::new();
        let mut answers = Vec::new();
        for spans in [&good_a, &bad, &good_b] {
            let (reply, answer) = oneshot::channel();
            group.push(WriterMsg::Write {
                batch: Prepared::new(spans.clone()),
                reply,
            });
            answers.push(answer);
        }
        let (commits, commit_count) = watch::channel(0u64);
        let mut shutdown_replies = Vec::new();
        process_group(
            &mut conn,
            group,
            &mut shutdown_replies,
            &commits,
            &AttributeIndex::All,
        );
        let results: Vec<_> = answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("every request is answered"))
            .collect();
        assert_eq!(results[0].as_ref().unwrap().stored, good_a.len());
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert_eq!(results[2].as_ref().unwrap().stored, good_b.len());
        assert_eq!(*commit_count.borrow(), 1, "the group committed once");
        // All or nothing: not even the rows written before the failing statement remain.
        let bad_rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM spans WHERE trace_id = ?1",
                [&bad[0].trace_id.0[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bad_rows, 0);
        drop(conn);

        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for spans in [&good_a, &good_b] {
            let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
            assert_eq!(got.spans.len(), spans.len());
        }
        assert!(store.get_trace(bad[0].trace_id).await.unwrap().is_none());
        let listed = store
            .find_traces(TraceQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.trace_id)
            .collect::<Vec<_>>();
        assert!(
            !listed.contains(&bad[0].trace_id),
            "no index rows of the failed request"
        );
        store.shutdown().await;
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::sample_trace(7);
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            store.write_spans(spans.clone()).await.unwrap();
            store.shutdown().await;
        }
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
        assert_eq!(got.spans.len(), spans.len());
        assert_eq!(got.summary.span_count, spans.len() as u64);
        let again = store.write_spans(spans.clone()).await.unwrap();
        assert_eq!(again.duplicates, spans.len(), "dedup works across restarts");
        assert_eq!(store.services().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn dropping_without_shutdown_still_commits_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let spans = conformance::sample_trace(8);
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            store.write_spans(spans.clone()).await.unwrap();
        }
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert!(store.get_trace(spans[0].trace_id).await.unwrap().is_some());
    }

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
                 ALTER TABLE trace_services RENAME TO ts3;
                 ALTER TABLE trace_operations RENAME TO to3;
                 ALTER TABLE span_attrs RENAME TO sa3;
                 DROP INDEX trace_operations_by_name;
                 {V2_INDEX_TABLES}
                 INSERT INTO trace_services SELECT service, trace_id, start_ns FROM ts3;
                 INSERT INTO trace_operations
                     SELECT service, operation, trace_id, start_ns FROM to3;
                 INSERT INTO span_attrs SELECT trace_id, key, value, start_ns FROM sa3;
                 DROP TABLE ts3; DROP TABLE to3; DROP TABLE sa3;
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
        let deleted = store
            .enforce_retention(RetentionPolicy {
                delete_before_unix_nano: Some(u64::MAX),
                max_bytes: None,
                batch_traces: 10,
            })
            .await
            .unwrap();
        assert_eq!(deleted.traces_deleted, 2);
        store.shutdown().await;
        let conn = Connection::open(&path).unwrap();
        for table in ["trace_services", "trace_operations", "span_attrs"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}: retention deleted every row by key");
        }
    }

    #[tokio::test]
    async fn index_rows_follow_a_trace_whose_start_moves_earlier() {
        let (store, dir) = fresh().await;
        let mut spans = conformance::demo_trace(6, true, 5.0);
        spans.sort_by_key(|s| s.start_time_unix_nano);
        let root = spans.remove(0);
        store.write_spans(spans.clone()).await.unwrap();
        store.write_spans(vec![root.clone()]).await.unwrap();
        let q = TraceQuery {
            service: Some(root.service_name.clone()),
            attributes: vec![("http.response.status_code".into(), "503".into())],
            ..TraceQuery::default()
        };
        let found = store.find_traces(q).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start_time_unix_nano, root.start_time_unix_nano);
        // Every index row carries the new start; none is left at the old one.
        let conn = Connection::open(dir.path().join("spanline.db")).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        for table in ["trace_services", "trace_operations", "span_attrs"] {
            assert!(
                count(&format!("SELECT count(*) FROM {table}")) > 0,
                "{table}"
            );
            let stale = count(&format!(
                "SELECT count(*) FROM {table} x JOIN traces t \
                 ON t.trace_id = x.trace_id WHERE x.start_ns != t.start_ns"
            ));
            assert_eq!(stale, 0, "{table}");
        }
        // Retention finds the moved rows by their key.
        let outcome = store
            .enforce_retention(RetentionPolicy {
                delete_before_unix_nano: Some(u64::MAX),
                max_bytes: None,
                batch_traces: 10,
            })
            .await
            .unwrap();
        assert_eq!(outcome.traces_deleted, 1);
        store.shutdown().await;
        for table in ["trace_services", "trace_operations", "span_attrs"] {
            assert_eq!(
                count(&format!("SELECT count(*) FROM {table}")),
                0,
                "{table}"
            );
        }
    }

    #[tokio::test]
    async fn retention_by_size_deletes_oldest_until_under_the_limit() {
        let (store, _dir) = fresh().await;
        for n in 1..=40u8 {
            store
                .write_spans(conformance::demo_trace(n, false, 1.0))
                .await
                .unwrap();
        }
        let policy = RetentionPolicy {
            delete_before_unix_nano: None,
            max_bytes: Some(1),
            batch_traces: 15,
        };
        let first = store.enforce_retention(policy).await.unwrap();
        assert_eq!(first.traces_deleted, 15);
        assert!(first.more, "still over the limit");
        // Oldest first.
        assert!(
            store
                .get_trace(crate::testing::trace_id(1))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get_trace(crate::testing::trace_id(16))
                .await
                .unwrap()
                .is_some()
        );
        let unlimited = RetentionPolicy {
            max_bytes: Some(u64::MAX),
            ..policy
        };
        let none = store.enforce_retention(unlimited).await.unwrap();
        assert_eq!((none.traces_deleted, none.more), (0, false));
        assert!(store.storage_bytes().unwrap() > 0);
    }

    #[tokio::test]
    async fn attribute_index_can_be_limited_to_keys() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            index_attributes: "app.user.id, other".parse().unwrap(),
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(dir.path().join("spanline.db"), options).unwrap();
        store
            .write_spans(conformance::demo_trace(1, true, 5.0))
            .await
            .unwrap();
        let find = |k: &str, v: &str| TraceQuery {
            attributes: vec![(k.into(), v.into())],
            ..TraceQuery::default()
        };
        assert_eq!(
            store
                .find_traces(find("app.user.id", "u1"))
                .await
                .unwrap()
                .len(),
            1
        );
        let unindexed = find("http.response.status_code", "503");
        assert!(store.find_traces(unindexed).await.unwrap().is_empty());
        assert_eq!("none".parse::<AttributeIndex>(), Ok(AttributeIndex::None));
        assert_eq!("all".parse::<AttributeIndex>(), Ok(AttributeIndex::All));
    }

    #[test]
    fn synchronous_parses() {
        assert_eq!("FULL".parse::<Synchronous>(), Ok(Synchronous::Full));
        assert!("fast".parse::<Synchronous>().is_err());
    }
}
