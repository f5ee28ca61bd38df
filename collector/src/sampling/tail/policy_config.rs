//! The tail sampling policy file's policies as written: the OpenTelemetry Collector's
//! `tail_sampling` settings per policy type (contrib `processor/tailsamplingprocessor`,
//! README "Policies"). [`super::policy::Policy::compile`] checks and compiles them.

use serde::Deserialize;

/// The Collector's default `hash_salt` of `probabilistic`.
pub const DEFAULT_HASH_SALT: &str = "default-hash-seed";

/// One policy as written in the file.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyConfig {
    /// Names it in metrics and in the record of kept traces.
    pub name: String,
    /// One of the types of the module docs.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub(super) latency: Option<LatencyConfig>,
    #[serde(default)]
    pub(super) status_code: Option<StatusCodeConfig>,
    #[serde(default)]
    pub(super) probabilistic: Option<ProbabilisticConfig>,
    #[serde(default)]
    pub(super) rate_limiting: Option<RateLimitingConfig>,
    #[serde(default)]
    pub(super) string_attribute: Option<StringAttributeConfig>,
    #[serde(default)]
    pub(super) numeric_attribute: Option<NumericAttributeConfig>,
    #[serde(default)]
    pub(super) boolean_attribute: Option<BooleanAttributeConfig>,
    #[serde(default)]
    pub(super) span_count: Option<SpanCountConfig>,
    #[serde(default)]
    pub(super) and: Option<AndConfig>,
    #[serde(default)]
    pub(super) composite: Option<CompositeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct LatencyConfig {
    pub(super) threshold_ms: u64,
    #[serde(default)]
    pub(super) upper_threshold_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct StatusCodeConfig {
    pub(super) status_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ProbabilisticConfig {
    pub(super) sampling_percentage: f64,
    #[serde(default)]
    pub(super) hash_salt: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RateLimitingConfig {
    pub(super) spans_per_second: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct StringAttributeConfig {
    pub(super) key: String,
    pub(super) values: Vec<String>,
    #[serde(default)]
    pub(super) enabled_regex_matching: bool,
    #[serde(default)]
    pub(super) invert_match: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct NumericAttributeConfig {
    pub(super) key: String,
    #[serde(default)]
    pub(super) min_value: Option<f64>,
    #[serde(default)]
    pub(super) max_value: Option<f64>,
    #[serde(default)]
    pub(super) invert_match: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct BooleanAttributeConfig {
    pub(super) key: String,
    pub(super) value: bool,
    #[serde(default)]
    pub(super) invert_match: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct SpanCountConfig {
    pub(super) min_spans: u64,
    #[serde(default)]
    pub(super) max_spans: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct AndConfig {
    pub(super) and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct CompositeConfig {
    pub(super) max_total_spans_per_second: u64,
    #[serde(default)]
    pub(super) policy_order: Vec<String>,
    pub(super) composite_sub_policy: Vec<PolicyConfig>,
    #[serde(default)]
    pub(super) rate_allocation: Vec<RateAllocation>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RateAllocation {
    pub(super) policy: String,
    pub(super) percent: f64,
}
