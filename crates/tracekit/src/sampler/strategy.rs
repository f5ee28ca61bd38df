//! Jaeger's remote sampling strategy: the JSON a strategies endpoint answers
//! (`GET /api/sampling?service=NAME`, proto3 JSON of `jaeger.api_v2.SamplingStrategyResponse`)
//! and the per-operation decision it describes.
//!
//! Decision rules are those of Jaeger's clients:
//! * `probabilisticSampling` alone: sample when the trace id falls under `samplingRate`;
//! * `rateLimitingSampling` alone: a token bucket of `maxTracesPerSecond`;
//! * `operationSampling`: per operation, Jaeger's *guaranteed throughput* sampler: the
//!   operation's probability first (`sampler.type=probabilistic`), and when it says no, a
//!   per-operation token bucket of `defaultLowerBoundTracesPerSecond` (`sampler.type=lowerbound`)
//!   so rare operations are still seen. Operations not listed use
//!   `defaultSamplingProbability`, each with its own lower bound, up to
//!   [`MAX_OPERATIONS`]; beyond that, the default probability alone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::rate_limit::RateLimiter;
use super::{Decision, Rule, ratio_threshold, trace_id_passes};
use crate::id::TraceId;

/// Operations given their own sampler before the rest share the default (Jaeger's
/// `maxOperations` default).
pub(crate) const MAX_OPERATIONS: usize = 2000;

/// `SamplingStrategyResponse` as JSON (unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StrategyResponse {
    /// `PROBABILISTIC` or `RATE_LIMITING` (names or the enum numbers 0 and 1).
    #[serde(default)]
    pub(crate) strategy_type: Option<serde_json::Value>,
    /// `{"samplingRate": 0.0..=1.0}`.
    #[serde(default)]
    pub(crate) probabilistic_sampling: Option<ProbabilisticSampling>,
    /// `{"maxTracesPerSecond": n}`.
    #[serde(default)]
    pub(crate) rate_limiting_sampling: Option<RateLimitingSampling>,
    /// Per-operation probabilities with a lower bound.
    #[serde(default)]
    pub(crate) operation_sampling: Option<OperationSampling>,
}

/// `ProbabilisticSamplingStrategy`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProbabilisticSampling {
    /// Probability, 0.0..=1.0.
    #[serde(default)]
    pub(crate) sampling_rate: f64,
}

/// `RateLimitingSamplingStrategy`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimitingSampling {
    /// Traces per second.
    #[serde(default)]
    pub(crate) max_traces_per_second: f64,
}

/// `PerOperationSamplingStrategies`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationSampling {
    /// Probability for operations not listed.
    #[serde(default)]
    pub(crate) default_sampling_probability: f64,
    /// Guaranteed traces per second for every operation.
    #[serde(default)]
    pub(crate) default_lower_bound_traces_per_second: f64,
    /// Per-operation probabilities.
    #[serde(default)]
    pub(crate) per_operation_strategies: Vec<OperationStrategy>,
    /// Not used by clients (Jaeger's clients ignore it too).
    #[serde(default)]
    pub(crate) default_upper_bound_traces_per_second: f64,
}

/// `OperationSamplingStrategy`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationStrategy {
    /// The span name at the root.
    pub(crate) operation: String,
    /// The operation's probability.
    pub(crate) probabilistic_sampling: ProbabilisticSampling,
    /// Project extension (Spanline's collector): a rate limit for this operation instead
    /// of its probability and lower bound.
    #[serde(default)]
    pub(crate) rate_limiting_sampling: Option<RateLimitingSampling>,
}

/// The decision rule built from a [`StrategyResponse`].
#[derive(Debug)]
pub(crate) enum Strategy {
    /// Every root by trace id (also the initial rate, before and between answers).
    Probabilistic { rate: f64, threshold: u64 },
    /// A token bucket for every root.
    RateLimiting(RateLimiter),
    /// Guaranteed throughput per operation.
    PerOperation(PerOperation),
}

