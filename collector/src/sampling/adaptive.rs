//! # Adaptive sampling (`COLLECTOR_SAMPLING=adaptive`)
//!
//! As Jaeger's adaptive sampling does, the collector counts the root spans it receives per
//! (service, operation) ([`RootThroughput`], fed by every committed batch) and, every
//! interval, moves each operation's probability towards a target number of kept traces per
//! second. With `t` the target (traces/s), `q` the rate of roots received over the last
//! interval (traces/s), `p` the probability served during it and `r` the estimated rate of
//! requests those roots stand for (traces/s before sampling):
//!
//! ```text
//! q = 0                      : p' = min(1, 2p)              (nothing seen: probe upwards)
//! |q - t| <= max(tolerance * t, 2 sqrt(n) / s)
//!                            : p' = p                       (close enough: hold still)
//! otherwise                  : p' = t / r, at most 2p       (proportional; increases capped)
//! then                       : p' = clamp(p', min_probability, 1)
//! ```
//!
//! `r` weighs each root by the probability it was actually sampled at: `1 / sampler.param`
//! for a root whose `sampler.type` is `probabilistic` (tracekit and Jaeger clients record
//! both on sampled roots), `1 / p` for any other. Roots arrive after a delay (the services'
//! polling interval and export batching), so an interval right after a change still holds
//! many roots sampled at the old probability; counted at face value they would make the next
//! step overshoot (measured: 100 → 6 → 1.9 traces/s against a target of 5, BENCHMARKS.md §5).
//! Weighed, they stand for the same request rate as the others, and a decrease lands on the
//! target in one interval. Increases are capped, as Jaeger caps them (+50% per interval,
//! `percentage_increase_cap`; we allow doubling), because a low probability yields few roots
//! and a noisy `q`: from below, an operation needs about `log2(p_target / p)` intervals.
//! Starting above the target (`COLLECTOR_ADAPTIVE_INITIAL_PROBABILITY`) converges fastest.
//! The hold band keeps the probability from chasing noise: 10% of the target, or two
//! standard deviations of the count itself (`n` roots in an interval of `s` seconds are a
//! Poisson count, deviation `sqrt(n)`), whichever is wider. At 5 traces/s over 10 s that is
//! ±28%; reacting inside it moved the probability by noise alone (measured: 5.8, 4.2, 3.6,
//! 7.9 traces/s in successive 5 s windows at a steady 100 requests/s).
//!
//! The answer for a service is per-operation (`operationSampling`): the computed
//! probabilities, the initial probability for operations not seen yet, and the lower bound
//! (`defaultLowerBoundTracesPerSecond`) that guarantees rare operations are seen at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::strategies::{OperationSampling, OperationStrategy, Probabilistic, StrategyResponse};
use crate::model::{self, AttrValue, Span};

/// Most (service, operation) pairs followed; roots of further pairs are not counted.
pub const MAX_OPERATIONS: usize = 10_000;
/// Relative distance from the target within which a probability is left alone.
pub const TOLERANCE: f64 = 0.1;

/// A root span's (service, operation) and the probability it was sampled at, when it says.
pub type Root = ((String, String), Option<f64>);

/// The roots of one (service, operation) received between two recalculations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RootCount {
    /// Roots received (kept traces).
    pub kept: u64,
    /// Of those, the roots that said their sampling probability (`sampler.param`).
    pub with_probability: u64,
    /// The sum of `1 / sampler.param` over those: the requests they stand for.
    pub represented: f64,
}

impl RootCount {
    /// The requests the roots stand for, the roots without a probability weighed by the
    /// probability served (`served`, in (0, 1]).
    pub fn requests(&self, served: f64) -> f64 {
        let unknown = self.kept.saturating_sub(self.with_probability) as f64;
        self.represented + unknown / served.max(f64::MIN_POSITIVE)
    }
}

/// Counts root spans per (service, operation) between recalculations. Off (free) until
/// [`enable`](Self::enable)d.
#[derive(Debug, Default)]
pub struct RootThroughput {
    enabled: AtomicBool,
    counts: Mutex<HashMap<(String, String), RootCount>>,
}

/// The probability a root says it was sampled at: `sampler.param` in (0, 1] when
/// `sampler.type` is `probabilistic`.
fn sampled_probability(span: &Span) -> Option<f64> {
    match model::find_attribute(&span.attributes, "sampler.type")? {
        AttrValue::String(t) if t == "probabilistic" => {}
        _ => return None,
    }
    let p = match model::find_attribute(&span.attributes, "sampler.param")? {
        AttrValue::Double(p) => *p,
        AttrValue::Int(p) => *p as f64,
        AttrValue::String(p) => p.parse().ok()?,
        _ => return None,
    };
    (p > 0.0 && p <= 1.0).then_some(p)
}

