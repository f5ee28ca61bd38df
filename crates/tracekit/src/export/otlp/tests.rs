//! Tests of the OTLP/HTTP exporter against a real HTTP server on 127.0.0.1:0.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap as AxumHeaders;
use axum::response::Response;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue as PbKeyValue, any_value,
};
use opentelemetry_proto::tonic::trace::v1::{Span as PbSpan, Status as PbStatus, span};
use prost::Message;
use reqwest::header::HeaderValue;

use super::*;
use crate::export::{BatchConfig, BatchSpanProcessor, SpanProcessor};
use crate::id::{SpanId, TraceFlags, TraceId};
use crate::propagation::TraceState;
use crate::span::{Event, KeyValue, Link, SpanKind, Status, Value};

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// A fake OTLP receiver.

/// What the fake receiver answers to one request.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Never answer (to exercise the client timeout).
    stall: bool,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            stall: false,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

#[derive(Debug)]
struct Received {
    headers: AxumHeaders,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    /// Serves `POST /v1/traces` on 127.0.0.1:0; answers with `replies` in turn, then 200.
    async fn start(replies: impl IntoIterator<Item = Reply>) -> (Receiver, String) {
        Receiver::start_on("127.0.0.1:0", replies).await
    }

    /// As [`Receiver::start`], on a given address.
    async fn start_on(addr: &str, replies: impl IntoIterator<Item = Reply>) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.replies.lock().unwrap().extend(replies);
        let app = Router::new()
            .route("/v1/traces", post(handle))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, format!("http://{addr}/v1/traces"))
    }

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| ExportTraceServiceRequest::decode(r.body.as_ref()).unwrap())
            .collect()
    }

    /// Spans received, over all requests.
    fn span_count(&self) -> usize {
        self.requests()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn handle(State(receiver): State<Receiver>, headers: AxumHeaders, body: Bytes) -> Response {
    receiver
        .requests
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let reply = receiver
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::status(200));
    if reply.stall {
        std::future::pending::<()>().await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

// ---------------------------------------------------------------------------------------
// Fixtures.

fn resource() -> Resource {
    Resource::new(
        "checkout",
        Some("1.2.3"),
        [KeyValue::new("deployment.environment.name", "test")],
    )
}

fn exporter(url: &str) -> OtlpHttpExporter {
    OtlpHttpExporter::new(url.to_owned(), resource(), TIMEOUT).unwrap()
}

/// Decodes hex independently of `TraceId`/`SpanId`, to check the byte order.
fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn str_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    })
}

fn pb_kv(key: &str, value: any_value::Value) -> PbKeyValue {
    PbKeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A server span with a remote parent and every field set.
fn rich_span() -> SpanData {
    SpanData {
        trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        parent_span_id: SpanId::from_hex("53995c3f42cd8ad8").unwrap(),
        parent_is_remote: true,
        trace_flags: TraceFlags::from_u8(0x03),
        trace_state: TraceState::default(),
        name: Cow::Borrowed("GET /orders/{id}"),
        kind: SpanKind::Server,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_500_000,
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 500i64),
            KeyValue::new("order.total", 12.5f64),
            KeyValue::new("cache.hit", false),
            KeyValue::new(
                "order.items",
                Value::StrArray(vec![Cow::Borrowed("a"), Cow::Owned("b".to_owned())]),
            ),
        ],
        dropped_attributes_count: 3,
        events: vec![Event {
            name: Cow::Borrowed("exception"),
            time_unix_nano: 1_700_000_000_001_000_000,
            attributes: vec![KeyValue::new("exception.type", "Timeout")],
        }],
        dropped_events_count: 2,
        links: vec![Link {
            trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            span_id: SpanId::from_hex("b7ad6b7169203331").unwrap(),
            trace_state: TraceState::default(),
            trace_flags: TraceFlags::SAMPLED,
            attributes: vec![KeyValue::new("link.reason", "retry-of")],
        }],
        status: Status::error("upstream timed out"),
    }
}

