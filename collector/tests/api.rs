//! API tests: both routers driven with `oneshot` (no sockets), over both stores.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;
use common::{call, get, gzip, post, post_gzip};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use collector::{AppState, IngestLimits, MemoryStore, SpanStore, SqliteOptions, SqliteStore};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T0: u64 = 1_763_700_000_000_000_000;
const MS: u64 = 1_000_000;

struct Harness {
    ingest: Router,
    query: Router,
    state: AppState,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Harness {
    harness(Arc::new(MemoryStore::new()), None, IngestLimits::default())
}

fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default()).unwrap();
    harness(Arc::new(store), Some(dir), IngestLimits::default())
}

fn harness(
    store: Arc<dyn SpanStore>,
    dir: Option<tempfile::TempDir>,
    limits: IngestLimits,
) -> Harness {
    let state = AppState::new(store, limits);
    Harness {
        ingest: collector::ingest_app(state.clone()),
        query: collector::query_app(state.clone()),
        state,
        _dir: dir,
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn pb_span(id: u8, parent: Option<u8>, name: &str, kind: i32, start_ms: u64, dur_ms: u64) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent
            .map(|p| vec![0, 0, 0, 0, 0, 0, 0, p])
            .unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: T0 + start_ms * MS,
        end_time_unix_nano: T0 + (start_ms + dur_ms) * MS,
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracekit".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// frontend root (server, 201) with a client child, and the user server span under it.
fn demo_requests() -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let mut root = pb_span(1, None, "POST /orders", 2, 0, 412);
    root.attributes = vec![
        kv("http.response.status_code", any_value::Value::IntValue(201)),
        kv("app.flag", any_value::Value::BoolValue(true)),
        kv("app.ratio", any_value::Value::DoubleValue(0.5)),
    ];
    let mut client = pb_span(2, Some(1), "GET /users/{id}", 3, 1, 31);
    client.attributes = vec![kv(
        "http.response.status_code",
        any_value::Value::IntValue(200),
    )];
    let mut server = pb_span(3, Some(2), "GET /users/{id}", 2, 2, 29);
    server.status = Some(Status {
        message: "user lookup failed".into(),
        code: 2,
    });
    (
        request("frontend", vec![root, client]),
        request("user", vec![server]),
    )
}

async fn ingest_demo(h: &Harness) {
    let (a, b) = demo_requests();
    for req in [a, b] {
        let answer = call(
            &h.ingest,
            post("application/x-protobuf", req.encode_to_vec()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type(), "application/x-protobuf");
        assert!(answer.body.is_empty(), "full success is an empty message");
    }
}

#[tokio::test]
async fn otlp_protobuf_round_trip_to_json_tree() {
    for h in [memory(), sqlite()] {
        ingest_demo(&h).await;
        let answer = call(&h.query, get(&format!("/v1/traces/{TRACE_HEX}/tree"))).await;
        assert_eq!(answer.status, StatusCode::OK);
        let tree = answer.json();
        assert_eq!(tree["trace_id"], TRACE_HEX);
        assert_eq!(tree["complete"], true);
        assert_eq!(tree["span_count"], 3);
        assert_eq!(tree["service_count"], 2);
        assert_eq!(tree["services"], json!(["frontend", "user"]));
        assert_eq!(tree["start_time_unix_nano"], T0);
        assert_eq!(tree["duration_ns"], 412 * MS);
        assert_eq!(tree["warnings"], json!([]));
        let root = &tree["roots"][0];
        assert_eq!(root["span_id"], "0000000000000001");
        assert_eq!(root["parent_span_id"], Value::Null);
        assert_eq!(root["kind"], "server");
        assert_eq!(root["status"], "unset");
        assert_eq!(root["orphan"], false);
        assert_eq!(root["offset_ns"], 0);
        assert_eq!(
            root["attributes"],
            json!({"http.response.status_code": 201, "app.flag": true, "app.ratio": 0.5})
        );
        let user = &root["children"][0]["children"][0];
        assert_eq!(user["service"], "user");
        assert_eq!(user["status"], "error");
        assert_eq!(user["status_message"], "user lookup failed");
        assert_eq!(user["offset_ns"], 2 * MS);
        assert_eq!(user["duration_ns"], 29 * MS);
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn text_tree_by_query_or_accept_header() {
    let h = sqlite();
    ingest_demo(&h).await;
    let want = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  3 spans  2 services  412.0 ms  201  (◆ critical path)
└─ ◆ frontend POST /orders [server] 412.0 ms  self 381.0 ms  201
   └─ ◆ frontend GET /users/{id} [client] 31.0 ms  +1.0 ms  200
      └─ ◆ user GET /users/{id} [server] 29.0 ms  +2.0 ms  ERROR
            ✗ user lookup failed
";
    let by_query = call(
        &h.query,
        get(&format!("/v1/traces/{TRACE_HEX}/tree?format=text")),
    )
    .await;
    assert_eq!(by_query.status, StatusCode::OK);
    assert!(by_query.content_type().starts_with("text/plain"));
    assert_eq!(by_query.text(), want);
    let by_accept = Request::get(format!("/v1/traces/{TRACE_HEX}/tree"))
        .header(header::ACCEPT, "text/plain")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&h.query, by_accept).await.text(), want);
    let bad = call(
        &h.query,
        get(&format!("/v1/traces/{TRACE_HEX}/tree?format=xml")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn simple_json_ingest_and_trace_endpoint() {
    for h in [memory(), sqlite()] {
        let body = json!([
            {"trace_id": TRACE_HEX, "span_id": "00f067aa0ba902b7", "parent_span_id": null,
             "operation_name": "POST /orders", "start_time": 1763700000.0, "end_time": 1763700000.25,
             "kind": "server", "status": "ok", "attributes": {"http.response.status_code": 201},
             "resource_attributes": {"service.name": "frontend"},
             "events": [{"name": "done", "timestamp": 1763700000.2, "attributes": {}}], "links": []},
            {"trace_id": TRACE_HEX, "span_id": "00f067aa0ba902b8", "parent_span_id": "00f067aa0ba902b7",
             "operation_name": "SELECT users", "start_time": 1763700000.1, "duration": 0.05,
             "kind": "client", "resource_attributes": {"service.name": "user"}}
        ]);
        let answer = call(
            &h.ingest,
            post(
                "application/json; charset=utf-8",
                serde_json::to_vec(&body).unwrap(),
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.json(), json!({}));

        let trace = call(&h.query, get(&format!("/v1/traces/{TRACE_HEX}"))).await;
        assert_eq!(trace.status, StatusCode::OK);
        let v = trace.json();
        assert_eq!(v["trace_id"], TRACE_HEX);
        assert_eq!(v["spans"].as_array().unwrap().len(), 2);
        let first = &v["spans"][0];
        assert_eq!(first["operation_name"], "POST /orders");
        assert_eq!(first["start_time"], 1763700000.0);
        assert_eq!(first["duration"], 0.25);
        assert_eq!(first["status"], "ok");
        assert_eq!(first["resource_attributes"]["service.name"], "frontend");
        assert_eq!(first["events"][0]["name"], "done");
        let meta = &v["metadata"];
        assert_eq!(meta["root_service"], "frontend");
        assert_eq!(meta["root_operation"], "POST /orders");
        assert_eq!(meta["services"], json!(["frontend", "user"]));
        assert_eq!(meta["span_count"], 2);
        assert_eq!(meta["error_count"], 0);
        assert_eq!(meta["duration"], 0.25);
    }
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let h = memory();
    let (a, _) = demo_requests();
    let req = post_gzip(
        "/v1/traces",
        "application/x-protobuf",
        gzip(&a.encode_to_vec()),
    );
    let answer = call(&h.ingest, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    let stored = h
        .state
        .store
        .get_trace(collector::model::TraceId(TRACE))
        .await
        .unwrap();
    assert_eq!(stored.unwrap().spans.len(), 2);
}

#[tokio::test]
async fn transport_errors_405_413_415() {
    let limits = IngestLimits {
        max_body_bytes: 4096,
        ..IngestLimits::default()
    };
    let h = harness(Arc::new(MemoryStore::new()), None, limits);

    let answer = call(&h.ingest, get("/v1/traces")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers[header::ALLOW], "POST");
    assert!(answer.text().contains("supported: [POST]"));

    let answer = call(&h.ingest, post("application/x-protobuf", vec![0; 5000])).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.content_type(), "application/x-protobuf");
    let status = StatusMsg::decode(answer.body.as_slice()).unwrap();
    assert_eq!(status.code, 8);

    // 1 MiB of zeros compresses to ~1 KiB: under the limit on the wire, over it inflated.
    let bomb = gzip(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 4096);
    let req = post_gzip("/v1/traces", "application/json", bomb);
    let answer = call(&h.ingest, req).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json()["code"], 8);

    let answer = call(&h.ingest, post("text/plain", b"hello".to_vec())).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        answer
            .text()
            .contains("application/x-protobuf, application/json")
    );

    let req = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from(vec![1, 2, 3]))
        .unwrap();
    let answer = call(&h.ingest, req).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.headers[header::ACCEPT_ENCODING], "gzip");

    let answer = call(
        &h.ingest,
        post("application/json", br#"{"resourceSpans": []}"#.to_vec()),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "an empty OTLP/JSON request is a success"
    );
    assert_eq!(answer.json(), json!({}));

    let answer = call(&h.ingest, get("/nope")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = call(&h.ingest, get("/healthz")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let failed = h.state.metrics.snapshot()["ingest_requests_failed"].clone();
    assert_eq!(failed, 4, "405 is answered before the ingest handler");
}

/// `google.rpc.Status` as the collector sends it.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusMsg {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test]
async fn undecodable_bodies_are_400_in_the_request_encoding() {
    let h = memory();
    let answer = call(&h.ingest, post("application/x-protobuf", vec![0xff; 64])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.content_type(), "application/x-protobuf");
    let status = StatusMsg::decode(answer.body.as_slice()).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .starts_with("failed to decode ExportTraceServiceRequest")
    );

    let answer = call(
        &h.ingest,
        post("application/json", b"[{\"trace_id\": <script>".to_vec()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let v = answer.json();
    assert_eq!(v["code"], 3);
    assert!(!v["message"].as_str().unwrap().contains("<script>"));

    let req = post_gzip(
        "/v1/traces",
        "application/x-protobuf",
        b"\x1f\x8b\x08\x00garbage".to_vec(),
    );
    let answer = call(&h.ingest, req).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let status = StatusMsg::decode(answer.body.as_slice()).unwrap();
    assert!(
        status.message.contains("invalid gzip stream"),
        "{}",
        status.message
    );
    assert!(
        h.state.store.services().await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn invalid_spans_are_rejected_individually() {
    let h = sqlite();
    let good = pb_span(1, None, "ok", 2, 0, 5);
    let mut short_trace = pb_span(2, None, "bad", 2, 0, 5);
    short_trace.trace_id.pop();
    let zero_span = Span {
        span_id: vec![0; 8],
        ..pb_span(3, None, "bad", 2, 0, 5)
    };
    let mut backwards = pb_span(4, Some(1), "", 1, 10, 0);
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 5;
    let req = request("", vec![good, short_trace, zero_span, backwards]);
    let answer = call(
        &h.ingest,
        post("application/x-protobuf", req.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = ExportTraceServiceResponse::decode(answer.body.as_slice()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("span 1: trace_id must be 16 bytes, got 15"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("span 2: span_id must not be all zeros")
    );
    assert!(
        partial
            .error_message
            .contains("span 3: end time before start time")
    );

    let tree = call(&h.query, get(&format!("/v1/traces/{TRACE_HEX}/tree")))
        .await
        .json();
    assert_eq!(tree["span_count"], 2);
    assert_eq!(tree["services"], json!(["unknown_service"]));
    let child = &tree["roots"][0]["children"][0];
    assert_eq!(child["name"], "<empty-span-name>");
    assert_eq!(child["duration_ns"], 0);
    let metrics = h.state.metrics.snapshot();
    assert_eq!(metrics["spans_received"], 4);
    assert_eq!(metrics["spans_rejected"], 2);
    assert_eq!(metrics["spans_stored"], 2);

    // JSON answer shape for the simple format.
    let body = json!([{"trace_id": "00", "span_id": "00f067aa0ba902b7", "start_time": 1}]);
    let answer = call(
        &h.ingest,
        post("application/json", serde_json::to_vec(&body).unwrap()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let v = answer.json();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace_id")
    );
}

#[tokio::test]
async fn duplicates_are_stored_once() {
    let h = sqlite();
    ingest_demo(&h).await;
    ingest_demo(&h).await;
    let tree = call(&h.query, get(&format!("/v1/traces/{TRACE_HEX}/tree")))
        .await
        .json();
    assert_eq!(tree["span_count"], 3);
    assert_eq!(h.state.metrics.snapshot()["spans_duplicate"], 3);
}

#[tokio::test]
async fn unknown_and_malformed_trace_ids() {
    let h = sqlite();
    let missing = "0123456789abcdef0123456789abcdef";
    for path in [
        format!("/v1/traces/{missing}/tree"),
        format!("/v1/traces/{missing}"),
    ] {
        let answer = call(&h.query, get(&path)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("not found")
        );
    }
    for bad in ["zzzz", "%3Cscript%3E", "00000000000000000000000000000000"] {
        let answer = call(&h.query, get(&format!("/v1/traces/{bad}/tree"))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        let msg = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.starts_with("invalid trace id") && !msg.contains('<'),
            "{msg}"
        );
    }
    let answer = call(
        &h.query,
        get(&format!("/v1/traces/{missing}/tree?wait=abc")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn long_poll_returns_when_the_root_arrives() {
    let h = sqlite();
    let (frontend, user) = demo_requests();
    // Only the user span: the trace is an orphan without a root.
    let answer = call(
        &h.ingest,
        post("application/x-protobuf", user.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let unsettled = call(&h.query, get(&format!("/v1/traces/{TRACE_HEX}/tree")))
        .await
        .json();
    assert_eq!(unsettled["complete"], false);
    assert_eq!(unsettled["roots"][0]["orphan"], true);

    let query = h.query.clone();
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        call(&query, get(&format!("/v1/traces/{TRACE_HEX}/tree?wait=20"))).await
    });
    let answer = call(
        &h.ingest,
        post("application/x-protobuf", frontend.encode_to_vec()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = waiter.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["complete"], true);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the commit, not the deadline"
    );
}

#[tokio::test]
async fn long_poll_on_unknown_trace_times_out_with_404() {
    let h = memory();
    let started = std::time::Instant::now();
    let answer = call(
        &h.query,
        get("/v1/traces/0123456789abcdef0123456789abcdef/tree?wait=0.3"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn long_poll_answers_at_shutdown() {
    let h = memory();
    let query = h.query.clone();
    let waiter = tokio::spawn(async move {
        call(
            &query,
            get("/v1/traces/0123456789abcdef0123456789abcdef/tree?wait=30"),
        )
        .await
    });
    h.state.begin_shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("long-poll ends at shutdown")
        .unwrap();
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn search_services_and_health() {
    for h in [memory(), sqlite()] {
        ingest_demo(&h).await;
        let all = call(&h.query, get("/v1/traces")).await;
        assert_eq!(all.status, StatusCode::OK);
        let list = all.json();
        assert_eq!(list.as_array().unwrap().len(), 1);
        let s = &list[0];
        assert_eq!(s["trace_id"], TRACE_HEX);
        assert_eq!(s["root_service"], "frontend");
        assert_eq!(s["root_operation"], "POST /orders");
        assert_eq!(s["services"], json!(["frontend", "user"]));
        assert_eq!(s["operations"], json!(["GET /users/{id}", "POST /orders"]));
        assert_eq!(s["span_count"], 3);
        assert_eq!(s["error_count"], 1);
        assert_eq!(s["duration"], 0.412);
        assert_eq!(s["start_time"], 1_763_700_000.0);

        for (query, hits) in [
            ("service=user", 1),
            ("service=nobody", 0),
            ("operation=POST%20%2Forders", 1),
            ("min_duration=400ms", 1),
            ("min_duration=1s", 0),
            ("max_duration=0.5s", 1),
            ("error=true", 1),
            ("start_time=1763700000&end_time=1763700001", 1),
            ("start_time=1763700001", 0),
            ("limit=1", 1),
        ] {
            let answer = call(&h.query, get(&format!("/v1/traces?{query}"))).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}");
            assert_eq!(answer.json().as_array().unwrap().len(), hits, "{query}");
        }
        for bad in [
            "min_duration=fast",
            "limit=0",
            "error=maybe",
            "start_time=x",
        ] {
            let answer = call(&h.query, get(&format!("/v1/traces?{bad}"))).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(answer.json()["error"].is_string());
        }

        let services = call(&h.query, get("/v1/services")).await.json();
        assert_eq!(services, json!(["frontend", "user"]));

        let health = call(&h.query, get("/health")).await;
        assert_eq!(health.status, StatusCode::OK);
        let v = health.json();
        assert_eq!(v["status"], "healthy");
        assert_eq!(v["metrics"]["spans_stored"], 3);
        assert_eq!(v["metrics"]["spans_received"], 3);
        assert_eq!(call(&h.query, get("/healthz")).await.status, StatusCode::OK);

        h.state.store.shutdown().await;
        let health = call(&h.query, get("/health")).await;
        assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health.json()["status"], "unhealthy");
        // Ingest after the store closed: retryable 503.
        let (a, _) = demo_requests();
        let answer = call(&h.ingest, post("application/x-protobuf", a.encode_to_vec())).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    }
}
