//! Span start+end, side by side with `opentelemetry_sdk` 0.33 and `fastrace` 0.7 in the same
//! run (BENCHMARKS.md §1). Run with `cargo bench -p tracekit --bench span`.
//!
//! Every library gets the same work: one root span named `foo`, four attributes (bool, str,
//! f64, i64) set after start, then end, with a batch processor and a void exporter attached
//! (fastrace: its global collector and a no-op reporter). Sampled spans are timed in chunks
//! of [`CHUNK`] spans; between chunks, outside the timed region, the processor is flushed so
//! that every span is really enqueued (no queue-full drops), which the bench asserts at the
//! end for tracekit and reports for the others.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{OtelVoidExporter, SharedProcessor, VoidExporter};

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use tracekit::export::{BatchConfig, BatchSpanProcessor, SpanProcessor};
use tracekit::{Resource, Sampler, Tracer};

/// Spans per timed chunk; below every queue size in play (2048), so nothing is dropped.
const CHUNK: u64 = 1024;

/// A fastrace reporter that forgets every span.
struct VoidReporter;

impl fastrace::collector::Reporter for VoidReporter {
    fn report(&mut self, _spans: Vec<fastrace::collector::SpanRecord>) {}
}

/// A tracekit tracer with a batch processor (default config: queue 2048) and a void exporter.
fn tracekit_tracer(sampler: Sampler) -> (Tracer, std::sync::Arc<BatchSpanProcessor>) {
    let processor = std::sync::Arc::new(BatchSpanProcessor::new(
        VoidExporter,
        BatchConfig::default(),
    ));
    let tracer = Tracer::builder(Resource::new("bench", None, []))
        .with_sampler(sampler)
        .with_processor(SharedProcessor(std::sync::Arc::clone(&processor)))
        .build();
    (tracer, processor)
}

fn otel_provider(
    sampler: opentelemetry_sdk::trace::Sampler,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let bsp = opentelemetry_sdk::trace::BatchSpanProcessor::builder(OtelVoidExporter).build();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(bsp)
        .build()
}

fn tracekit_span(tracer: &Tracer) {
    let mut span = tracer.span("foo").start();
    span.set_attribute("key1", false);
    span.set_attribute("key2", "hello");
    span.set_attribute("key3", 123.456);
    span.set_attribute("key4", 123i64);
    span.end();
}

fn otel_span(tracer: &opentelemetry_sdk::trace::SdkTracer) {
    let mut span = tracer.start("foo");
    span.set_attribute(opentelemetry::KeyValue::new("key1", false));
    span.set_attribute(opentelemetry::KeyValue::new("key2", "hello"));
    span.set_attribute(opentelemetry::KeyValue::new("key3", 123.456));
    span.set_attribute(opentelemetry::KeyValue::new("key4", 123i64));
    span.end();
}

fn fastrace_span(cx: fastrace::collector::SpanContext) {
    // fastrace properties are strings; the values are the same four, already formatted.
    let span = fastrace::Span::root("foo", cx).with_properties(|| {
        [
            ("key1", "false"),
            ("key2", "hello"),
            ("key3", "123.456"),
            ("key4", "123"),
        ]
    });
    drop(black_box(span));
}

fn sampled(c: &mut Criterion) {
    let mut g = c.benchmark_group("span_sampled_4_attrs_batch");

    // Timed with the processor owned by the tracer, as an application has it (no
    // wrapper in the way), flushed through the tracer.
    let tracer = Tracer::builder(Resource::new("bench", None, []))
        .with_sampler(Sampler::AlwaysOn)
        .with_processor(BatchSpanProcessor::new(
            VoidExporter,
            BatchConfig::default(),
        ))
        .build();
    g.bench_function("tracekit", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || tracekit_span(black_box(&tracer)),
                || tracer.force_flush(Duration::from_secs(10)).unwrap(),
            )
        });
    });
    // The same loop, untimed, through a handle that can read the counters: chunking keeps
    // every span (none dropped on a full queue).
    let (tracer, processor) = tracekit_tracer(Sampler::AlwaysOn);
    common::chunked(
        200_000,
        CHUNK,
        || tracekit_span(&tracer),
        || processor.force_flush(Duration::from_secs(10)).unwrap(),
    );
    let stats = processor.stats();
    assert_eq!(stats.dropped(), 0, "{stats:?}");
    eprintln!(
        "tracekit: {} spans ended, {} exported, {} dropped",
        stats.spans_ended,
        stats.exported_ok,
        stats.dropped()
    );

    let provider = otel_provider(opentelemetry_sdk::trace::Sampler::AlwaysOn);
    let otel = provider.tracer("bench");
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || otel_span(black_box(&otel)),
                || provider.force_flush().unwrap(),
            )
        });
    });
    provider.shutdown().unwrap();

    fastrace::set_reporter(VoidReporter, fastrace::collector::Config::default());
    g.bench_function("fastrace", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || fastrace_span(fastrace::collector::SpanContext::random()),
                fastrace::flush,
            )
        });
    });
    g.finish();
}

fn unsampled(c: &mut Criterion) {
    let mut g = c.benchmark_group("span_unsampled");

    let (tracer, _processor) = tracekit_tracer(Sampler::AlwaysOff);
    g.bench_function("tracekit", |b| b.iter(|| tracekit_span(black_box(&tracer))));

    let provider = otel_provider(opentelemetry_sdk::trace::Sampler::AlwaysOff);
    let otel = provider.tracer("bench");
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| otel_span(black_box(&otel)))
    });
    provider.shutdown().unwrap();

    g.bench_function("fastrace", |b| {
        b.iter(|| fastrace_span(fastrace::collector::SpanContext::random().sampled(false)))
    });
    g.finish();
}

/// The clock reads a span pays twice: the system wall clock (what opentelemetry_sdk reads)
/// and the TSC clock tracekit reads (`fastant`, as fastrace does).
fn clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock_read");
    g.bench_function("SystemTime::now", |b| b.iter(std::time::SystemTime::now));
    g.bench_function("fastant::Instant::now", |b| b.iter(fastant::Instant::now));
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(30);
    targets = sampled, unsampled, clock
}
criterion_main!(benches);
