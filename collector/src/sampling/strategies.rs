//! # Sampling strategies: Jaeger's file format in, Jaeger's remote sampling JSON out
//!
//! The file (`COLLECTOR_SAMPLING_STRATEGIES`) has the shape of Jaeger's static strategies
//! file (`--sampling.strategies-file`):
//!
//! ```json
//! {"default_strategy": {"type": "probabilistic", "param": 0.5,
//!    "operation_strategies": [{"operation": "GET /healthz", "type": "probabilistic", "param": 0}]},
//!  "service_strategies": [
//!    {"service": "frontend", "type": "probabilistic", "param": 0.2,
//!     "operation_strategies": [{"operation": "POST /orders", "type": "ratelimiting", "param": 10}]},
//!    {"service": "payment", "type": "ratelimiting", "param": 5}]}
//! ```
//!
//! The answer for a service (`GET /api/sampling?service=NAME`, interop.md §3.9) is built as
//! Jaeger's static provider builds it: the service's entry, else the default; a probabilistic
//! strategy carries `operationSampling` when any operation strategy applies (the default's
//! operations, overridden by the service's), with the service's probability as
//! `defaultSamplingProbability`; a rate-limiting service answers `RATE_LIMITING` alone.
//!
//! One project extension: an operation strategy of type `ratelimiting` (Jaeger's file
//! ignores it) is served as probability 0 plus `"rateLimitingSampling":
//! {"maxTracesPerSecond": N}` on that operation. tracekit's `jaeger_remote` sampler applies the
//! rate; other Jaeger clients see probability 0 (and the lower bound).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Probability served when no file is configured (Jaeger's default).
pub const DEFAULT_SAMPLING_PROBABILITY: f64 = 0.001;

/// A strategies file.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StrategiesFile {
    /// For services without their own entry.
    #[serde(default)]
    pub default_strategy: Option<FileStrategy>,
    /// Per service.
    #[serde(default)]
    pub service_strategies: Vec<ServiceStrategy>,
}

/// `type` + `param`, with operation strategies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileStrategy {
    /// `probabilistic` or `ratelimiting`.
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Probability (0..=1) or traces per second.
    pub param: f64,
    /// Per-operation strategies.
    #[serde(default)]
    pub operation_strategies: Vec<OperationFileStrategy>,
}

/// One service's entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServiceStrategy {
    /// `service.name`.
    pub service: String,
    /// Its strategy.
    #[serde(flatten)]
    pub strategy: FileStrategy,
}

/// One operation's entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OperationFileStrategy {
    /// The root span name.
    pub operation: String,
    /// `probabilistic` or (extension) `ratelimiting`.
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Probability or traces per second.
    pub param: f64,
}

/// Strategy types of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// By probability.
    Probabilistic,
    /// By traces per second.
    Ratelimiting,
}

/// Why a strategies file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StrategiesError {
    /// Not readable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not the JSON of a strategies file.
    #[error("{path} is not a Jaeger strategies file: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Where and why.
        source: serde_json::Error,
    },
    /// A parameter out of range.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// Which entry.
        detail: String,
    },
}

/// `SamplingStrategyResponse` as Jaeger writes it (proto3 JSON; absent parts left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyResponse {
    /// `PROBABILISTIC` or `RATE_LIMITING`; always present.
    pub strategy_type: &'static str,
    /// The probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilistic_sampling: Option<Probabilistic>,
    /// The rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiting_sampling: Option<RateLimiting>,
    /// Per operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_sampling: Option<OperationSampling>,
}

/// `{"samplingRate": p}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probabilistic {
    /// Probability, 0..=1.
    pub sampling_rate: f64,
}

/// `{"maxTracesPerSecond": n}` (an int32 in Jaeger's proto).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimiting {
    /// Traces per second.
    pub max_traces_per_second: i32,
}

/// `PerOperationSamplingStrategies`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationSampling {
    /// Probability of operations not listed.
    pub default_sampling_probability: f64,
    /// Guaranteed traces per second per operation.
    pub default_lower_bound_traces_per_second: f64,
    /// Listed operations.
    pub per_operation_strategies: Vec<OperationStrategy>,
    /// Unused by clients; written as Jaeger does.
    pub default_upper_bound_traces_per_second: f64,
}

