//! Tests of the batch span processor against a scripted exporter.
//!
//! No test sleeps to synchronise: they wait on condition variables or channels with a
//! deadline. Where timing is the subject, delays are configured small (tens of ms) and
//! asserted as lower bounds from recorded `Instant`s; upper bounds get a generous margin.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::worker::backoff_delay;
use super::*;
use crate::export::{ExportError, ExportOutcome, FlushError, SpanExporter, SpanProcessor};
use crate::id::{SpanId, TraceFlags, TraceId};
use crate::span::SpanData;

const WAIT: Duration = Duration::from_secs(10);
/// Scheduled delay long enough never to fire during a test.
const NEVER: Duration = Duration::from_secs(3600);

fn span(i: u64) -> SpanData {
    SpanData {
        trace_id: TraceId::from_u128(u128::from(i) + 1),
        span_id: SpanId::from_u64(i + 1),
        trace_flags: TraceFlags::SAMPLED,
        name: Cow::Borrowed("op"),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..SpanData::default()
    }
}

/// What the scripted exporter does on one attempt.
#[derive(Clone, Debug)]
enum Step {
    Accept,
    /// Waits for a permit from the gate, then accepts.
    Block,
    /// Never completes (the processor must cancel it).
    Hang,
    Retryable(Option<Duration>),
    Reject,
    Partial(u64),
    /// Panics inside the future.
    Panic,
    /// Panics in `export` itself, before returning a future.
    PanicInCall,
}

#[derive(Debug)]
struct AttemptRecord {
    at: Instant,
    ids: Vec<u64>,
}

#[derive(Default)]
struct ProbeState {
    script: VecDeque<Step>,
    default: Option<Step>,
    attempts: Vec<AttemptRecord>,
    accepted: Vec<u64>,
}

/// Shared view of a [`Scripted`] exporter: its script and what happened.
#[derive(Clone)]
struct Probe {
    state: Arc<(Mutex<ProbeState>, Condvar)>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Probe {
    fn new(script: impl IntoIterator<Item = Step>, default: Step) -> Probe {
        let probe = Probe {
            state: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        {
            let mut st = probe.state.0.lock().unwrap();
            st.script = script.into_iter().collect();
            st.default = Some(default);
        }
        probe
    }

    fn exporter(&self) -> Scripted {
        Scripted {
            probe: self.clone(),
        }
    }

    /// A processor exporting through this probe.
    fn processor(&self, cfg: BatchConfig) -> BatchSpanProcessor {
        BatchSpanProcessor::new(self.exporter(), cfg)
    }

    fn set_default(&self, step: Step) {
        self.state.0.lock().unwrap().default = Some(step);
    }

    fn release(&self, permits: usize) {
        self.gate.add_permits(permits);
    }

    /// Waits until at least `n` attempts started; panics at the deadline.
    fn wait_attempts(&self, n: usize) {
        let (lock, cond) = &*self.state;
        let st = lock.lock().unwrap();
        let (st, _) = cond
            .wait_timeout_while(st, WAIT, |st| st.attempts.len() < n)
            .unwrap();
        assert!(
            st.attempts.len() >= n,
            "only {} attempts",
            st.attempts.len()
        );
    }

    fn attempts(&self) -> Vec<(Instant, Vec<u64>)> {
        let st = self.state.0.lock().unwrap();
        st.attempts.iter().map(|a| (a.at, a.ids.clone())).collect()
    }

    fn record_accepted(&self, ids: &[u64]) {
        let (lock, cond) = &*self.state;
        lock.lock().unwrap().accepted.extend(ids);
        cond.notify_all();
    }

    fn accepted(&self) -> Vec<u64> {
        self.state.0.lock().unwrap().accepted.clone()
    }
}

struct Scripted {
    probe: Probe,
}

impl SpanExporter for Scripted {
    fn export(
        &mut self,
        batch: &[Box<SpanData>],
    ) -> impl Future<Output = Result<ExportOutcome, ExportError>> + Send {
        let ids: Vec<u64> = batch.iter().map(|s| s.span_id.to_u64() - 1).collect();
        let step = {
            let (lock, cond) = &*self.probe.state;
            let mut st = lock.lock().unwrap();
            st.attempts.push(AttemptRecord {
                at: Instant::now(),
                ids: ids.clone(),
            });
            cond.notify_all();
            let default = st.default.clone().unwrap_or(Step::Accept);
            st.script.pop_front().unwrap_or(default)
        };
        if let Step::PanicInCall = step {
            panic!("scripted panic in export()");
        }
        let probe = self.probe.clone();
        async move {
            let accept = |ids: Vec<u64>| {
                probe.record_accepted(&ids);
                Ok(ExportOutcome::Accepted)
            };
            match step {
                Step::Accept => accept(ids),
                Step::Block => {
                    probe.gate.acquire().await.unwrap().forget();
                    accept(ids)
                }
                Step::Hang => std::future::pending().await,
                Step::Retryable(retry_after) => Err(ExportError::Retryable {
                    reason: "scripted".to_owned(),
                    retry_after,
                }),
                Step::Reject => Err(ExportError::Rejected {
                    reason: "scripted 400".to_owned(),
                }),
                Step::Partial(rejected) => {
                    let kept = ids.len() - usize::try_from(rejected).unwrap();
                    probe.record_accepted(&ids[..kept]);
                    Ok(ExportOutcome::PartiallyRejected {
                        rejected,
                        message: "scripted partial".to_owned(),
                    })
                }
                Step::Panic => panic!("scripted panic in the export future"),
                Step::PanicInCall => unreachable!(),
            }
        }
    }
}

fn config() -> BatchConfigBuilder {
    BatchConfig::builder()
        .with_scheduled_delay(NEVER)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
}

fn end_spans(p: &BatchSpanProcessor, ids: std::ops::Range<u64>) {
    for i in ids {
        p.on_end(Box::new(span(i)));
    }
}

/// Spins (yielding) until `cond` holds; panics after [`WAIT`].
#[track_caller]
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met in {WAIT:?}");
        std::thread::yield_now();
    }
}

