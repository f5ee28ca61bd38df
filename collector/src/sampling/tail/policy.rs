//! Tail sampling policies in the OpenTelemetry Collector's `tail_sampling` vocabulary
//! (contrib `processor/tailsamplingprocessor`, README "Policies"), so its files carry over:
//!
//! | `type` | settings | samples a trace when |
//! |---|---|---|
//! | `always_sample` | | always |
//! | `status_code` | `status_codes: [ERROR, OK, UNSET]` | a span has one of the codes |
//! | `latency` | `threshold_ms`, `upper_threshold_ms` | `threshold_ms <= duration` (and `<= upper_threshold_ms` when set) |
//! | `probabilistic` | `sampling_percentage`, `hash_salt` | FNV-1a 64 of salt + trace id is under the percentage (by trace id: every collector decides alike) |
//! | `rate_limiting` | `spans_per_second` | the trace's spans fit in this second's budget |
//! | `string_attribute` | `key`, `values`, `enabled_regex_matching`, `invert_match` | a span or resource attribute `key` equals (matches) a value |
//! | `numeric_attribute` | `key`, `min_value`, `max_value`, `invert_match` | an integer or double attribute `key` is within `[min, max]` |
//! | `boolean_attribute` | `key`, `value`, `invert_match` | a boolean attribute `key` equals `value` |
//! | `span_count` | `min_spans`, `max_spans` | the span count is within `[min, max]` (`max` 0: no upper bound) |
//! | `and` | `and_sub_policy: [...]` | every sub-policy samples |
//! | `composite` | `max_total_spans_per_second`, `policy_order`, `composite_sub_policy`, `rate_allocation` | the first sub-policy (in `policy_order`) that samples still has spans left in its share of the rate |
//!
//! A trace's duration is its latest span end minus its earliest span start. Verdicts combine
//! as in the Collector: an inverted match (`invert_match: true` and the attribute matches)
//! drops the trace whatever the others say; otherwise any sampling verdict keeps it.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use super::policy_config::CompositeConfig;
pub use super::policy_config::{DEFAULT_HASH_SALT, PolicyConfig};
use crate::model::{AttrValue, KeyValue, Span, StatusCode, TraceId};

/// A policy's verdict on one trace (the Collector's `sampling.Decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep.
    Sampled,
    /// This policy does not keep it.
    NotSampled,
    /// `invert_match` and no match: keep.
    InvertSampled,
    /// `invert_match` and a match: drop, whatever other policies say.
    InvertNotSampled,
}

impl Verdict {
    /// Keeps the trace (alone).
    pub fn keeps(self) -> bool {
        matches!(self, Self::Sampled | Self::InvertSampled)
    }
}

/// What a policy looks at: the trace's spans, id and duration.
#[derive(Debug)]
pub struct TraceView<'a> {
    /// The trace.
    pub trace_id: TraceId,
    /// Its spans.
    pub spans: &'a [Span],
    /// Latest end minus earliest start, ns.
    pub duration_ns: u64,
}

impl<'a> TraceView<'a> {
    /// A view of `spans` of `trace_id`.
    pub fn new(trace_id: TraceId, spans: &'a [Span]) -> Self {
        let start = spans.iter().map(|s| s.start_time_unix_nano).min();
        let end = spans.iter().map(|s| s.end_time_unix_nano).max();
        let duration_ns = match (start, end) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        };
        Self {
            trace_id,
            spans,
            duration_ns,
        }
    }

    /// Whether any span or span resource has an attribute `key` satisfying `pred`.
    fn any_attribute(&self, key: &str, pred: impl Fn(&AttrValue) -> bool) -> bool {
        let hit = |kvs: &[KeyValue]| kvs.iter().any(|kv| kv.key == key && pred(&kv.value));
        self.spans
            .iter()
            .any(|s| hit(&s.attributes) || hit(&s.resource.attributes))
    }
}

/// A per-second span budget (`rate_limiting`, composite shares).
#[derive(Debug)]
struct SpanBudget {
    per_s: u64,
    /// (second, spans spent in it).
    spent: Mutex<(u64, u64)>,
}

impl SpanBudget {
    fn new(per_s: u64) -> Self {
        Self {
            per_s,
            spent: Mutex::new((0, 0)),
        }
    }

