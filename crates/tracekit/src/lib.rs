//! # tracekit
//!
//! Spanline's tracing library: W3C Trace Context Level 2 and Baggage propagation, spans
//! with the OpenTelemetry data model, head samplers, a bounded batch span processor with an
//! OTLP/HTTP protobuf exporter, a tower server middleware and a traced `reqwest` client.
//!
//! ```no_run
//! use tracekit::{Tracer, TracerConfig};
//!
//! // Reads OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...
//! let config = TracerConfig::from_env("order");
//! let tracer = Tracer::from_config(&config).expect("exporter");
//! let mut span = tracer.span("INSERT orders").kind(tracekit::SpanKind::Client).start();
//! span.set_attribute("db.system.name", "sqlite");
//! span.end();
//! tracer.shutdown(std::time::Duration::from_secs(5)).ok();
//! ```
//!
//! Environment variables (OpenTelemetry SDK configuration specification):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `OTEL_SERVICE_NAME` | `service.name` | the binary's service name |
//! | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes, `k=v,k2=v2` | none |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; spans go to `<endpoint>/v1/traces` | `http://localhost:4318` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full traces URL, used as is | unset |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `ratelimiting`, `jaeger_remote`, `parentbased_*` | `parentbased_always_on` |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio for `*traceidratio`, 0..=1; traces/s for `*ratelimiting`; `endpoint=…,pollingIntervalMs=…,initialSamplingRate=…` for `*jaeger_remote` | 1.0; 100; see [`RemoteConfig`] |
//! | `OTEL_BSP_SCHEDULE_DELAY` | batch delay, ms | 5000 |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | queue capacity, spans | 2048 |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | batch size, spans | 512 |
//! | `OTEL_BSP_EXPORT_TIMEOUT` | one export attempt, ms | 30000 |
//! | `OTEL_PROPAGATORS` | `tracecontext`, `baggage`, `none` | `tracecontext,baggage` |

//! # Where things are
//!
//! The tracing API is flat at the crate root: [`Tracer`], [`Span`], [`SpanBuilder`],
//! [`SharedSpan`], [`SpanData`] and its parts, [`SpanContext`] and the ids, [`Context`] and
//! [`current_span`], [`Resource`], [`Sampler`] and its parts, [`TracerConfig`]. Three public modules hold
//! the specialist surfaces, each a concept of the field that a reader looks for by name:
//! [`propagation`] (W3C Trace Context and Baggage: [`propagation::Propagator`],
//! [`propagation::Baggage`], [`propagation::TraceState`], header names, parsers),
//! [`export`] (span processors and exporters, the batch processor, OTLP, in-memory) and
//! [`http`] (the server middleware and the traced client). With the cargo feature `nats`,
//! `messaging` holds PRODUCER/CONSUMER spans over NATS JetStream. Every item has exactly
//! one path.

mod clock;
mod config;
mod context;
pub mod export;
pub mod http;
mod id;
#[cfg(feature = "nats")]
pub mod messaging;
mod pool;
pub mod propagation;
mod resource;
mod sampler;
mod span;
mod span_context;
mod tracer;

pub use config::{ConfigError, TracerConfig};
pub use context::{Context, current_span};
pub use id::{IdError, SpanId, TraceFlags, TraceId};
pub use resource::Resource;
pub use sampler::{
    DEFAULT_TRACES_PER_S, Decision, JaegerRemote, RateLimiter, RemoteConfig, Rule, SAMPLER_PARAM,
    SAMPLER_TYPE, Sampler,
};
pub use span::{
    Event, Key, KeyValue, Link, SharedSpan, Span, SpanBuilder, SpanData, SpanKind, Status, Value,
    now_unix_nano,
};
pub use span_context::SpanContext;
pub use tracer::{Tracer, TracerBuilder};