/// One operation's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStrategy {
    /// The root span name.
    pub operation: String,
    /// Its probability.
    pub probabilistic_sampling: Probabilistic,
    /// Project extension: a rate limit for this operation (see the module docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiting_sampling: Option<RateLimiting>,
}

impl StrategyResponse {
    /// One probability for every operation.
    pub fn probabilistic(rate: f64) -> Self {
        Self {
            strategy_type: "PROBABILISTIC",
            probabilistic_sampling: Some(Probabilistic {
                sampling_rate: rate,
            }),
            rate_limiting_sampling: None,
            operation_sampling: None,
        }
    }

    fn rate_limiting(per_s: f64) -> Self {
        Self {
            strategy_type: "RATE_LIMITING",
            probabilistic_sampling: None,
            rate_limiting_sampling: Some(RateLimiting {
                max_traces_per_second: per_s.round().clamp(0.0, f64::from(i32::MAX)) as i32,
            }),
            operation_sampling: None,
        }
    }
}

impl StrategiesFile {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`StrategiesError`] when the file cannot be read, parsed, or has a probability outside
    /// 0..=1 or a negative rate.
    pub fn load(path: &std::path::Path) -> Result<Self, StrategiesError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| StrategiesError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&bytes).map_err(|e| match e {
            StrategiesError::Parse { source, .. } => StrategiesError::Parse { path: name, source },
            StrategiesError::Invalid { detail, .. } => {
                StrategiesError::Invalid { path: name, detail }
            }
            other => other,
        })
    }

    /// Parses and validates a file's bytes.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn parse(bytes: &[u8]) -> Result<Self, StrategiesError> {
        let file: Self =
            serde_json::from_slice(bytes).map_err(|source| StrategiesError::Parse {
                path: String::new(),
                source,
            })?;
        let check = |who: &str, kind: StrategyKind, param: f64| match kind {
            StrategyKind::Probabilistic if !(0.0..=1.0).contains(&param) => {
                Err(format!("{who}: probability {param} is outside 0..=1"))
            }
            StrategyKind::Ratelimiting if !(param >= 0.0 && param.is_finite()) => Err(format!(
                "{who}: rate {param} is not a number of traces per second"
            )),
            _ => Ok(()),
        };
        let mut all: Vec<(String, &FileStrategy)> = Vec::new();
        if let Some(d) = &file.default_strategy {
            all.push(("default_strategy".into(), d));
        }
        for s in &file.service_strategies {
            all.push((format!("service {:?}", s.service), &s.strategy));
        }
        for (who, s) in all {
            check(&who, s.kind, s.param)
                .and_then(|()| {
                    s.operation_strategies.iter().try_for_each(|o| {
                        check(
                            &format!("{who} operation {:?}", o.operation),
                            o.kind,
                            o.param,
                        )
                    })
                })
                .map_err(|detail| StrategiesError::Invalid {
                    path: String::new(),
                    detail,
                })?;
        }
        Ok(file)
    }

    /// The answer for `service` (see the module docs).
    pub fn response_for(&self, service: &str) -> StrategyResponse {
        let default = self.default_strategy.as_ref();
        let own = self
            .service_strategies
            .iter()
            .find(|s| s.service == service)
            .map(|s| &s.strategy);
        let Some(chosen) = own.or(default) else {
            return StrategyResponse::probabilistic(DEFAULT_SAMPLING_PROBABILITY);
        };
        if chosen.kind == StrategyKind::Ratelimiting {
            return StrategyResponse::rate_limiting(chosen.param);
        }
        let mut response = StrategyResponse::probabilistic(chosen.param);
        // The default's operations, overridden by the service's own.
        let mut operations: BTreeMap<&str, &OperationFileStrategy> = BTreeMap::new();
        for o in default
            .into_iter()
            .chain(own)
            .flat_map(|s| &s.operation_strategies)
        {
            operations.insert(&o.operation, o);
        }
        if !operations.is_empty() {
            response.operation_sampling = Some(OperationSampling {
                default_sampling_probability: chosen.param,
                default_lower_bound_traces_per_second: 0.0,
                per_operation_strategies: operations
                    .into_values()
                    .map(|o| operation_answer(o.operation.clone(), o.kind, o.param))
                    .collect(),
                default_upper_bound_traces_per_second: 0.0,
            });
        }
        response
    }
}

