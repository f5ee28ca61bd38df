//! Getting finished spans out of the process: the processor and exporter traits, the
//! batch span processor, the OTLP/HTTP exporter and an in-memory exporter for tests.
//!
//! Shapes follow the OpenTelemetry SDK specification (§Span processor, §Span exporter):
//! a [`SpanProcessor`] receives each finished sampled span synchronously and must never
//! block; a [`SpanExporter`] sends one batch at a time and classifies the outcome so the
//! processor can decide to retry (OTLP/HTTP §Retryable response codes: 429, 502, 503, 504
//! and connection failures) or drop and count.

use std::future::Future;
use std::time::Duration;

use crate::span::SpanData;

mod batch;
mod memory;
mod otlp;

pub use batch::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, BatchStats, OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY,
};
pub use memory::InMemoryExporter;
pub use otlp::{
    DEFAULT_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OtlpConfigError,
    OtlpHttpExporter, parse_otlp_headers,
};

/// Receives finished, sampled spans. Implementations must be cheap and non-blocking in
/// [`on_end`](SpanProcessor::on_end): it runs on the request path.
pub trait SpanProcessor: Send + Sync + 'static {
    /// Takes ownership of a finished span. Never blocks; may drop (and count) the span.
    ///
    /// The span comes boxed so it moves as one pointer; the
    /// [`BatchSpanProcessor`] recycles the box for a later span once it is exported.
    fn on_end(&self, span: Box<SpanData>);

    /// Exports every span ended before this call, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`FlushError::Timeout`] if the deadline passed first, [`FlushError::AlreadyShutdown`]
    /// if the processor was already shut down.
    fn force_flush(&self, timeout: Duration) -> Result<(), FlushError>;

    /// Flushes everything queued and stops, waiting at most `timeout`. Later spans are dropped.
    ///
    /// # Errors
    /// As [`force_flush`](SpanProcessor::force_flush).
    fn shutdown(&self, timeout: Duration) -> Result<(), FlushError>;
}

/// What happened to one exported batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportOutcome {
    /// Every span was accepted.
    Accepted,
    /// The receiver accepted the batch but rejected `rejected` spans (OTLP partial success).
    /// Not retried.
    PartiallyRejected {
        /// Spans the receiver rejected.
        rejected: u64,
        /// The receiver's explanation.
        message: String,
    },
}

/// Why a batch could not be exported: what [`SpanExporter::export`] can return.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A transient failure (HTTP 429, 502, 503, 504, connection refused or reset, or the
    /// export timeout elapsed): the batch may be retried, no sooner than `retry_after`.
    #[error("retryable export failure: {reason}")]
    Retryable {
        /// What failed.
        reason: String,
        /// The receiver's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A permanent failure (any other 4xx/5xx, an unencodable batch): the batch is dropped.
    #[error("export rejected: {reason}")]
    Rejected {
        /// What failed.
        reason: String,
    },
}

/// Why a flush or a shutdown did not complete: what [`SpanProcessor::force_flush`],
/// [`SpanProcessor::shutdown`] and the tracer's `force_flush` / `shutdown` can return
/// (opentelemetry-rust's error-handling ADR: each operation's error lists only its own
/// failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The deadline passed first; spans still queued stay queued (flush) or are counted as
    /// dropped at shutdown.
    #[error("timed out")]
    Timeout,
    /// The processor is already shut down.
    #[error("already shut down")]
    AlreadyShutdown,
}

/// Sends batches of spans somewhere. Called by one worker at a time (`&mut self`); the
/// processor owns retry, backoff and the overall deadline.
pub trait SpanExporter: Send + 'static {
    /// Exports one batch. The spans are boxed as the tracer recorded them: the processor
    /// hands over the records themselves, without copying them into a new list.
    ///
    /// # Errors
    /// [`ExportError::Retryable`] or [`ExportError::Rejected`].
    fn export(
        &mut self,
        batch: &[Box<SpanData>],
    ) -> impl Future<Output = Result<ExportOutcome, ExportError>> + Send;
}
