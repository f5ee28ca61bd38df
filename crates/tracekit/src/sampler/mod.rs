//! Head sampling: decides at span start whether a span is recorded and exported
//! (OpenTelemetry SDK specification §Sampling; `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` from the SDK environment variable specification).
//!
//! `traceidratio` decides from the trace id alone (its right-most 56 bits, the part W3C Level 2
//! marks as random), so every service that sees the same trace makes the same decision.
//!
//! Beyond the specification's built-in samplers:
//! * `ratelimiting` and `parentbased_ratelimiting` (a project extension of
//!   `OTEL_TRACES_SAMPLER`; `OTEL_TRACES_SAMPLER_ARG` is traces per second): a lock-free
//!   token bucket ([`RateLimiter`]) decides each root;
//! * `jaeger_remote` and `parentbased_jaeger_remote` (named by the SDK environment variable
//!   specification): the strategy a Jaeger remote sampling endpoint serves ([`JaegerRemote`]),
//!   per operation (the root span's name).
//!
//! A root sampled by a rule records it as Jaeger clients do: `sampler.type`
//! (`probabilistic`, `ratelimiting`, `lowerbound`) and `sampler.param` (the probability or the
//! traces per second).

mod rate_limit;
mod remote;
mod strategy;

pub use rate_limit::RateLimiter;
pub use remote::{JaegerRemote, RemoteConfig};

use crate::id::TraceId;
use crate::span::{KeyValue, Value};
use crate::span_context::SpanContext;

/// The attribute naming the rule that sampled a root (Jaeger's `sampler.type` tag).
pub const SAMPLER_TYPE: &str = "sampler.type";
/// The attribute holding the rule's parameter (Jaeger's `sampler.param` tag).
pub const SAMPLER_PARAM: &str = "sampler.param";

/// Traces per second of `ratelimiting` when `OTEL_TRACES_SAMPLER_ARG` is unset.
pub const DEFAULT_TRACES_PER_S: f64 = 100.0;

/// 2^56: the range of the randomness value taken from a trace id.
const RANDOMNESS_RANGE: u64 = 1 << 56;

/// A sampling policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// Record every span (`always_on`).
    AlwaysOn,
    /// Record nothing (`always_off`).
    AlwaysOff,
    /// Record a fraction of traces, decided from the trace id (`traceidratio`).
    TraceIdRatio {
        /// The configured probability, 0.0..=1.0.
        ratio: f64,
        /// Sample when the trace id's low 56 bits are >= this threshold.
        threshold: u64,
    },
    /// Follow the parent's sampled flag; use `root` when there is no parent
    /// (`parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`).
    ParentBased {
        /// The sampler for spans without a parent.
        root: Box<Sampler>,
    },
    /// At most a number of traces per second, decided at the root; a span with a parent
    /// follows the parent (`ratelimiting`, the same as `parentbased_ratelimiting`).
    RateLimiting(RateLimiter),
    /// The strategy a Jaeger remote sampling endpoint serves (`jaeger_remote`).
    JaegerRemote(JaegerRemote),
}

/// The rule that sampled a root, recorded on it as `sampler.type` and `sampler.param`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// A probability (`traceidratio`, a remote probabilistic strategy); the parameter.
    Probabilistic(f64),
    /// A token bucket; its traces per second.
    RateLimiting(f64),
    /// The lower bound of Jaeger's guaranteed-throughput sampler; the operation's probability
    /// (as Jaeger clients record it).
    LowerBound(f64),
}

impl Rule {
    /// `sampler.type` as Jaeger clients write it.
    pub fn sampler_type(self) -> &'static str {
        match self {
            Rule::Probabilistic(_) => "probabilistic",
            Rule::RateLimiting(_) => "ratelimiting",
            Rule::LowerBound(_) => "lowerbound",
        }
    }

    /// `sampler.param`.
    pub fn param(self) -> f64 {
        match self {
            Rule::Probabilistic(p) | Rule::RateLimiting(p) | Rule::LowerBound(p) => p,
        }
    }

    /// The two attributes a sampled root carries.
    pub fn attributes(self) -> [KeyValue; 2] {
        [
            KeyValue::new(SAMPLER_TYPE, Value::from(self.sampler_type())),
            KeyValue::new(SAMPLER_PARAM, Value::from(self.param())),
        ]
    }
}

/// A sampler's answer for one span.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Whether the span is recorded and the trace marked sampled.
    pub sampled: bool,
    /// For a root sampled by a rule, which one.
    pub rule: Option<Rule>,
}