#[track_caller]
fn assert_balanced(stats: BatchStats) {
    assert!(stats.is_balanced(), "accounting identity broken: {stats:?}");
}

/// `n` spans exported so far, the identity kept.
fn assert_exported(p: &BatchSpanProcessor, n: u64) {
    let stats = p.stats();
    assert_eq!(stats.exported_ok, n, "{stats:?}");
    assert_balanced(stats);
}

/// After shutdown: `ended` spans ended, none still queued, every export the probe accepted
/// counted, the identity kept. Returns the stats for the caller's own checks.
fn assert_settled(p: &BatchSpanProcessor, probe: &Probe, ended: u64) -> BatchStats {
    let stats = p.stats();
    assert_eq!(stats.spans_ended, ended);
    assert_eq!(stats.still_queued, 0);
    assert_eq!(stats.exported_ok, probe.accepted().len() as u64);
    assert_balanced(stats);
    stats
}

#[test]
fn exports_when_the_batch_is_full() {
    let probe = Probe::new([], Step::Accept);
    let p = probe.processor(config().with_max_export_batch_size(4).build());
    end_spans(&p, 0..8);
    probe.wait_attempts(2);
    let attempts = probe.attempts();
    assert_eq!(attempts[0].1, [0, 1, 2, 3]);
    assert_eq!(attempts[1].1, [4, 5, 6, 7]);
    // A ninth span alone stays queued: the scheduled delay is an hour.
    p.on_end(Box::new(span(8)));
    p.shutdown(WAIT).unwrap();
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 9);
    assert_eq!(probe.attempts().len(), 3);
    assert_balanced(stats);
}

#[test]
fn exports_a_partial_batch_after_the_scheduled_delay() {
    let delay = Duration::from_millis(100);
    let probe = Probe::new([], Step::Accept);
    let p = probe.processor(config().with_scheduled_delay(delay).build());
    let first_end = Instant::now();
    end_spans(&p, 0..3);
    probe.wait_attempts(1);
    let (at, ids) = probe.attempts().remove(0);
    assert_eq!(ids, [0, 1, 2]);
    assert!(
        at - first_end >= delay,
        "exported after {:?}",
        at - first_end
    );
    p.force_flush(WAIT).unwrap();
    assert_exported(&p, 3);
}

#[test]
fn a_full_queue_drops_exactly_the_new_spans() {
    let probe = Probe::new([Step::Block], Step::Accept);
    let cfg = config()
        .with_max_queue_size(4)
        .with_max_export_batch_size(2)
        .build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..2);
    probe.wait_attempts(1); // the worker holds spans 0 and 1, blocked in export
    end_spans(&p, 2..12); // 4 fit in the queue, 6 are dropped
    let stats = p.stats();
    assert_eq!(stats.spans_ended, 12);
    assert_eq!(stats.dropped_queue_full, 6);
    assert_eq!(stats.still_queued, 6);
    assert_eq!(stats.exported_ok, 0);
    assert_balanced(stats);

    probe.release(1);
    p.force_flush(WAIT).unwrap();
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 6);
    assert_eq!(stats.still_queued, 0);
    assert_eq!(probe.accepted(), [0, 1, 2, 3, 4, 5]); // the oldest were kept
    assert_balanced(stats);
}

