//! Configuration from the standard OpenTelemetry environment variables (OpenTelemetry SDK
//! environment variable specification), read through a lookup function so tests never
//! touch the process environment.

use crate::export::{
    BatchConfig, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OtlpConfigError,
    OtlpHttpExporter, parse_otlp_headers,
};
use crate::propagation::Propagator;
use crate::resource::Resource;
use crate::sampler::Sampler;

/// Why [`Tracer::from_config`](crate::Tracer::from_config) could not build a tracer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OTLP exporter could not be built (e.g. a malformed endpoint URL).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] OtlpConfigError),
}

/// Everything a [`Tracer`](crate::Tracer) needs, as read from `OTEL_*` variables.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    /// The resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Resource,
    /// The sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampler: Sampler,
    /// Which propagators run (`OTEL_PROPAGATORS`).
    pub propagator: Propagator,
    /// The batch processor settings (`OTEL_BSP_*`).
    pub batch: BatchConfig,
    /// Where spans are posted: the full URL including `/v1/traces`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`).
    pub traces_endpoint: String,
    /// Headers sent with every export request (`OTEL_EXPORTER_OTLP_HEADERS`, then
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, whose keys win), values percent-decoded.
    pub headers: Vec<(String, String)>,
    /// Whether export is off (`OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`).
    pub exporter_disabled: bool,
    /// Values that were set but could not be used, one sentence each. Report them: a flag
    /// that silently does nothing is worse than an error.
    pub warnings: Vec<String>,
}

impl TracerConfig {
    /// Reads the process environment.
    pub fn from_env(default_service_name: &'static str) -> TracerConfig {
        TracerConfig::from_lookup(default_service_name, |k| std::env::var(k).ok())
    }

    /// Reads variables through `lookup` (a missing variable is `None`).
    pub fn from_lookup(
        default_service_name: &'static str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> TracerConfig {
        let mut warnings = Vec::new();
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());

        let (extra, bad) = get("OTEL_RESOURCE_ATTRIBUTES")
            .map(|v| Resource::parse_env_attributes(&v))
            .unwrap_or_default();
        for b in bad {
            warnings.push(format!(
                "OTEL_RESOURCE_ATTRIBUTES member {b:?} is not key=value; ignored"
            ));
        }
        let service_name = get("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_owned())
            .or_else(|| {
                extra
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| match &kv.value {
                        crate::span::Value::Str(s) => s.to_string(),
                        _ => default_service_name.to_owned(),
                    })
            })
            .unwrap_or_else(|| default_service_name.to_owned());
        // The build's version; `OTEL_RESOURCE_ATTRIBUTES=service.version=...` overrides it.
        let version = env!("CARGO_PKG_VERSION");
        let resource = Resource::new(service_name, Some(version), extra);

        let (sampler, w) = Sampler::from_env_for_service(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            resource.service_name(),
        );
        warnings.extend(w);

        let propagator = match get("OTEL_PROPAGATORS") {
            Some(v) => {
                let (p, unknown) = Propagator::from_env_value(&v);
                for u in unknown {
                    warnings.push(format!(
                        "OTEL_PROPAGATORS entry {u:?} is not supported; ignored"
                    ));
                }
                p
            }
            None => Propagator::default(),
        };

        let (batch, w) = BatchConfig::from_lookup(get);
        warnings.extend(w);
        let traces_endpoint = OtlpHttpExporter::traces_endpoint_from_lookup(get);
        let mut headers: Vec<(String, String)> = Vec::new();
        for variable in [
            OTEL_EXPORTER_OTLP_HEADERS,
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        ] {
            let (pairs, bad) = parse_otlp_headers(&get(variable).unwrap_or_default());
            for b in bad {
                warnings.push(format!("{variable} member {b:?} is not key=value; ignored"));
            }
            for (key, value) in pairs {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                headers.push((key, value));
            }
        }

        let exporter_disabled = get("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || match get("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
                None => false,
                Some(v) if v == "otlp" => false,
                Some(v) if v == "none" => true,
                Some(v) => {
                    warnings.push(format!(
                        "OTEL_TRACES_EXPORTER={v:?} is not supported; using otlp"
                    ));
                    false
                }
            };