impl Decision {
    /// Not sampled.
    pub const DROP: Decision = Decision {
        sampled: false,
        rule: None,
    };
    /// Sampled with no rule to record (a parent's decision, `always_on`).
    pub const KEEP: Decision = Decision {
        sampled: true,
        rule: None,
    };

    pub(crate) fn sampled_by(rule: Rule) -> Decision {
        Decision {
            sampled: true,
            rule: Some(rule),
        }
    }

    #[inline]
    fn from_bool(sampled: bool) -> Decision {
        if sampled {
            Decision::KEEP
        } else {
            Decision::DROP
        }
    }
}

/// The `traceidratio` threshold of a probability: sample when the trace id's randomness is
/// at least `(1 - ratio) * 2^56`.
pub(crate) fn ratio_threshold(ratio: f64) -> u64 {
    ((1.0 - ratio) * RANDOMNESS_RANGE as f64).round() as u64
}

/// Whether the trace id's low 56 bits reach `threshold`.
#[inline]
pub(crate) fn trace_id_passes(trace_id: TraceId, threshold: u64) -> bool {
    let randomness = (trace_id.to_u128() as u64) & (RANDOMNESS_RANGE - 1);
    randomness >= threshold
}

impl Default for Sampler {
    /// `parentbased_always_on`, the OpenTelemetry default.
    fn default() -> Self {
        Sampler::parent_based(Sampler::AlwaysOn)
    }
}

impl Sampler {
    /// A `traceidratio` sampler; `ratio` is clamped to 0.0..=1.0 (NaN counts as 0).
    pub fn trace_id_ratio(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        // threshold = (1 - ratio) * 2^56, so that P(randomness >= threshold) = ratio.
        let threshold = ratio_threshold(ratio);
        Sampler::TraceIdRatio { ratio, threshold }
    }

    /// A parent-based sampler with `root` for root spans.
    pub fn parent_based(root: Sampler) -> Sampler {
        Sampler::ParentBased {
            root: Box::new(root),
        }
    }

    /// A `ratelimiting` sampler: at most `traces_per_s` roots per second.
    pub fn rate_limiting(traces_per_s: f64) -> Sampler {
        Sampler::RateLimiting(RateLimiter::new(traces_per_s))
    }

    /// Whether root decisions depend on the span name (a remote strategy applied per
    /// operation): code that learns a span's final name after start (an HTTP route) should
    /// then give it at start.
    pub fn uses_span_name(&self) -> bool {
        match self {
            Sampler::JaegerRemote(_) => true,
            Sampler::ParentBased { root } => root.uses_span_name(),
            _ => false,
        }
    }

    /// Whether a new span in trace `trace_id` with parent `parent` should be recorded
    /// (operation-specific samplers see an empty span name).
    #[inline]
    pub fn should_sample(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        self.decide(parent, trace_id, "").sampled
    }

    /// The decision for a new span named `name` in trace `trace_id` with parent `parent`,
    /// with the rule to record when a root is sampled by one.
    #[inline]
    pub fn decide(&self, parent: Option<&SpanContext>, trace_id: TraceId, name: &str) -> Decision {
        match self {
            Sampler::AlwaysOn => Decision::KEEP,
            Sampler::AlwaysOff => Decision::DROP,
            Sampler::TraceIdRatio { ratio, threshold } => {
                match (trace_id_passes(trace_id, *threshold), parent) {
                    (true, None) => Decision::sampled_by(Rule::Probabilistic(*ratio)),
                    (sampled, _) => Decision::from_bool(sampled),
                }
            }
            Sampler::ParentBased { root } => match parent {
                Some(p) => Decision::from_bool(p.is_sampled()),
                None => root.decide(None, trace_id, name),
            },
            // Decided at the root only: a span with a parent follows it, so a trace is never
            // cut by an empty bucket half-way (both names behave alike).
            Sampler::RateLimiting(l) => match parent {
                Some(p) => Decision::from_bool(p.is_sampled()),
                None if l.try_acquire() => Decision::sampled_by(Rule::RateLimiting(l.rate_per_s())),
                None => Decision::DROP,
            },
            Sampler::JaegerRemote(r) => {
                let d = r.decide(trace_id, name);
                if parent.is_some() {
                    Decision::from_bool(d.sampled)
                } else {
                    d
                }
            }
        }
    }

