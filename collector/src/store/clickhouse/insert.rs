//! The writer task: ingest requests queue here; the task coalesces whatever is queued (up to
//! [`ClickHouseOptions::max_batch_spans`](super::ClickHouseOptions), waiting at most
//! `batch_linger_ms` for more) into one `INSERT`, and answers each request only after the
//! insert holding its spans was confirmed. Before inserting, it reads the stored keys of the
//! batch's traces: spans already stored are duplicates, and new spans of a trace at the
//! per-trace limit are refused and counted in `refusals_local`.
//!
//! One task per collector, so the check and the insert of a batch see each other's effects;
//! a failed insert fails every request of the batch (retryable errors become 503 with
//! `Retry-After`, and a retried span that did land is then a duplicate).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::codec::{DAY_NS, day_of, write_span};
use super::rowbinary::{Reader, Writer};
use super::{INSERT_SETTINGS, Shared, sql};
use crate::model::{Span, SpanId, SpanKind, TraceId};
use crate::store::{StoreError, WriteOutcome};

/// Requests that may wait for the writer.
pub(super) const QUEUE_REQUESTS: usize = 4096;
/// How long a request waits for room in the queue before [`StoreError::Overloaded`].
pub(super) const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Most trace ids in one key lookup (keeps the statement short).
const LOOKUP_TRACES: usize = 5000;

/// One `write_spans` call waiting for its insert.
#[derive(Debug)]
pub(super) struct WriteRequest {
    pub(super) spans: Vec<Span>,
    pub(super) reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

/// Runs until every sender is gone, answering every request it received.
pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<WriteRequest>) {
    let linger = Duration::from_millis(shared.options.batch_linger_ms);
    let max = shared.options.max_batch_spans.max(1);
    while let Some(first) = queue.recv().await {
        let mut spans = first.spans.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while spans < max {
            let next = match queue.try_recv() {
                Ok(r) => Some(r),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .unwrap_or_default()
                }
            };
            let Some(request) = next else { break };
            spans += request.spans.len();
            batch.push(request);
        }
        write_batch(&shared, batch).await;
    }
}

async fn write_batch(shared: &Shared, batch: Vec<WriteRequest>) {
    let (requests, replies): (Vec<Vec<Span>>, Vec<_>) =
        batch.into_iter().map(|r| (r.spans, r.reply)).unzip();
    match insert(shared, &requests).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            shared.commits.send_modify(|n| *n += 1);
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Stored spans per trace: their keys.
type Keys = HashMap<TraceId, HashSet<(SpanId, SpanKind)>>;

async fn stored_keys(shared: &Shared, ids: &[TraceId], now: u64) -> Result<Keys, StoreError> {
    let mut keys: Keys = HashMap::new();
    let since = day_of(now.saturating_sub(DAY_NS));
    for chunk in ids.chunks(LOOKUP_TRACES) {
        let answer = shared
            .select(&sql::existing_keys(&shared.tables, chunk, since))
            .await?;
        let mut r = Reader::new(&answer);
        while !r.is_empty() {
            let trace = TraceId(r.fixed::<16>()?);
            let span = SpanId(r.fixed::<8>()?);
            let kind = SpanKind::from_i32(i32::from(r.u8()?));
            keys.entry(trace).or_default().insert((span, kind));
        }
    }
    Ok(keys)
}

async fn insert(shared: &Shared, requests: &[Vec<Span>]) -> Result<Vec<WriteOutcome>, StoreError> {
    let now = crate::time::now_unix_nano();
    let ids: Vec<TraceId> = requests
        .iter()
        .flatten()
        .map(|s| s.trace_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut keys = stored_keys(shared, &ids, now).await?;
    let limit = shared.options.max_spans_per_trace;
    let total: usize = requests.iter().map(Vec::len).sum();
    let mut rows = Writer::with_capacity(total * 512);
    let mut refused: HashMap<TraceId, u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for spans in requests {
        let mut outcome = WriteOutcome::default();
        for span in spans {
            let trace = keys.entry(span.trace_id).or_default();
            if trace.contains(&(span.span_id, span.kind)) {
                outcome.duplicates += 1;
            } else if trace.len() >= limit {
                outcome.over_limit += 1;
                *refused.entry(span.trace_id).or_default() += 1;
            } else {
                trace.insert((span.span_id, span.kind));
                write_span(&mut rows, span, now);
                outcome.stored += 1;
            }
        }
        outcomes.push(outcome);
    }
    if !rows.buf.is_empty() {
        shared
            .main
            .run(
                &sql::insert_spans(&shared.tables),
                INSERT_SETTINGS,
                rows.buf,
            )
            .await?;
    }
    if !refused.is_empty() {
        let mut w = Writer::default();
        for (trace, n) in &refused {
            w.u16(day_of(now));
            w.u64(now);
            w.fixed(&trace.0);
            w.u64(*n);
        }
        shared
            .main
            .run(
                &sql::insert_refusals(&shared.tables),
                INSERT_SETTINGS,
                w.buf,
            )
            .await?;
    }
    Ok(outcomes)
}