#[test]
fn while_retrying_the_queue_fills_and_overflow_is_counted() {
    // Collector down: every attempt fails until it "comes back".
    let probe = Probe::new([], Step::Retryable(None));
    let cfg = config()
        .with_max_queue_size(4)
        .with_max_export_batch_size(2)
        .build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..2);
    probe.wait_attempts(3); // retrying the head batch
    end_spans(&p, 2..12);
    let stats = p.stats();
    assert_eq!(stats.dropped_queue_full, 6);
    assert_eq!(stats.still_queued, 6);
    assert!(
        probe.attempts().iter().all(|(_, ids)| ids == &[0, 1]),
        "only the head batch is retried"
    );
    assert_balanced(stats);

    probe.set_default(Step::Accept);
    p.force_flush(WAIT).unwrap();
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 6);
    assert_eq!(stats.dropped_queue_full, 6);
    assert_eq!(stats.dropped_retry_exhausted, 0);
    assert_eq!(probe.accepted(), [0, 1, 2, 3, 4, 5]);
    assert_balanced(stats);
}

#[tokio::test]
async fn force_flush_exports_every_span_ended_before_it_from_inside_a_runtime() {
    let probe = Probe::new([], Step::Accept);
    let p = probe.processor(config().with_max_export_batch_size(4).build());
    end_spans(&p, 0..10);
    // Synchronous call on a current-thread runtime: the worker has its own thread.
    p.force_flush(WAIT).unwrap();
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 10);
    assert_eq!(stats.still_queued, 0);
    let mut accepted = probe.accepted();
    accepted.sort_unstable();
    assert_eq!(accepted, (0..10).collect::<Vec<_>>());
    // Nothing queued: a flush answers at once.
    p.force_flush(WAIT).unwrap();
    assert_balanced(p.stats());
}

#[test]
fn force_flush_times_out_while_the_exporter_is_stuck_then_succeeds() {
    let probe = Probe::new([Step::Block], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..3);
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert_eq!(p.force_flush(timeout), Err(FlushError::Timeout));
    let took = start.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    probe.release(1);
    p.force_flush(WAIT).unwrap();
    assert_exported(&p, 3);
}

#[test]
fn shutdown_flushes_everything_queued() {
    // L8: 5 000 queued spans, collector up: nothing lost, well under 2 s.
    let probe = Probe::new([], Step::Accept);
    let cfg = config().with_max_queue_size(8192).build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..5000);
    let start = Instant::now();
    p.shutdown(WAIT).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 5000);
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.still_queued, 0);
    let mut accepted = probe.accepted();
    accepted.sort_unstable();
    accepted.dedup();
    assert_eq!(accepted.len(), 5000);
    assert!(probe.attempts().iter().all(|(_, ids)| ids.len() <= 512));
    assert_balanced(stats);

    // After shutdown: spans are dropped and counted, flush and shutdown refuse.
    p.on_end(Box::new(span(9999)));
    let stats = p.stats();
    assert_eq!(stats.dropped_at_shutdown, 1);
    assert_balanced(stats);
    assert_eq!(p.force_flush(WAIT), Err(FlushError::AlreadyShutdown));
    assert_eq!(p.shutdown(WAIT), Err(FlushError::AlreadyShutdown));
}

#[test]
fn shutdown_with_the_collector_down_returns_in_time_and_counts_the_rest() {
    // L9: every attempt fails as retryable; shutdown must give up at its deadline.
    let probe = Probe::new([], Step::Retryable(None));
    let cfg = config().with_max_export_batch_size(10).build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..100);
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    assert_eq!(p.shutdown(timeout), Err(FlushError::Timeout));
    let took = start.elapsed();
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took <= timeout + Duration::from_millis(500), "{took:?}");
    let stats = p.stats();
    assert_eq!(stats.dropped_at_shutdown, 100);
    assert_eq!(stats.exported_ok, 0);
    assert_eq!(stats.still_queued, 0);
    assert_balanced(stats);
    assert!(probe.attempts().len() >= 2, "the head batch was retried");
}

