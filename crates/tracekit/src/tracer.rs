//! The [`Tracer`]: the process-wide parts of tracing (resource, sampler, processor) and the
//! entry point that starts spans ([`Tracer::span`]).
//!
//! A tracer is cheap to clone and is passed through application state: no global
//! singleton. Build one from the `OTEL_*` variables with [`Tracer::from_config`], or by hand
//! with [`Tracer::builder`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, TracerConfig};
use crate::export::{BatchSpanProcessor, FlushError, OtlpHttpExporter, SpanProcessor};
use crate::resource::Resource;
use crate::sampler::Sampler;
use crate::span::SpanBuilder;

pub(crate) struct Inner {
    pub(crate) resource: Resource,
    pub(crate) sampler: Sampler,
    pub(crate) processor: Option<Box<dyn SpanProcessor>>,
}

/// Starts spans. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Tracer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("service", &self.inner.resource.service_name())
            .field("sampler", &self.inner.sampler)
            .field("exporting", &self.inner.processor.is_some())
            .finish()
    }
}

/// Builds a [`Tracer`].
pub struct TracerBuilder {
    resource: Resource,
    sampler: Sampler,
    processor: Option<Box<dyn SpanProcessor>>,
}

impl TracerBuilder {
    /// Sets the sampler (default `parentbased_always_on`).
    #[must_use]
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// Sets the processor that receives finished sampled spans.
    #[must_use]
    pub fn with_processor(mut self, processor: impl SpanProcessor) -> Self {
        self.processor = Some(Box::new(processor));
        self
    }

    /// Builds the tracer.
    pub fn build(self) -> Tracer {
        Tracer {
            inner: Arc::new(Inner {
                resource: self.resource,
                sampler: self.sampler,
                processor: self.processor,
            }),
        }
    }
}

impl Tracer {
    /// A builder for a tracer describing `resource`.
    pub fn builder(resource: Resource) -> TracerBuilder {
        TracerBuilder {
            resource,
            sampler: Sampler::default(),
            processor: None,
        }
    }

    /// A tracer that records nothing but still propagates context (and passes a caller's
    /// sampled flag on unchanged).
    pub fn noop(service_name: &'static str) -> Tracer {
        Tracer::builder(Resource::new(service_name, None, []))
            .with_sampler(Sampler::parent_based(Sampler::AlwaysOff))
            .build()
    }

    /// The resource this tracer reports.
    pub fn resource(&self) -> &Resource {
        &self.inner.resource
    }

    /// Starts building a span named `name`, by default an INTERNAL child of the current span.
    pub fn span(&self, name: impl Into<Cow<'static, str>>) -> SpanBuilder<'_> {
        SpanBuilder::new(self, name.into())
    }

    /// Exports every span ended so far, waiting at most `timeout`.
    ///
    /// # Errors
    /// The processor's [`FlushError`]; `Ok` when there is no processor.
    pub fn force_flush(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.inner.processor {
            Some(p) => p.force_flush(timeout),
            None => Ok(()),
        }
    }

    /// Flushes and stops the processor, waiting at most `timeout`. Call once at exit.
    ///
    /// # Errors
    /// The processor's [`FlushError`]; `Ok` when there is no processor.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.inner.processor {
            Some(p) => p.shutdown(timeout),
            None => Ok(()),
        }
    }
}

impl Tracer {
    /// A tracer exporting to OTLP/HTTP through a batch processor, as `config` says.
    ///
    /// # Errors
    /// [`ConfigError::Exporter`] when the exporter cannot be built.
    pub fn from_config(config: &TracerConfig) -> Result<Tracer, ConfigError> {
        let builder = Tracer::builder(config.resource.clone()).with_sampler(config.sampler.clone());
        if config.exporter_disabled {
            return Ok(builder.build());
        }
        let exporter = OtlpHttpExporter::new(
            config.traces_endpoint.clone(),
            config.resource.clone(),
            config.batch.export_timeout(),
        )?
        .with_headers(&config.headers)?;
        Ok(builder
            .with_processor(BatchSpanProcessor::new(exporter, config.batch.clone()))
            .build())
    }
}