fn rich_span_expected() -> PbSpan {
    PbSpan {
        trace_id: hex("4bf92f3577b34da6a3ce929d0e0e4736"),
        span_id: hex("00f067aa0ba902b7"),
        trace_state: String::new(),
        parent_span_id: hex("53995c3f42cd8ad8"),
        flags: 0x03 | 0x100 | 0x200,
        name: "GET /orders/{id}".to_owned(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_500_000,
        attributes: vec![
            pb_kv(
                "http.request.method",
                any_value::Value::StringValue("GET".to_owned()),
            ),
            pb_kv("http.response.status_code", any_value::Value::IntValue(500)),
            pb_kv("order.total", any_value::Value::DoubleValue(12.5)),
            pb_kv("cache.hit", any_value::Value::BoolValue(false)),
            pb_kv(
                "order.items",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![str_value("a").unwrap(), str_value("b").unwrap()],
                }),
            ),
        ],
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_001_000_000,
            name: "exception".to_owned(),
            attributes: vec![pb_kv(
                "exception.type",
                any_value::Value::StringValue("Timeout".to_owned()),
            )],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 2,
        links: vec![span::Link {
            trace_id: hex("0af7651916cd43dd8448eb211c80319c"),
            span_id: hex("b7ad6b7169203331"),
            trace_state: String::new(),
            attributes: vec![pb_kv(
                "link.reason",
                any_value::Value::StringValue("retry-of".to_owned()),
            )],
            dropped_attributes_count: 0,
            flags: 0x01,
        }],
        dropped_links_count: 0,
        status: Some(PbStatus {
            message: "upstream timed out".to_owned(),
            code: 2,
        }),
    }
}

/// A root client span with an OK status, and flags carrying unknown bits.
fn root_span() -> (SpanData, PbSpan) {
    let data = SpanData {
        trace_id: TraceId::from_hex("000000000000000000000000000000ff").unwrap(),
        span_id: SpanId::from_hex("0000000000000001").unwrap(),
        trace_flags: TraceFlags::from_u8(0xfd),
        name: Cow::Borrowed("SELECT orders"),
        kind: SpanKind::Client,
        start_time_unix_nano: 5,
        end_time_unix_nano: 9,
        status: Status::Ok,
        ..SpanData::default()
    };
    let expected = PbSpan {
        trace_id: hex("000000000000000000000000000000ff"),
        span_id: hex("0000000000000001"),
        parent_span_id: Vec::new(),
        flags: 0x01 | 0x100, // 0xfd masked to the known bits; parent known to be local
        name: "SELECT orders".to_owned(),
        kind: 3,
        start_time_unix_nano: 5,
        end_time_unix_nano: 9,
        status: Some(PbStatus {
            message: String::new(),
            code: 1,
        }),
        ..Default::default()
    };
    (data, expected)
}

/// An internal span with an unset status: no `status` message at all.
fn unset_span() -> (SpanData, PbSpan) {
    let (mut data, mut expected) = root_span();
    data.kind = SpanKind::Internal;
    data.status = Status::Unset;
    data.trace_flags = TraceFlags::default();
    expected.kind = 1;
    expected.status = None;
    expected.flags = 0x100;
    (data, expected)
}

// ---------------------------------------------------------------------------------------
// Encoding.

#[tokio::test]
async fn posts_one_protobuf_request_with_every_field_mapped() {
    let (receiver, url) = Receiver::start([]).await;
    let mut exporter = exporter(&url);
    let (root, root_expected) = root_span();
    let (unset, unset_expected) = unset_span();
    let outcome = exporter
        .export(&[Box::new(rich_span()), Box::new(root), Box::new(unset)])
        .await;
    assert_eq!(outcome, Ok(ExportOutcome::Accepted));

    let raw = receiver.requests.lock().unwrap().remove(0);
    assert_eq!(raw.headers["content-type"], "application/x-protobuf");
    assert!(
        raw.headers.get("traceparent").is_none(),
        "the exporter's own request is not traced"
    );
    let request = ExportTraceServiceRequest::decode(raw.body.as_ref()).unwrap();

    assert_eq!(request.resource_spans.len(), 1);
    let rs = &request.resource_spans[0];
    let res = rs.resource.as_ref().expect("resource");
    let expected_resource: Vec<PbKeyValue> = resource()
        .attributes()
        .iter()
        .map(|kv| match &kv.value {
            Value::Str(s) => pb_kv(&kv.key, any_value::Value::StringValue(s.to_string())),
            other => panic!("unexpected resource value {other:?}"),
        })
        .filter(|kv| kv.key != "service.instance.id") // random per Resource::new
        .collect();
    let got_resource: Vec<PbKeyValue> = res
        .attributes
        .iter()
        .filter(|kv| kv.key != "service.instance.id")
        .cloned()
        .collect();
    assert_eq!(got_resource, expected_resource);
    assert_eq!(res.attributes[0].value, str_value("checkout"));
    assert!(
        res.attributes
            .iter()
            .any(|kv| kv.key == "service.instance.id")
    );

    assert_eq!(rs.scope_spans.len(), 1);
    let ss = &rs.scope_spans[0];
    let scope = ss.scope.as_ref().expect("scope");
    assert_eq!(scope.name, "tracekit");
    assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(ss.spans.len(), 3);
    assert_eq!(ss.spans[0], rich_span_expected());
    assert_eq!(ss.spans[1], root_expected);
    assert_eq!(ss.spans[2], unset_expected);
}

