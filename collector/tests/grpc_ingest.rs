//! OTLP/gRPC ingest on a real socket: the OpenTelemetry Rust SDK's tonic exporter (gzip)
//! sends a trace that is then read back whole; a raw tonic client checks partial success,
//! acknowledgement after commit, the `otlp_grpc` counters, the non-retryable answer to a
//! message over `max_body_bytes` (plain and gzip-compressed), and `UNAVAILABLE` while storage
//! shuts down. Issue 16: the port's in-flight budget (`UNAVAILABLE` with `RetryInfo`), its
//! connection bound and its HTTP/2 preface timeout.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use collector::connections::ConnectionLimits;
use collector::ingest::grpc_guard::{RetryInfo, RpcStatus};
use collector::metrics::Protocol;
use collector::model::TraceId;
use collector::{AppState, IngestLimits, MemoryStore, SpanStore};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PbKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

struct Running {
    store: Arc<MemoryStore>,
    state: AppState,
    grpc: SocketAddr,
    served: common::WithGrpc,
}

impl Running {
    async fn stop(self) {
        self.served.stop().await;
    }
}

async fn start(max_body_bytes: usize) -> Running {
    start_with(max_body_bytes, collector::auth::AccessTokens::default()).await
}

async fn start_with(max_body_bytes: usize, tokens: collector::auth::AccessTokens) -> Running {
    let limits = IngestLimits {
        max_body_bytes,
        ..IngestLimits::default()
    };
    start_state(limits, |state| state.with_tokens(tokens)).await
}

/// A collector with `limits`, its state adjusted by `adjust`, serving gRPC.
async fn start_state(limits: IngestLimits, adjust: impl FnOnce(AppState) -> AppState) -> Running {
    let store = Arc::new(MemoryStore::new());
    let state = adjust(AppState::new(store.clone(), limits));
    let served = common::serve_with_grpc_on_loopback(state.clone()).await;
    Running {
        store,
        state,
        grpc: served.grpc,
        served,
    }
}

/// Issue 16 item 7: the gRPC port checks `COLLECTOR_INGEST_TOKEN` in the `authorization`
/// metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_is_checked_in_metadata() {
    let tokens = collector::auth::AccessTokens {
        ingest: Some("grpc-secret".parse().unwrap()),
        query: None,
    };
    let running = start_with(64 * 1024, tokens).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    let err = client
        .export(request(vec![span(0x41, 1)], 10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let mut with_token = tonic::Request::new(request(vec![span(0x41, 1)], 10));
    with_token
        .metadata_mut()
        .insert("authorization", "Bearer grpc-secret".parse().unwrap());
    client.export(with_token).await.unwrap();
    assert!(
        running
            .store
            .get_trace(TraceId([0x41; 16]))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_tonic_exporter_trace_reads_back_whole() {
    let running = start(IngestLimits::default().max_body_bytes).await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", running.grpc))
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .with_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("rs-grpc")
                .build(),
        )
        .build();
    let tracer = provider.tracer("spanline.grpc-test");
    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("http.response.status_code", 200)])
        .start(&tracer);
    let trace_id = root.span_context().trace_id().to_string();
    let cx = opentelemetry::Context::current_with_span(root);
    let mut db = tracer
        .span_builder("SELECT carts")
        .with_kind(SpanKind::Client)
        .start_with_context(&tracer, &cx);
    db.add_event("rows", vec![KeyValue::new("count", 3)]);
    db.end();
    let mut charge = tracer.start_with_context("charge card", &cx);
    charge.set_status(Status::error("card declined"));
    charge.end();
    cx.span().end();
    drop(cx);
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();

    let id = TraceId::from_hex(&trace_id).unwrap();
    let trace = running.store.get_trace(id).await.unwrap().expect("stored");
    assert_eq!(trace.spans.len(), 3);
    let tree = collector::assemble::assemble(&trace.spans);
    assert!(tree.complete, "{:?}", tree.warnings);
    assert_eq!(tree.roots.len(), 1);
    let root = &tree.roots[0];
    assert_eq!(root.name, "GET /checkout");
    assert_eq!(root.service, "rs-grpc");
    let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["SELECT carts", "charge card"]);
    running.stop().await;
}