#[test]
fn shutdown_cancels_an_export_attempt_that_hangs() {
    let probe = Probe::new([], Step::Hang);
    let cfg = config()
        .with_export_timeout(Duration::from_secs(60))
        .with_max_export_batch_size(4)
        .build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..5);
    probe.wait_attempts(1); // a full batch of 4 is in flight, 1 span queued
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    assert_eq!(p.shutdown(timeout), Err(FlushError::Timeout));
    assert!(
        start.elapsed() <= timeout + Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let stats = p.stats();
    assert_eq!(stats.dropped_at_shutdown, 5);
    assert_eq!(stats.still_queued, 0);
    assert_balanced(stats);
}

#[test]
fn retry_waits_at_least_retry_after() {
    let retry_after = Duration::from_millis(300);
    let probe = Probe::new([Step::Retryable(Some(retry_after))], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..3);
    p.force_flush(WAIT).unwrap();
    let attempts = probe.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].1, attempts[1].1, "the same batch is retried");
    let gap = attempts[1].0 - attempts[0].0;
    assert!(gap >= retry_after, "retried after {gap:?}");
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 3);
    assert_balanced(stats);
}

#[test]
fn retry_backs_off_exponentially() {
    let initial = Duration::from_millis(20);
    let probe = Probe::new(
        [
            Step::Retryable(None),
            Step::Retryable(None),
            Step::Retryable(None),
        ],
        Step::Accept,
    );
    let cfg = config()
        .with_initial_backoff(initial)
        .with_max_backoff(Duration::from_secs(1))
        .build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..1);
    p.force_flush(WAIT).unwrap();
    let attempts = probe.attempts();
    assert_eq!(attempts.len(), 4);
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        // Retry i waits initial * 2^i scaled by a factor in [0.5, 1.5).
        let floor = initial * 2u32.pow(i as u32) / 2;
        assert!(gap >= floor, "retry {i} after {gap:?} < {floor:?}");
    }
    assert_exported(&p, 1);
}

#[test]
fn an_attempt_that_exceeds_the_export_timeout_is_cancelled_and_retried() {
    // L7
    let timeout = Duration::from_millis(100);
    let probe = Probe::new([Step::Hang], Step::Accept);
    let p = probe.processor(config().with_export_timeout(timeout).build());
    end_spans(&p, 0..2);
    p.force_flush(WAIT).unwrap();
    let attempts = probe.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[1].0 - attempts[0].0 >= timeout);
    assert_exported(&p, 2);
}

#[test]
fn retries_stop_after_max_retry_elapsed() {
    let probe = Probe::new([], Step::Retryable(None));
    let cfg = config()
        .with_max_retry_elapsed(Duration::from_millis(100))
        .build();
    let p = probe.processor(cfg);
    end_spans(&p, 0..7);
    let start = Instant::now();
    p.force_flush(WAIT).unwrap(); // definitively dropped counts as done
    assert!(start.elapsed() < Duration::from_secs(2));
    let stats = p.stats();
    assert_eq!(stats.dropped_retry_exhausted, 7);
    assert_eq!(stats.exported_ok, 0);
    assert!(probe.attempts().len() >= 2);
    assert_balanced(stats);
}

#[test]
fn a_rejected_batch_is_dropped_after_exactly_one_attempt() {
    // L5
    let probe = Probe::new([Step::Reject], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..5);
    p.force_flush(WAIT).unwrap();
    assert_eq!(probe.attempts().len(), 1);
    let stats = p.stats();
    assert_eq!(stats.dropped_rejected, 5);
    assert_eq!(stats.exported_ok, 0);
    assert_balanced(stats);
    // The next batch goes through normally.
    end_spans(&p, 5..6);
    p.force_flush(WAIT).unwrap();
    assert_eq!(probe.attempts().len(), 2);
    assert_eq!(p.stats().exported_ok, 1);
}

#[test]
fn a_partial_success_counts_accepted_and_rejected_spans() {
    // L6
    let probe = Probe::new([Step::Partial(2)], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..5);
    p.force_flush(WAIT).unwrap();
    assert_eq!(
        probe.attempts().len(),
        1,
        "a partial success is not retried"
    );
    let stats = p.stats();
    assert_eq!(stats.exported_ok, 3);
    assert_eq!(stats.dropped_rejected, 2);
    assert_balanced(stats);
}