#[tokio::test]
async fn the_resource_and_scope_are_reused_in_every_request() {
    let (receiver, url) = Receiver::start([]).await;
    let mut exporter = exporter(&url);
    for _ in 0..3 {
        assert_eq!(
            exporter.export(&[Box::new(rich_span())]).await,
            Ok(ExportOutcome::Accepted)
        );
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r, &requests[0]);
        let rs = &r.resource_spans[0];
        assert!(!rs.resource.as_ref().unwrap().attributes.is_empty());
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "tracekit");
    }
}

/// Issue 16 item 7: `OTEL_EXPORTER_OTLP_HEADERS` (percent-decoded) goes out with every
/// export, e.g. the bearer token a collector with `COLLECTOR_INGEST_TOKEN` asks for.
#[tokio::test]
async fn configured_headers_are_sent_with_every_export() {
    let (receiver, url) = Receiver::start([]).await;
    let (headers, bad) =
        super::parse_otlp_headers(" Authorization=Bearer%20abc ,x-tenant=a%2Cb,oops");
    assert_eq!(bad, vec!["oops".to_owned()]);
    let mut exporter = exporter(&url).with_headers(&headers).unwrap();
    for _ in 0..2 {
        assert_eq!(
            exporter.export(&[Box::new(rich_span())]).await,
            Ok(ExportOutcome::Accepted)
        );
    }
    for raw in receiver.requests.lock().unwrap().iter() {
        assert_eq!(raw.headers["authorization"], "Bearer abc");
        assert_eq!(raw.headers["x-tenant"], "a,b");
    }
    let bad_name = [("bad name".to_owned(), "v".to_owned())];
    assert!(matches!(
        super::OtlpHttpExporter::new(url, resource(), TIMEOUT)
            .unwrap()
            .with_headers(&bad_name),
        Err(OtlpConfigError::InvalidHeader { .. })
    ));
}

#[tokio::test]
async fn an_empty_batch_sends_nothing() {
    let (receiver, url) = Receiver::start([]).await;
    let mut exporter = exporter(&url);
    assert_eq!(exporter.export(&[]).await, Ok(ExportOutcome::Accepted));
    assert_eq!(receiver.count(), 0);
}

// ---------------------------------------------------------------------------------------
// Response classification, over HTTP.

async fn export_against(reply: Reply) -> Result<ExportOutcome, ExportError> {
    let (receiver, url) = Receiver::start([reply]).await;
    let outcome = exporter(&url).export(&[Box::new(rich_span())]).await;
    assert_eq!(receiver.count(), 1, "exactly one request per export call");
    outcome
}