/// One operation's answer for a file entry.
fn operation_answer(operation: String, kind: StrategyKind, param: f64) -> OperationStrategy {
    match kind {
        StrategyKind::Probabilistic => OperationStrategy {
            operation,
            probabilistic_sampling: Probabilistic {
                sampling_rate: param,
            },
            rate_limiting_sampling: None,
        },
        StrategyKind::Ratelimiting => OperationStrategy {
            operation,
            probabilistic_sampling: Probabilistic { sampling_rate: 0.0 },
            rate_limiting_sampling: StrategyResponse::rate_limiting(param).rate_limiting_sampling,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Jaeger's documented example (docs: "Sampling", file-based sampling configuration).
    const JAEGER_EXAMPLE: &str = r#"{
      "service_strategies": [
        {"service": "foo", "type": "probabilistic", "param": 0.8,
         "operation_strategies": [
           {"operation": "op1", "type": "probabilistic", "param": 0.2},
           {"operation": "op2", "type": "probabilistic", "param": 0.4}]},
        {"service": "bar", "type": "ratelimiting", "param": 5}],
      "default_strategy": {"type": "probabilistic", "param": 0.5,
        "operation_strategies": [
          {"operation": "/health", "type": "probabilistic", "param": 0.0},
          {"operation": "/metrics", "type": "probabilistic", "param": 0.0}]}
    }"#;

    fn answer(file: &StrategiesFile, service: &str) -> serde_json::Value {
        serde_json::to_value(file.response_for(service)).unwrap()
    }

    #[test]
    fn jaegers_example_answers_as_jaeger_does() {
        let f = StrategiesFile::parse(JAEGER_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            answer(&f, "bar"),
            json!({"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 5}})
        );
        assert_eq!(
            answer(&f, "foo"),
            json!({"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.8},
              "operationSampling": {"defaultSamplingProbability": 0.8,
                "defaultLowerBoundTracesPerSecond": 0.0,
                "perOperationStrategies": [
                  {"operation": "/health", "probabilisticSampling": {"samplingRate": 0.0}},
                  {"operation": "/metrics", "probabilisticSampling": {"samplingRate": 0.0}},
                  {"operation": "op1", "probabilisticSampling": {"samplingRate": 0.2}},
                  {"operation": "op2", "probabilisticSampling": {"samplingRate": 0.4}}],
                "defaultUpperBoundTracesPerSecond": 0.0}})
        );
        let other = answer(&f, "unknown");
        assert_eq!(other["probabilisticSampling"]["samplingRate"], 0.5);
        assert_eq!(
            other["operationSampling"]["perOperationStrategies"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(
            answer(&StrategiesFile::default(), "x"),
            json!({"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.001}})
        );
    }

    #[test]
    fn the_shipped_demo_file_parses_and_rate_limits_orders() {
        let text = include_str!("../../../config/sampling-strategies.json");
        let f = StrategiesFile::parse(text.as_bytes()).unwrap();
        let frontend = answer(&f, "frontend");
        let ops = frontend["operationSampling"]["perOperationStrategies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let op = |name: &str| ops.iter().find(|o| o["operation"] == name).cloned();
        assert_eq!(
            op("GET /healthz").unwrap()["probabilisticSampling"]["samplingRate"],
            0.0
        );
        let orders = op("POST /orders").unwrap();
        assert!(orders["rateLimitingSampling"]["maxTracesPerSecond"].as_i64() > Some(0));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for bad in [
            r#"{"default_strategy": {"type": "probabilistic", "param": 1.5}}"#,
            r#"{"default_strategy": {"type": "ratelimiting", "param": -1}}"#,
            r#"{"default_strategy": {"type": "sometimes", "param": 1}}"#,
            r#"{"service_strategies": [{"service": "a", "type": "probabilistic", "param": 0.1,
                "operation_strategies": [{"operation": "x", "type": "probabilistic", "param": 7}]}]}"#,
            r#"{"default_strategies": {}}"#,
            "[",
        ] {
            assert!(StrategiesFile::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