impl RootThroughput {
    /// Starts counting.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// The (service, operation) and sampling probability of each root span in `spans`, when
    /// counting (call before the batch is committed, then [`record`](Self::record) after).
    pub fn roots_of(&self, spans: &[Span]) -> Vec<Root> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Vec::new();
        }
        spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .map(|s| {
                (
                    (s.service_name.to_string(), s.name.to_string()),
                    sampled_probability(s),
                )
            })
            .collect()
    }

    /// Counts committed roots.
    pub fn record(&self, roots: Vec<Root>) {
        if roots.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, probability) in roots {
            let len = counts.len();
            let count = match counts.get_mut(&key) {
                Some(c) => c,
                None if len < MAX_OPERATIONS => counts.entry(key).or_default(),
                None => continue,
            };
            count.kept += 1;
            if let Some(p) = probability {
                count.with_probability += 1;
                count.represented += 1.0 / p;
            }
        }
    }

    /// The counts since the last call, and a fresh start.
    pub fn take(&self) -> HashMap<(String, String), RootCount> {
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
    pub fn recalculate(&self, counts: HashMap<(String, String), RootCount>, elapsed: Duration) {
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
                    .unwrap_or_default();
                let noise_per_s = 2.0 * (seen.kept as f64).sqrt() / seconds;
                *p = next_probability(
                    *p,
                    seen.kept as f64 / seconds,
                    seen.requests(*p) / seconds,
                    noise_per_s,
                    &c,
                );
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
/// `kept_per_s` is `q`, `requests_per_s` is `r`, `noise_per_s` is `2 sqrt(n) / s`.
fn next_probability(
    p: f64,
    kept_per_s: f64,
    requests_per_s: f64,
    noise_per_s: f64,
    c: &AdaptiveConfig,
) -> f64 {
    let t = c.target_traces_per_s;
    let next = if kept_per_s <= 0.0 || requests_per_s <= 0.0 {
        p * 2.0
    } else if (kept_per_s - t).abs() <= (TOLERANCE * t).max(noise_per_s) {
        p
    } else {
        (t / requests_per_s).min(p * 2.0)
    };
    next.clamp(c.min_probability, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts of roots that do not say their probability.
    fn counts(entries: &[(&str, &str, u64)]) -> HashMap<(String, String), RootCount> {
        entries
            .iter()
            .map(|(s, o, n)| {
                let count = RootCount {
                    kept: *n,
                    ..RootCount::default()
                };
                (((*s).to_owned(), (*o).to_owned()), count)
            })
            .collect()
    }

    /// `next_probability` for roots sampled at the probability served (`r = q / p`).
    fn next(p: f64, q: f64, c: &AdaptiveConfig) -> f64 {
        next_probability(p, q, q / p, 0.0, c)
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
        assert_eq!(next(0.1, 0.0, &c), 0.2);
        assert_eq!(next(0.1, 1.05, &c), 0.1);
        assert!((next(0.1, 4.0, &c) - 0.025).abs() < 1e-12);
        assert_eq!(next(0.1, 0.01, &c), 0.2, "increase capped at 2x");
        assert_eq!(next(1e-5, 100.0, &c), 1e-5, "floor");
        assert_eq!(next(0.9, 0.0, &c), 1.0, "ceiling");
        // 38 roots in 10 s against a target of 5/s: -24%, within two deviations (±1.23/s)
        // of the count: held.
        let noise = 2.0 * 38f64.sqrt() / 10.0;
        let c5 = AdaptiveConfig {
            target_traces_per_s: 5.0,
            ..AdaptiveConfig::default()
        };
        assert_eq!(next_probability(0.05, 3.8, 76.0, noise, &c5), 0.05);
        // 20 roots in 10 s (-60%) is outside it: raised.
        let noise = 2.0 * 20f64.sqrt() / 10.0;
        assert!(next_probability(0.05, 2.0, 40.0, noise, &c5) > 0.05);
    }

    /// The interval right after a decrease: 100 requests/s, the probability just cut from 1
    /// to 0.05, but the first second's roots (sampled at 1) arrive in this interval. Weighed by
    /// the `sampler.param` each root carries, they stand for the same 100 requests/s, and the
    /// probability stays at 0.05 (5 traces/s) instead of being cut again to about 0.017.
    #[test]
    fn roots_sampled_at_an_older_probability_do_not_make_it_overshoot() {
        let c = AdaptiveConfig {
            target_traces_per_s: 5.0,
            interval: Duration::from_secs(10),
            initial_probability: 1.0,
            ..AdaptiveConfig::default()
        };
        let t = RootThroughput::default();
        t.enable();
        let root = |p: f64| {
            let mut span = crate::testing::span(
                crate::testing::trace_id(1),
                1,
                None,
                "frontend",
                "POST /orders",
                crate::model::SpanKind::Server,
                0.0,
                1.0,
            );
            span.attributes.push(crate::model::KeyValue::new(
                "sampler.type",
                AttrValue::String("probabilistic".into()),
            ));
            span.attributes.push(crate::model::KeyValue::new(
                "sampler.param",
                AttrValue::Double(p),
            ));
            span
        };
        // Second 1 at p = 1 (100 roots), seconds 2-10 at p = 0.05 (45 roots).
        let mut spans: Vec<Span> = (0..100).map(|_| root(1.0)).collect();
        spans.extend((0..45).map(|_| root(0.05)));
        let roots = t.roots_of(&spans);
        t.record(roots);
        let counts = t.take();
        let count = counts[&("frontend".to_owned(), "POST /orders".to_owned())];
        assert_eq!(count.kept, 145);
        assert!((count.requests(0.05) - 1000.0).abs() < 1e-9, "{count:?}");
        let a = Adaptive::new(c);
        a.recalculate(counts.clone(), c.interval); // from 1 (initial) to 5 / 100 = 0.05
        assert!((probability(&a, "frontend", "POST /orders") - 0.05).abs() < 1e-12);
        // Counted at face value (no sampler.param), 14.5 roots/s at 0.05 would mean 290
        // requests/s and a cut to about 0.017.
        assert!((next(0.05, 14.5, &c) - 0.05 * 5.0 / 14.5).abs() < 1e-12);
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
        assert_eq!(
            roots,
            vec![(("frontend".to_owned(), "GET /".to_owned()), None)]
        );
        t.record(roots.clone());
        t.record(roots);
        assert_eq!(t.take(), counts(&[("frontend", "GET /", 2)]));
        assert!(t.take().is_empty());
    }
}