#[tokio::test]
async fn status_503_with_retry_after_seconds_is_retryable() {
    let outcome = export_against(Reply::status(503).header("retry-after", "7")).await;
    match outcome {
        Err(ExportError::Retryable {
            reason,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(reason.contains("503"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn status_429_with_an_http_date_is_retryable() {
    let at = SystemTime::now() + Duration::from_secs(30);
    let reply = Reply::status(429).header("retry-after", httpdate::fmt_http_date(at));
    match export_against(reply).await {
        Err(ExportError::Retryable {
            retry_after: Some(d),
            ..
        }) => {
            // HTTP-dates have one-second resolution.
            assert!(
                d > Duration::from_secs(27) && d <= Duration::from_secs(30),
                "{d:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn status_502_and_504_are_retryable_without_retry_after() {
    for status in [502, 504] {
        match export_against(Reply::status(status)).await {
            Err(ExportError::Retryable { retry_after, .. }) => assert_eq!(retry_after, None),
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn status_400_is_rejected_with_a_body_excerpt() {
    let reply = Reply::status(400)
        .header("content-type", "text/plain")
        .body("invalid span id length\n");
    match export_against(reply).await {
        Err(ExportError::Rejected { reason }) => {
            assert_eq!(reason, "HTTP 400 Bad Request: invalid span id length");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_protobuf_error_body_yields_its_status_message() {
    let status = RpcStatus {
        code: 3,
        message: "trace id must be 16 bytes".to_owned(),
    };
    let reply = Reply::status(400)
        .header("content-type", "application/x-protobuf")
        .body(status.encode_to_vec());
    match export_against(reply).await {
        Err(ExportError::Rejected { reason }) => {
            assert_eq!(reason, "HTTP 400 Bad Request: trace id must be 16 bytes");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn other_error_statuses_are_rejected_and_long_bodies_truncated() {
    for status in [401, 403, 404, 413, 500] {
        let reply = Reply::status(status).body("x".repeat(10_000));
        match export_against(reply).await {
            Err(ExportError::Rejected { reason }) => {
                assert!(reason.starts_with(&format!("HTTP {status}")), "{reason}");
                assert!(reason.ends_with('…'), "{reason}");
                assert!(reason.chars().count() < 250, "{reason}");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_partial_success_is_decoded() {
    let response = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "2 spans had invalid trace ids".to_owned(),
        }),
    };
    let reply = Reply::status(200)
        .header("content-type", "application/x-protobuf")
        .body(response.encode_to_vec());
    assert_eq!(
        export_against(reply).await,
        Ok(ExportOutcome::PartiallyRejected {
            rejected: 2,
            message: "2 spans had invalid trace ids".to_owned(),
        })
    );
}

#[tokio::test]
async fn success_bodies_that_report_no_rejection_or_do_not_decode_are_accepted() {
    let warning_only = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 0,
            error_message: "a warning".to_owned(),
        }),
    };
    for body in [
        warning_only.encode_to_vec(),
        Vec::new(),
        b"\xff\xff\xff not protobuf".to_vec(),
    ] {
        let reply = Reply::status(200).body(body.clone());
        assert_eq!(
            export_against(reply).await,
            Ok(ExportOutcome::Accepted),
            "{body:?}"
        );
    }
    assert_eq!(
        export_against(Reply::status(204)).await,
        Ok(ExportOutcome::Accepted)
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed: nothing listens there now
    let mut exporter = exporter(&format!("http://127.0.0.1:{port}/v1/traces"));
    match exporter.export(&[Box::new(rich_span())]).await {
        Err(ExportError::Retryable {
            reason,
            retry_after,
        }) => {
            assert_eq!(retry_after, None);
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_receiver_times_out_as_retryable() {
    let stall = Reply {
        stall: true,
        ..Reply::status(200)
    };
    let (_receiver, url) = Receiver::start([stall]).await;
    let timeout = Duration::from_millis(200);
    let mut exporter = OtlpHttpExporter::new(url, resource(), timeout).unwrap();
    let start = Instant::now();
    let outcome = exporter.export(&[Box::new(rich_span())]).await;
    let took = start.elapsed();
    assert!(
        matches!(outcome, Err(ExportError::Retryable { .. })),
        "{outcome:?}"
    );
    assert!(took >= timeout && took < Duration::from_secs(5), "{took:?}");
}

// ---------------------------------------------------------------------------------------
// With the batch processor.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_processor_retries_a_503_then_delivers() {
    let (receiver, url) = Receiver::start([Reply::status(503).header("retry-after", "0")]).await;
    let cfg = BatchConfig::builder()
        .with_initial_backoff(Duration::from_millis(10))
        .build();
    let processor = BatchSpanProcessor::new(exporter(&url), cfg);
    for _ in 0..5 {
        processor.on_end(Box::new(rich_span()));
    }
    // Blocking calls are fine here: the receiver runs on the other runtime threads.
    processor.shutdown(TIMEOUT).unwrap();
    let stats = processor.stats();
    assert_eq!(stats.exported_ok, 5);
    assert!(stats.is_balanced(), "{stats:?}");
    let bodies: Vec<Bytes> = receiver
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1], "the same batch is sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_processor_drops_a_rejected_batch_after_one_request() {
    let (receiver, url) = Receiver::start([Reply::status(400)]).await;
    let processor = BatchSpanProcessor::new(exporter(&url), BatchConfig::default());
    for _ in 0..5 {
        processor.on_end(Box::new(rich_span()));
    }
    processor.shutdown(TIMEOUT).unwrap();
    let stats = processor.stats();
    assert_eq!(stats.dropped_rejected, 5);
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(receiver.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_comes_back_gets_the_backlog() {
    // L1 in small: connection refused while spans pile up (the overflow is dropped and
    // counted), then a receiver appears on that port and gets everything that was kept.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let cfg = BatchConfig::builder()
        .with_max_queue_size(100)
        .with_max_export_batch_size(10)
        .with_scheduled_delay(Duration::from_millis(10))
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(50))
        .build();
    let processor = BatchSpanProcessor::new(exporter(&format!("http://{addr}/v1/traces")), cfg);
    for _ in 0..150 {
        processor.on_end(Box::new(rich_span()));
    }
    let stats = processor.stats();
    // At most the queue plus one batch in the worker's hands can be kept.
    assert!(stats.dropped_queue_full >= 40, "{stats:?}");
    assert_eq!(stats.exported_ok, 0);
    assert!(stats.is_balanced(), "{stats:?}");

    let (receiver, _) = Receiver::start_on(&addr.to_string(), []).await;
    processor.force_flush(TIMEOUT).unwrap();
    let stats = processor.stats();
    assert_eq!(stats.exported_ok as usize, receiver.span_count());
    assert_eq!(stats.exported_ok + stats.dropped_queue_full, 150);
    assert_eq!(stats.dropped_retry_exhausted, 0);
    assert_eq!(stats.still_queued, 0);
    assert!(stats.is_balanced(), "{stats:?}");
    processor.shutdown(TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------------------
// Pure functions.

#[rustfmt::skip]
#[test]
fn traces_endpoint_follows_the_otlp_env_rules() {
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        // (TRACES_ENDPOINT, ENDPOINT, expected)
        (None, None, "http://localhost:4318/v1/traces"),
        (Some(""), Some("  "), "http://localhost:4318/v1/traces"),
        (None, Some("http://collector:4318"), "http://collector:4318/v1/traces"),
        (None, Some("http://collector:4318/"), "http://collector:4318/v1/traces"),
        (None, Some("http://gw/otlp"), "http://gw/otlp/v1/traces"),
        (None, Some("http://gw/otlp/"), "http://gw/otlp/v1/traces"),
        (Some("http://c:4318/custom"), Some("http://ignored:4318"), "http://c:4318/custom"),
        (Some("http://c:4318/v1/traces"), None, "http://c:4318/v1/traces"),
        (Some("  http://c:4318/x  "), None, "http://c:4318/x"),
        (Some(""), Some("http://base:4318"), "http://base:4318/v1/traces"),
    ];
    for &(traces, base, expected) in cases {
        let got = OtlpHttpExporter::traces_endpoint_from_lookup(|k| match k {
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT => traces.map(str::to_owned),
            OTEL_EXPORTER_OTLP_ENDPOINT => base.map(str::to_owned),
            _ => None,
        });
        assert_eq!(got, expected, "{traces:?} {base:?}");
    }
}

#[test]
fn new_accepts_only_http_urls_with_a_host() {
    for bad in [
        "not a url",
        "https://collector:4318/v1/traces",
        "ftp://c/v1/traces",
        "http://:4318/v1/traces",
        "",
    ] {
        let err = OtlpHttpExporter::new(bad.to_owned(), resource(), TIMEOUT).unwrap_err();
        assert!(
            matches!(err, OtlpConfigError::InvalidEndpoint { .. }),
            "{bad}: {err}"
        );
    }
    let ok = OtlpHttpExporter::new(
        "http://127.0.0.1:4318/v1/traces".to_owned(),
        resource(),
        Duration::ZERO,
    )
    .unwrap();
    assert_eq!(ok.endpoint(), "http://127.0.0.1:4318/v1/traces");
}

#[test]
fn retry_after_parses_seconds_and_dates_and_is_capped() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let s = Duration::from_secs;
    assert_eq!(parse_retry_after("120", now), Some(s(120)));
    assert_eq!(parse_retry_after(" 5 ", now), Some(s(5)));
    assert_eq!(parse_retry_after("0", now), Some(s(0)));
    assert_eq!(parse_retry_after("3600", now), Some(s(600)));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(s(600))
    );
    let later = httpdate::fmt_http_date(now + s(42));
    assert_eq!(parse_retry_after(&later, now), Some(s(42)));
    let earlier = httpdate::fmt_http_date(now - s(42));
    assert_eq!(parse_retry_after(&earlier, now), Some(s(0)));
    assert_eq!(
        parse_retry_after(&httpdate::fmt_http_date(now + s(7200)), now),
        Some(s(600))
    );
    for bad in ["", "-1", "1.5", "soon", "Mon, 32 Foo 2020"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

#[test]
fn statuses_are_classified_per_the_otlp_specification() {
    let now = SystemTime::now();
    let mut with_retry_after = HeaderMap::new();
    with_retry_after.insert(RETRY_AFTER, HeaderValue::from_static("3"));
    for code in [200u16, 201, 202, 204] {
        let status = StatusCode::from_u16(code).unwrap();
        assert_eq!(
            classify(status, &HeaderMap::new(), b"", now),
            Ok(ExportOutcome::Accepted),
            "{code}"
        );
    }
    for code in [429u16, 502, 503, 504] {
        let status = StatusCode::from_u16(code).unwrap();
        match classify(status, &with_retry_after, b"", now) {
            Err(ExportError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    for code in [
        301u16, 400, 401, 403, 404, 405, 408, 413, 415, 500, 501, 505,
    ] {
        let status = StatusCode::from_u16(code).unwrap();
        assert!(
            matches!(
                classify(status, &with_retry_after, b"", now),
                Err(ExportError::Rejected { .. })
            ),
            "{code}"
        );
    }
}

#[test]
fn direct_encoding_matches_the_generated_structs_byte_for_byte() {
    let mut template = RequestTemplate::new(&resource());
    let (root, _) = root_span();
    let (unset, _) = unset_span();
    let mut odd = rich_span();
    odd.name = Cow::Borrowed("");
    odd.start_time_unix_nano = 0;
    odd.status = Status::Ok;
    odd.dropped_events_count = 3;
    odd.attributes.extend([
        KeyValue::new("negative", -5i64),
        KeyValue::new("zero", 0i64),
        KeyValue::new("", "empty key"),
        KeyValue::new("empty", ""),
        KeyValue::new("no", false),
        KeyValue::new("f0", 0.0),
        KeyValue::new(
            "list",
            Value::StrArray(vec![Cow::Borrowed("a"), Cow::Borrowed("")]),
        ),
    ]);
    let batches = [
        vec![],
        vec![rich_span()],
        vec![rich_span(), root, unset, odd],
    ];
    for batch in &batches {
        let boxed: Vec<_> = batch.iter().cloned().map(Box::new).collect();
        let direct = template.encode(&boxed);
        let structs = template.encode_with_structs(batch);
        assert_eq!(
            ExportTraceServiceRequest::decode(direct.as_slice()).unwrap(),
            ExportTraceServiceRequest::decode(structs.as_slice()).unwrap()
        );
        let at = direct.iter().zip(&structs).position(|(a, b)| a != b);
        assert_eq!(
            direct,
            structs,
            "first difference at {at:?}: {:?} vs {:?}",
            &direct[at.unwrap_or(0).saturating_sub(8)..],
            &structs[at.unwrap_or(0).saturating_sub(8)..]
        );
    }
}