#[derive(Debug)]
pub(crate) struct PerOperation {
    default_rate: f64,
    lower_bound_per_s: f64,
    listed: HashMap<String, Arc<OperationSampler>>,
    /// Operations seen but not listed, each with its own lower bound.
    seen: RwLock<HashMap<String, Arc<OperationSampler>>>,
}

#[derive(Debug)]
struct OperationSampler {
    rate: f64,
    threshold: u64,
    lower_bound: RateLimiter,
    /// Set for a rate-limited operation (the extension): decides alone.
    limit: Option<RateLimiter>,
}

impl OperationSampler {
    fn new(rate: f64, lower_bound: RateLimiter) -> OperationSampler {
        let rate = clamp_probability(rate);
        OperationSampler {
            rate,
            threshold: ratio_threshold(rate),
            lower_bound,
            limit: None,
        }
    }

    fn decide(&self, trace_id: TraceId) -> Decision {
        if let Some(limit) = &self.limit {
            return if limit.try_acquire() {
                Decision::sampled_by(Rule::RateLimiting(limit.rate_per_s()))
            } else {
                Decision::DROP
            };
        }
        if trace_id_passes(trace_id, self.threshold) {
            Decision::sampled_by(Rule::Probabilistic(self.rate))
        } else if self.lower_bound.try_acquire() {
            Decision::sampled_by(Rule::LowerBound(self.rate))
        } else {
            Decision::DROP
        }
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Why a strategy answer was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StrategyError {
    /// Not the JSON of a `SamplingStrategyResponse`.
    #[error("not a sampling strategy: {0}")]
    Json(#[from] serde_json::Error),
    /// Neither probabilistic, rate-limiting nor per-operation sampling was given.
    #[error("the strategy names no sampling rule")]
    Empty,
}

impl StrategyResponse {
    /// Parses a strategies endpoint's answer.
    ///
    /// # Errors
    /// [`StrategyError`] when the body is not a strategy.
    pub(crate) fn parse(body: &[u8]) -> Result<StrategyResponse, StrategyError> {
        let r: StrategyResponse = serde_json::from_slice(body)?;
        if r.probabilistic_sampling.is_none()
            && r.rate_limiting_sampling.is_none()
            && r.operation_sampling.is_none()
        {
            return Err(StrategyError::Empty);
        }
        Ok(r)
    }

    fn is_rate_limiting(&self) -> bool {
        match &self.strategy_type {
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("RATE_LIMITING"),
            Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
            _ => self.probabilistic_sampling.is_none(),
        }
    }
}

impl Strategy {
    pub(crate) fn probabilistic(rate: f64) -> Strategy {
        let rate = clamp_probability(rate);
        Strategy::Probabilistic {
            rate,
            threshold: ratio_threshold(rate),
        }
    }

    /// The rule `response` describes; `previous` lends its token buckets to operations
    /// whose lower bound is unchanged, so a poll does not refill them.
    pub(crate) fn from_response(response: &StrategyResponse, previous: &Strategy) -> Strategy {
        if let Some(ops) = &response.operation_sampling {
            let lower = ops.default_lower_bound_traces_per_second;
            let old = match previous {
                Strategy::PerOperation(p) if p.lower_bound_per_s == lower => Some(p),
                _ => None,
            };
            let previous_op = |name: &str| old.and_then(|p| p.find(name));
            let limiter = |name: &str| {
                previous_op(name)
                    .map(|s| s.lower_bound.clone())
                    .unwrap_or_else(|| RateLimiter::new(lower))
            };
            let limit =
                |name: &str, per_s: f64| match previous_op(name).and_then(|s| s.limit.clone()) {
                    Some(l) if l.rate_per_s() == per_s => l,
                    _ => RateLimiter::new(per_s),
                };
            let listed = ops
                .per_operation_strategies
                .iter()
                .take(MAX_OPERATIONS)
                .map(|o| {
                    let mut sampler = OperationSampler::new(
                        o.probabilistic_sampling.sampling_rate,
                        limiter(&o.operation),
                    );
                    sampler.limit = o
                        .rate_limiting_sampling
                        .as_ref()
                        .map(|r| limit(&o.operation, r.max_traces_per_second));
                    (o.operation.clone(), Arc::new(sampler))
                })
                .collect();
            return Strategy::PerOperation(PerOperation {
                default_rate: clamp_probability(ops.default_sampling_probability),
                lower_bound_per_s: lower,
                listed,
                seen: RwLock::default(),
            });
        }
        match (
            &response.rate_limiting_sampling,
            &response.probabilistic_sampling,
        ) {
            (Some(r), _) if response.is_rate_limiting() => {
                let rate = r.max_traces_per_second;
                match previous {
                    Strategy::RateLimiting(l) if l.rate_per_s() == rate => {
                        Strategy::RateLimiting(l.clone())
                    }
                    _ => Strategy::RateLimiting(RateLimiter::new(rate)),
                }
            }
            (_, Some(p)) => Strategy::probabilistic(p.sampling_rate),
            (Some(r), None) => Strategy::RateLimiting(RateLimiter::new(r.max_traces_per_second)),
            (None, None) => Strategy::probabilistic(0.0),
        }
    }

    /// The decision for a root span named `operation`.
    pub(crate) fn decide(&self, trace_id: TraceId, operation: &str) -> Decision {
        match self {
            Strategy::Probabilistic { rate, threshold } => {
                if trace_id_passes(trace_id, *threshold) {
                    Decision::sampled_by(Rule::Probabilistic(*rate))
                } else {
                    Decision::DROP
                }
            }
            Strategy::RateLimiting(l) => {
                if l.try_acquire() {
                    Decision::sampled_by(Rule::RateLimiting(l.rate_per_s()))
                } else {
                    Decision::DROP
                }
            }
            Strategy::PerOperation(p) => p.decide(trace_id, operation),
        }
    }
}

impl PerOperation {
    fn find(&self, operation: &str) -> Option<Arc<OperationSampler>> {
        if let Some(s) = self.listed.get(operation) {
            return Some(Arc::clone(s));
        }
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.get(operation).cloned()
    }

    fn decide(&self, trace_id: TraceId, operation: &str) -> Decision {
        if let Some(s) = self.find(operation) {
            return s.decide(trace_id);
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if self.listed.len() + seen.len() < MAX_OPERATIONS {
            let s = Arc::clone(seen.entry(operation.to_owned()).or_insert_with(|| {
                Arc::new(OperationSampler::new(
                    self.default_rate,
                    RateLimiter::new(self.lower_bound_per_s),
                ))
            }));
            drop(seen);
            return s.decide(trace_id);
        }
        drop(seen);
        // Past the operation cap: the default probability alone, as Jaeger's clients do.
        if trace_id_passes(trace_id, ratio_threshold(self.default_rate)) {
            Decision::sampled_by(Rule::Probabilistic(self.default_rate))
        } else {
            Decision::DROP
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The three shapes of interop.md §3.9, as Jaeger's collector writes them.
    const PROBABILISTIC: &str =
        r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.25}}"#;
    const RATE_LIMITING: &str =
        r#"{"strategyType":"RATE_LIMITING","rateLimitingSampling":{"maxTracesPerSecond":42}}"#;
    const PER_OPERATION: &str = r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1},
 "operationSampling":{"defaultSamplingProbability":1,"defaultLowerBoundTracesPerSecond":0,
   "perOperationStrategies":[{"operation":"/health","probabilisticSampling":{"samplingRate":0.1}}],
   "defaultUpperBoundTracesPerSecond":0}}"#;

    fn strategy(json: &str) -> Strategy {
        let r = StrategyResponse::parse(json.as_bytes()).unwrap();
        Strategy::from_response(&r, &Strategy::probabilistic(0.0))
    }

    fn fraction(s: &Strategy, op: &str, n: usize) -> f64 {
        let hits = (0..n)
            .filter(|_| s.decide(TraceId::random(), op).sampled)
            .count();
        hits as f64 / n as f64
    }

    #[test]
    fn jaeger_examples_parse_into_their_rules() {
        match strategy(PROBABILISTIC) {
            Strategy::Probabilistic { rate, .. } => assert_eq!(rate, 0.25),
            other => panic!("{other:?}"),
        }
        match strategy(RATE_LIMITING) {
            Strategy::RateLimiting(l) => assert_eq!(l.rate_per_s(), 42.0),
            other => panic!("{other:?}"),
        }
        // Enum numbers are accepted too (RATE_LIMITING = 1).
        let numeric = r#"{"strategyType":1,"rateLimitingSampling":{"maxTracesPerSecond":5}}"#;
        assert!(matches!(strategy(numeric), Strategy::RateLimiting(_)));
        let s = strategy(PER_OPERATION);
        assert!((fraction(&s, "/health", 20_000) - 0.1).abs() < 0.02);
        assert_eq!(fraction(&s, "/orders", 1000), 1.0);
        assert!(StrategyResponse::parse(b"{}").is_err());
        assert!(StrategyResponse::parse(b"not json").is_err());
    }

    #[test]
    fn the_lower_bound_samples_what_the_probability_refuses_and_says_so() {
        let json = r#"{"operationSampling":{"defaultSamplingProbability":0,
            "defaultLowerBoundTracesPerSecond":2,
            "perOperationStrategies":[{"operation":"rare","probabilisticSampling":{"samplingRate":0}}]}}"#;
        let s = strategy(json);
        // Probability 0: only the lower bound's full bucket (2 credits) passes, per operation.
        for op in ["rare", "unlisted"] {
            let d: Vec<Decision> = (0..10).map(|_| s.decide(TraceId::random(), op)).collect();
            assert_eq!(d.iter().filter(|d| d.sampled).count(), 2, "{op}");
            assert_eq!(d[0].rule, Some(Rule::LowerBound(0.0)));
        }
        let sure = strategy(PROBABILISTIC.replace("0.25", "1").as_str());
        assert_eq!(
            sure.decide(TraceId::random(), "x").rule,
            Some(Rule::Probabilistic(1.0))
        );
    }

