//! The export worker: runs on the `tracekit-export` thread, owns the exporter and the
//! receiving ends, and is the only code that resolves queued spans into counters.
//!
//! Invariants:
//! - `taken` counts spans moved out of the channel; `resolved` counts spans whose fate is
//!   final (exported or dropped). Batches resolve in order, so `resolved` spans are a
//!   prefix of `taken` ones, and `taken - resolved` is the batch in hand.
//! - `still_queued` (shared) counts spans in hand, in the channel and being sent: `on_end`
//!   adds one before its `try_send` (and takes it back if the send fails), the worker
//!   subtracts resolved spans. So `resolved + still_queued` read when a flush arrives
//!   covers every span ended before the flush, and once `still_queued` is 0 nothing is
//!   outstanding at all (which also answers a flush whose count included a failed send).
//! - Once shutdown starts, `on_end` stops sending (the shared flag); the worker drains the
//!   channel until `still_queued` shows no send still landing, so every span sent is
//!   resolved before it exits.

#![allow(clippy::vec_box)] // Records are boxed on purpose: they move and recycle as one pointer.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::TryRecvError;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::accounting::{LogKind, LogLimiter, Resolution, State};
use super::control::{Control, Controls, FlushRequest, Reply, ShutdownRequest};
use super::{BatchConfig, Shared, deadline_after};
use crate::export::{ExportError, ExportOutcome, FlushError, SpanExporter};
use crate::pool;
use crate::span::SpanData;

/// What `run` hands back: the shutdown reply channel and the result to send on it.
type ShutdownAnswer = Option<(Reply, Result<(), FlushError>)>;

/// Largest `retry_after` the worker honours, whatever the exporter says.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub(super) struct Worker<E> {
    exporter: E,
    /// The batch in hand, as the tracer recorded it: the worker only reads the records, so
    /// their memory stays where the request thread that reuses them last wrote it.
    batch: Vec<Box<SpanData>>,
    spans: std::sync::mpsc::Receiver<Box<SpanData>>,
    controls: Controls,
    st: State,
}

/// How one export attempt ended.
enum Attempt {
    Done(Result<ExportOutcome, ExportError>),
    Panicked(String),
    TimedOut,
    ShutdownDeadline,
}

impl<E: SpanExporter> Worker<E> {
    pub(super) fn new(
        exporter: E,
        cfg: BatchConfig,
        shared: Arc<Shared>,
        spans: std::sync::mpsc::Receiver<Box<SpanData>>,
        flushes: mpsc::Receiver<FlushRequest>,
        shutdown: oneshot::Receiver<ShutdownRequest>,
    ) -> Self {
        Worker {
            exporter,
            batch: Vec::with_capacity(cfg.max_export_batch_size()),
            spans,
            controls: Controls {
                flushes,
                flushes_open: true,
                shutdown: Some(shutdown),
            },
            st: State {
                cfg,
                shared,
                batch_started: None,
                taken: 0,
                resolved: 0,
                flushes: Vec::new(),
                stopping: None,
                log: LogLimiter::default(),
            },
        }
    }

