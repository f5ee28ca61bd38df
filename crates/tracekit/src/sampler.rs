//! Head sampling: decides at span start whether a span is recorded and exported
//! (OpenTelemetry SDK specification §Sampling; `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` from the SDK environment variable specification).
//!
//! `traceidratio` decides from the trace id alone (its right-most 56 bits, the part W3C Level 2
//! marks as random), so every service that sees the same trace makes the same decision.

use crate::id::TraceId;
use crate::span_context::SpanContext;

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
        let threshold = ((1.0 - ratio) * RANDOMNESS_RANGE as f64).round() as u64;
        Sampler::TraceIdRatio { ratio, threshold }
    }

    /// A parent-based sampler with `root` for root spans.
    pub fn parent_based(root: Sampler) -> Sampler {
        Sampler::ParentBased {
            root: Box::new(root),
        }
    }

    /// Whether a new span in trace `trace_id` with parent `parent` should be recorded.
    #[inline]
    pub fn should_sample(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio { threshold, .. } => {
                let randomness = (trace_id.to_u128() as u64) & (RANDOMNESS_RANGE - 1);
                randomness >= *threshold
            }
            Sampler::ParentBased { root } => match parent {
                Some(p) => p.is_sampled(),
                None => root.should_sample(None, trace_id),
            },
        }
    }

    /// Builds a sampler from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    ///
    /// Unset name: `parentbased_always_on`. Unknown name or unparsable ratio: the default
    /// (respectively ratio 1.0, as the SDK specification says) plus a warning in the
    /// second element, so the caller can report it instead of silently ignoring the flag.
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> (Sampler, Vec<String>) {
        let mut warnings = Vec::new();
        let mut ratio = || -> f64 {
            match arg.map(str::trim) {
                None | Some("") => 1.0,
                Some(a) => match a.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => r,
                    _ => {
                        warnings.push(format!(
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
            Some(other) => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not supported; using parentbased_always_on"
                ));
                Sampler::default()
            }
        };
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
            (Some("jaeger_remote"),             None,        Sampler::default(), 1),
        ];
        for (name, arg, want, warnings) in cases {
            let (got, w) = Sampler::from_env(*name, *arg);
            assert_eq!(&got, want, "{name:?} {arg:?}");
            assert_eq!(w.len(), *warnings, "{name:?} {arg:?}: {w:?}");
        }
    }
}