    #[test]
    fn a_rate_limited_operation_follows_its_rate_alone() {
        let json = r#"{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":1},
            "operationSampling":{"defaultSamplingProbability":1,"defaultLowerBoundTracesPerSecond":0,
            "perOperationStrategies":[{"operation":"POST /orders","probabilisticSampling":{"samplingRate":0},
              "rateLimitingSampling":{"maxTracesPerSecond":3}}]}}"#;
        let s = strategy(json);
        let d: Vec<Decision> = (0..10)
            .map(|_| s.decide(TraceId::random(), "POST /orders"))
            .collect();
        assert_eq!(d.iter().filter(|d| d.sampled).count(), 3);
        assert_eq!(d[0].rule, Some(Rule::RateLimiting(3.0)));
        assert_eq!(fraction(&s, "GET /orders/{id}", 100), 1.0);
    }

    #[test]
    fn a_poll_keeps_the_buckets_of_unchanged_lower_bounds() {
        let json = r#"{"operationSampling":{"defaultSamplingProbability":0,
            "defaultLowerBoundTracesPerSecond":1,
            "perOperationStrategies":[{"operation":"a","probabilisticSampling":{"samplingRate":0}}]}}"#;
        let first = strategy(json);
        assert!(first.decide(TraceId::random(), "a").sampled);
        let r = StrategyResponse::parse(json.as_bytes()).unwrap();
        let second = Strategy::from_response(&r, &first);
        // The bucket was spent before the poll; it is not refilled by it.
        assert!(!second.decide(TraceId::random(), "a").sampled);
    }

    #[test]
    fn operations_past_the_cap_share_the_default_probability() {
        let s = strategy(
            r#"{"operationSampling":{"defaultSamplingProbability":0,"defaultLowerBoundTracesPerSecond":5,"perOperationStrategies":[]}}"#,
        );
        for i in 0..MAX_OPERATIONS {
            s.decide(TraceId::random(), &format!("op{i}"));
        }
        // A new operation gets no lower bound of its own any more.
        assert!(!s.decide(TraceId::random(), "one too many").sampled);
    }
}
