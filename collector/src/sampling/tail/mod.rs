//! # Tail sampling (`COLLECTOR_TAIL_SAMPLING=<policy file>`)
//!
//! The OpenTelemetry Collector's tail sampler holds spans in memory for a fixed
//! `decision_wait` because it cannot know when a trace is whole. Here spans are committed
//! (and acknowledged) as always; the decision is taken when the settler finishes the trace
//! ([`crate::assemble::settle`]): as soon as it is complete, or `decision_wait` after its last
//! span, or early when more than `num_traces` await a decision (the oldest first, counted).
//! So an error deep in a twenty-service trace keeps the whole trace.
//!
//! The file is YAML (JSON, being YAML, is accepted too), in the Collector's shape:
//!
//! ```yaml
//! decision_wait: 10s      # default 30s; replaces COLLECTOR_TRACE_SETTLE
//! num_traces: 50000       # default 50000: traces awaiting a decision at most
//! policies:
//!   - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
//!   - {name: slow, type: latency, latency: {threshold_ms: 1000}}
//!   - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
//! ```
//!
//! Policies and how verdicts combine are in [`policy`]. A trace not kept is deleted from
//! storage ([`SpanStore::delete_traces`](crate::store::SpanStore::delete_traces)), and again
//! `decision_wait` later to take spans that arrived after the decision. The policy that kept
//! a trace is remembered (the last [`REMEMBERED`] decisions, in memory) and written to the
//! store ([`SpanStore::record_sampling_decisions`](crate::store::SpanStore::record_sampling_decisions),
//! one write per batch of finished traces, by the publisher task, off the request path), so
//! it survives a restart and is seen by every collector over the same store; the store
//! deletes it with the trace. `GET /v1/traces/{trace_id}/sampling` answers from memory, else
//! from the store. `/metrics` counts verdicts per policy, traces kept, dropped and decided
//! early, failed decision writes, and shows the traces and spans awaiting a decision.

pub mod policy;
mod policy_config;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::assemble::settle::{Finish, Finished, SettleLimits};
use crate::error::Error;
use crate::model::TraceId;
use crate::store::{SamplingDecision, StoredTrace};
use policy::{Policy, PolicyConfig, TraceView, Verdict, combine};

/// The Collector's default `decision_wait`.
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(30);
/// The Collector's default `num_traces`.
pub const DEFAULT_NUM_TRACES: usize = 50_000;
/// Decisions remembered for `GET /v1/traces/{trace_id}/sampling`.
pub const REMEMBERED: usize = 100_000;
/// Dropped trace ids held for the second deletion at most.
const MAX_REDELETE: usize = 200_000;

/// The policy file.
#[derive(Debug, Deserialize)]
struct TailFile {
    #[serde(default)]
    decision_wait: Option<String>,
    #[serde(default)]
    num_traces: Option<usize>,
    policies: Vec<PolicyConfig>,
}

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Not readable.
    #[error("cannot read tail sampling policies {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not YAML (or JSON) of the expected shape.
    #[error("tail sampling policies {path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// Where and why.
        detail: String,
    },
}

/// One decision, as served by `GET /v1/traces/{trace_id}/sampling`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// `kept` or `dropped`.
    pub decision: &'static str,
    /// The policy that kept it (absent when dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `complete`, `settled` (after `decision_wait`) or `evicted` (early, memory bound).
    pub finish: String,
    /// When the decision was taken, unix nanoseconds.
    pub decided_unix_nano: u64,
}

impl Decision {
    /// The decision as the store keeps it ([`SamplingDecision`]).
    pub fn to_stored(&self, trace_id: TraceId) -> SamplingDecision {
        SamplingDecision {
            trace_id,
            kept: self.decision == "kept",
            policies: self.policy.iter().cloned().collect(),
            finish: self.finish.clone(),
            decided_unix_nano: self.decided_unix_nano,
        }
    }

