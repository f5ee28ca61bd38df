//! # Settling: when is a trace finished?
//!
//! The [`Settler`] follows every trace as its spans are committed and says, once per trace,
//! when it is **finished**:
//!
//! - as soon as it is complete ([`super::completeness`]), or
//! - when the settle time (`COLLECTOR_TRACE_SETTLE`, default 10 s) has passed since its last
//!   span arrived, complete or not (then with what it still awaits).
//!
//! It keeps only the [`Shape`] of each span (about 40 bytes), never the spans. Memory is
//! bounded: at most [`SettleLimits::max_traces`] traces and [`SettleLimits::max_spans`] shapes
//! are followed; beyond that the oldest trace is finished early (counted by the caller as
//! `evicted`). A trace is finished once: spans that arrive for it afterwards (within the last
//! [`SettleLimits::remembered`] finished traces) are not followed again.
//!
//! The settler is a plain data structure behind a mutex: [`Settler::observe`] is called by
//! ingest after each commit (a short critical section, O(spans of the batch's traces)), and
//! [`Settler::take_finished`] by the task that publishes finished traces
//! (`crate::query::tail`).

use std::collections::{BTreeSet, VecDeque};

use crate::fast_hash::{FastHashMap as HashMap, FastHashSet as HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::completeness::{self, Shape};
use crate::model::TraceId;

/// Default settle time: a trace is finished 10 s after its last span at the latest.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(10);

/// Entries of finished traces that [`State::arrival`] may hold beyond twice the pending
/// traces before a sweep drops them.
const ARRIVAL_SLACK: usize = 1024;

/// Bounds of a [`Settler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettleLimits {
    /// Time since a trace's last span after which it is finished even if incomplete.
    pub settle: Duration,
    /// Most traces followed at once.
    pub max_traces: usize,
    /// Most span shapes held at once, all traces together.
    pub max_spans: usize,
    /// How many finished trace ids are remembered, so their late spans do not start over.
    pub remembered: usize,
}

impl Default for SettleLimits {
    fn default() -> Self {
        Self {
            settle: DEFAULT_SETTLE,
            max_traces: 100_000,
            max_spans: 1_000_000,
            remembered: 100_000,
        }
    }
}

/// Why a trace was finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Complete by the rule of [`completeness`].
    Complete,
    /// The settle time passed since its last span.
    Settled,
    /// Finished early to stay within the memory bounds.
    Evicted,
}

/// A trace the settler has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The trace.
    pub trace_id: TraceId,
    /// Why now.
    pub finish: Finish,
}

#[derive(Debug)]
struct Pending {
    shapes: Vec<Shape>,
    last_seen: Instant,
    /// Its entry's number in [`State::arrival`].
    arrived: u64,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<TraceId, Pending>,
    /// The pending traces by their last span's time, oldest first: the traces whose settle
    /// time has passed are a prefix, so a sweep reads only those (not every pending trace).
    by_last_seen: BTreeSet<(Instant, TraceId)>,
    /// Trace ids in the order they were first seen, numbered (may hold entries of traces
    /// already finished: an entry counts while its number is its trace's
    /// [`Pending::arrived`]; dropped in bulk once they outnumber the pending traces).
    arrival: VecDeque<(u64, TraceId)>,
    /// The number of the next [`State::arrival`] entry.
    next_arrival: u64,
    spans: usize,
    ready: Vec<Finished>,
    finished: HashSet<TraceId>,
    finished_order: VecDeque<TraceId>,
}