    /// The thread body: a current-thread runtime driving [`Worker::run`]. The shutdown
    /// reply is sent last, after the exporter and the runtime are dropped.
    pub(super) fn run_on_own_runtime(self) {
        let shared = Arc::clone(&self.st.shared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!(
                    "tracekit: cannot start the span export runtime ({e}); spans will be dropped"
                );
                self.drop_everything_without_runtime();
                return;
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(self.run())));
        drop(runtime);
        match outcome {
            Ok(Some((reply, result))) => {
                let _ = reply.try_send(result);
            }
            Ok(None) => {}
            Err(_) => {
                // A bug in this module, not in the exporter (its panics are caught per
                // attempt). Spans still in the channel stay counted as `still_queued`.
                shared.hot.shutdown.store(true, Relaxed);
                eprintln!("tracekit: the span export worker panicked; spans will be dropped");
            }
        }
    }

    /// Without a runtime nothing can be exported: count every queued span as dropped.
    fn drop_everything_without_runtime(self) {
        let shared = Arc::clone(&self.st.shared);
        shared.hot.shutdown.store(true, Relaxed);
        let mut n: u64 = 0;
        // Until every counted span is taken: a send that passed the shutdown check may
        // still be landing.
        while n < shared.hot.counts.queued() {
            match self.spans.try_recv() {
                Ok(_) => n += 1,
                Err(TryRecvError::Empty) => std::thread::yield_now(),
                Err(TryRecvError::Disconnected) => break,
            }
        }
        shared.cold.dropped_at_shutdown.fetch_add(n, Relaxed);
        shared.hot.counts.unqueue(n);
    }

    /// The worker loop. Returns the shutdown reply and its result, if `shutdown` was called.
    async fn run(mut self) -> ShutdownAnswer {
        let max = self.st.cfg.max_export_batch_size();
        let graceful = loop {
            self.st.answer_flushes();
            if let Some(stopping) = &self.st.stopping {
                if Instant::now() >= stopping.deadline {
                    break false;
                }
                // Shutdown: no new sends start; take what is left and export it.
                self.take_available(max);
                if self.batch.is_empty() {
                    if self.st.sends_landing() == 0 {
                        break true;
                    }
                    // A send that passed the shutdown check is still landing.
                    tokio::time::sleep(Duration::from_micros(100)).await;
                    continue;
                }
                self.export_batch().await;
                continue;
            }
            if self.st.flush_outstanding() {
                self.take_available(max);
                if !self.batch.is_empty() {
                    self.export_batch().await;
                    continue;
                }
                // Unreachable by the flush invariant; fall through and wait.
            }

            // Take what is queued without waiting on the channel: senders wake us only for
            // the first span of a batch and for a full batch (`on_end`), so spans ended
            // while we sleep cost their threads no wake-up.
            self.take_available(max);
            if self.batch.len() >= max {
                self.export_batch().await;
                continue;
            }
            enum Wake {
                Control(Control),
                Due,
                Notified,
            }
            // With nothing in hand, a notification wakes us; the fallback tick only
            // bounds the wait should one ever be missed.
            let due = match self.st.batch_started {
                Some(t) => deadline_from(t, self.st.cfg.scheduled_delay()),
                None => deadline_after(self.st.cfg.scheduled_delay()),
            };
            let shared = Arc::clone(&self.st.shared);
            let wake = tokio::select! {
                biased;
                c = self.controls.next() => Wake::Control(c),
                () = sleep_until(Some(due)) => Wake::Due,
                () = shared.wake.notified() => Wake::Notified,
            };
            match wake {
                Wake::Control(c) => self.st.handle(c),
                Wake::Due => {
                    // Spans that arrived since the last look belong to this batch too.
                    self.take_available(max);
                    self.export_batch().await;
                }
                Wake::Notified => {}
            }
        };
        if !graceful {
            self.abandon_remaining().await;
        }
        self.finish(graceful)
    }

    /// Moves spans already in the channel into the batch, without waiting. Senders wake
    /// the worker through `wake` only, so an empty channel just means nothing more yet.
    fn take_available(&mut self, max: usize) {
        let mut n = 0;
        while self.batch.len() < max {
            match self.spans.try_recv() {
                Ok(span) => {
                    self.batch.push(span);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        self.st.took(n);
    }

    /// Exports the batch in hand until it is resolved, retrying retryable failures, and
    /// keeps answering flush and shutdown requests meanwhile.
    async fn export_batch(&mut self) {
        let Worker {
            exporter,
            batch,
            controls,
            st,
            ..
        } = self;
        if batch.is_empty() {
            return;
        }
        let first_attempt = Instant::now();
        let give_up_at = first_attempt.checked_add(st.cfg.max_retry_elapsed());
        let mut retries: u32 = 0;
        let resolution = loop {
            let attempt_deadline = deadline_after(st.cfg.export_timeout());
            let attempt = {
                let call = CatchUnwind {
                    inner: async { exporter.export(batch).await },
                };
                let call = tokio::time::timeout_at(to_tokio(attempt_deadline), call);
                let mut call = std::pin::pin!(call);
                loop {
                    enum Wake {
                        Finished(Attempt),
                        Control(Control),
                    }
                    let stop_at = st.stopping.as_ref().map(|s| s.deadline);
                    let wake = tokio::select! {
                        biased;
                        r = &mut call => Wake::Finished(match r {
                            Ok(Ok(result)) => Attempt::Done(result),
                            Ok(Err(payload)) => Attempt::Panicked(panic_message(&*payload)),
                            Err(_) => Attempt::TimedOut,
                        }),
                        () = sleep_until(stop_at), if stop_at.is_some() => {
                            Wake::Finished(Attempt::ShutdownDeadline)
                        }
                        c = controls.next() => Wake::Control(c),
                    };
                    match wake {
                        Wake::Finished(a) => break a,
                        Wake::Control(c) => st.handle(c),
                    }
                }
            };
            let (reason, retry_after) = match attempt {
                Attempt::Done(Ok(ExportOutcome::Accepted)) => break Resolution::Exported,
                Attempt::Done(Ok(ExportOutcome::PartiallyRejected { rejected, message })) => {
                    break Resolution::PartiallyRejected { rejected, message };
                }
                Attempt::Done(Err(ExportError::Rejected { reason })) => {
                    break Resolution::Rejected { reason };
                }
                Attempt::Panicked(message) => break Resolution::Panicked { message },
                Attempt::ShutdownDeadline => break Resolution::AbandonedAtShutdown,
                Attempt::Done(Err(ExportError::Retryable {
                    reason,
                    retry_after,
                })) => (reason, retry_after),
                Attempt::TimedOut => (
                    format!(
                        "export attempt cancelled after {:?}",
                        st.cfg.export_timeout()
                    ),
                    None,
                ),
            };
            // Retryable: wait max(jittered backoff, retry_after), within the budget.
            let backoff = backoff_delay(&st.cfg, retries, fastrand::f64());
            let delay = backoff.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
            let retry_at = deadline_after(delay);
            if give_up_at.is_some_and(|g| retry_at > g) {
                break Resolution::RetryExhausted { reason };
            }
            if retries == 0 {
                st.log.log(LogKind::Retrying, || {
                    format!("span export failed, retrying with backoff: {reason}")
                });
            }
            let abandoned = loop {
                enum Wake {
                    RetryNow,
                    ShutdownDeadline,
                    Control(Control),
                }
                let stop_at = st.stopping.as_ref().map(|s| s.deadline);
                let wake = tokio::select! {
                    biased;
                    () = sleep_until(stop_at), if stop_at.is_some_and(|d| d < retry_at) => {
                        Wake::ShutdownDeadline
                    }
                    () = sleep_until(Some(retry_at)) => Wake::RetryNow,
                    c = controls.next() => Wake::Control(c),
                };
                match wake {
                    Wake::RetryNow => break false,
                    Wake::ShutdownDeadline => break true,
                    Wake::Control(c) => st.handle(c),
                }
            };
            if abandoned {
                break Resolution::AbandonedAtShutdown;
            }
            retries = retries.saturating_add(1);
        };
        let n = batch.len() as u64;
        pool::give_back(batch);
        st.resolve(n, resolution);
    }

    /// Shutdown deadline passed: count the batch in hand and everything still queued.
    async fn abandon_remaining(&mut self) {
        // No new sends start, so this ends as soon as sends already under way land.
        self.batch.clear();
        loop {
            match self.spans.try_recv() {
                Ok(_) => self.st.took(1),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if self.st.sends_landing() == 0 => break,
                Err(TryRecvError::Empty) => tokio::task::yield_now().await,
            }
        }
        let in_hand = self.st.taken - self.st.resolved;
        self.st.resolve(in_hand, Resolution::AbandonedAtShutdown);
    }

    /// Answers every waiting request and reports; the exporter is dropped with `self`.
    fn finish(mut self, graceful: bool) -> ShutdownAnswer {
        let shared = &self.st.shared;
        shared.hot.shutdown.store(true, Relaxed);
        let result = if graceful {
            Ok(())
        } else {
            Err(FlushError::Timeout)
        };
        self.controls.flushes.close();
        while let Ok(request) = self.controls.flushes.try_recv() {
            let _ = request.reply.try_send(result);
        }
        for pending in self.st.flushes.drain(..) {
            let _ = pending.request.reply.try_send(result);
        }
        let stats = shared.snapshot();
        if stats.dropped() > 0 {
            eprintln!(
                "tracekit: span export stopped; exported {}, dropped {} (queue full {}, \
                 rejected {}, retries exhausted {}, at shutdown {})",
                stats.exported_ok,
                stats.dropped(),
                stats.dropped_queue_full,
                stats.dropped_rejected,
                stats.dropped_retry_exhausted,
                stats.dropped_at_shutdown,
            );
        }
        let reply = self.st.stopping.take().and_then(|s| s.reply);
        reply.map(|r| (r, result))
    }
}

/// `0.5 + unit_random`, i.e. ±50 % jitter for `unit_random` in [0, 1).
pub(super) fn backoff_delay(cfg: &BatchConfig, retry: u32, unit_random: f64) -> Duration {
    let base = cfg
        .initial_backoff()
        .saturating_mul(2u32.saturating_pow(retry))
        .min(cfg.max_backoff());
    Duration::try_from_secs_f64(base.as_secs_f64() * (0.5 + unit_random)).unwrap_or(base)
}

fn deadline_from(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| deadline_after(Duration::MAX))
}

fn to_tokio(t: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(t)
}

/// Sleeps until `t`; never completes for `None` (the select branch is disabled then).
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(to_tokio(t)).await,
        None => std::future::pending().await,
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

pin_project_lite::pin_project! {
    /// Polls `inner`, turning a panic during a poll into `Err(payload)`. The exporter's
    /// `export` call itself happens inside the first poll (the future is an `async` block),
    /// so a panic there is caught too.
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
