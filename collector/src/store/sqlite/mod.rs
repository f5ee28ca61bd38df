//! # Durable storage in SQLite
//!
//! One file, `<data dir>/spanline.db`, in WAL mode.
//!
//! **Writes** go through ONE dedicated writer thread that owns the only read-write connection
//! and commits groups of requests in one transaction before it replies
//! (acknowledge-after-commit, reliability.md §6 C1; see `writer.rs`). The WAL is checkpointed
//! by a background connection (`checkpoint.rs`).
//!
//! **Reads** use a small pool of read-only connections on blocking threads (`read.rs`); WAL
//! lets them run alongside the writer and see only committed data.
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
//! Where each concept lives:
//!
//! | file | what |
//! |---|---|
//! | `options.rs` | [`SqliteOptions`], [`Synchronous`], [`AttributeIndex`] |
//! | `schema.rs` | the tables (version 18), the migrations from versions 1 to 17, the checks at open |
//! | `blocks.rs` | the span blocks (`span_blocks`; schema 16): one compressed, columnar block per trace and request |
//! | `block_probe.rs` | the SQL function searches call on a block (does a span meet the search's span conditions) |
//! | `migrate_v16.rs` | version 15 → 16: the `spans` rows moved into blocks |
//! | `migrate_v18.rs` | version 17 → 18: `traces`, `entry_spans` and `slow_spans` rewritten in smaller layouts |
//! | `name_sets.rs` | a trace summary's root names and name lists as one id (`trace_name_sets`; schema 18) |
//! | `links.rs` | the inbound-link rows (`trace_links`): which traces link to a trace |
//! | `writer.rs` | the writer thread: request queue, group commit, savepoint replay |
//! | `spans.rs` | a request's blocks, encoded before the writer, and their rows (`span_blocks`, `resources`, `slow_spans`, `entry_spans`); duplicates and the per-trace limit |
//! | `index.rs` | the search-index rows (`traces`, `trace_services`, `trace_operations`, attributes) |
//! | `operation_ids.rs` | the (service, operation) ids of `trace_operations` and `entry_spans` rows (`operation_ids`; schema 12) |
//! | `buckets.rs` | the start-time buckets that key `trace_operations` and `entry_spans_by_op` first (`index_buckets`; schema 15) |
//! | `attr_plan.rs` | a request's attribute-index entries, worked out before it is queued |
//! | `attr_stage.rs` | the attribute index's staged level (`span_attrs_new` segments, moved into runs) |
//! | `attr_runs.rs` | the attribute index's runs (`span_attrs_run<N>` tables, `attr_runs`; schema 11 to 16, read in older files) |
//! | `attr_postings.rs` | the attribute index's posting rows (`attr_postings`, `attr_moves`; schema 17): where staged rows move |
//! | `posting_list.rs` | a posting row's encoded entries, and the SQL function that looks one up |
//! | `attr_search.rs` | searches driven by an attribute: posting rows merged with the SQL-ordered places |
//! | `attr_keys.rs` | the attribute keys' ids in the staged rows and the runs (`attr_keys`; schema 14) |
//! | `durable.rs` | tail sampling decisions and consumer groups (what the collector learns besides spans) |
//! | `retention.rs` | deleting the oldest traces by age or size, one small batch per call |
//! | `checkpoint.rs` | the background WAL checkpointer |
//! | `codec.rs` | the `detail` protobuf of a span, the `resources` row (resource and scope), and a block's spans back into [`Span`]s |
//! | `read.rs` | the reader pool, trace by id, summaries |
//! | `search.rs` | the search SQL builder ([`TraceQuery`] → one `SELECT`) |
//! | `slow_walk.rs` | newest-first searches by service and a minimum duration that many spans reach: the service's slow spans by start |
//! | `stats.rs` | the dependency graph, per-operation samples, services and operations |
//!
//! Times are unix nanoseconds as `INTEGER` (values past `i64::MAX`, year 2262, are clamped).

mod attr_keys;
mod attr_plan;
mod attr_postings;
mod attr_runs;
mod attr_search;
mod attr_stage;
mod block_probe;
mod blocks;
mod buckets;
mod checkpoint;
mod codec;
mod durable;
mod index;
mod links;
mod migrate_v16;
mod migrate_v18;
mod name_sets;
mod operation_ids;
mod options;
mod posting_list;
mod read;
mod retention;
mod schema;
mod search;
mod slow_walk;
mod spans;
mod stats;
mod writer;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::watch;

use super::{
    BoxFuture, ConsumerGroupSeen, DependencyEdge, Operation, OperationSamples, RetentionOutcome,
    RetentionPolicy, SamplingDecision, SpanStore, StoreError, StoredTrace, TimeWindow, TraceQuery,
    TraceSummary, WriteOutcome,
};
use crate::model::{Span, TraceId};

pub use options::{AttributeIndex, SqliteOptions, Synchronous};
pub use writer::MAX_GROUP_SPANS;

/// The durable [`SpanStore`]: SQLite in WAL mode with a group-committing writer thread.
///
/// Cheap to share through `Arc<dyn SpanStore>`; [`SpanStore::shutdown`] commits what is
/// queued, checkpoints the WAL and closes the writer.
#[derive(Debug)]
pub struct SqliteStore {
    readers: Arc<read::ReaderPool>,
    writer: writer::Writer,
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
        let conn = schema::open_read_write(&path, &options)?;
        let checkpointer = checkpoint::Checkpointer::start(path.clone())?;
        let writer = writer::Writer::start(conn, &options, checkpointer)?;
        Ok(Self {
            readers: Arc::new(read::ReaderPool::new(path)),
            writer,
        })
    }

    /// Runs `f` on a pooled read-only connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with_reader(f))
            .await
            .map_err(backend)?
    }
}