    /// A decision read back from the store.
    pub fn from_stored(stored: SamplingDecision) -> Self {
        Self {
            decision: if stored.kept { "kept" } else { "dropped" },
            policy: stored.policies.into_iter().next(),
            finish: stored.finish,
            decided_unix_nano: stored.decided_unix_nano,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Per top-level policy: (sampled, not sampled) verdicts.
    verdicts: Vec<(AtomicU64, AtomicU64)>,
    kept: AtomicU64,
    dropped: AtomicU64,
    spans_dropped: AtomicU64,
    decided_early: AtomicU64,
    delete_failures: AtomicU64,
    /// Failed writes of kept decisions to the store (each a batch).
    record_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Memory {
    decisions: HashMap<TraceId, Decision>,
    order: VecDeque<TraceId>,
    /// Dropped traces to delete once more, due at the instant.
    redelete: VecDeque<(Instant, TraceId)>,
}

/// The tail sampler: policies, counters and recent decisions.
#[derive(Debug)]
pub struct TailSampler {
    policies: Vec<Policy>,
    decision_wait: Duration,
    num_traces: usize,
    counters: Counters,
    memory: Mutex<Memory>,
}

impl TailSampler {
    /// Reads the policy file at `path`.
    ///
    /// # Errors
    /// [`TailError`] when it cannot be read or a policy is invalid.
    pub fn load(path: &Path) -> Result<Self, TailError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TailError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| TailError::Invalid { path: name, detail })
    }

    /// Parses a policy file's text (YAML or JSON).
    ///
    /// # Errors
    /// What is wrong, as one sentence.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TailFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if file.policies.is_empty() {
            return Err("no policies: every trace would be dropped".into());
        }
        let policies = file
            .policies
            .iter()
            .map(Policy::compile)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let decision_wait = match &file.decision_wait {
            Some(d) => crate::time::parse_collector_duration(d)?,
            None => DEFAULT_DECISION_WAIT,
        };
        let counters = Counters {
            verdicts: policies.iter().map(|_| Default::default()).collect(),
            ..Counters::default()
        };
        Ok(Self {
            policies,
            decision_wait,
            num_traces: file.num_traces.unwrap_or(DEFAULT_NUM_TRACES).max(1),
            counters,
            memory: Mutex::default(),
        })
    }

    /// The settler's bounds under this policy file: `decision_wait` and `num_traces`.
    pub fn settle_limits(&self) -> SettleLimits {
        SettleLimits {
            settle: self.decision_wait,
            max_traces: self.num_traces,
            ..SettleLimits::default()
        }
    }

    /// Decides on a finished trace: `Some` decision when a policy keeps it, `None` to drop
    /// it. Counts and remembers the decision.
    pub fn decide(
        &self,
        finished: Finished,
        trace: &StoredTrace,
        now: SystemTime,
    ) -> Option<Decision> {
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now_s = since_epoch.as_secs();
        let view = TraceView::new(finished.trace_id, &trace.spans);
        let verdicts: Vec<Verdict> = self
            .policies
            .iter()
            .map(|p| p.evaluate(&view, now_s))
            .collect();
        for (v, (sampled, not)) in verdicts.iter().zip(&self.counters.verdicts) {
            let c = if v.keeps() { sampled } else { not };
            c.fetch_add(1, Ordering::Relaxed);
        }
        if finished.finish == Finish::Evicted {
            self.counters.decided_early.fetch_add(1, Ordering::Relaxed);
        }
        let kept = combine(&verdicts).and_then(|i| self.policies.get(i));
        let decision = Decision {
            decision: if kept.is_some() { "kept" } else { "dropped" },
            policy: kept.map(|p| p.name().to_owned()),
            finish: match finished.finish {
                Finish::Complete => "complete",
                Finish::Settled => "settled",
                Finish::Evicted => "evicted",
            }
            .to_owned(),
            decided_unix_nano: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        };
        if kept.is_some() {
            self.counters.kept.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.remember(finished.trace_id, decision.clone(), kept.is_none());
        kept.map(|_| decision)
    }

    fn remember(&self, trace_id: TraceId, decision: Decision, dropped: bool) {
        let mut m = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        if m.decisions.insert(trace_id, decision).is_none() {
            m.order.push_back(trace_id);
        }
        while m.order.len() > REMEMBERED {
            if let Some(old) = m.order.pop_front() {
                m.decisions.remove(&old);
            }
        }
        if dropped && m.redelete.len() < MAX_REDELETE {
            m.redelete
                .push_back((Instant::now() + self.decision_wait, trace_id));
        }
    }

    /// Writes the kept decisions of one batch of finished traces to the store; a failure is
    /// counted and logged (the decisions stay in memory).
    pub async fn record(&self, state: &AppState, kept: Vec<SamplingDecision>) {
        if kept.is_empty() {
            return;
        }
        if let Err(e) = state.store.record_sampling_decisions(kept).await {
            self.counters
                .record_failures
                .fetch_add(1, Ordering::Relaxed);
            eprintln!("collector: tail sampling could not store its decisions: {e}");
        }
    }

    /// The decision on `trace_id`, if it is among the last [`REMEMBERED`].
    pub fn decision(&self, trace_id: TraceId) -> Option<Decision> {
        let m = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        m.decisions.get(&trace_id).cloned()
    }

    /// Deletes `dropped` traces, and once more those dropped `decision_wait` ago (spans
    /// that arrived after the decision).
    pub async fn delete(&self, state: &AppState, mut dropped: Vec<TraceId>) {
        {
            let now = Instant::now();
            let mut m = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            while m.redelete.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, id)) = m.redelete.pop_front() {
                    dropped.push(id);
                }
            }
        }
        if dropped.is_empty() {
            return;
        }
        match state.store.delete_traces(dropped).await {
            Ok(out) => {
                self.counters
                    .spans_dropped
                    .fetch_add(out.spans_deleted, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters
                    .delete_failures
                    .fetch_add(1, Ordering::Relaxed);
                eprintln!("collector: tail sampling could not delete dropped traces: {e}");
            }
        }
    }

    /// The tail sampling section of `/metrics`; `awaiting` is the settler's (traces, spans).
    pub fn render_metrics(&self, awaiting: (usize, usize), out: &mut String) {
        let c = &self.counters;
        let _ = writeln!(
            out,
            "# HELP spanline_tail_sampling_decisions_total Spanline: tail sampling verdicts per policy.\n\
             # TYPE spanline_tail_sampling_decisions_total counter"
        );
        for (p, (sampled, not)) in self.policies.iter().zip(&c.verdicts) {
            let name = p.name().replace('\\', "\\\\").replace('"', "\\\"");
            for (decision, n) in [("sampled", sampled), ("not_sampled", not)] {
                let _ = writeln!(
                    out,
                    "spanline_tail_sampling_decisions_total{{policy=\"{name}\",decision=\"{decision}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        for (name, help, n) in [
            ("traces_kept", "traces kept by tail sampling", &c.kept),
            (
                "traces_dropped",
                "traces dropped (deleted) by tail sampling",
                &c.dropped,
            ),
            (
                "spans_dropped",
                "spans deleted by tail sampling",
                &c.spans_dropped,
            ),
            (
                "traces_decided_early",
                "traces decided before they finished, to bound memory",
                &c.decided_early,
            ),
            (
                "delete_failures",
                "failed deletions of dropped traces",
                &c.delete_failures,
            ),
            (
                "record_failures",
                "failed writes of kept decisions to the store (batches)",
                &c.record_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP spanline_tail_sampling_{name}_total Spanline: {help}.\n\
                 # TYPE spanline_tail_sampling_{name}_total counter\n\
                 spanline_tail_sampling_{name}_total {}",
                n.load(Ordering::Relaxed)
            );
        }
        for (name, help, n) in [
            (
                "traces_awaiting_decision",
                "traces awaiting a tail sampling decision",
                awaiting.0,
            ),
            (
                "spans_awaiting_decision",
                "spans of traces awaiting a decision",
                awaiting.1,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP spanline_tail_sampling_{name} Spanline: {help}.\n\
                 # TYPE spanline_tail_sampling_{name} gauge\n\
                 spanline_tail_sampling_{name} {n}"
            );
        }
    }
}

/// `GET /v1/traces/{trace_id}/sampling`: the tail sampling decision on a trace,
/// `{"decision": "kept"|"dropped", "policy", "finish", "decided_unix_nano"}`, from this
/// collector's memory, else from the store (kept decisions are stored, so they outlive a
/// restart and are seen by every collector over the store); 404 when neither has one (not
/// decided yet, dropped and forgotten, or tail sampling never ran on it).
///
/// # Errors
/// 400 for a malformed id, 404 without a decision, 503 when the store cannot be read.
pub(crate) async fn get_decision(
    State(state): State<AppState>,
    UrlPath(trace_id): UrlPath<String>,
) -> Result<Response, Error> {
    let id = TraceId::from_hex(&trace_id)
        .map_err(|_| Error::BadRequest("trace_id must be 32 hex digits".into()))?;
    let remembered = state.tail_sampler.as_ref().and_then(|t| t.decision(id));
    let decision = match remembered {
        Some(d) => d,
        None => state
            .store
            .sampling_decision(id)
            .await?
            .map(Decision::from_stored)
            .ok_or_else(|| Error::NotFound("no tail sampling decision for this trace".into()))?,
    };
    Ok(axum::Json(decision).into_response())
}

/// Decides on each of `finished`, stores the kept decisions (one write), deletes the dropped
/// traces, and returns the kept ones with their stored trace (for the live tail). Without tail sampling, every trace is kept and
/// not loaded.
pub(crate) async fn judge(
    state: &AppState,
    finished: Vec<Finished>,
) -> Vec<(Finished, Option<StoredTrace>)> {
    let Some(sampler) = &state.tail_sampler else {
        return finished.into_iter().map(|f| (f, None)).collect();
    };
    let mut kept = Vec::with_capacity(finished.len());
    let mut decisions = Vec::new();
    let mut dropped = Vec::new();
    for f in finished {
        // A trace that cannot be read now (store busy) is kept: never delete unseen data.
        let Ok(Some(trace)) = state.store.get_trace(f.trace_id).await else {
            kept.push((f, None));
            continue;
        };
        if let Some(decision) = sampler.decide(f, &trace, SystemTime::now()) {
            decisions.push(decision.to_stored(f.trace_id));
            kept.push((f, Some(trace)));
        } else {
            dropped.push(f.trace_id);
        }
    }
    sampler.record(state, decisions).await;
    sampler.delete(state, dropped).await;
    kept
}

#[cfg(test)]
mod tests;
