//! The writer task: ingest requests queue here; the task coalesces whatever is queued (up to
//! [`ClickHouseOptions::max_batch_spans`](super::ClickHouseOptions), waiting `batch_linger_ms`
//! for more, and longer while the previous batch's insert is still running: see [`gather`])
//! into one batch, and answers each request only after the inserts holding its spans were
//! confirmed: one per table, or on a cluster one per table
//! and shard, straight into the shard's local tables, the shards in parallel (`shards.rs`).
//! A request's rows (each span's `spans_local` and `search_local` rows) are encoded when it
//! is queued, in the caller's task ([`WriteRequest::new`]); the writer task only decides and
//! copies bytes.
//!
//! Each batch is first *checked*: the stored keys of its traces are read (per shard, from
//! the shard that holds them), so spans already
//! stored are duplicates, and new spans of a trace at the per-trace limit are refused (and
//! counted in `refusals_local`). The same read gives the stored spans' start and end, so each
//! trace the batch stores spans of gets a `trace_duration_local` row with its duration so far
//! (stored and new spans together; `longest.rs` walks them). Then it is *inserted*. Batch N+1
//! gathers while batch N is being inserted, and is checked once insert N ended (then against
//! the stored keys, plus N's if it was confirmed), or, when it filled up first, while insert N
//! still runs, against the stored keys plus N's keys (which the read may or may not see yet).
//! Inserts run one at a time, in order; when insert N fails, a batch N+1 checked against N's
//! keys fails too, so no span is acknowledged as a duplicate of a span that was never stored.
//! Failures are retryable where ClickHouse or the network is at fault (503 +
//! `Retry-After`); a retried span that did land is then a duplicate.