/// Follows traces as they are committed (see the module docs).
#[derive(Debug)]
pub struct Settler {
    limits: SettleLimits,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl Settler {
    /// An empty settler.
    pub fn new(limits: SettleLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The bounds it was made with.
    pub fn limits(&self) -> SettleLimits {
        self.limits
    }

    /// Takes the shapes of newly committed spans (any traces, any order) at time `now`.
    ///
    /// The batch is grouped by trace first (a stable sort, before the lock), so each trace
    /// costs one lookup and its shapes list grows by exactly the batch's count for it: a
    /// list grown one push at a time rounds its capacity up to the next power of two, which
    /// was about a third of the memory of the traces being followed (BENCHMARKS.md §3.1).
    pub fn observe(&self, spans: impl IntoIterator<Item = (TraceId, Shape)>, now: Instant) {
        let mut spans: Vec<(TraceId, Shape)> = spans.into_iter().collect();
        spans.sort_by_key(|(trace_id, _)| *trace_id);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut touched: Vec<TraceId> = Vec::new();
        for run in spans.chunk_by(|a, b| a.0 == b.0) {
            let trace_id = run[0].0;
            if state.finished.contains(&trace_id) {
                continue;
            }
            let arrived = state.next_arrival;
            let mut is_new = false;
            let pending = state.pending.entry(trace_id).or_insert_with(|| {
                is_new = true;
                Pending {
                    shapes: Vec::with_capacity(run.len()),
                    last_seen: now,
                    arrived,
                }
            });
            pending.shapes.reserve_exact(run.len());
            pending.shapes.extend(run.iter().map(|(_, shape)| *shape));
            let seen_before = std::mem::replace(&mut pending.last_seen, now);
            if is_new {
                state.arrival.push_back((arrived, trace_id));
                state.next_arrival += 1;
            } else {
                state.by_last_seen.remove(&(seen_before, trace_id));
            }
            state.by_last_seen.insert((now, trace_id));
            state.spans += run.len();
            touched.push(trace_id);
        }
        for trace_id in touched {
            let complete = state
                .pending
                .get(&trace_id)
                .is_some_and(|p| completeness::check(&p.shapes).is_complete());
            if complete {
                self.finish(&mut state, trace_id, Finish::Complete);
            }
        }
        while state.pending.len() > self.limits.max_traces || state.spans > self.limits.max_spans {
            let Some((arrived, oldest)) = state.arrival.pop_front() else {
                break;
            };
            if state
                .pending
                .get(&oldest)
                .is_some_and(|p| p.arrived == arrived)
            {
                self.finish(&mut state, oldest, Finish::Evicted);
            }
        }
        let wake = !state.ready.is_empty();
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Moves every trace whose settle time has passed at `now` to the finished list, and
    /// returns (and clears) that list: complete traces in the order they completed, then
    /// settled ones.
    pub fn take_finished(&self, now: Instant) -> Vec<Finished> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let settle = self.limits.settle;
        // The time since a trace's last span falls as that time rises: the due traces are
        // the first ones by it.
        let due: Vec<TraceId> = state
            .by_last_seen
            .iter()
            .take_while(|(last_seen, _)| now.saturating_duration_since(*last_seen) >= settle)
            .map(|(_, id)| *id)
            .collect();
        for trace_id in due {
            self.finish(&mut state, trace_id, Finish::Settled);
        }
        let State {
            pending, arrival, ..
        } = &mut *state;
        if arrival.len() > 2 * pending.len() + ARRIVAL_SLACK {
            arrival.retain(|(arrived, id)| pending.get(id).is_some_and(|p| p.arrived == *arrived));
        }
        std::mem::take(&mut state.ready)
    }

    /// Resolves when [`observe`](Self::observe) has finished a trace since the last call
    /// (or immediately, if it did before anyone waited).
    pub async fn finished_some(&self) {
        self.wake.notified().await;
    }

    /// Traces followed and span shapes held now.
    pub fn pending(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.pending.len(), state.spans)
    }

    fn finish(&self, state: &mut State, trace_id: TraceId, finish: Finish) {
        if let Some(p) = state.pending.remove(&trace_id) {
            state.spans -= p.shapes.len();
            state.by_last_seen.remove(&(p.last_seen, trace_id));
        }
        state.ready.push(Finished { trace_id, finish });
        if state.finished.insert(trace_id) {
            state.finished_order.push_back(trace_id);
        }
        while state.finished_order.len() > self.limits.remembered {
            if let Some(old) = state.finished_order.pop_front() {
                state.finished.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanKind::*;
    use crate::testing::{span, trace_id};

    fn shapes(spans: &[crate::model::Span]) -> Vec<(TraceId, Shape)> {
        spans.iter().map(|s| (s.trace_id, Shape::of(s))).collect()
    }

    #[test]
    fn a_trace_finishes_once_when_complete() {
        let settler = Settler::new(SettleLimits::default());
        let t = trace_id(1);
        let now = Instant::now();
        let child = span(t, 2, Some(1), "user", "GET /users/{id}", Server, 1.0, 2.0);
        settler.observe(shapes(&[child]), now);
        assert!(
            settler.take_finished(now).is_empty(),
            "orphan: not complete"
        );
        let root = span(t, 1, None, "frontend", "GET /", Server, 0.0, 5.0);
        settler.observe(shapes(std::slice::from_ref(&root)), now);
        assert_eq!(
            settler.take_finished(now),
            vec![Finished {
                trace_id: t,
                finish: Finish::Complete
            }]
        );
        // A late copy of a span does not finish the trace again.
        settler.observe(shapes(&[root]), now);
        assert!(settler.take_finished(now + DEFAULT_SETTLE * 2).is_empty());
        assert_eq!(settler.pending(), (0, 0));
    }

    #[test]
    fn a_batch_adds_each_traces_shapes_in_order_with_exact_room() {
        let settler = Settler::new(SettleLimits::default());
        let (a, b) = (trace_id(1), trace_id(2));
        let now = Instant::now();
        // Two traces interleaved, both with two roots (never complete by themselves).
        let batch: Vec<_> = (0..10u8)
            .map(|i| {
                let t = if i % 2 == 0 { b } else { a };
                span(t, u64::from(i) + 1, None, "svc", "op", Server, 0.0, 1.0)
            })
            .collect();
        settler.observe(shapes(&batch), now);
        let more = [span(a, 20, None, "svc", "op", Client, 0.0, 1.0)];
        settler.observe(shapes(&more), now);
        let state = settler.state.lock().unwrap();
        let ids = |t: TraceId| -> Vec<u64> {
            state.pending[&t]
                .shapes
                .iter()
                .map(|s| u64::from_be_bytes(s.span_id.0) & 0xffff)
                .collect()
        };
        assert_eq!(ids(a), vec![2, 4, 6, 8, 10, 20]);
        assert_eq!(ids(b), vec![1, 3, 5, 7, 9]);
        assert_eq!(state.pending[&a].shapes.capacity(), 6);
        assert_eq!(state.pending[&b].shapes.capacity(), 5);
        assert_eq!(state.spans, 11);
        assert_eq!(state.arrival.len(), 2);
    }

    #[test]
    fn an_incomplete_trace_settles_after_its_last_span() {
        let settler = Settler::new(SettleLimits {
            settle: Duration::from_secs(10),
            ..SettleLimits::default()
        });
        let t = trace_id(2);
        let start = Instant::now();
        settler.observe(
            shapes(&[span(t, 3, Some(9), "order", "x", Server, 0.0, 1.0)]),
            start,
        );
        settler.observe(
            shapes(&[span(t, 4, Some(3), "order", "y", Client, 0.0, 1.0)]),
            start + Duration::from_secs(5),
        );
        assert!(
            settler
                .take_finished(start + Duration::from_secs(14))
                .is_empty()
        );
        assert_eq!(
            settler.take_finished(start + Duration::from_secs(15)),
            vec![Finished {
                trace_id: t,
                finish: Finish::Settled
            }]
        );
    }

    #[test]
    fn memory_is_bounded_by_finishing_the_oldest_early() {
        let settler = Settler::new(SettleLimits {
            max_traces: 2,
            ..SettleLimits::default()
        });
        let now = Instant::now();
        for seed in 1..=3 {
            let t = trace_id(seed);
            settler.observe(
                shapes(&[span(t, 3, Some(9), "order", "x", Server, 0.0, 1.0)]),
                now,
            );
        }
        assert_eq!(
            settler.take_finished(now),
            vec![Finished {
                trace_id: trace_id(1),
                finish: Finish::Evicted
            }]
        );
        assert_eq!(settler.pending(), (2, 2));
    }
}
