//! HTTP instrumentation cost, side by side with `opentelemetry_sdk` 0.33 in the same run
//! (BENCHMARKS.md §1). Run with `cargo bench -p tracekit --bench http`.
//!
//! * `http_server_middleware`: one `GET /users/42` (with `traceparent`, `user-agent`, `host`)
//!   through the server middleware in front of a no-op service, in process, polled once
//!   (the no-op service is ready at once). `bare` is the same service without middleware.
//!   opentelemetry-rust ships no server middleware, so its column is the same steps written
//!   with its API: extract (trace context + baggage), start a SERVER span with the same
//!   attributes, run the service with the context attached, record the status code, add
//!   `traceresponse`, end.
//! * `http_client_server_loopback`: one traced client call to a local axum service over
//!   loopback (same process, current-thread runtime), the service behind the server
//!   middleware: a CLIENT span + injection, then a SERVER span on the other side. `bare`
//!   is plain reqwest against the same service without middleware.
//!
//! Every traced variant samples every span and hands it to a batch processor with a void
//! exporter, flushed between chunks of 256 requests outside the timed region.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{OtelVoidExporter, SharedProcessor, VoidExporter};

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    FutureExt as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context as OtelContext, KeyValue};
use tower::{Layer as _, Service};
use tracekit::export::{BatchConfig, BatchSpanProcessor, SpanProcessor};
use tracekit::http::{Route, TraceLayer, TracedClient};
use tracekit::propagation::Propagator;
use tracekit::{Resource, Sampler, Tracer};

const CHUNK: u64 = 256;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tracekit_tracer() -> (Tracer, Arc<BatchSpanProcessor>) {
    let processor = Arc::new(BatchSpanProcessor::new(
        VoidExporter,
        BatchConfig::default(),
    ));
    let tracer = Tracer::builder(Resource::new("bench", None, []))
        .with_sampler(Sampler::AlwaysOn)
        .with_processor(SharedProcessor(Arc::clone(&processor)))
        .build();
    (tracer, processor)
}

/// The opentelemetry_sdk side: a tracer with a batch processor, and the W3C propagators.
struct Otel {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    propagator: opentelemetry::propagation::TextMapCompositePropagator,
}

impl Otel {
    fn new() -> Otel {
        let bsp = opentelemetry_sdk::trace::BatchSpanProcessor::builder(OtelVoidExporter).build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_span_processor(bsp)
            .build();
        let tracer = provider.tracer("bench");
        let propagator = opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]);
        Otel {
            provider,
            tracer,
            propagator,
        }
    }

    /// Extracts the caller's context and starts the SERVER span, with the attributes
    /// tracekit's middleware records.
    fn start_server<B>(&self, req: &Request<B>, route: &str) -> OtelContext {
        let parent = self
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
        let method = req.method().as_str().to_owned();
        let mut attrs = vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("http.route", route.to_owned()),
        ];
        if let Some(host) = req.headers().get(http::header::HOST) {
            let host = host.to_str().unwrap();
            let (h, p) = host.rsplit_once(':').unwrap();
            attrs.push(KeyValue::new("server.address", h.to_owned()));
            attrs.push(KeyValue::new("server.port", p.parse::<i64>().unwrap()));
        }
        if let Some(ua) = req.headers().get(http::header::USER_AGENT) {
            attrs.push(KeyValue::new(
                "user_agent.original",
                ua.to_str().unwrap().to_owned(),
            ));
        }
        attrs.push(KeyValue::new("network.protocol.version", "1.1"));
        let span = self
            .tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(opentelemetry::trace::SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// Records the status, answers `traceresponse` and ends the SERVER span.
    fn end_server<B>(cx: &OtelContext, res: &mut Response<B>) {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(res.status().as_u16()),
        ));
        let sc = span.span_context();
        let value = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        res.headers_mut()
            .insert("traceresponse", HeaderValue::from_str(&value).unwrap());
        span.end();
    }
}

/// Polls a future that must be ready at once (the no-op service never waits).
fn now_or_never<F: Future>(f: F) -> F::Output {
    let mut cx = TaskContext::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the no-op service never waits"),
    }
}

fn request() -> Request<()> {
    let mut req = Request::get("/users/42")
        .header("host", "localhost:8081")
        .header("user-agent", "spanline-bench/1")
        .header("traceparent", TRACEPARENT)
        .body(())
        .unwrap();
    req.extensions_mut().insert(Route("/users/{id}"));
    req
}

fn noop_service(
    _req: Request<()>,
) -> std::future::Ready<Result<Response<&'static str>, Infallible>> {
    std::future::ready(Ok(Response::new("ok")))
}