        TracerConfig {
            resource,
            sampler,
            propagator,
            batch,
            traces_endpoint,
            headers,
            exporter_disabled,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn config(vars: &[(&str, &str)]) -> TracerConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TracerConfig::from_lookup("order", |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_sdk_specification() {
        let c = config(&[]);
        assert_eq!(c.resource.service_name(), "order");
        assert_eq!(c.sampler, Sampler::default());
        assert_eq!(c.traces_endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.batch.scheduled_delay(), Duration::from_millis(5000));
        assert_eq!(c.batch.max_queue_size(), 2048);
        assert!(!c.exporter_disabled);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn otlp_headers_are_read_and_the_traces_variable_wins() {
        let c = config(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20generic,x-a=1",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20abc,broken",
            ),
        ]);
        assert_eq!(
            c.headers,
            vec![
                ("x-a".to_owned(), "1".to_owned()),
                ("authorization".to_owned(), "Bearer abc".to_owned())
            ]
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn every_variable_is_honoured() {
        let c = config(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
            ("OTEL_PROPAGATORS", "tracecontext"),
        ]);
        assert_eq!(c.resource.service_name(), "checkout");
        assert!(
            c.resource
                .attributes()
                .iter()
                .any(|kv| kv.key == "deployment.environment.name")
        );
        assert_eq!(c.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.sampler, Sampler::trace_id_ratio(0.25));
        assert_eq!(c.batch.scheduled_delay(), Duration::from_millis(200));
        assert_eq!(c.batch.max_queue_size(), 100);
        assert_eq!(c.batch.max_export_batch_size(), 10);
        assert_eq!(c.batch.export_timeout(), Duration::from_millis(1000));
        assert!(c.propagator.trace_context() && !c.propagator.baggage());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let t = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://x:1/custom")]);
        assert_eq!(t.traces_endpoint, "http://x:1/custom");
    }

    #[test]
    fn service_version_comes_from_the_build_or_resource_attributes() {
        let version = |c: &TracerConfig| {
            c.resource
                .attributes()
                .iter()
                .find(|kv| kv.key == "service.version")
                .map(|kv| kv.value.clone())
        };
        assert_eq!(
            version(&config(&[])),
            Some(crate::span::Value::from(
                env!("CARGO_PKG_VERSION").to_owned()
            ))
        );
        let c = config(&[("OTEL_RESOURCE_ATTRIBUTES", "service.version=9.9.9")]);
        assert_eq!(
            version(&c),
            Some(crate::span::Value::from("9.9.9".to_owned()))
        );
    }

    #[test]
    fn remote_and_rate_limiting_samplers_from_the_environment() {
        let c = config(&[
            ("OTEL_SERVICE_NAME", "payment"),
            ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                "endpoint=http://collector:5778/api/sampling,pollingIntervalMs=2000,initialSamplingRate=0.5",
            ),
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let Sampler::ParentBased { root } = &c.sampler else {
            panic!("{:?}", c.sampler)
        };
        let Sampler::JaegerRemote(remote) = &**root else {
            panic!("{root:?}")
        };
        assert_eq!(
            remote.config().url(),
            "http://collector:5778/api/sampling?service=payment"
        );
        assert_eq!(remote.config().polling_interval, Duration::from_secs(2));
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "ratelimiting"),
            ("OTEL_TRACES_SAMPLER_ARG", "7.5"),
        ]);
        assert_eq!(c.sampler, Sampler::rate_limiting(7.5));
    }

    #[test]
    fn unusable_values_are_reported_not_ignored() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "xray"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("OTEL_PROPAGATORS", "tracecontext,b3"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
        ]);
        assert_eq!(c.warnings.len(), 5, "{:#?}", c.warnings);
        assert!(config(&[("OTEL_TRACES_EXPORTER", "none")]).exporter_disabled);
        assert!(config(&[("OTEL_SDK_DISABLED", "true")]).exporter_disabled);
    }
}
