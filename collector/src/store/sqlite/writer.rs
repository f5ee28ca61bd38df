//! # The writer thread: group commit, acknowledge after commit
//!
//! Every write goes through ONE dedicated thread that owns the only read-write connection.
//! Handlers send their request on a bounded channel with a oneshot reply ([`Writer`]). The
//! writer takes every pending request (up to [`MAX_GROUP_SPANS`] spans), inserts their spans
//! (`spans.rs`), then writes the search-index rows of the whole group at once (`index.rs`),
//! commits everything in ONE transaction (group commit), and only then replies
//! (acknowledge-after-commit, reliability.md §6 C1). Requests are applied without savepoints;
//! if one fails, the group is rolled back and applied again with a `SAVEPOINT` per request, so
//! a request is all-or-nothing (C6). If the index pass or the commit fails, every request of
//! the group gets the error and nothing of it is acknowledged. Retention batches, health
//! probes, tail sampling decisions and consumer groups (`durable.rs`) are requests like
//! writes, each in its own statements.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::buckets::Buckets;
use super::checkpoint::Checkpointer;
use super::durable::{record_decisions, record_groups};
use super::index::{GroupIndex, IndexSettings};
use super::options::SqliteOptions;
use super::retention::{delete_traces, retention_batch};
use super::spans::{PREPARE_INLINE_MAX_SPANS, Prepared, insert_spans};
use super::{backend, map_sql, to_i64};
use crate::model::{Span, TraceId};
use crate::store::{
    ConsumerGroupSeen, RetentionOutcome, RetentionPolicy, SamplingDecision, StoreError,
    WriteOutcome,
};

/// Most spans the writer puts in one group commit (more requests wait for the next one).
pub const MAX_GROUP_SPANS: usize = 50_000;

