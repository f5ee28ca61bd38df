//! The batch span processor: a bounded queue in front of one export worker thread.
//!
//! `on_end` only does a `try_send` of the boxed span on a bounded channel (`std`'s array
//! channel: one compare-and-swap per span, against four atomic read-modify-writes in
//! tokio's) (OpenTelemetry SDK §Batching processor); a full queue drops the *new* span and
//! counts it. Exported boxes go back to the span record pool (`crate::pool`) for the
//! request threads to reuse. The worker does not wait on
//! the channel itself, so a span ended while it sleeps costs no wake-up (a futex or eventfd
//! system call and two context switches): `on_end` wakes it only for the first span of a
//! batch (to start the `scheduled_delay` clock) and when a full batch is queued. One dedicated OS thread
//! (`tracekit-export`) runs a current-thread tokio runtime that collects batches, exports
//! them one at a time, retries retryable failures with jittered exponential backoff, and
//! answers flush and shutdown requests. Every span handed to [`BatchSpanProcessor::on_end`]
//! ends up in exactly one [`BatchStats`] counter.

use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::export::{FlushError, SpanExporter, SpanProcessor};
use crate::span::SpanData;

mod accounting;
mod config;
mod control;
mod worker;

#[cfg(test)]
mod tests;

pub use config::{
    BatchConfig, BatchConfigBuilder, OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY,
};

use control::{FlushRequest, ShutdownRequest};
use worker::Worker;

/// Pending `force_flush` requests the worker buffers before `force_flush` fails fast.
const FLUSH_REQUEST_CAPACITY: usize = 64;

/// How long `shutdown` waits past its timeout for the worker to report. The worker enforces
/// the deadline itself; this only covers counting the abandoned spans and stopping.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(200);

/// Counters of a [`BatchSpanProcessor`], a snapshot of atomics shared with its worker.
///
/// Every span given to `on_end` is counted in `spans_ended` and, at any quiescent moment,
/// in exactly one of the other fields, so [`is_balanced`](BatchStats::is_balanced) holds:
/// `spans_ended = exported_ok + dropped_queue_full + dropped_rejected +
/// dropped_retry_exhausted + dropped_at_shutdown + still_queued`. A snapshot taken while
/// spans are moving may be off by the spans in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BatchStats {
    /// Spans handed to `on_end`.
    pub spans_ended: u64,
    /// Spans the exporter accepted.
    pub exported_ok: u64,
    /// New spans dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans the receiver rejected (a non-retryable failure, or rejected in a partial
    /// success), or whose export panicked.
    pub dropped_rejected: u64,
    /// Spans dropped after their batch's retry budget (`max_retry_elapsed`) ran out.
    pub dropped_retry_exhausted: u64,
    /// Spans dropped by shutdown: still queued when its deadline passed, or ended after
    /// shutdown started (or after the worker stopped).
    pub dropped_at_shutdown: u64,
    /// Spans queued or being exported right now.
    pub still_queued: u64,
}

impl BatchStats {
    /// All dropped spans, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_rejected
            + self.dropped_retry_exhausted
            + self.dropped_at_shutdown
    }

    /// Whether the accounting identity holds:
    /// `spans_ended == exported_ok + dropped() + still_queued`.
    pub fn is_balanced(&self) -> bool {
        self.spans_ended == self.exported_ok + self.dropped() + self.still_queued
    }
}

/// Counters and flags shared by the processor handle and its worker.
#[derive(Default)]
struct Shared {
    /// Touched on every `on_end`.
    hot: HotCounters,
    /// Touched by the worker once per batch.
    cold: ColdCounters,
    /// Wakes the worker: `on_end` notifies when the first span of a batch is queued and when
    /// a full batch is (see [`BatchSpanProcessor::on_end`]); the worker never waits on the
    /// span channel itself.
    wake: tokio::sync::Notify,
}

