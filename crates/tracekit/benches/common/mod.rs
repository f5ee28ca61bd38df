//! What the benchmarks share: exporters that accept and forget every batch (so only the
//! library's own cost is measured), chunked timing, and the criterion settings of the short
//! runs.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use criterion::Criterion;
use tracekit::SpanData;
use tracekit::export::{
    BatchSpanProcessor, ExportError, ExportOutcome, FlushError, SpanExporter, SpanProcessor,
};

/// A tracekit exporter that accepts and forgets every batch.
pub struct VoidExporter;

impl SpanExporter for VoidExporter {
    async fn export(&mut self, _batch: &[Box<SpanData>]) -> Result<ExportOutcome, ExportError> {
        Ok(ExportOutcome::Accepted)
    }
}

/// An opentelemetry_sdk exporter that accepts and forgets every batch.
#[derive(Debug)]
pub struct OtelVoidExporter;

impl opentelemetry_sdk::trace::SpanExporter for OtelVoidExporter {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// A processor the bench keeps a handle on, to flush it and read its counters while the
/// tracer owns it.
pub struct SharedProcessor(pub std::sync::Arc<BatchSpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_end(&self, span: Box<SpanData>) {
        self.0.on_end(span);
    }
    fn force_flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.0.force_flush(timeout)
    }
    fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        self.0.shutdown(timeout)
    }
}

/// Half a second of warm-up, two seconds of measurement, `samples` samples.
pub fn short_runs(samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(samples)
}

/// Times `iters` calls of `f` in chunks of `chunk`, calling `flush` between chunks outside
/// the timed region (so a processor's queue never overflows into cheaper drops).
pub fn chunked(iters: u64, chunk: u64, mut f: impl FnMut(), mut flush: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        total += start.elapsed();
        flush();
        left -= n;
    }
    total
}