fn request(spans: Vec<Span>, padding: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![PbKeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("raw-grpc".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans
                    .into_iter()
                    .map(|mut s| {
                        s.attributes.push(PbKeyValue {
                            key: "padding".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(padding))),
                            }),
                            ..Default::default()
                        });
                        s
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span(trace: u8, id: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: "POST /raw".into(),
        kind: 2,
        start_time_unix_nano: 1_763_700_000_000_000_000,
        end_time_unix_nano: 1_763_700_000_050_000_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn partial_success_commit_and_size_limit_over_a_real_connection() {
    let running = start(64 * 1024).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);

    // One valid span and one with an all-zero span id: the valid one is committed before
    // the answer, the other reported through partial success.
    let answer = client
        .export(request(vec![span(0x31, 1), span(0x31, 0)], 10))
        .await
        .unwrap()
        .into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("span 1"), "{partial:?}");
    let stored = running
        .store
        .get_trace(TraceId([0x31; 16]))
        .await
        .unwrap()
        .expect("committed before the answer");
    assert_eq!(stored.spans.len(), 1);
    let per = running.state.metrics.ingest.protocol(Protocol::OtlpGrpc);
    assert_eq!(per.spans_stored.load(Ordering::Relaxed), 1);
    assert_eq!(per.spans_rejected.load(Ordering::Relaxed), 1);

    // Over the limit after decompression (gzip shrinks the padding far below it).
    let err = client
        .export(request(vec![span(0x32, 1)], 100 * 1024))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    // Over the limit on the wire, uncompressed.
    let mut plain = TraceServiceClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    let err = plain
        .export(request(vec![span(0x33, 1)], 100 * 1024))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        running
            .store
            .get_trace(TraceId([0x33; 16]))
            .await
            .unwrap()
            .is_none()
    );
    // The connection still serves after refusals.
    let answer = plain
        .export(request(vec![span(0x34, 1)], 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);

    // Storage shutting down: UNAVAILABLE, which clients retry.
    running.store.shutdown().await;
    let err = plain
        .export(request(vec![span(0x35, 1)], 10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    running.stop().await;
}

/// Issue 16 item 3 on the gRPC port: while the in-flight budget is spent by others, an
/// export is refused with `UNAVAILABLE` and a `RetryInfo` (OTLP clients retry it), and goes
/// through once the budget is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_inflight_budget_answers_unavailable_with_retry_info() {
    let limits = IngestLimits {
        max_body_bytes: 1024 * 1024,
        max_inflight_bytes: 64 * 1024,
        ..IngestLimits::default()
    };
    let running = start_state(limits, |state| state).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    // Another request holds most of the budget.
    let mut held = running.state.inflight.reserve();
    held.grow(60 * 1024).unwrap();
    let err = client
        .export(request(vec![span(0x51, 1)], 16 * 1024))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let details = RpcStatus::decode(err.details()).unwrap();
    let retry = details
        .details
        .iter()
        .find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))
        .expect("RetryInfo");
    let retry = RetryInfo::decode(retry.value.as_slice()).unwrap();
    assert_eq!(retry.retry_delay.unwrap().seconds, 1);
    assert!(running.state.inflight.refused() >= 1);
    assert!(
        running
            .store
            .get_trace(TraceId([0x51; 16]))
            .await
            .unwrap()
            .is_none()
    );
    drop(held);
    client
        .export(request(vec![span(0x51, 1)], 16 * 1024))
        .await
        .unwrap();
    assert_eq!(running.state.inflight.used_bytes(), 0, "budget given back");
    running.stop().await;
}

/// Reads from `stream` until the server closes it; panics after 10 s.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server closed the connection within 10 s");
}

/// Issue 16 item 4 on the gRPC port: a connection that sends nothing (not even the
/// HTTP/2 preface) is closed after `header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed() {
    let running = start_state(IngestLimits::default(), |state| {
        state.with_connection_limits(ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        })
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(running.grpc).await.unwrap();
    closed_by_server(&mut silent).await;
    let mut client = connect_within(running.grpc, Duration::from_secs(10)).await;
    client
        .export(request(vec![span(0x61, 1)], 10))
        .await
        .unwrap();
    running.stop().await;
}

/// Issue 16 item 4 on the gRPC port: past `max_connections` a new connection is closed at
/// once (the preface timeout is a minute, so nothing else closes it); a place freed serves
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_bound_are_closed() {
    let running = start_state(IngestLimits::default(), |state| {
        state.with_connection_limits(ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(60),
            ..ConnectionLimits::default()
        })
    })
    .await;
    let mut client = connect_within(running.grpc, Duration::from_secs(10)).await;
    client
        .export(request(vec![span(0x62, 1)], 10))
        .await
        .unwrap();
    let mut second = tokio::net::TcpStream::connect(running.grpc).await.unwrap();
    closed_by_server(&mut second).await;
    // Freed when the first client goes away.
    drop(client);
    let mut again = connect_within(running.grpc, Duration::from_secs(10)).await;
    again
        .export(request(vec![span(0x63, 1)], 10))
        .await
        .unwrap();
    running.stop().await;
}

/// A client whose first export succeeds, retried until `within` passes (a place among the
/// connections is freed when the server notices a closed connection).
async fn connect_within(
    addr: SocketAddr,
    within: Duration,
) -> TraceServiceClient<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(mut client) = TraceServiceClient::connect(format!("http://{addr}")).await
            && client.export(request(Vec::new(), 0)).await.is_ok()
        {
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection served within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
