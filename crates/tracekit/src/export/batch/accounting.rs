//! The export worker's bookkeeping: which spans it has taken and resolved, the flushes
//! waiting on them, shutdown in progress, and the rate-limited messages it prints. The
//! counting invariants are in the `worker` module docs.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::control::{Control, FlushRequest, Reply};
use super::{BatchConfig, Shared, deadline_after};

/// A flush accepted by the worker and not yet answered.
pub(super) struct PendingFlush {
    pub(super) target: u64,
    pub(super) request: FlushRequest,
}

/// Shutdown in progress.
pub(super) struct Stopping {
    pub(super) deadline: Instant,
    /// `None` when the processor was dropped without `shutdown`.
    pub(super) reply: Option<Reply>,
}

/// The most a dropped (not shut down) processor's worker keeps trying to export.
const DROP_GRACE: Duration = Duration::from_secs(30);

/// How often each kind of worker message may be printed.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Bookkeeping the control handlers update while an export is in flight.
pub(super) struct State {
    pub(super) cfg: BatchConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) batch_started: Option<Instant>,
    pub(super) taken: u64,
    pub(super) resolved: u64,
    pub(super) flushes: Vec<PendingFlush>,
    pub(super) stopping: Option<Stopping>,
    pub(super) log: LogLimiter,
}

/// The final fate of one batch.
pub(super) enum Resolution {
    Exported,
    PartiallyRejected { rejected: u64, message: String },
    Rejected { reason: String },
    Panicked { message: String },
    RetryExhausted { reason: String },
    AbandonedAtShutdown,
}

impl State {
    pub(super) fn took(&mut self, n: usize) {
        if n > 0 {
            self.taken += n as u64;
            if self.batch_started.is_none() {
                self.batch_started = Some(Instant::now());
            }
        }
    }

    pub(super) fn flush_outstanding(&self) -> bool {
        self.flushes.iter().any(|f| f.target > self.resolved)
    }

    /// Spans counted in `still_queued` but not yet taken: in the channel or being sent.
    pub(super) fn sends_landing(&self) -> u64 {
        let in_hand = self.taken - self.resolved;
        self.shared.hot.counts.queued().saturating_sub(in_hand)
    }

    pub(super) fn handle(&mut self, control: Control) {
        match control {
            Control::Flush(request) => {
                let target = self.resolved + self.shared.hot.counts.queued();
                if target <= self.resolved {
                    let _ = request.reply.try_send(Ok(()));
                } else {
                    self.flushes.push(PendingFlush { target, request });
                }
            }
            Control::Shutdown(request) => {
                self.shared.hot.shutdown.store(true, Relaxed);
                self.stopping = Some(Stopping {
                    deadline: request.deadline,
                    reply: Some(request.reply),
                });
            }
            Control::Dropped => {
                // The processor (and so the sending end) is gone: nothing new can arrive.
                self.shared.hot.shutdown.store(true, Relaxed);
                if self.stopping.is_none() {
                    let grace = self.cfg.export_timeout().min(DROP_GRACE);
                    self.stopping = Some(Stopping {
                        deadline: deadline_after(grace),
                        reply: None,
                    });
                }
            }
        }
    }

    /// Answers the flushes whose spans are all resolved; forgets those whose caller left.
    pub(super) fn answer_flushes(&mut self) {
        let now = Instant::now();
        // Nothing queued, in hand or being sent: every flush is satisfied, including one
        // whose target counted a send that then failed.
        let resolved = if self.shared.hot.counts.queued() == 0 {
            u64::MAX
        } else {
            self.resolved
        };
        self.flushes.retain(|f| {
            if f.target <= resolved {
                let _ = f.request.reply.try_send(Ok(()));
                false
            } else {
                f.request.deadline > now
            }
        });
    }

    /// Records the fate of `n` spans leaving the worker's hands.
    pub(super) fn resolve(&mut self, n: u64, resolution: Resolution) {
        let cold = &self.shared.cold;
        match resolution {
            Resolution::Exported => {
                cold.exported_ok.fetch_add(n, Relaxed);
            }
            Resolution::PartiallyRejected { rejected, message } => {
                let rejected = rejected.min(n);
                cold.exported_ok.fetch_add(n - rejected, Relaxed);
                cold.dropped_rejected.fetch_add(rejected, Relaxed);
                self.log.log(LogKind::Rejected, || {
                    format!("the receiver rejected {rejected} of {n} spans: {message}")
                });
            }
            Resolution::Rejected { reason } => {
                cold.dropped_rejected.fetch_add(n, Relaxed);
                self.log.log(LogKind::Rejected, || {
                    format!("span export rejected, dropped {n} spans: {reason}")
                });
            }
            Resolution::Panicked { message } => {
                cold.dropped_rejected.fetch_add(n, Relaxed);
                self.log.log(LogKind::Panicked, || {
                    format!("the span exporter panicked, dropped {n} spans: {message}")
                });
            }
            Resolution::RetryExhausted { reason } => {
                cold.dropped_retry_exhausted.fetch_add(n, Relaxed);
                self.log.log(LogKind::RetryExhausted, || {
                    format!(
                        "span export still failing after {:?}, dropped {n} spans: {reason}",
                        self.cfg.max_retry_elapsed()
                    )
                });
            }
            Resolution::AbandonedAtShutdown => {
                cold.dropped_at_shutdown.fetch_add(n, Relaxed);
            }
        }
        let queued_now = self.shared.hot.counts.unqueue(n);
        self.shared
            .hot
            .counts
            .fold_into(&self.shared.cold.ended_folded);
        self.resolved += n;
        self.batch_started = None;
        self.note_recovery(queued_now as usize);
    }

    /// Clears the queue-full warning once the queue is at most half full again, so the
    /// next loss is reported (at most once per [`LOG_INTERVAL`]).
    pub(super) fn note_recovery(&mut self, queued_now: usize) {
        let hot = &self.shared.hot;
        if hot.loss_warned.load(Relaxed) && queued_now <= self.cfg.max_queue_size() / 2 {
            let dropped = hot.dropped_queue_full.load(Relaxed);
            if self.log.log(LogKind::Recovered, || {
                format!("span export queue has room again; {dropped} spans dropped so far")
            }) {
                hot.loss_warned.store(false, Relaxed);
            }
        }
    }
}

/// The delay before retry number `retry` (0-based): `min(initial · 2^retry, max)` scaled by

#[derive(Clone, Copy)]
pub(super) enum LogKind {
    Retrying,
    Rejected,
    Panicked,
    RetryExhausted,
    Recovered,
}

/// Prints each kind of worker message at most once per [`LOG_INTERVAL`].
#[derive(Default)]
pub(super) struct LogLimiter {
    pub(super) last: [Option<Instant>; 5],
}

impl LogLimiter {
    /// Prints `message()` unless this kind was printed recently; returns whether it did.
    pub(super) fn log(&mut self, kind: LogKind, message: impl FnOnce() -> String) -> bool {
        let slot = &mut self.last[kind as usize];
        let now = Instant::now();
        if slot.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            return false;
        }
        *slot = Some(now);
        eprintln!("tracekit: {}", message());
        true
    }
}