#[derive(Default)]
#[repr(align(64))]
struct HotCounters {
    /// `spans_ended` and `still_queued` in one word, so `on_end` pays one atomic add for
    /// both (see [`EndedQueued`]).
    counts: EndedQueued,
    dropped_queue_full: AtomicU64,
    /// Set once shutdown starts (or the worker is gone): `on_end` drops without queueing.
    shutdown: AtomicBool,
    /// Set when the queue-full warning was printed; the worker clears it on recovery.
    loss_warned: AtomicBool,
}

/// Two counters in one atomic word: spans ended (since the last fold) in the high 40 bits,
/// spans still queued in the low 24. `still_queued` never exceeds the queue size (at most
/// 2^20) plus the sends in flight, so it cannot carry into the high part; the worker folds
/// the high part into [`ColdCounters::ended_folded`] long before it could overflow.
#[derive(Default)]
struct EndedQueued(AtomicU64);

impl EndedQueued {
    const QUEUED_BITS: u32 = 24;
    const QUEUED_MASK: u64 = (1 << Self::QUEUED_BITS) - 1;
    const ONE_ENDED: u64 = 1 << Self::QUEUED_BITS;
    /// Ended spans the high part holds before the worker folds them.
    const FOLD_AT: u64 = 1 << 36;

    /// Counts a span ended and queued; returns `still_queued` before it.
    #[inline]
    fn end_and_queue(&self) -> u64 {
        self.0.fetch_add(Self::ONE_ENDED + 1, Relaxed) & Self::QUEUED_MASK
    }

    /// Counts a span ended without queueing it.
    fn end(&self) {
        self.0.fetch_add(Self::ONE_ENDED, Relaxed);
    }

    /// Takes `n` spans off `still_queued`; returns what is left.
    fn unqueue(&self, n: u64) -> u64 {
        (self.0.fetch_sub(n, Release) & Self::QUEUED_MASK).saturating_sub(n)
    }

    /// `still_queued`, with acquire ordering.
    fn queued(&self) -> u64 {
        self.0.load(Acquire) & Self::QUEUED_MASK
    }

    /// (spans ended since the last fold, still queued).
    fn load(&self) -> (u64, u64) {
        let v = self.0.load(Relaxed);
        (v >> Self::QUEUED_BITS, v & Self::QUEUED_MASK)
    }

    /// Moves the ended count into `folded` once it is large (worker only).
    fn fold_into(&self, folded: &AtomicU64) {
        let ended = self.0.load(Relaxed) >> Self::QUEUED_BITS;
        if ended >= Self::FOLD_AT {
            self.0.fetch_sub(ended << Self::QUEUED_BITS, Relaxed);
            folded.fetch_add(ended, Relaxed);
        }
    }
}

#[derive(Default)]
#[repr(align(64))]
struct ColdCounters {
    /// Ended spans folded out of [`HotCounters::counts`].
    ended_folded: AtomicU64,
    exported_ok: AtomicU64,
    dropped_rejected: AtomicU64,
    dropped_retry_exhausted: AtomicU64,
    dropped_at_shutdown: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> BatchStats {
        let (ended, still_queued) = self.hot.counts.load();
        BatchStats {
            spans_ended: self.cold.ended_folded.load(Relaxed) + ended,
            exported_ok: self.cold.exported_ok.load(Relaxed),
            dropped_queue_full: self.hot.dropped_queue_full.load(Relaxed),
            dropped_rejected: self.cold.dropped_rejected.load(Relaxed),
            dropped_retry_exhausted: self.cold.dropped_retry_exhausted.load(Relaxed),
            dropped_at_shutdown: self.cold.dropped_at_shutdown.load(Relaxed),
            still_queued,
        }
    }
}