/// The handle on the writer thread: the request queue, the commit counter, and the thread.
#[derive(Debug)]
pub(super) struct Writer {
    tx: mpsc::Sender<WriterMsg>,
    commits: watch::Receiver<u64>,
    enqueue_timeout: Duration,
    max_spans_per_trace: usize,
    /// What the writer indexes; requests work out their attribute entries with it.
    index_settings: Arc<IndexSettings>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn` (from `schema::open_read_write`).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the thread cannot be started.
    pub(super) fn start(
        conn: Connection,
        options: &SqliteOptions,
        checkpointer: Checkpointer,
    ) -> Result<Self, StoreError> {
        let index_settings = Arc::new(IndexSettings::from(options));
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let (commit_tx, commits) = watch::channel(0u64);
        let settings = Arc::clone(&index_settings);
        let thread = std::thread::Builder::new()
            .name("spanline-sqlite-writer".to_owned())
            .spawn(move || run_writer(conn, rx, commit_tx, settings, checkpointer))
            .map_err(|e| StoreError::Io {
                context: "starting the writer thread".to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            tx,
            commits,
            enqueue_timeout: options.enqueue_timeout,
            max_spans_per_trace: options.max_spans_per_trace,
            index_settings,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stores `spans`; resolves after their group committed.
    pub(super) async fn write(&self, spans: Vec<Span>) -> Result<WriteOutcome, StoreError> {
        if spans.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let spans_len = spans.len();
        let limit = self.max_spans_per_trace;
        let settings = Arc::clone(&self.index_settings);
        let prepare = move || {
            Prepared::new(spans)
                .with_trace_limit(limit)
                .with_attr_plan(&settings.attributes, &settings.pair_hash)
        };
        let batch = if spans_len > PREPARE_INLINE_MAX_SPANS {
            tokio::task::spawn_blocking(prepare)
                .await
                .map_err(backend)?
        } else {
            prepare()
        };
        self.ask(Item::Write(batch), Reply::Write).await
    }

    /// Writes a row in `meta` and commits it: the store can still write.
    pub(super) async fn probe(&self) -> Result<(), StoreError> {
        self.ask(Item::Probe, Reply::Probe).await
    }

    /// Deletes one retention batch (`retention.rs`).
    pub(super) async fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> Result<RetentionOutcome, StoreError> {
        self.ask(Item::Retention(policy), Reply::Retention).await
    }

    /// Deletes whole traces by id (`retention.rs`).
    pub(super) async fn delete_traces(
        &self,
        trace_ids: Vec<TraceId>,
    ) -> Result<RetentionOutcome, StoreError> {
        self.ask(Item::Delete(trace_ids), Reply::Retention).await
    }

    /// Upserts tail sampling decisions (`durable.rs`); resolves after the commit.
    pub(super) async fn record_decisions(
        &self,
        decisions: Vec<SamplingDecision>,
    ) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        self.ask(Item::Decisions(decisions), Reply::Probe).await
    }

    /// Upserts consumer groups (`durable.rs`); resolves after the commit.
    pub(super) async fn record_groups(
        &self,
        seen: Vec<ConsumerGroupSeen>,
    ) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        self.ask(Item::Groups(seen), Reply::Probe).await
    }

    /// A receiver of the number of commits so far.
    pub(super) fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Commits what is queued, checkpoints the WAL, and waits for the thread to end.
    pub(super) async fn shutdown(&self) {
        let (reply, wait) = oneshot::channel();
        if self.tx.send(WriterMsg::Shutdown(reply)).await.is_ok() {
            let _ = wait.await;
        }
        if let Some(handle) = self.take_thread() {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The writer thread's handle, the first time it is asked for.
    fn take_thread(&self) -> Option<JoinHandle<()>> {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Queues `item` and waits for its answer, which the writer sends through the reply that
    /// `reply` makes (`Reply::Write`, `Reply::Probe`, `Reply::Retention`).
    async fn ask<T>(
        &self,
        item: Item,
        reply: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Reply,
    ) -> Result<T, StoreError> {
        let (tx, wait) = oneshot::channel();
        self.request(item, reply(tx)).await?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a request: [`StoreError::Overloaded`] when the queue stays full for the enqueue
    /// timeout, [`StoreError::Closed`] after shutdown.
    async fn request(&self, item: Item, reply: Reply) -> Result<(), StoreError> {
        let msg = WriterMsg::Request(item, reply);
        match tokio::time::timeout(self.enqueue_timeout, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Overloaded),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Without an explicit shutdown, dropping the sender ends the writer after it has
        // committed everything queued; joining here keeps the file closed when we return.
        if let Some(handle) = self.take_thread() {
            let (tx, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut self.tx, tx));
            let _ = handle.join();
        }
    }
}

/// What the writer thread receives.
#[derive(Debug)]
enum WriterMsg {
    /// Work for a group commit, and where to send its result.
    Request(Item, Reply),
    /// Stop after committing what is queued.
    Shutdown(oneshot::Sender<()>),
}

/// One request of a group, without its reply channel.
#[derive(Debug)]
enum Item {
    Write(Prepared),
    Probe,
    Retention(RetentionPolicy),
    /// Whole traces by id (tail sampling); answered like a retention batch.
    Delete(Vec<TraceId>),
    /// Tail sampling decisions to upsert (`durable.rs`); answered like a probe.
    Decisions(Vec<SamplingDecision>),
    /// Consumer groups to upsert (`durable.rs`); answered like a probe.
    Groups(Vec<ConsumerGroupSeen>),
}

impl Item {
    fn span_count(&self) -> usize {
        match self {
            Self::Write(batch) => batch.spans.len(),
            _ => 0,
        }
    }
}

/// The reply channel of an [`Item`].
#[derive(Debug)]
enum Reply {
    Write(oneshot::Sender<Result<WriteOutcome, StoreError>>),
    Probe(oneshot::Sender<Result<(), StoreError>>),
    Retention(oneshot::Sender<Result<RetentionOutcome, StoreError>>),
}

impl Reply {
    /// Sends `result` (a receiver that gave up is ignored).
    fn send(self, result: ItemResult) {
        match (self, result) {
            (Self::Write(tx), ItemResult::Write(r)) => drop(tx.send(r)),
            (Self::Probe(tx), ItemResult::Probe(r)) => drop(tx.send(r)),
            (Self::Retention(tx), ItemResult::Retention(r)) => drop(tx.send(r)),
            // Unreachable: results are built in the order of the items.
            (reply, _) => reply.fail(backend("writer reply mismatch")),
        }
    }

    /// Sends `err`.
    fn fail(self, err: StoreError) {
        match self {
            Self::Write(tx) => drop(tx.send(Err(err))),
            Self::Probe(tx) => drop(tx.send(Err(err))),
            Self::Retention(tx) => drop(tx.send(Err(err))),
        }
    }
}

/// What an [`Item`] came to.
enum ItemResult {
    Write(Result<WriteOutcome, StoreError>),
    Probe(Result<(), StoreError>),
    Retention(Result<RetentionOutcome, StoreError>),
}

impl ItemResult {
    fn is_ok(&self) -> bool {
        match self {
            Self::Write(r) => r.is_ok(),
            Self::Probe(r) => r.is_ok(),
            Self::Retention(r) => r.is_ok(),
        }
    }
}

/// Why [`apply_group`] gave up.
enum GroupFailure {
    /// A request failed without savepoints: roll back and apply again with them.
    Retry,
    /// The transaction is lost (or could not start / commit): every request gets this error.
    Fatal(StoreError),
}

/// The writer thread: groups, commits and replies until shutdown (or until every sender is
/// gone), then refuses what is still queued and checkpoints the WAL.
fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriterMsg>,
    commits: watch::Sender<u64>,
    index_settings: Arc<IndexSettings>,
    mut checkpointer: Checkpointer,
) {
    let freer = Freer::start();
    let mut shutdown_replies = Vec::new();
    while shutdown_replies.is_empty() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut group = vec![first];
        let mut spans_in_group = span_count(&group[0]);
        while spans_in_group < MAX_GROUP_SPANS {
            match rx.try_recv() {
                Ok(msg) => {
                    spans_in_group += span_count(&msg);
                    group.push(msg);
                }
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for msg in group {
            match msg {
                WriterMsg::Request(item, reply) => {
                    items.push(item);
                    replies.push(reply);
                }
                WriterMsg::Shutdown(reply) => shutdown_replies.push(reply),
            }
        }
        process_group(&mut conn, &items, replies, &commits, &index_settings);
        freer.free(items);
        checkpointer.after_commit(&conn, spans_in_group);
    }
    // Refuse what is still queued: those requests were never acknowledged.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        match msg {
            WriterMsg::Request(_, reply) => reply.fail(StoreError::Closed),
            WriterMsg::Shutdown(reply) => shutdown_replies.push(reply),
        }
    }
    freer.stop();
    checkpointer.stop();
    if let Err(e) = conn.execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);") {
        eprintln!("collector: final WAL checkpoint failed (data is safe in the WAL): {e}");
    }
    drop(conn);
    for reply in shutdown_replies {
        let _ = reply.send(());
    }
}

fn span_count(msg: &WriterMsg) -> usize {
    match msg {
        WriterMsg::Request(item, _) => item.span_count(),
        WriterMsg::Shutdown(_) => 0,
    }
}

/// Frees a group's spans off the writer thread: dropping every `String` and `Vec` of the
/// model is about 5% of the writer's CPU, so a helper thread does it after the replies went
/// out. Without the thread (it could not start), the group is dropped in place.
struct Freer {
    tx: std::sync::mpsc::Sender<Vec<Item>>,
    thread: Option<JoinHandle<()>>,
}

impl Freer {
    fn start() -> Self {
        let (tx, to_free) = std::sync::mpsc::channel::<Vec<Item>>();
        let thread = std::thread::Builder::new()
            .name("spanline-free".to_owned())
            .spawn(move || to_free.into_iter().for_each(drop))
            .ok();
        Self { tx, thread }
    }

    fn free(&self, items: Vec<Item>) {
        if self.thread.is_some() {
            let _ = self.tx.send(items);
        }
    }

    fn stop(self) {
        drop(self.tx);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

/// Applies a group of requests in one transaction, commits, then replies.
///
/// The requests are applied without savepoints first (savepoints make SQLite copy every page
/// a request touches into a statement journal). Only if a request fails is the whole group
/// rolled back and applied again with a `SAVEPOINT` per request, so a failing request is all
/// or nothing and the others still commit (reliability.md §6 C6).
fn process_group(
    conn: &mut Connection,
    items: &[Item],
    replies: Vec<Reply>,
    commits: &watch::Sender<u64>,
    index_settings: &IndexSettings,
) {
    if items.is_empty() {
        return;
    }
    let mut outcome = apply_group(conn, items, false, index_settings);
    if matches!(outcome, Err(GroupFailure::Retry)) {
        outcome = apply_group(conn, items, true, index_settings);
    }
    match outcome {
        Ok(results) => {
            let committed = results.iter().any(ItemResult::is_ok);
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(result);
            }
            if committed {
                commits.send_modify(|n| *n += 1);
            }
        }
        Err(failure) => {
            let err = match failure {
                GroupFailure::Fatal(err) => err,
                GroupFailure::Retry => {
                    backend("a request failed and the retry with savepoints asked again")
                }
            };
            for reply in replies {
                reply.fail(err.clone());
            }
        }
    }
}

/// Fails the group when an item's error made SQLite roll the whole transaction back (disk
/// full, I/O error): nothing after it may run in a transaction that is gone.
fn rolled_back<T>(
    tx: &rusqlite::Transaction<'_>,
    result: &Result<T, StoreError>,
) -> Result<(), GroupFailure> {
    match result {
        Err(e) if tx.is_autocommit() => Err(GroupFailure::Fatal(e.clone())),
        _ => Ok(()),
    }
}

/// One attempt at a group: BEGIN, every item, the group's index rows, COMMIT.
fn apply_group(
    conn: &mut Connection,
    items: &[Item],
    savepoints: bool,
    index_settings: &IndexSettings,
) -> Result<Vec<ItemResult>, GroupFailure> {
    let fatal = |e: StoreError| GroupFailure::Fatal(e);
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| fatal(map_sql(e)))?;
    // The group's earliest span: where a new index bucket starts (`buckets.rs`).
    let group_start_ns = items
        .iter()
        .filter_map(|item| match item {
            Item::Write(batch) => batch.spans.iter().map(|s| s.start_time_unix_nano).min(),
            _ => None,
        })
        .min()
        .map(to_i64);
    let mut buckets =
        Buckets::open(&tx, group_start_ns, index_settings.bucket_rows).map_err(fatal)?;
    let mut index = GroupIndex::default();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Write(batch) => {
                let result = if savepoints {
                    let sp = tx.savepoint().map_err(|e| fatal(map_sql(e)))?;
                    match insert_spans(&sp, batch, &mut buckets) {
                        Ok(done) => sp.commit().map_err(map_sql).map(|()| done),
                        Err(e) => Err(e),
                    }
                } else {
                    insert_spans(&tx, batch, &mut buckets)
                };
                match result {
                    Ok(done) => {
                        // The request's plan describes every span it holds: usable only
                        // when all of them were stored.
                        let plan = batch
                            .attr_plan
                            .as_ref()
                            .filter(|_| done.spans.len() == batch.spans.len())
                            .map(|plan| (plan, &batch.spans[..]));
                        index.add(done.spans, done.refused, &done.unseen, plan);
                        results.push(ItemResult::Write(Ok(done.outcome)));
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
                rolled_back(&tx, &result)?;
                results.push(ItemResult::Probe(result));
            }
            Item::Retention(policy) => {
                // Index rows of earlier requests first: retention may delete their traces.
                index
                    .flush(&tx, index_settings, &mut buckets)
                    .map_err(fatal)?;
                let result = retention_batch(&mut tx, policy);
                rolled_back(&tx, &result)?;
                results.push(ItemResult::Retention(result));
            }
            Item::Delete(trace_ids) => {
                index
                    .flush(&tx, index_settings, &mut buckets)
                    .map_err(fatal)?;
                let result = delete_traces(&mut tx, trace_ids);
                rolled_back(&tx, &result)?;
                results.push(ItemResult::Retention(result));
            }
            Item::Decisions(decisions) => {
                let result = record_decisions(&mut tx, decisions);
                rolled_back(&tx, &result)?;
                results.push(ItemResult::Probe(result));
            }
            Item::Groups(seen) => {
                let result = record_groups(&mut tx, seen);
                rolled_back(&tx, &result)?;
                results.push(ItemResult::Probe(result));
            }
        }
    }
    index
        .flush(&tx, index_settings, &mut buckets)
        .map_err(fatal)?;
    buckets.save(&tx).map_err(fatal)?;
    tx.commit().map_err(|e| fatal(map_sql(e)))?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{SpanStore, TraceQuery, conformance};

    /// Issue 16 item 6: a database that cannot be written (here opened read-only, as on a
    /// read-only file system) fails the write with a retryable error (503 + `Retry-After`
    /// at the edge), not a backend error (500, which OTLP clients do not retry).
    #[tokio::test]
    async fn a_read_only_database_fails_writes_with_a_retryable_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spanline.db");
        SqliteStore::open(&path, SqliteOptions::default())
            .unwrap()
            .shutdown()
            .await;
        let mut conn =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let (reply, mut answer) = oneshot::channel();
        let items = vec![Item::Write(Prepared::new(conformance::sample_trace(3)))];
        let (commits, _) = watch::channel(0u64);
        process_group(
            &mut conn,
            &items,
            vec![Reply::Write(reply)],
            &commits,
            &IndexSettings::from(&SqliteOptions::default()),
        );
        let err = answer.try_recv().unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Unwritable(_)), "{err:?}");
        assert_eq!(
            crate::error::Error::Store(err).status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
    }

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
        let good_a = conformance::sample_trace(11);
        // Two traces, so the request fails part-way: the second trace's block is refused
        // after the first one's went in.
        let mut bad = conformance::sample_trace(12);
        let failing = conformance::sample_trace(14);
        bad.extend(failing.iter().cloned());
        // A statement-level failure (the transaction survives): a request-level error,
        // not a lost transaction. A temporary trigger stands in for, say, a value SQLite
        // refuses.
        conn.execute_batch(&format!(
            "CREATE TEMP TRIGGER fail_marked BEFORE INSERT ON main.span_blocks \
             WHEN NEW.trace_id = x'{}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            failing[0].trace_id.to_hex()
        ))
        .unwrap();
        let good_b = conformance::sample_trace(13);

        let mut items = Vec::new();
        let mut replies = Vec::new();
        let mut answers = Vec::new();
        for spans in [&good_a, &bad, &good_b] {
            let (reply, answer) = oneshot::channel();
            items.push(Item::Write(Prepared::new(spans.clone())));
            replies.push(Reply::Write(reply));
            answers.push(answer);
        }
        let (commits, commit_count) = watch::channel(0u64);
        process_group(
            &mut conn,
            &items,
            replies,
            &commits,
            &IndexSettings::from(&SqliteOptions::default()),
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
                "SELECT count(*) FROM span_blocks WHERE trace_id = ?1",
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
}