impl SpanStore for SqliteStore {
    fn write_spans(&self, spans: Vec<Span>) -> BoxFuture<'_, Result<WriteOutcome, StoreError>> {
        Box::pin(self.writer.write(spans))
    }

    fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<StoredTrace>, StoreError>> {
        Box::pin(self.read(move |c| read::read_trace(c, trace_id)))
    }

    fn find_traces(
        &self,
        query: TraceQuery,
    ) -> BoxFuture<'_, Result<Vec<TraceSummary>, StoreError>> {
        Box::pin(self.read(move |c| search::find(c, &query)))
    }

    fn traces_linking_to(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<TraceId>, StoreError>> {
        Box::pin(self.read(move |c| links::traces_linking_to(c, trace_id, limit)))
    }

    fn services(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.read(stats::services))
    }

    fn operations(&self, service: String) -> BoxFuture<'_, Result<Vec<Operation>, StoreError>> {
        Box::pin(self.read(move |c| stats::operations(c, &service)))
    }

    fn dependencies(
        &self,
        window: TimeWindow,
    ) -> BoxFuture<'_, Result<Vec<DependencyEdge>, StoreError>> {
        Box::pin(self.read(move |c| stats::dependencies(c, window)))
    }

    fn operation_samples(
        &self,
        window: TimeWindow,
        service: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<OperationSamples>, StoreError>> {
        Box::pin(self.read(move |c| stats::operation_samples(c, window, service.as_deref())))
    }

    fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(self.writer.enforce_retention(policy))
    }

    fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> BoxFuture<'_, Result<RetentionOutcome, StoreError>> {
        Box::pin(self.writer.delete_traces(trace_ids))
    }

    fn record_sampling_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.writer.record_decisions(decisions))
    }

    fn sampling_decision(
        &self,
        trace_id: TraceId,
    ) -> BoxFuture<'_, Result<Option<SamplingDecision>, StoreError>> {
        Box::pin(self.read(move |c| durable::read_decision(c, trace_id)))
    }

    fn record_consumer_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.writer.record_groups(seen))
    }

    fn consumer_groups(
        &self,
        since_unix_nano: u64,
    ) -> BoxFuture<'_, Result<Vec<ConsumerGroupSeen>, StoreError>> {
        Box::pin(self.read(move |c| durable::read_groups(c, since_unix_nano)))
    }

    fn storage_bytes(&self) -> Option<u64> {
        let size = |suffix: &str| {
            let mut path = self.readers.path().as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        };
        Some(size("") + size("-wal") + size("-shm"))
    }

    fn check_writable(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.writer.probe())
    }

    fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.writer.subscribe_commits()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer.shutdown())
    }
}

/// What a write does to `spans` on the request's thread before it queues them for the writer
/// (the [`spans::Prepared`] batch: compressed blocks and origin blobs, the attribute plan under `options`),
/// then the spans given back. For instruction counts (`collector/examples/request_bench.rs`);
/// no database is touched.
#[doc(hidden)]
pub fn prepare_for_bench(spans: Vec<Span>, options: &SqliteOptions) -> Vec<Span> {
    let settings = index::IndexSettings::from(options);
    let prepared = spans::Prepared::new(spans)
        .with_trace_limit(options.max_spans_per_trace)
        .with_attr_plan(&settings.attributes, &settings.pair_hash);
    std::hint::black_box(&prepared);
    prepared.spans
}

// Small conversions shared by the files of this module.

/// A `u64` as a SQLite `INTEGER`, clamped at `i64::MAX`.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A SQLite `INTEGER` as a `u64`; negative values become 0.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Maps a SQLite error: disk full and a database that cannot be written (read-only file or
/// file system, permission denied, I/O error) are retryable, the rest is a backend error.
fn map_sql(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full,
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure,
        ) => StoreError::Unwritable(e.to_string()),
        _ => backend(e),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::conformance;

    /// Writes each of `batches` (one write each) into the database at `path`, then closes it.
    pub(super) async fn file_with(path: &std::path::Path, batches: Vec<Vec<crate::model::Span>>) {
        let store = SqliteStore::open(path, SqliteOptions::default()).unwrap();
        for spans in batches {
            store.write_spans(spans).await.unwrap();
        }
        store.shutdown().await;
    }

    /// Options whose moves of staged attribute rows write runs, as schema 16 did (files with
    /// runs, for the tests of the places older files have).
    pub(super) fn with_runs() -> SqliteOptions {
        SqliteOptions {
            attr_postings: false,
            ..SqliteOptions::default()
        }
    }

    /// A new, empty store in a temporary directory.
    pub(super) async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default())
            .expect("open");
        (store, dir)
    }

    /// A database file (in a new temporary directory, returned with the file's path) holding
    /// two demo traces written by this version (`demo_trace(4, true, 5.0)` and
    /// `demo_trace(5, false, 1.0)`, one write each), closed: what the migration tests set back
    /// to an older layout.
    pub(super) async fn two_demo_traces() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        let batches = vec![
            conformance::demo_trace(4, true, 5.0),
            conformance::demo_trace(5, false, 1.0),
        ];
        file_with(&path, batches).await;
        (dir, path)
    }

    /// Deletes every stored trace through retention (a cutoff after every time of receipt,
    /// batches of 10 traces: one call for up to 10); returns the traces deleted.
    pub(super) async fn delete_every_trace(store: &SqliteStore) -> u64 {
        store
            .enforce_retention(crate::store::RetentionPolicy {
                delete_before_unix_nano: Some(u64::MAX),
                max_bytes: None,
                batch_traces: 10,
            })
            .await
            .unwrap()
            .traces_deleted
    }

    conformance::conformance_tests!(fresh());

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
}