/// A [`SpanProcessor`] that queues finished spans and exports them in batches from one
/// dedicated thread.
///
/// - `on_end` never blocks: a `try_send` on a bounded channel of `max_queue_size`; when it
///   is full the new span is dropped and counted in [`BatchStats::dropped_queue_full`]
///   (a warning is printed to stderr when loss starts and when it recovers, at most about
///   once a minute).
/// - The worker exports when a batch reaches `max_export_batch_size`, when
///   `scheduled_delay` has passed since the batch's first span, or on flush/shutdown.
///   Exports are sequential; each attempt is cancelled after `export_timeout`.
/// - [`ExportError::Retryable`](crate::export::ExportError::Retryable) (and an attempt timeout) retries the same batch with
///   exponential backoff and ±50 % jitter, never sooner than the exporter's `retry_after`,
///   for at most `max_retry_elapsed`. Meanwhile the queue fills and new spans are dropped.
/// - [`ExportError::Rejected`](crate::export::ExportError::Rejected) drops the batch without retry; a partial success drops only
///   the rejected spans. A panicking exporter drops its batch; the worker carries on.
///
/// It works inside or outside a tokio runtime: the worker has its own, and
/// [`force_flush`](SpanProcessor::force_flush) and [`shutdown`](SpanProcessor::shutdown)
/// wait on std channels with a timeout. Call `shutdown` before exit: dropping the processor
/// without it lets the detached worker try to export the queue for at most
/// `min(export_timeout, 30 s)`, which the process exit may cut short.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use tracekit::export::{BatchConfig, BatchSpanProcessor, InMemoryExporter, SpanProcessor};
///
/// let exporter = InMemoryExporter::default();
/// let processor = BatchSpanProcessor::new(exporter.clone(), BatchConfig::default());
/// // ... a tracer calls processor.on_end(span) for each finished span ...
/// processor.shutdown(Duration::from_secs(5)).unwrap();
/// let stats = processor.stats();
/// assert!(stats.is_balanced());
/// assert_eq!(stats.exported_ok as usize, exporter.finished_spans().len());
/// ```
pub struct BatchSpanProcessor {
    spans: std_mpsc::SyncSender<Box<SpanData>>,
    flushes: mpsc::Sender<FlushRequest>,
    shutdown: Mutex<Option<oneshot::Sender<ShutdownRequest>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    config: BatchConfig,
    /// `still_queued` value at which a full batch is waiting: `max_export_batch_size`.
    full_batch: u64,
}

impl BatchSpanProcessor {
    /// Starts the worker thread (`tracekit-export`) exporting through `exporter`.
    ///
    /// If the thread cannot be started, an error is printed and the processor behaves as
    /// shut down: every span is dropped and counted in `dropped_at_shutdown`.
    pub fn new(exporter: impl SpanExporter, config: BatchConfig) -> BatchSpanProcessor {
        let (spans_tx, spans_rx) = std_mpsc::sync_channel(config.max_queue_size());
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_REQUEST_CAPACITY);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let worker = Worker::new(
            exporter,
            config.clone(),
            Arc::clone(&shared),
            spans_rx,
            flush_rx,
            shutdown_rx,
        );
        let handle = std::thread::Builder::new()
            .name("tracekit-export".to_owned())
            .spawn(move || worker.run_on_own_runtime());
        let handle = match handle {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!(
                    "tracekit: cannot start the span export thread ({e}); spans will be dropped"
                );
                shared.hot.shutdown.store(true, Relaxed);
                None
            }
        };
        BatchSpanProcessor {
            spans: spans_tx,
            flushes: flush_tx,
            shutdown: Mutex::new(Some(shutdown_tx)),
            worker: Mutex::new(handle),
            shared,
            full_batch: config.max_export_batch_size() as u64,
            config,
        }
    }

    /// A snapshot of the counters (see [`BatchStats`]).
    pub fn stats(&self) -> BatchStats {
        self.shared.snapshot()
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    #[cold]
    fn warn_queue_full(&self) {
        let flag = &self.shared.hot.loss_warned;
        if !flag.load(Relaxed) && !flag.swap(true, Relaxed) {
            eprintln!(
                "tracekit: span export queue full ({} spans); dropping new spans until the \
                 exporter catches up (counted in BatchStats::dropped_queue_full)",
                self.config.max_queue_size()
            );
        }
    }
}