use crate::fast_hash::{FastHashMap as HashMap, FastHashSet as HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use futures_util::future::join_all;

use super::codec::{DAY_NS, day_of, write_search, write_span};
use super::rowbinary::{Reader, Writer};
use super::{INSERT_SETTINGS, Shared, sql};
use crate::model::{Span, SpanId, SpanKind, TraceId};
use crate::store::detail::SpanDetail;
use crate::store::{StoreError, WriteOutcome};

/// Requests that may wait for the writer.
pub(super) const QUEUE_REQUESTS: usize = 4096;
/// How long a request waits for room in the queue before [`StoreError::Overloaded`].
pub(super) const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Most trace ids in one key lookup (keeps the statement short).
const LOOKUP_TRACES: usize = 2000;

/// One `write_spans` call waiting for its insert, its spans already encoded as rows.
#[derive(Debug)]
pub(super) struct WriteRequest {
    spans: Vec<Span>,
    /// The spans' `spans_local` rows (`codec::write_span`), back to back: span `i` is
    /// `rows[ends[i - 1].0..ends[i].0]` (from 0 for the first).
    rows: Vec<u8>,
    /// The spans' `search_local` rows (`codec::write_search`), likewise with `ends[i].1`.
    search: Vec<u8>,
    ends: Vec<(usize, usize)>,
    /// When the request was received (the rows' `received_ns`), unix ns.
    received_ns: u64,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

impl WriteRequest {
    /// A request for `spans`, answered on `reply`. The rows are encoded here, in the
    /// caller's task (so requests encode in parallel, outside the one writer task, which
    /// then only copies the bytes of the spans it stores).
    pub(super) fn new(
        spans: Vec<Span>,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    ) -> Self {
        let received_ns = crate::time::now_unix_nano();
        let mut rows = Writer::with_capacity(spans.len() * 512);
        let mut search = Writer::with_capacity(spans.len() * 256);
        let mut ends = Vec::with_capacity(spans.len());
        // The detail bytes of the resource and scope, for the spans that share them.
        let mut shared: Option<(SharedParts, Vec<u8>)> = None;
        let mut scratch = Vec::with_capacity(1024);
        for span in &spans {
            let parts = (Arc::as_ptr(&span.resource), Arc::as_ptr(&span.scope));
            if shared.as_ref().is_none_or(|(p, _)| *p != parts) {
                shared = Some((parts, SpanDetail::encode_resource_and_scope(span)));
            }
            let resource_and_scope = shared.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
            write_span(
                &mut rows,
                span,
                received_ns,
                resource_and_scope,
                &mut scratch,
            );
            write_search(&mut search, span, received_ns);
            ends.push((rows.buf.len(), search.buf.len()));
        }
        Self {
            spans,
            rows: rows.buf,
            search: search.buf,
            ends,
            received_ns,
            reply,
        }
    }

    /// The `spans_local` and `search_local` rows of span `i`.
    fn rows(&self, i: usize) -> (&[u8], &[u8]) {
        let (start, search_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        let (end, search_end) = self.ends[i];
        (
            &self.rows[start..end],
            &self.search[search_start..search_end],
        )
    }
}

/// A span's resource and scope, by address (the spans of a request share them; the
/// request's spans keep them alive while compared).
type SharedParts = (*const crate::model::Resource, *const crate::model::Scope);

/// Stored spans per trace: their keys, and the first start and last end among them.
type Keys = HashMap<TraceId, TraceKeys>;

/// The stored spans of one trace, as the writer knows them.
#[derive(Debug, Clone)]
struct TraceKeys {
    spans: HashSet<(SpanId, SpanKind)>,
    /// The earliest start among `spans`, unix ns (`u64::MAX` for none).
    start_ns: u64,
    /// The latest end among `spans`, unix ns (0 for none).
    end_ns: u64,
}

impl Default for TraceKeys {
    fn default() -> Self {
        Self {
            spans: HashSet::default(),
            start_ns: u64::MAX,
            end_ns: 0,
        }
    }
}

impl TraceKeys {
    /// Adds a stored span.
    fn add(&mut self, key: (SpanId, SpanKind), start_ns: u64, end_ns: u64) {
        self.spans.insert(key);
        self.widen(start_ns, end_ns);
    }

    /// Widens the bounds to `[start_ns, end_ns]`.
    fn widen(&mut self, start_ns: u64, end_ns: u64) {
        self.start_ns = self.start_ns.min(start_ns);
        self.end_ns = self.end_ns.max(end_ns);
    }

    /// Adds what `other` holds.
    fn extend(&mut self, other: &Self) {
        self.spans.extend(other.spans.iter().copied());
        self.widen(other.start_ns, other.end_ns);
    }

    /// The trace's duration so far, ns: as the searches compute it (`t_dur`, 0 when the
    /// last end is not after the first start).
    fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// The rows of a checked batch for one shard (see `shards.rs`), as `RowBinary`.
#[derive(Default)]
struct ShardRows {
    /// Span rows (empty: nothing new).
    rows: Writer,
    /// Their search rows, in the same order.
    search: Writer,
    /// Refusal rows (empty: none).
    refusals: Writer,
    /// Inbound-link rows, by the trace linked to (empty: no stored span has links).
    links: Writer,
    /// Trace duration rows (empty: nothing new).
    durations: Writer,
}

/// A checked batch, ready to insert.
struct Checked {
    replies: Vec<oneshot::Sender<Result<WriteOutcome, StoreError>>>,
    outcomes: Vec<WriteOutcome>,
    /// Per shard (index in `Shared::writes`), its rows.
    shards: Vec<ShardRows>,
    /// The keys this batch adds (with the bounds of each of its traces, stored spans
    /// included).
    added: Keys,
}

impl Checked {
    fn fail(self, e: &StoreError) {
        for reply in self.replies {
            let _ = reply.send(Err(e.clone()));
        }
    }
}

/// The insert in flight: its task (`true` once every shard confirmed) and the keys it adds.
type Inflight = (tokio::task::JoinHandle<bool>, Keys);

/// Runs until every sender is gone, answering every request it received.
pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<WriteRequest>) {
    let linger = Duration::from_millis(shared.options.batch_linger_ms);
    let max = shared.options.max_batch_spans.max(1);
    let mut inflight: Option<Inflight> = None;
    while let Some(gathered) = gather(
        linger,
        max,
        &mut queue,
        inflight.as_mut().map(|(handle, _)| handle),
    )
    .await
    {
        let Gathered { batch, finished } = gathered;
        // An insert that finished while the batch gathered is settled: a successful one's
        // spans are stored (its keys are passed on anyway, harmless), a failed one's keys
        // must not count, and nothing of it is left to wait for.
        let settled = finished.map(|ok| (ok, inflight.take()));
        let pending = match &settled {
            Some((true, Some((_, keys)))) => Some(keys),
            Some(_) => None,
            None => inflight.as_ref().map(|(_, keys)| keys),
        };
        let checked = check(&shared, batch, pending).await;
        let previous_ok = match (settled, inflight.take()) {
            // Checked without a failed insert's keys: this batch does not depend on it.
            (Some(_), _) => true,
            (None, Some((handle, _))) => handle.await.unwrap_or(false),
            (None, None) => true,
        };
        match checked {
            Ok(mut c) if previous_ok => {
                // The insert does not need them: moved, not copied (a set per trace).
                let added = std::mem::take(&mut c.added);
                let shared = Arc::clone(&shared);
                inflight = Some((tokio::spawn(async move { insert(&shared, c).await }), added));
            }
            Ok(c) => c.fail(&StoreError::Unwritable(
                "the insert before this one failed; retry".into(),
            )),
            Err((e, replies)) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
    if let Some((handle, _)) = inflight {
        let _ = handle.await;
    }
}

/// A batch of requests, and how the insert in flight ended if it ended while they gathered.
struct Gathered {
    batch: Vec<WriteRequest>,
    /// `Some(true)`: the insert in flight was confirmed meanwhile; `Some(false)`: it failed;
    /// `None`: it is still running, or there was none.
    finished: Option<bool>,
}

/// The next batch: the first queued request plus whatever follows, up to `max` spans, for
/// `linger` from the moment the batch could be inserted: from its first request, or, while an
/// insert is in flight (`inflight`), from the end of that insert (this batch cannot be
/// inserted before it anyway); `None` when the queue is closed and empty.
///
/// Gathering until the insert in flight ended, and a linger after it, makes the batches as
/// large as the rate and the insert's time allow: when requests keep coming (clients that
/// send again once answered), those the ended insert answered join the next batch rather
/// than starting one more. Each batch costs each shard a duplicate-check read and a new part
/// per table (each written, merged and deleted), whatever its size, so fewer, larger batches
/// cost ClickHouse less per span (BENCHMARKS.md §6.15). A request waits at most `linger`
/// after the insert in flight ended; at a low rate, with no insert in flight when a batch's
/// first request comes, nothing changes.
async fn gather(
    linger: Duration,
    max: usize,
    queue: &mut mpsc::Receiver<WriteRequest>,
    mut inflight: Option<&mut tokio::task::JoinHandle<bool>>,
) -> Option<Gathered> {
    let first = queue.recv().await?;
    let mut spans = first.spans.len();
    let mut batch = vec![first];
    let mut finished = None;
    let mut deadline = tokio::time::Instant::now() + linger;
    while spans < max {
        let next = match queue.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => match inflight.as_deref_mut() {
                Some(handle) if finished.is_none() => {
                    tokio::select! {
                        next = queue.recv() => next,
                        ok = handle => {
                            finished = Some(ok.unwrap_or(false));
                            deadline = deadline.max(tokio::time::Instant::now() + linger);
                            continue;
                        }
                    }
                }
                _ => tokio::time::timeout_at(deadline, queue.recv())
                    .await
                    .unwrap_or_default(),
            },
        };
        let Some(request) = next else { break };
        spans += request.spans.len();
        batch.push(request);
    }
    Some(Gathered { batch, finished })
}

/// The stored keys of the traces in `since` (trace id -> the first `received_day` to look
/// at, see [`lookup_since`]): per shard, in parallel, one query per distinct day, so a batch
/// of current spans reads two day partitions, and only a trace resent late widens the look,
/// for itself.
async fn stored_keys(shared: &Shared, since: &HashMap<TraceId, u16>) -> Result<Keys, StoreError> {
    let writes = &shared.writes;
    let mut by_shard: Vec<HashMap<u16, Vec<TraceId>>> =
        vec![HashMap::default(); writes.shards.len()];
    for (id, day) in since {
        by_shard[writes.shard_of(id)]
            .entry(*day)
            .or_default()
            .push(*id);
    }
    let settings = if shared.options.replicated {
        super::REPLICATED_SELECT_SETTINGS
    } else {
        &[]
    };
    let lookups = by_shard
        .iter()
        .enumerate()
        .map(|(shard, by_day)| async move {
            let mut rows = Vec::new();
            for (day, ids) in by_day {
                for chunk in ids.chunks(LOOKUP_TRACES) {
                    // Most traces of a batch are new: their summary rows say so, without
                    // reading the span rows.
                    let sql = sql::stored_traces(&writes.tables, chunk, *day);
                    let answer = writes.shards[shard].run(&sql, settings, Vec::new()).await?;
                    let known = Reader::new(&answer).rows(|r| Ok(TraceId(r.fixed::<16>()?)))?;
                    if known.is_empty() {
                        continue;
                    }
                    let sql = sql::existing_keys(&writes.tables, &known, *day);
                    let answer = writes.shards[shard].run(&sql, settings, Vec::new()).await?;
                    rows.extend(Reader::new(&answer).rows(|r| {
                        let trace = TraceId(r.fixed::<16>()?);
                        let span = SpanId(r.fixed::<8>()?);
                        let kind = SpanKind::from_i32(i32::from(r.u8()?));
                        Ok((trace, span, kind, r.u64()?, r.u64()?))
                    })?);
                }
            }
            Ok::<_, StoreError>(rows)
        });
    let mut keys: Keys = HashMap::default();
    for rows in join_all(lookups).await {
        for (trace, span, kind, start_ns, end_ns) in rows? {
            keys.entry(trace)
                .or_default()
                .add((span, kind), start_ns, end_ns);
        }
    }
    Ok(keys)
}

/// The first `received_day` where stored spans of a trace are looked for, given the earliest
/// `start_ns` among its spans in the batch: the day before that start's day, or yesterday
/// (UTC) if that is earlier.
///
/// Why that suffices for duplicates: a resent span carries the `start_ns` of the stored
/// copy, and that copy was received at the earliest one day before its own start's day
/// unless the sender's clock ran more than a day ahead of the collector's. So a duplicate is
/// found however long ago the copy was stored (while it is retained), and a batch of
/// current spans still reads only today's and yesterday's partitions (see docs/clickhouse.md,
/// "Writes", for the measured cost of reading every day instead).
fn lookup_since(earliest_start_ns: u64, now_ns: u64) -> u16 {
    let yesterday = day_of(now_ns.saturating_sub(DAY_NS));
    day_of(earliest_start_ns).saturating_sub(1).min(yesterday)
}

type Replies = Vec<oneshot::Sender<Result<WriteOutcome, StoreError>>>;

/// Decides each span of the batch (stored, duplicate, over the limit) against the stored
/// keys and `pending` (the keys of the insert in flight), and gathers the rows of the
/// stored ones by shard.
async fn check(
    shared: &Shared,
    batch: Vec<WriteRequest>,
    pending: Option<&Keys>,
) -> Result<Checked, (StoreError, Replies)> {
    let now = crate::time::now_unix_nano();
    let mut earliest: HashMap<TraceId, u64> = HashMap::default();
    for span in batch.iter().flat_map(|r| &r.spans) {
        let e = earliest.entry(span.trace_id).or_insert(u64::MAX);
        *e = (*e).min(span.start_time_unix_nano);
    }
    let since: HashMap<TraceId, u16> = earliest
        .iter()
        .map(|(id, start)| (*id, lookup_since(*start, now)))
        .collect();
    let ids: Vec<TraceId> = earliest.into_keys().collect();
    let mut keys = match stored_keys(shared, &since).await {
        Ok(k) => k,
        Err(e) => return Err((e, batch.into_iter().map(|r| r.reply).collect())),
    };
    if let Some(pending) = pending {
        for id in &ids {
            if let Some(p) = pending.get(id) {
                keys.entry(*id).or_default().extend(p);
            }
        }
    }
    let limit = shared.options.max_spans_per_trace;
    let writes = &shared.writes;
    let share = |bytes: usize| bytes / writes.shards.len().max(1) * 9 / 8;
    let rows_bytes = share(batch.iter().map(|r| r.rows.len()).sum());
    let search_bytes = share(batch.iter().map(|r| r.search.len()).sum());
    let mut shards: Vec<ShardRows> = (0..writes.shards.len())
        .map(|_| ShardRows {
            rows: Writer::with_capacity(rows_bytes),
            search: Writer::with_capacity(search_bytes),
            ..ShardRows::default()
        })
        .collect();
    let mut refused: HashMap<TraceId, u64> = HashMap::default();
    let mut added: Keys = HashMap::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in &batch {
        let mut outcome = WriteOutcome::default();
        for (i, span) in request.spans.iter().enumerate() {
            let key = (span.span_id, span.kind);
            let trace = keys.entry(span.trace_id).or_default();
            if trace.spans.contains(&key) {
                outcome.duplicates += 1;
            } else if trace.spans.len() >= limit {
                outcome.over_limit += 1;
                *refused.entry(span.trace_id).or_default() += 1;
            } else {
                let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
                trace.add(key, start, end);
                added.entry(span.trace_id).or_default().add(key, start, end);
                let (row, search) = request.rows(i);
                let shard = &mut shards[writes.shard_of(&span.trace_id)];
                shard.rows.fixed(row);
                shard.search.fixed(search);
                for link in span.links.iter().filter(|l| l.trace_id != span.trace_id) {
                    let w = &mut shards[writes.shard_of(&link.trace_id)].links;
                    w.u16(day_of(request.received_ns));
                    w.fixed(&link.trace_id.0);
                    w.fixed(&span.trace_id.0);
                }
                outcome.stored += 1;
            }
        }
        outcomes.push(outcome);
    }
    // Each trace with new spans: its duration over its stored and new spans.
    for (trace, new) in &mut added {
        if let Some(all) = keys.get(trace) {
            new.widen(all.start_ns, all.end_ns);
        }
        let w = &mut shards[writes.shard_of(trace)].durations;
        w.u16(day_of(now));
        w.u64(new.duration_ns());
        w.fixed(&trace.0);
    }
    for (trace, n) in &refused {
        let w = &mut shards[writes.shard_of(trace)].refusals;
        w.u16(day_of(now));
        w.u64(now);
        w.fixed(&trace.0);
        w.u64(*n);
    }
    Ok(Checked {
        replies: batch.into_iter().map(|r| r.reply).collect(),
        outcomes,
        shards,
        added,
    })
}

/// Inserts one shard's rows of a batch: links, trace durations and search rows first, then
/// spans, then refusals. A failure after the first inserts leaves rows of spans that were
/// not stored, for a retry to repeat, never stored spans whose links, duration or search rows
/// were lost (a span stored without its search row would never be found: its retry is a
/// duplicate). Links are read with `DISTINCT`; a duration row is at most as long as the trace
/// will be once the retry stores its spans. A search row of a span not stored makes its
/// trace a search result only if the trace has other stored spans (results are ranked from
/// the stored spans or their per-trace summaries), until the retry stores the span; its
/// service and operation are listed, and operation samples count it once per failed try.
async fn insert_shard(shared: &Shared, shard: usize, rows: ShardRows) -> Result<(), StoreError> {
    let writes = &shared.writes;
    let target = &writes.shards[shard];
    for (sql, data) in [
        (sql::insert_links(&writes.tables), rows.links.buf),
        (
            sql::insert_trace_durations(&writes.tables),
            rows.durations.buf,
        ),
        (sql::insert_search(&writes.tables), rows.search.buf),
        (sql::insert_spans(&writes.tables), rows.rows.buf),
        (sql::insert_refusals(&writes.tables), rows.refusals.buf),
    ] {
        if !data.is_empty() {
            target.run(&sql, INSERT_SETTINGS, data).await?;
        }
    }
    Ok(())
}

/// Inserts a checked batch, every shard's rows in parallel, and answers its requests once
/// every shard confirmed (or with the first error); `true` when all were confirmed.
async fn insert(shared: &Shared, batch: Checked) -> bool {
    let Checked {
        replies,
        outcomes,
        shards,
        ..
    } = batch;
    let inserts = shards
        .into_iter()
        .enumerate()
        .map(|(shard, rows)| insert_shard(shared, shard, rows));
    let result = join_all(inserts)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, StoreError>>();
    match result {
        Ok(_) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            shared.commits.send_modify(|n| *n += 1);
            true
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            false
        }
    }
}

#[cfg(test)]
#[path = "insert_tests.rs"]
mod tests;
