//! # Adaptive sampling (`COLLECTOR_SAMPLING=adaptive`)
//!
//! As Jaeger's adaptive sampling does, the collector counts the root spans it receives per
//! (service, operation) ([`RootThroughput`], fed by every committed batch) and, every
//! interval, moves each operation's probability towards a target number of kept traces per
//! second. With `t` the target (traces/s), `q` the measured rate of roots over the last
//! interval (traces/s) and `p` the probability served during it:
//!
//! ```text
//! q = 0                      : p' = min(1, 2p)              (nothing seen: probe upwards)
//! |q - t| <= tolerance * t   : p' = p                       (close enough: hold still)
//! otherwise                  : p' = p * t / q, at most 2p   (proportional; increases capped)
//! then                       : p' = clamp(p', min_probability, 1)
//! ```
//!
//! A decrease lands on the target in one interval (the proportional step). Increases are
//! capped, as Jaeger caps them (+50% per interval, `percentage_increase_cap`; we allow
//! doubling), because a low probability yields few roots and a noisy `q`: from below, an
//! operation needs about `log2(p_target / p)` intervals. Starting above the target
//! (`COLLECTOR_ADAPTIVE_INITIAL_PROBABILITY`) converges fastest. The tolerance (10%) keeps
//! the probability from chasing noise.
//!
//! The answer for a service is per-operation (`operationSampling`): the computed
//! probabilities, the initial probability for operations not seen yet, and the lower bound
//! (`defaultLowerBoundTracesPerSecond`) that guarantees rare operations are seen at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::strategies::{OperationSampling, OperationStrategy, Probabilistic, StrategyResponse};
use crate::model::Span;

/// Most (service, operation) pairs followed; roots of further pairs are not counted.
pub const MAX_OPERATIONS: usize = 10_000;
/// Relative distance from the target within which a probability is left alone.
pub const TOLERANCE: f64 = 0.1;

/// Counts root spans per (service, operation) between recalculations. Off (free) until
/// [`enable`](Self::enable)d.
#[derive(Debug, Default)]
pub struct RootThroughput {
    enabled: AtomicBool,
    counts: Mutex<HashMap<(String, String), u64>>,
}