impl SpanProcessor for BatchSpanProcessor {
    fn on_end(&self, span: Box<SpanData>) {
        let hot = &self.shared.hot;
        if hot.shutdown.load(Relaxed) {
            hot.counts.end();
            self.shared.cold.dropped_at_shutdown.fetch_add(1, Relaxed);
            return;
        }
        // Counted as queued before the send so the worker, which decrements after it
        // receives, can never see the counter below the spans it holds.
        let before = hot.counts.end_and_queue();
        match self.spans.try_send(span) {
            Ok(()) => {
                // The worker sleeps only with an empty channel and fewer than a full batch
                // in hand (`still_queued` < full_batch), so it needs waking exactly when the
                // first span arrives (to start the scheduled-delay clock) and when the
                // count reaches a full batch. Every other span costs no wake-up.
                if before == 0 || before + 1 == self.full_batch {
                    self.shared.wake.notify_one();
                }
            }
            Err(std_mpsc::TrySendError::Full(_)) => {
                hot.counts.unqueue(1);
                hot.dropped_queue_full.fetch_add(1, Relaxed);
                self.warn_queue_full();
            }
            Err(std_mpsc::TrySendError::Disconnected(_)) => {
                // Shutdown completed (or the worker is gone) since the flag check.
                hot.counts.unqueue(1);
                self.shared.cold.dropped_at_shutdown.fetch_add(1, Relaxed);
            }
        }
    }

    /// Returns `Ok` once every span ended before the call is exported or definitively
    /// dropped (rejected, retries exhausted). `Err(Timeout)` if `timeout` passes first or
    /// more than 64 flushes are already waiting; `Err(AlreadyShutdown)` after shutdown.
    fn force_flush(&self, timeout: Duration) -> Result<(), FlushError> {
        if self.shared.hot.shutdown.load(Relaxed) {
            return Err(FlushError::AlreadyShutdown);
        }
        let (reply, answer) = std_mpsc::sync_channel(1);
        let request = FlushRequest {
            deadline: deadline_after(timeout),
            reply,
        };
        match self.flushes.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(FlushError::Timeout),
            Err(TrySendError::Closed(_)) => return Err(FlushError::AlreadyShutdown),
        }
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(FlushError::Timeout),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(FlushError::AlreadyShutdown),
        }
    }

    /// Stops accepting spans, exports everything queued and stops the worker. If `timeout`
    /// passes first (say the collector is down), the remaining spans are counted in
    /// `dropped_at_shutdown` and `Err(Timeout)` is returned, within `timeout` + 200 ms.
    /// A second call returns `Err(AlreadyShutdown)`.
    fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        if self.shared.hot.shutdown.swap(true, Relaxed) {
            return Err(FlushError::AlreadyShutdown);
        }
        let Some(sender) = lock(&self.shutdown).take() else {
            return Err(FlushError::AlreadyShutdown);
        };
        let (reply, answer) = std_mpsc::sync_channel(1);
        let request = ShutdownRequest {
            deadline: deadline_after(timeout),
            reply,
        };
        if sender.send(request).is_err() {
            // The worker is gone (it could not start a runtime); nothing left to flush.
            return Err(FlushError::AlreadyShutdown);
        }
        match answer.recv_timeout(timeout.saturating_add(SHUTDOWN_MARGIN)) {
            Ok(result) => {
                // The worker replies as its last act, so this join is immediate.
                if let Some(handle) = lock(&self.worker).take() {
                    let _ = handle.join();
                }
                result
            }
            // Only possible if the exporter blocks the worker thread itself; leave it behind.
            Err(_) => Err(FlushError::Timeout),
        }
    }
}

impl fmt::Debug for BatchSpanProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSpanProcessor")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + d`, or a point about a century away when that overflows (`Duration::MAX`).
fn deadline_after(d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}
