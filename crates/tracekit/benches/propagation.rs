//! `traceparent` extract and inject on an `http::HeaderMap`, side by side with
//! `opentelemetry_sdk`'s `TraceContextPropagator` (through `opentelemetry-http`'s header
//! carriers) and `fastrace`'s W3C codec, in the same run (BENCHMARKS.md §1).
//! Run with `cargo bench -p tracekit --bench propagation`.
//!
//! Extract: a request's `HeaderMap` with a realistic set of headers plus `traceparent`,
//! read into a remote span context. Inject: a span context written as `traceparent` into
//! a request's `HeaderMap` that already holds the same realistic headers (replacing the
//! previous value, as a reused map would). Both sides handle trace context only (no
//! baggage) and an empty `tracestate`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use tracekit::propagation::{Baggage, Propagator};
use tracekit::{SpanContext, SpanId, TraceFlags, TraceId};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Headers a typical request carries besides the trace context.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:8080"));
    h.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("48"));
    h
}

fn with_traceparent() -> HeaderMap {
    let mut h = request_headers();
    h.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    h
}

fn extract(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent_extract");
    let headers = with_traceparent();

    let ours = Propagator::new(true, false);
    g.bench_function("tracekit", |b| {
        b.iter(|| ours.extract(black_box(&headers)).parent.unwrap())
    });

    let otel = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| {
            let cx = otel.extract(&opentelemetry_http::HeaderExtractor(black_box(&headers)));
            let sc = cx.span().span_context().clone();
            assert!(sc.is_valid());
            sc
        })
    });

    g.bench_function("fastrace", |b| {
        b.iter(|| {
            let h = black_box(&headers);
            let v = h.get("traceparent").unwrap().to_str().unwrap();
            fastrace::collector::SpanContext::decode_w3c_traceparent(v).unwrap()
        })
    });
    g.finish();
}

fn inject(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent_inject");
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();

    let ours = Propagator::new(true, false);
    let cx = SpanContext {
        trace_id,
        span_id,
        trace_flags: TraceFlags::SAMPLED,
        trace_state: Default::default(),
        is_remote: false,
    };
    let baggage = Baggage::default();
    let mut headers = with_traceparent();
    g.bench_function("tracekit", |b| {
        b.iter(|| ours.inject(black_box(&cx), &baggage, black_box(&mut headers)))
    });

    let otel = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let otel_sc = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(trace_id.to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(span_id.to_bytes()),
        opentelemetry::trace::TraceFlags::SAMPLED,
        false,
        Default::default(),
    );
    let otel_cx = opentelemetry::Context::new().with_remote_span_context(otel_sc);
    let mut headers = with_traceparent();
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| {
            otel.inject_context(
                black_box(&otel_cx),
                &mut opentelemetry_http::HeaderInjector(black_box(&mut headers)),
            )
        })
    });

    let fr = fastrace::collector::SpanContext::new(
        fastrace::collector::TraceId(trace_id.to_u128()),
        fastrace::collector::SpanId(span_id.to_u64()),
    );
    let mut headers = with_traceparent();
    g.bench_function("fastrace", |b| {
        b.iter(|| {
            let v = black_box(&fr).encode_w3c_traceparent();
            black_box(&mut headers).insert(
                http::header::HeaderName::from_static("traceparent"),
                HeaderValue::from_str(&v).unwrap(),
            );
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(30);
    targets = extract, inject
}
criterion_main!(benches);