fn server_middleware(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_server_middleware");

    let mut bare = tower::service_fn(noop_service);
    g.bench_function("bare", |b| {
        b.iter(|| {
            let res = now_or_never(bare.call(request())).unwrap();
            assert_eq!(black_box(res).status(), 200);
        })
    });

    let (tracer, processor) = tracekit_tracer();
    let mut traced =
        TraceLayer::new(tracer, Propagator::default()).layer(tower::service_fn(noop_service));
    g.bench_function("tracekit", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || {
                    let res = now_or_never(traced.call(request())).unwrap();
                    assert!(black_box(res).headers().contains_key("traceresponse"));
                },
                || processor.force_flush(Duration::from_secs(10)).unwrap(),
            )
        })
    });
    assert_eq!(processor.stats().dropped(), 0);

    let otel = Otel::new();
    let mut inner = tower::service_fn(noop_service);
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || {
                    let req = request();
                    let cx = otel.start_server(&req, "/users/{id}");
                    let fut = inner.call(req).with_context(cx.clone());
                    let mut res = now_or_never(fut).unwrap();
                    Otel::end_server(&cx, &mut res);
                    assert!(black_box(res).headers().contains_key("traceresponse"));
                },
                || otel.provider.force_flush().unwrap(),
            )
        })
    });
    otel.provider.shutdown().unwrap();
    g.finish();
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/users/42")
}

async fn otel_middleware(
    axum::extract::State(otel): axum::extract::State<Arc<Otel>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let cx = otel.start_server(&req, "/users/{id}");
    let mut res = next.run(req).with_context(cx.clone()).await;
    Otel::end_server(&cx, &mut res);
    res
}

fn client_server_loopback(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_client_server_loopback");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handler = get(|| async { "ok" });

    let url = rt.block_on(serve(Router::new().route("/users/{id}", handler.clone())));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    g.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = client.get(&url).send().await.unwrap();
                assert_eq!(res.bytes().await.unwrap(), "ok");
            })
        })
    });

    let (tracer, processor) = tracekit_tracer();
    let app = Router::new()
        .route("/users/{id}", handler.clone())
        .layer(TraceLayer::new(tracer.clone(), Propagator::default()));
    let url = rt.block_on(serve(app));
    let traced = TracedClient::new(client.clone(), tracer, Propagator::default());
    g.bench_function("tracekit", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || {
                    rt.block_on(async {
                        let res = traced.get(&url).route("/users/{id}").send().await.unwrap();
                        assert!(res.headers().contains_key("traceresponse"));
                        assert_eq!(res.bytes().await.unwrap(), "ok");
                    })
                },
                || processor.force_flush(Duration::from_secs(10)).unwrap(),
            )
        })
    });
    assert_eq!(processor.stats().dropped(), 0);

    let otel = Arc::new(Otel::new());
    let app =
        Router::new()
            .route("/users/{id}", handler)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&otel),
                otel_middleware,
            ));
    let url = rt.block_on(serve(app));
    g.bench_function("opentelemetry_sdk", |b| {
        b.iter_custom(|iters| {
            common::chunked(
                iters,
                CHUNK,
                || {
                    rt.block_on(async {
                        // The CLIENT span and injection, as a traced reqwest call does it.
                        let parent = OtelContext::current();
                        let span = otel
                            .tracer
                            .span_builder("GET /users/{id}")
                            .with_kind(opentelemetry::trace::SpanKind::Client)
                            .with_attributes([
                                KeyValue::new("http.request.method", "GET"),
                                KeyValue::new("url.full", url.clone()),
                                KeyValue::new("server.address", "127.0.0.1"),
                                KeyValue::new("url.template", "/users/{id}"),
                            ])
                            .start_with_context(&otel.tracer, &parent);
                        let cx = parent.with_span(span);
                        let mut req = client.get(&url).build().unwrap();
                        otel.propagator.inject_context(
                            &cx,
                            &mut opentelemetry_http::HeaderInjector(req.headers_mut()),
                        );
                        let res = client.execute(req).await.unwrap();
                        cx.span().set_attribute(KeyValue::new(
                            "http.response.status_code",
                            i64::from(res.status().as_u16()),
                        ));
                        cx.span().end();
                        assert!(res.headers().contains_key("traceresponse"));
                        assert_eq!(res.bytes().await.unwrap(), "ok");
                    })
                },
                || otel.provider.force_flush().unwrap(),
            )
        })
    });
    otel.provider.shutdown().unwrap();
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::short_runs(20);
    targets = server_middleware, client_server_loopback
}
criterion_main!(benches);