    /// Builds a sampler from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    ///
    /// Unset name: `parentbased_always_on`. Unknown name or unparsable ratio: the default
    /// (respectively ratio 1.0, as the SDK specification says) plus a warning in the
    /// second element, so the caller can report it instead of silently ignoring the flag.
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> (Sampler, Vec<String>) {
        Sampler::from_env_for_service(name, arg, "unknown_service")
    }

    /// [`from_env`](Self::from_env) for the service `service_name` (the name a
    /// `jaeger_remote` sampler asks its strategy for).
    ///
    /// `ratelimiting` and `parentbased_ratelimiting` read traces per second from the
    /// argument (default [`DEFAULT_TRACES_PER_S`]); `*jaeger_remote` reads
    /// [`RemoteConfig::from_arg`].
    pub fn from_env_for_service(
        name: Option<&str>,
        arg: Option<&str>,
        service_name: &str,
    ) -> (Sampler, Vec<String>) {
        let mut warnings = Vec::new();
        let rate = |warnings: &mut Vec<String>| -> f64 {
            match arg.map(str::trim) {
                None | Some("") => DEFAULT_TRACES_PER_S,
                Some(a) => match a.parse::<f64>() {
                    Ok(r) if r.is_finite() && r >= 0.0 => r,
                    _ => {
                        warnings.push(format!(
                            "OTEL_TRACES_SAMPLER_ARG={a:?} is not a number of traces per \
                             second; using {DEFAULT_TRACES_PER_S}"
                        ));
                        DEFAULT_TRACES_PER_S
                    }
                },
            }
        };
        let remote = |warnings: &mut Vec<String>| {
            let (config, w) = RemoteConfig::from_arg(service_name, arg);
            warnings.extend(w);
            Sampler::JaegerRemote(JaegerRemote::new(config))
        };
        let mut others = Vec::new();
        let mut ratio = || -> f64 {
            match arg.map(str::trim) {
                None | Some("") => 1.0,
                Some(a) => match a.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => r,
                    _ => {
                        others.push(format!(
                            "OTEL_TRACES_SAMPLER_ARG={a:?} is not a probability in [0, 1]; using 1.0"
                        ));
                        1.0
                    }
                },
            }
        };
        let sampler = match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("parentbased_always_on") => Sampler::default(),
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::trace_id_ratio(ratio()),
            Some("parentbased_always_off") => Sampler::parent_based(Sampler::AlwaysOff),
            Some("parentbased_traceidratio") => {
                Sampler::parent_based(Sampler::trace_id_ratio(ratio()))
            }
            Some("ratelimiting") => Sampler::rate_limiting(rate(&mut warnings)),
            Some("parentbased_ratelimiting") => {
                Sampler::parent_based(Sampler::rate_limiting(rate(&mut warnings)))
            }
            Some("jaeger_remote") => remote(&mut warnings),
            Some("parentbased_jaeger_remote") => Sampler::parent_based(remote(&mut warnings)),
            Some(other) => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not supported; using parentbased_always_on"
                ));
                Sampler::default()
            }
        };
        warnings.extend(others);
        (sampler, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{SpanId, TraceFlags};
    use crate::propagation::TraceState;

    fn parent(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            trace_flags: TraceFlags::default().with_sampled(sampled),
            trace_state: TraceState::default(),
            is_remote: true,
        }
    }

    #[test]
    fn fixed_samplers() {
        let id = TraceId::random();
        assert!(Sampler::AlwaysOn.should_sample(Some(&parent(false)), id));
        assert!(!Sampler::AlwaysOff.should_sample(Some(&parent(true)), id));
    }

    #[test]
    fn parent_based_follows_the_parent_and_uses_root_otherwise() {
        let s = Sampler::parent_based(Sampler::AlwaysOff);
        let id = TraceId::random();
        assert!(s.should_sample(Some(&parent(true)), id));
        assert!(!s.should_sample(Some(&parent(false)), id));
        assert!(!s.should_sample(None, id));
        assert!(Sampler::default().should_sample(None, id));
    }

    #[test]
    fn ratio_is_decided_by_the_trace_id_alone() {
        let s = Sampler::trace_id_ratio(0.25);
        let mut sampled = 0;
        for _ in 0..20_000 {
            let id = TraceId::random();
            let d = s.should_sample(None, id);
            // Same trace id, same answer, whatever the parent says.
            assert_eq!(d, s.should_sample(Some(&parent(!d)), id));
            sampled += usize::from(d);
        }
        // 20k draws at p=0.25: mean 5000, sd ~61. Six sigma either way.
        assert!((4_630..=5_370).contains(&sampled), "{sampled}");
        assert!(Sampler::trace_id_ratio(1.0).should_sample(None, TraceId::from_u128(1)));
        assert!(!Sampler::trace_id_ratio(0.0).should_sample(None, TraceId::from_u128(u128::MAX)));
    }

    #[test]
    fn rate_limiting_decides_the_root_and_children_follow() {
        let bare = Sampler::rate_limiting(1.0);
        assert!(bare.decide(None, TraceId::random(), "r").sampled);
        // The bucket is empty, yet the children of a sampled root are recorded.
        assert!(!bare.decide(None, TraceId::random(), "r").sampled);
        assert_eq!(
            bare.decide(Some(&parent(true)), TraceId::random(), "c"),
            Decision::KEEP
        );
        let s = Sampler::parent_based(Sampler::rate_limiting(3.0));
        let roots: Vec<Decision> = (0..10)
            .map(|_| s.decide(None, TraceId::random(), "r"))
            .collect();
        // A full bucket of three, then nothing until it refills.
        assert_eq!(roots.iter().filter(|d| d.sampled).count(), 3);
        assert_eq!(roots[0].rule, Some(Rule::RateLimiting(3.0)));
        // Children follow their parent whatever the bucket holds, and record no rule.
        assert_eq!(
            s.decide(Some(&parent(true)), TraceId::random(), "c"),
            Decision::KEEP
        );
        assert_eq!(
            s.decide(Some(&parent(false)), TraceId::random(), "c"),
            Decision::DROP
        );
    }

    #[test]
    fn a_sampled_root_records_its_rule_as_jaeger_clients_do() {
        let exporter = crate::export::InMemoryExporter::default();
        let t = crate::Tracer::builder(crate::Resource::new("svc", None, []))
            .with_sampler(Sampler::parent_based(Sampler::rate_limiting(5.0)))
            .with_processor(exporter.clone())
            .build();
        let root = t.span("GET /").start();
        let child = t.span("child").parent(Some(root.context().clone())).start();
        child.end();
        root.end();
        let spans = exporter.finished_spans();
        let attr = |name: &str, key: &str| {
            spans
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.attributes.iter().find(|kv| kv.key == key))
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            attr("GET /", SAMPLER_TYPE),
            Some(Value::from("ratelimiting"))
        );
        assert_eq!(attr("GET /", SAMPLER_PARAM), Some(Value::from(5.0)));
        assert_eq!(attr("child", SAMPLER_TYPE), None);
        let always = Sampler::AlwaysOn.decide(None, TraceId::random(), "x");
        assert_eq!(always, Decision::KEEP);
        // Only a remote strategy needs the final span name at start.
        let (remote, _) = Sampler::from_env(Some("parentbased_jaeger_remote"), None);
        assert!(remote.uses_span_name());
        assert!(!Sampler::parent_based(Sampler::rate_limiting(1.0)).uses_span_name());
    }

    #[rustfmt::skip]
    #[test]
    fn env_names_and_bad_values() {
        let cases: &[(Option<&str>, Option<&str>, Sampler, usize)] = &[
            (None,                              None,        Sampler::default(), 0),
            (Some("always_on"),                 None,        Sampler::AlwaysOn, 0),
            (Some("ALWAYS_OFF"),                None,        Sampler::AlwaysOff, 0),
            (Some("traceidratio"),              Some("0.5"), Sampler::trace_id_ratio(0.5), 0),
            (Some("traceidratio"),              Some("2"),   Sampler::trace_id_ratio(1.0), 1),
            (Some("traceidratio"),              Some("x"),   Sampler::trace_id_ratio(1.0), 1),
            (Some("parentbased_always_off"),    None,        Sampler::parent_based(Sampler::AlwaysOff), 0),
            (Some("parentbased_traceidratio"),  Some("0.1"), Sampler::parent_based(Sampler::trace_id_ratio(0.1)), 0),
            (Some("ratelimiting"),              Some("25"),  Sampler::rate_limiting(25.0), 0),
            (Some("parentbased_ratelimiting"),  None,        Sampler::parent_based(Sampler::rate_limiting(100.0)), 0),
            (Some("ratelimiting"),              Some("-1"),  Sampler::rate_limiting(100.0), 1),
            (Some("xray"),                      None,        Sampler::default(), 1),
        ];
        for (name, arg, want, warnings) in cases {
            let (got, w) = Sampler::from_env(*name, *arg);
            assert_eq!(&got, want, "{name:?} {arg:?}");
            assert_eq!(w.len(), *warnings, "{name:?} {arg:?}: {w:?}");
        }
    }
}
