//! Telemetry setup for a demo service, from the standard `OTEL_*` environment variables.

use std::time::Duration;

use tracekit::export::InMemoryExporter;
use tracekit::http::TracedClient;
use tracekit::propagation::Propagator;
use tracekit::{Resource, Tracer, TracerConfig};

/// The total timeout of a call from one demo service to another: longer than the largest
/// injected delay ([`MAX_DELAY_MS`](crate::MAX_DELAY_MS)).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(35);

/// The tracer and propagator a service uses for everything. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// Starts spans; exports through the batch processor.
    pub tracer: Tracer,
    /// Reads and writes `traceparent`, `tracestate`, `baggage`.
    pub propagator: Propagator,
}

impl Telemetry {
    /// Reads the `OTEL_*` variables (service name default `default_service_name`), prints
    /// a warning for each value it could not use, and starts the exporter.
    ///
    /// # Errors
    /// The exporter could not be built (e.g. an unparsable endpoint URL).
    pub fn from_env(
        default_service_name: &'static str,
    ) -> Result<Telemetry, tracekit::ConfigError> {
        let config = TracerConfig::from_env(default_service_name);
        for w in &config.warnings {
            eprintln!("{default_service_name}: warning: {w}");
        }
        let tracer = Tracer::from_config(&config)?;
        Ok(Telemetry {
            tracer,
            propagator: config.propagator,
        })
    }

    /// Telemetry that records nothing (for tests that do not look at spans).
    pub fn noop(service_name: &'static str) -> Telemetry {
        Telemetry {
            tracer: Tracer::noop(service_name),
            propagator: Propagator::default(),
        }
    }

    /// Telemetry that records every span in memory, for tests that assert spans: the
    /// tracer samples everything and hands finished spans straight to the returned exporter.
    pub fn in_memory(service_name: &'static str) -> (Telemetry, InMemoryExporter) {
        let exporter = InMemoryExporter::default();
        let tracer = Tracer::builder(Resource::new(service_name, None, []))
            .with_processor(exporter.clone())
            .build();
        let telemetry = Telemetry {
            tracer,
            propagator: Propagator::default(),
        };
        (telemetry, exporter)
    }

    /// The `service.name` of this process.
    pub fn service_name(&self) -> &str {
        self.tracer.resource().service_name()
    }
}

impl Telemetry {
    /// The traced HTTP client services use to call each other: 1 s connect timeout,
    /// [`CALL_TIMEOUT`] total (longer than the largest injected delay), no proxy from the
    /// environment.
    pub fn http_client(&self) -> TracedClient {
        self.http_client_with_timeout(CALL_TIMEOUT)
    }

    /// [`http_client`](Self::http_client) with a total timeout of `timeout` per call; a call
    /// that takes longer fails as a timeout (`CallError::Timeout`, a 504).
    pub fn http_client_with_timeout(&self, timeout: Duration) -> TracedClient {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(timeout)
            .build()
            // Building only fails when a TLS backend cannot start; this client has none.
            .unwrap_or_default();
        TracedClient::new(client, self.tracer.clone(), self.propagator)
    }
}