    fn try_spend(&self, spans: u64, now_s: u64) -> bool {
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        if spent.0 != now_s {
            *spent = (now_s, 0);
        }
        if spent.1 + spans <= self.per_s {
            spent.1 += spans;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
enum Rule {
    AlwaysSample,
    StatusCode(Vec<StatusCode>),
    Latency {
        threshold_ns: u64,
        upper_ns: Option<u64>,
    },
    Probabilistic {
        threshold: u64,
        salt: String,
    },
    RateLimiting(SpanBudget),
    StringAttribute {
        key: String,
        values: HashSet<String>,
        patterns: Vec<regex::Regex>,
        invert: bool,
    },
    NumericAttribute {
        key: String,
        min: f64,
        max: f64,
        invert: bool,
    },
    BooleanAttribute {
        key: String,
        value: bool,
        invert: bool,
    },
    SpanCount {
        min: u64,
        max: u64,
    },
    And(Vec<Policy>),
    Composite(Vec<(Policy, SpanBudget)>),
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    name: String,
    rule: Rule,
}

/// Why a policy could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("tail sampling policy {name:?}: {detail}")]
pub struct PolicyError {
    /// The policy.
    pub name: String,
    /// What is wrong.
    pub detail: String,
}

fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Policy {
    /// Compiles `config` (sub-policies too).
    ///
    /// # Errors
    /// [`PolicyError`] for an unknown type, missing or out-of-range settings, or a bad regex.
    pub fn compile(config: &PolicyConfig) -> Result<Self, PolicyError> {
        let err = |detail: String| PolicyError {
            name: config.name.clone(),
            detail,
        };
        let missing = || {
            err(format!(
                "type {} needs its `{}` settings",
                config.kind, config.kind
            ))
        };
        let rule = match config.kind.as_str() {
            "always_sample" => Rule::AlwaysSample,
            "status_code" => {
                let c = config.status_code.as_ref().ok_or_else(missing)?;
                let codes = c
                    .status_codes
                    .iter()
                    .map(|s| match s.to_ascii_uppercase().as_str() {
                        "ERROR" => Ok(StatusCode::Error),
                        "OK" => Ok(StatusCode::Ok),
                        "UNSET" => Ok(StatusCode::Unset),
                        other => Err(err(format!("unknown status code {other:?}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Rule::StatusCode(codes)
            }
            "latency" => {
                let c = config.latency.as_ref().ok_or_else(missing)?;
                Rule::Latency {
                    threshold_ns: c.threshold_ms.saturating_mul(1_000_000),
                    upper_ns: (c.upper_threshold_ms > 0)
                        .then(|| c.upper_threshold_ms.saturating_mul(1_000_000)),
                }
            }
            "probabilistic" => {
                let c = config.probabilistic.as_ref().ok_or_else(missing)?;
                if !(0.0..=100.0).contains(&c.sampling_percentage) {
                    return Err(err("sampling_percentage must be within 0..=100".into()));
                }
                Rule::Probabilistic {
                    threshold: (c.sampling_percentage / 100.0 * u64::MAX as f64) as u64,
                    salt: c
                        .hash_salt
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| DEFAULT_HASH_SALT.to_owned()),
                }
            }
            "rate_limiting" => {
                let c = config.rate_limiting.as_ref().ok_or_else(missing)?;
                Rule::RateLimiting(SpanBudget::new(c.spans_per_second))
            }
            "string_attribute" => {
                let c = config.string_attribute.as_ref().ok_or_else(missing)?;
                let patterns = if c.enabled_regex_matching {
                    c.values
                        .iter()
                        .map(|v| {
                            regex::Regex::new(&format!("^(?:{v})$"))
                                .map_err(|e| err(format!("bad regex {v:?}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    Vec::new()
                };
                Rule::StringAttribute {
                    key: c.key.clone(),
                    values: c.values.iter().cloned().collect(),
                    patterns,
                    invert: c.invert_match,
                }
            }
            "numeric_attribute" => {
                let c = config.numeric_attribute.as_ref().ok_or_else(missing)?;
                Rule::NumericAttribute {
                    key: c.key.clone(),
                    min: c.min_value.unwrap_or(f64::NEG_INFINITY),
                    max: c.max_value.unwrap_or(f64::INFINITY),
                    invert: c.invert_match,
                }
            }
            "boolean_attribute" => {
                let c = config.boolean_attribute.as_ref().ok_or_else(missing)?;
                Rule::BooleanAttribute {
                    key: c.key.clone(),
                    value: c.value,
                    invert: c.invert_match,
                }
            }
            "span_count" => {
                let c = config.span_count.as_ref().ok_or_else(missing)?;
                Rule::SpanCount {
                    min: c.min_spans,
                    max: if c.max_spans == 0 {
                        u64::MAX
                    } else {
                        c.max_spans
                    },
                }
            }
            "and" => {
                let c = config.and.as_ref().ok_or_else(missing)?;
                if c.and_sub_policy.is_empty() {
                    return Err(err("and_sub_policy is empty".into()));
                }
                Rule::And(
                    c.and_sub_policy
                        .iter()
                        .map(Policy::compile)
                        .collect::<Result<_, _>>()?,
                )
            }
            "composite" => Rule::Composite(compile_composite(
                config.composite.as_ref().ok_or_else(missing)?,
                &err,
            )?),
            other => {
                return Err(err(format!(
                    "type {other:?} is not supported (always_sample, status_code, latency, \
                     probabilistic, rate_limiting, string_attribute, numeric_attribute, \
                     boolean_attribute, span_count, and, composite)"
                )));
            }
        };
        Ok(Self {
            name: config.name.clone(),
            rule,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verdict on `trace` at `now_s` (unix seconds; rate budgets are per second).
    pub fn evaluate(&self, trace: &TraceView<'_>, now_s: u64) -> Verdict {
        let plain = |hit: bool| {
            if hit {
                Verdict::Sampled
            } else {
                Verdict::NotSampled
            }
        };
        let inverted = |hit: bool, invert: bool| match (hit, invert) {
            (hit, false) => plain(hit),
            (true, true) => Verdict::InvertNotSampled,
            (false, true) => Verdict::InvertSampled,
        };
        match &self.rule {
            Rule::AlwaysSample => Verdict::Sampled,
            Rule::StatusCode(codes) => {
                plain(trace.spans.iter().any(|s| codes.contains(&s.status.code)))
            }
            Rule::Latency {
                threshold_ns,
                upper_ns,
            } => plain(
                trace.duration_ns >= *threshold_ns
                    && upper_ns.is_none_or(|u| trace.duration_ns <= u),
            ),
            Rule::Probabilistic { threshold, salt } => {
                let hash = fnv1a64(&[salt.as_bytes(), &trace.trace_id.0]);
                plain(hash <= *threshold && *threshold > 0)
            }
            Rule::RateLimiting(budget) => plain(budget.try_spend(trace.spans.len() as u64, now_s)),
            Rule::StringAttribute {
                key,
                values,
                patterns,
                invert,
            } => {
                let hit = trace.any_attribute(key, |v| match v {
                    AttrValue::String(s) => {
                        values.contains(s.as_str()) || patterns.iter().any(|p| p.is_match(s))
                    }
                    _ => false,
                });
                inverted(hit, *invert)
            }
            Rule::NumericAttribute {
                key,
                min,
                max,
                invert,
            } => {
                let hit = trace.any_attribute(key, |v| {
                    let x = match v {
                        AttrValue::Int(i) => *i as f64,
                        AttrValue::Double(d) => *d,
                        _ => return false,
                    };
                    (*min..=*max).contains(&x)
                });
                inverted(hit, *invert)
            }
            Rule::BooleanAttribute { key, value, invert } => {
                let hit =
                    trace.any_attribute(key, |v| matches!(v, AttrValue::Bool(b) if b == value));
                inverted(hit, *invert)
            }
            Rule::SpanCount { min, max } => {
                plain((*min..=*max).contains(&(trace.spans.len() as u64)))
            }
            Rule::And(subs) => plain(subs.iter().all(|p| p.evaluate(trace, now_s).keeps())),
            Rule::Composite(subs) => {
                let spans = trace.spans.len() as u64;
                plain(subs.iter().any(|(p, budget)| {
                    p.evaluate(trace, now_s).keeps() && budget.try_spend(spans, now_s)
                }))
            }
        }
    }
}

/// A composite's sub-policies in `policy_order`, each with its share of the span rate
/// (`rate_allocation` percent; sub-policies without one share the rest equally).
fn compile_composite(
    c: &CompositeConfig,
    err: &dyn Fn(String) -> PolicyError,
) -> Result<Vec<(Policy, SpanBudget)>, PolicyError> {
    let mut ordered: Vec<&PolicyConfig> = Vec::new();
    for name in &c.policy_order {
        let sub = c
            .composite_sub_policy
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| err(format!("policy_order names unknown sub-policy {name:?}")))?;
        ordered.push(sub);
    }
    for p in &c.composite_sub_policy {
        if !ordered.iter().any(|o| o.name == p.name) {
            ordered.push(p);
        }
    }
    let allocated: f64 = c.rate_allocation.iter().map(|a| a.percent).sum();
    if allocated > 100.0 {
        return Err(err(
            "rate_allocation percents add up to more than 100".into()
        ));
    }
    let unallocated = ordered
        .iter()
        .filter(|p| !c.rate_allocation.iter().any(|a| a.policy == p.name))
        .count();
    let rest = if unallocated > 0 {
        (100.0 - allocated) / unallocated as f64
    } else {
        0.0
    };
    ordered
        .into_iter()
        .map(|p| {
            let percent = c
                .rate_allocation
                .iter()
                .find(|a| a.policy == p.name)
                .map_or(rest, |a| a.percent);
            let per_s = (c.max_total_spans_per_second as f64 * percent / 100.0) as u64;
            Ok((Policy::compile(p)?, SpanBudget::new(per_s)))
        })
        .collect()
}

/// The Collector's combination of the top-level verdicts: `None` drops the trace,
/// `Some(i)` keeps it for the `i`-th policy (the first that keeps it).
pub fn combine(verdicts: &[Verdict]) -> Option<usize> {
    if verdicts.contains(&Verdict::InvertNotSampled) {
        return None;
    }
    verdicts.iter().position(|v| v.keeps())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