impl RootThroughput {
    /// Starts counting.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// The (service, operation) of each root span in `spans`, when counting (call before
    /// the batch is committed, then [`record`](Self::record) after).
    pub fn roots_of(&self, spans: &[Span]) -> Vec<(String, String)> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Vec::new();
        }
        spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .map(|s| (s.service_name.clone(), s.name.clone()))
            .collect()
    }

    /// Counts committed roots.
    pub fn record(&self, roots: Vec<(String, String)>) {
        if roots.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for key in roots {
            let len = counts.len();
            match counts.get_mut(&key) {
                Some(n) => *n += 1,
                None if len < MAX_OPERATIONS => {
                    counts.insert(key, 1);
                }
                None => {}
            }
        }
    }

    /// The counts since the last call, and a fresh start.
    pub fn take(&self) -> HashMap<(String, String), u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Adaptive settings (`COLLECTOR_ADAPTIVE_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Kept traces per second wanted per operation.
    pub target_traces_per_s: f64,
    /// The lowest probability served.
    pub min_probability: f64,
    /// The probability of an operation not seen yet.
    pub initial_probability: f64,
    /// Guaranteed traces per second per operation (`defaultLowerBoundTracesPerSecond`).
    pub lower_bound_traces_per_s: f64,
    /// Time between recalculations.
    pub interval: Duration,
}

impl Default for AdaptiveConfig {
    /// Jaeger's defaults, except the interval (Jaeger: 1 min).
    fn default() -> Self {
        Self {
            target_traces_per_s: 1.0,
            min_probability: 1e-5,
            initial_probability: 0.001,
            lower_bound_traces_per_s: 1.0 / 60.0,
            interval: Duration::from_secs(60),
        }
    }
}

/// The probabilities computed so far, per service and operation.
#[derive(Debug)]
pub struct Adaptive {
    config: AdaptiveConfig,
    probabilities: Mutex<HashMap<String, BTreeMap<String, f64>>>,
}

impl Adaptive {
    /// Nothing computed yet: every operation at the initial probability.
    pub fn new(config: AdaptiveConfig) -> Self {
        Self {
            config,
            probabilities: Mutex::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> AdaptiveConfig {
        self.config
    }

    /// One recalculation from the roots counted over `elapsed` (see the module docs).
    pub fn recalculate(&self, counts: HashMap<(String, String), u64>, elapsed: Duration) {
        let c = self.config;
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let mut all = self
            .probabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known: usize = all.values().map(BTreeMap::len).sum();
        let mut room = MAX_OPERATIONS.saturating_sub(known);
        for (service, operation) in counts.keys() {
            let ops = all.entry(service.clone()).or_default();
            if !ops.contains_key(operation) && room > 0 {
                ops.insert(operation.clone(), c.initial_probability);
                room -= 1;
            }
        }
        for (service, ops) in all.iter_mut() {
            for (operation, p) in ops.iter_mut() {
                let seen = counts
                    .get(&(service.clone(), operation.clone()))
                    .copied()
                    .unwrap_or(0);
                *p = next_probability(*p, seen as f64 / seconds, &c);
            }
        }
    }

    /// The answer for `service`.
    pub fn response_for(&self, service: &str) -> StrategyResponse {
        let c = self.config;
        let all = self
            .probabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let per_operation_strategies = all
            .get(service)
            .into_iter()
            .flatten()
            .map(|(operation, p)| OperationStrategy {
                operation: operation.clone(),
                probabilistic_sampling: Probabilistic { sampling_rate: *p },
                rate_limiting_sampling: None,
            })
            .collect();
        let mut response = StrategyResponse::probabilistic(c.initial_probability);
        response.operation_sampling = Some(OperationSampling {
            default_sampling_probability: c.initial_probability,
            default_lower_bound_traces_per_second: c.lower_bound_traces_per_s,
            per_operation_strategies,
            default_upper_bound_traces_per_second: 0.0,
        });
        response
    }
}

/// The formula of the module docs.
fn next_probability(p: f64, measured_per_s: f64, c: &AdaptiveConfig) -> f64 {
    let t = c.target_traces_per_s;
    let next = if measured_per_s <= 0.0 {
        p * 2.0
    } else if (measured_per_s - t).abs() <= TOLERANCE * t {
        p
    } else {
        (p * t / measured_per_s).min(p * 2.0)
    };
    next.clamp(c.min_probability, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, &str, u64)]) -> HashMap<(String, String), u64> {
        entries
            .iter()
            .map(|(s, o, n)| (((*s).to_owned(), (*o).to_owned()), *n))
            .collect()
    }

    fn probability(a: &Adaptive, service: &str, op: &str) -> f64 {
        let r = a.response_for(service);
        r.operation_sampling
            .and_then(|o| {
                o.per_operation_strategies
                    .into_iter()
                    .find(|s| s.operation == op)
            })
            .map_or(f64::NAN, |s| s.probabilistic_sampling.sampling_rate)
    }

    #[test]
    fn the_formula() {
        let c = AdaptiveConfig::default();
        assert_eq!(next_probability(0.1, 0.0, &c), 0.2);
        assert_eq!(next_probability(0.1, 1.05, &c), 0.1);
        assert!((next_probability(0.1, 4.0, &c) - 0.025).abs() < 1e-12);
        assert_eq!(
            next_probability(0.1, 0.01, &c),
            0.2,
            "increase capped at 2x"
        );
        assert_eq!(next_probability(1e-5, 100.0, &c), 1e-5, "floor");
        assert_eq!(next_probability(0.9, 0.0, &c), 1.0, "ceiling");
    }

    /// A simulated service: `rate` requests per second, each kept with the served
    /// probability (expected counts, no noise).
    #[test]
    fn converges_to_the_target_within_three_intervals() {
        let config = AdaptiveConfig {
            target_traces_per_s: 2.0,
            interval: Duration::from_secs(10),
            initial_probability: 0.5,
            ..AdaptiveConfig::default()
        };
        let a = Adaptive::new(config);
        let rates = [("POST /orders", 100.0), ("GET /users/{id}", 30.0)];
        // Three intervals from nothing known: the services use the initial probability
        // for operations not served yet, then what they are served.
        for _ in 0..3 {
            let seen: Vec<(&str, &str, u64)> = rates
                .iter()
                .map(|(op, rate)| {
                    let p = probability(&a, "frontend", op);
                    let p = if p.is_nan() {
                        config.initial_probability
                    } else {
                        p
                    };
                    ("frontend", *op, (rate * p * 10.0).round() as u64)
                })
                .collect();
            a.recalculate(counts(&seen), config.interval);
        }
        for (op, rate) in rates {
            let kept = rate * probability(&a, "frontend", op);
            assert!((kept - 2.0).abs() <= 0.4, "{op}: {kept} traces/s");
        }
        // Unknown services get the initial probability and the lower bound.
        let other = a.response_for("nobody").operation_sampling.unwrap();
        assert_eq!(other.default_sampling_probability, 0.5);
        assert!(other.per_operation_strategies.is_empty());
        assert!(other.default_lower_bound_traces_per_second > 0.0);
    }

    #[test]
    fn counting_is_off_until_enabled_and_bounded() {
        let t = RootThroughput::default();
        let root = crate::testing::span(
            crate::testing::trace_id(1),
            1,
            None,
            "frontend",
            "GET /",
            crate::model::SpanKind::Server,
            0.0,
            1.0,
        );
        let child = crate::testing::span(
            crate::testing::trace_id(1),
            2,
            Some(1),
            "user",
            "GET /u",
            crate::model::SpanKind::Server,
            0.0,
            1.0,
        );
        assert!(t.roots_of(std::slice::from_ref(&root)).is_empty());
        t.enable();
        let roots = t.roots_of(&[root, child]);
        assert_eq!(roots, vec![("frontend".to_owned(), "GET /".to_owned())]);
        t.record(roots.clone());
        t.record(roots);
        assert_eq!(t.take(), counts(&[("frontend", "GET /", 2)]));
        assert!(t.take().is_empty());
    }
}