#[test]
fn an_exporter_panic_is_contained() {
    // L12: the batch is dropped and counted, the worker keeps going.
    let probe = Probe::new([Step::Panic, Step::PanicInCall], Step::Accept);
    let p = probe.processor(config().with_max_export_batch_size(2).build());
    end_spans(&p, 0..6);
    p.force_flush(WAIT).unwrap();
    let stats = p.stats();
    assert_eq!(probe.attempts().len(), 3);
    assert_eq!(stats.dropped_rejected, 4);
    assert_eq!(stats.exported_ok, 2);
    assert_eq!(probe.accepted(), [4, 5]);
    assert_balanced(stats);
    end_spans(&p, 6..7);
    p.shutdown(WAIT).unwrap();
    assert_exported(&p, 3);
}

#[test]
fn concurrent_producers_are_all_accounted_for() {
    let probe = Probe::new([], Step::Accept);
    let cfg = config()
        .with_max_queue_size(64)
        .with_max_export_batch_size(16)
        .with_scheduled_delay(Duration::from_millis(1))
        .build();
    let p = Arc::new(probe.processor(cfg));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || end_spans(&p, t * 10_000..t * 10_000 + 5_000))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    p.shutdown(WAIT).unwrap();
    let stats = assert_settled(&p, &probe, 40_000);
    assert_eq!(stats.exported_ok + stats.dropped_queue_full, 40_000);
}

#[test]
fn spans_ended_while_shutting_down_are_exported_or_counted() {
    let probe = Probe::new([], Step::Accept);
    let p = Arc::new(probe.processor(config().with_max_queue_size(100_000).build()));
    let producer = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || end_spans(&p, 0..50_000))
    };
    // Shut down while the producer is (most likely) still going.
    wait_until(|| p.stats().spans_ended >= 1_000);
    p.shutdown(WAIT).unwrap();
    producer.join().unwrap();
    let stats = assert_settled(&p, &probe, 50_000);
    assert_eq!(stats.exported_ok + stats.dropped_at_shutdown, 50_000);
}

#[test]
fn a_dropped_processor_still_exports_its_queue() {
    let probe = Probe::new([], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..3);
    drop(p);
    let (lock, cond) = &*probe.state;
    let st = cond
        .wait_timeout_while(lock.lock().unwrap(), WAIT, |st| st.accepted.len() < 3)
        .unwrap()
        .0;
    assert_eq!(st.accepted, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_multi_thread_runtime() {
    let probe = Probe::new([], Step::Accept);
    let p = probe.processor(config().build());
    end_spans(&p, 0..3);
    p.force_flush(WAIT).unwrap();
    p.shutdown(WAIT).unwrap();
    assert_eq!(p.stats().exported_ok, 3);
}

#[test]
fn backoff_grows_to_the_cap_with_fifty_percent_jitter() {
    let cfg = BatchConfig::builder()
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5))
        .build();
    let ms = |retry, r| backoff_delay(&cfg, retry, r).as_millis();
    assert_eq!(ms(0, 0.5), 100);
    assert_eq!(ms(1, 0.5), 200);
    assert_eq!(ms(5, 0.5), 3200);
    assert_eq!(ms(6, 0.5), 5000); // capped
    assert_eq!(ms(40, 0.5), 5000); // no overflow
    assert_eq!(ms(0, 0.0), 50);
    assert_eq!(ms(6, 0.0), 2500);
    assert!(ms(6, 0.999_999) < 7500);
    let huge = BatchConfig::builder()
        .with_max_backoff(Duration::MAX)
        .with_initial_backoff(Duration::MAX)
        .build();
    let _ = backoff_delay(&huge, 3, 0.9); // must not panic
}

#[test]
fn ended_and_queued_counts_share_one_word_and_fold_without_loss() {
    use std::sync::atomic::AtomicU64;

    let counts = super::EndedQueued::default();
    assert_eq!(counts.end_and_queue(), 0);
    assert_eq!(counts.end_and_queue(), 1);
    counts.end();
    assert_eq!(counts.load(), (3, 2));
    assert_eq!(counts.unqueue(1), 1);
    assert_eq!(counts.queued(), 1);

    // The high part is folded once it is large; the total and the queue are unchanged.
    let fold_at = super::EndedQueued::FOLD_AT;
    let big = super::EndedQueued(AtomicU64::new(
        (fold_at << super::EndedQueued::QUEUED_BITS) | 5,
    ));
    let folded = AtomicU64::new(7);
    big.fold_into(&folded);
    assert_eq!(big.load(), (0, 5));
    assert_eq!(
        folded.load(std::sync::atomic::Ordering::Relaxed),
        7 + fold_at
    );
    // Below the threshold nothing moves.
    big.end();
    big.fold_into(&folded);
    assert_eq!(big.load(), (1, 5));
}
