//! Ingest formats and the bad-input table of reliability.md §7.1–7.3, over SQLite.
//!
//! Every case first stores a baseline trace, sends the bad input, checks the stated status,
//! and then checks that the baseline trace is exactly as it was (nothing else lost). Tests
//! are named after the behaviour they check; the comment above each names its rows of the
//! table (H = HTTP transport, O = OTLP payload, Z = Zipkin, C = delivery).

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;
use common::{call, get, gzip, post, post_gzip, post_to};

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use collector::{AppState, IngestLimits, SqliteOptions, SqliteStore};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};

const BASE: &str = "0af7651916cd43dd8448eb211c80319c";
const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T0: u64 = 1_763_700_000_000_000_000;

struct H {
    ingest: Router,
    query: Router,
    baseline: Value,
    _dir: tempfile::TempDir,
}

fn post_json(v: &Value) -> Request<Body> {
    post("application/json", v.to_string().into_bytes())
}

fn zipkin(v: &Value) -> Request<Body> {
    post_to(
        "/api/v2/spans",
        "application/json",
        v.to_string().into_bytes(),
    )
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.into())
}

fn pb_span(trace: &str, id: u8, name: &str) -> Span {
    Span {
        trace_id: hex(trace),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: T0 + u64::from(id) * 1000,
        end_time_unix_nano: T0 + u64::from(id) * 1000 + 500,
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn setup(limits: IngestLimits) -> H {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default()).unwrap();
    let state = AppState::new(Arc::new(store), limits);
    let ingest = collector::ingest_app(state.clone());
    let query = collector::query_app(state.clone());
    let mut root = pb_span(BASE, 1, "GET /base");
    root.attributes = vec![kv("http.route", s("/base"))];
    let mut child = pb_span(BASE, 2, "SELECT base");
    child.parent_span_id = root.span_id.clone();
    child.kind = 3;
    let answer = call(
        &ingest,
        post(
            "application/x-protobuf",
            request("base", vec![root, child]).encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let baseline = call(&query, get(&format!("/v1/traces/{BASE}")))
        .await
        .json();
    assert_eq!(baseline["spans"].as_array().unwrap().len(), 2);
    H {
        ingest,
        query,
        baseline,
        _dir: dir,
    }
}

async fn h() -> H {
    setup(IngestLimits::default()).await
}

impl H {
    async fn intact(&self) {
        let now = call(&self.query, get(&format!("/v1/traces/{BASE}")))
            .await
            .json();
        assert_eq!(now, self.baseline, "the baseline trace changed");
    }
    async fn trace(&self, id: &str) -> Value {
        let a = call(&self.query, get(&format!("/v1/traces/{id}"))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        a.json()
    }
    async fn missing(&self, id: &str) {
        let a = call(&self.query, get(&format!("/v1/traces/{id}"))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text());
    }
    async fn metrics(&self) -> String {
        call(&self.query, get("/metrics")).await.text()
    }
    /// `/metrics` counts `n` spans rejected over `protocol`, and the baseline is intact.
    async fn rejected_and_intact(&self, protocol: &str, n: u64) {
        let metrics = self.metrics().await;
        let line = format!("spanline_ingest_spans_rejected_total{{protocol=\"{protocol}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        self.intact().await;
    }
}

fn span_named<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operation_name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {trace}"))
}

// ---------------------------------------------------------------------------------------------
// §7.1 transport
// ---------------------------------------------------------------------------------------------

// H1
#[tokio::test]
async fn a_get_on_an_ingest_path_is_405_allowing_post() {
    let h = h().await;
    for path in ["/v1/traces", "/api/v2/spans"] {
        let a = call(&h.ingest, get(path)).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(a.headers[header::ALLOW], "POST");
        assert!(a.text().contains("supported: [POST]"));
    }
    h.intact().await;
}

// H2
#[tokio::test]
async fn an_unknown_ingest_path_is_404() {
    let h = h().await;
    let a = call(
        &h.ingest,
        post_to("/v2/traces", "application/json", b"{}".to_vec()),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    h.intact().await;
}

// H3
#[tokio::test]
async fn an_unsupported_content_type_is_415_naming_the_supported_ones() {
    let h = h().await;
    let a = call(&h.ingest, post("text/plain", b"hi".to_vec())).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        a.text()
            .contains("application/x-protobuf, application/json")
    );
    let a = call(
        &h.ingest,
        post_to("/api/v2/spans", "application/x-thrift", b"x".to_vec()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(a.text().contains("application/json"));
    h.intact().await;
}

// H4
#[tokio::test]
async fn an_unsupported_content_encoding_is_415_offering_gzip() {
    let h = h().await;
    let req = Request::post("/v1/traces")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from(b"{}".to_vec()))
        .unwrap();
    let a = call(&h.ingest, req).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(a.headers[header::ACCEPT_ENCODING], "gzip");
    h.intact().await;
}

/// A collector whose body limit is 64 KiB.
async fn h_64k() -> H {
    setup(IngestLimits {
        max_body_bytes: 64 * 1024,
        ..IngestLimits::default()
    })
    .await
}

// H5
#[tokio::test]
async fn a_body_over_the_size_limit_is_413_and_stores_nothing() {
    let h = h_64k().await;
    let big = request("big", vec![pb_span(T1, 1, &"x".repeat(70 * 1024))]).encode_to_vec();
    let a = call(&h.ingest, post("application/x-protobuf", big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    h.missing(T1).await;
    h.intact().await;
}

// H6
#[tokio::test]
async fn a_gzip_bomb_is_413_because_the_limit_applies_after_decompression() {
    let h = h_64k().await;
    // 16 MiB of zeros gzip to ~16 KiB.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    for path in ["/v1/traces", "/api/v2/spans"] {
        let req = post_gzip(path, "application/json", bomb.clone());
        let a = call(&h.ingest, req).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    h.intact().await;
}

// H7
#[tokio::test]
async fn a_corrupt_gzip_body_is_400_invalid_gzip_stream() {
    let h = h_64k().await;
    let mut broken = gzip(br#"{"resourceSpans":[]}"#);
    broken.truncate(broken.len() / 2);
    let req = post_gzip("/v1/traces", "application/json", broken);
    let a = call(&h.ingest, req).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid gzip stream")
    );
    h.intact().await;
}

// H6 (the converse)
#[tokio::test]
async fn a_valid_gzip_body_under_the_size_limit_is_stored() {
    let h = h_64k().await;
    let body = json!({"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":T1,"spanId":"0000000000000001","name":"gz"}]}]}]});
    let req = post_gzip(
        "/v1/traces",
        "application/json",
        gzip(body.to_string().as_bytes()),
    );
    assert_eq!(call(&h.ingest, req).await.status, StatusCode::OK);
    h.trace(T1).await;
    h.intact().await;
}

// ---------------------------------------------------------------------------------------------
// §7.2 OTLP payload
// ---------------------------------------------------------------------------------------------

// O1
#[tokio::test]
async fn random_bytes_as_protobuf_are_400_answered_in_protobuf() {
    let h = h().await;
    let a = call(&h.ingest, post("application/x-protobuf", vec![0xff; 64])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/x-protobuf");
    h.intact().await;
}

// O2
#[tokio::test]
async fn malformed_or_mistyped_otlp_json_is_400_invalid_argument() {
    let h = h().await;
    for body in [
        "{\"resourceSpans\": [",
        r#"{"resourceSpans": "no"}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
        "\"just a string\"",
    ] {
        let a = call(
            &h.ingest,
            post("application/json", body.as_bytes().to_vec()),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(a.json()["code"], 3, "{body}");
    }
    h.intact().await;
}

// O3, O5 (OTLP/JSON)
#[tokio::test]
async fn otlp_json_spans_with_bad_ids_are_rejected_alone_as_a_partial_success() {
    let h = h().await;
    // A base64 trace id (O3), a zero span id, a short trace id; one good span.
    let body = json!({"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"j"}}]},
        "scopeSpans":[{"spans":[
            {"traceId":T1,"spanId":"0000000000000001","name":"good"},
            {"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"0000000000000002","name":"b64"},
            {"traceId":T1,"spanId":"0000000000000000","name":"zero"},
            {"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"0000000000000003","name":"short"}]}]}]});
    let a = call(&h.ingest, post_json(&body)).await;
    assert_eq!(a.status, StatusCode::OK);
    let p = &a.json()["partialSuccess"];
    assert_eq!(p["rejectedSpans"], "3");
    let msg = p["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("span 1: traceId must be 32 hex digits, got 24"),
        "{msg}"
    );
    assert!(
        msg.contains("span 2: spanId must not be all zeros"),
        "{msg}"
    );
    assert_eq!(h.trace(T1).await["spans"].as_array().unwrap().len(), 1);
    h.rejected_and_intact("otlp_json", 3).await;
}

// O5 (protobuf)
#[tokio::test]
async fn a_protobuf_span_with_a_15_byte_trace_id_is_rejected_alone() {
    let h = h().await;
    let mut bad = pb_span(T1, 9, "bad");
    bad.trace_id.pop();
    let req = request("p", vec![bad, pb_span(T1, 8, "good2")]).encode_to_vec();
    let a = call(&h.ingest, post("application/x-protobuf", req)).await;
    assert_eq!(a.status, StatusCode::OK);
    let resp = ExportTraceServiceResponse::decode(a.body.as_slice()).unwrap();
    let p = resp.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message
            .contains("span 0: trace_id must be 16 bytes, got 15")
    );
    assert_eq!(h.trace(T1).await["spans"].as_array().unwrap().len(), 1);
    h.intact().await;
}

// O6
#[tokio::test]
async fn empty_requests_are_200_with_an_empty_answer() {
    let h = h().await;
    for empty in [
        json!({}),
        json!({"resourceSpans":[]}),
        json!({"resourceSpans":[{"scopeSpans":[]}]}),
    ] {
        let a = call(&h.ingest, post_json(&empty)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json(), json!({}));
    }
    let a = call(&h.ingest, post("application/x-protobuf", Vec::new())).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.is_empty());
    h.intact().await;
}

// O4, O7
#[tokio::test]
async fn otlp_json_with_unknown_fields_snake_case_keys_and_enum_names_is_read() {
    let h = h().await;
    let body = json!({"resourceSpans":[{"futureField":1,"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"names","newKind":{}}}]},
        "scope_spans":[{"spans":[{"trace_id":T1,"span_id":"00000000000000aa","name":"named",
            "kind":"SPAN_KIND_CONSUMER","status":{"code":"STATUS_CODE_ERROR","message":"m"},
            "start_time_unix_nano":T0,"end_time_unix_nano":(T0 + 5).to_string(),
            "attributes":[{"key":"n","value":{"intValue":200}},{"key":"e","value":{}},
                          {"key":"arr","value":{"arrayValue":{}}}],
            "unknown":{"deep":[1,2,3]}}]}]}]});
    let a = call(&h.ingest, post_json(&body)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({}));
    let t = h.trace(T1).await;
    let s = span_named(&t, "named");
    assert_eq!(s["kind"], "consumer");
    assert_eq!(s["status"], "error");
    assert_eq!(s["duration_ns"], 5);
    assert_eq!(s["attributes"]["n"], 200);
    assert_eq!(s["attributes"]["e"], Value::Null);
    assert_eq!(s["attributes"]["arr"], json!([]));
    assert_eq!(s["resource_attributes"]["service.name"], "names");
    h.intact().await;
}

/// A span whose name and one attribute value are not UTF-8, encoded by hand (prost's own
/// types cannot carry invalid UTF-8).
fn invalid_utf8_request() -> Vec<u8> {
    let good = request("utf", vec![pb_span(T1, 0x21, "fine")]).encode_to_vec();
    let mut span = pb_span(T1, 0x22, "PLACEHOLDER").encode_to_vec();
    let needle = b"PLACEHOLDER";
    let at = span
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    span[at..at + 4].copy_from_slice(&[b'b', 0xff, 0xfe, b'd']);
    // ResourceSpans { resource, ScopeSpans { span } } appended as a second ResourceSpans.
    let mut scope_spans = vec![0x12];
    prost::encoding::encode_varint(span.len() as u64, &mut scope_spans);
    scope_spans.extend_from_slice(&span);
    let mut resource_spans = vec![0x12];
    prost::encoding::encode_varint(scope_spans.len() as u64, &mut resource_spans);
    resource_spans.extend_from_slice(&scope_spans);
    let mut out = good;
    out.push(0x0a);
    prost::encoding::encode_varint(resource_spans.len() as u64, &mut out);
    out.extend_from_slice(&resource_spans);
    out
}

// O8
#[tokio::test]
async fn invalid_utf8_in_a_protobuf_string_is_replaced_and_flagged() {
    let h = h().await;
    let a = call(
        &h.ingest,
        post("application/x-protobuf", invalid_utf8_request()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let resp = ExportTraceServiceResponse::decode(a.body.as_slice()).unwrap();
    let p = resp.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 0);
    assert!(
        p.error_message.contains("invalid UTF-8"),
        "{}",
        p.error_message
    );
    let t = h.trace(T1).await;
    assert_eq!(t["spans"].as_array().unwrap().len(), 2);
    span_named(&t, "fine");
    span_named(&t, "b\u{fffd}\u{fffd}dEHOLDER");
    let tree = call(&h.query, get(&format!("/v1/traces/{T1}/tree")))
        .await
        .json();
    assert!(tree.to_string().contains("invalid UTF-8"), "{tree}");
    h.intact().await;
}

// O9
#[tokio::test]
async fn attribute_values_nested_deeper_than_100_levels_are_400() {
    let h = h().await;
    let mut value = AnyValue {
        value: Some(s("leaf")),
    };
    for _ in 0..120 {
        value = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(value),
                    ..Default::default()
                }],
            })),
        };
    }
    let mut span = pb_span(T1, 5, "deep");
    span.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(value),
        ..Default::default()
    }];
    let a = call(
        &h.ingest,
        post(
            "application/x-protobuf",
            request("d", vec![span]).encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let mut v = json!({"stringValue":"leaf"});
    for _ in 0..120 {
        v = json!({"kvlistValue":{"values":[{"key":"k","value":v}]}});
    }
    let body = json!({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":T1,"spanId":"0000000000000005",
        "attributes":[{"key":"deep","value":v}]}]}]}]});
    let a = call(&h.ingest, post_json(&body)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    h.missing(T1).await;
    h.intact().await;
}

// O10, O11, O12, O14
#[tokio::test]
async fn an_oversized_malformed_span_is_stored_trimmed_and_repaired_with_warnings() {
    let h = h().await;
    let mut span = pb_span(T1, 7, "");
    span.attributes = (0..10_000).map(|i| kv(&format!("a{i}"), s("v"))).collect();
    span.attributes[0] = kv("huge", s(&"é".repeat(512 * 1024)));
    span.events = (0..10_000)
        .map(|i| opentelemetry_proto::tonic::trace::v1::span::Event {
            name: format!("e{i}"),
            time_unix_nano: T0,
            ..Default::default()
        })
        .collect();
    span.links = (0..10_000)
        .map(|_| opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: hex(BASE),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            ..Default::default()
        })
        .collect();
    std::mem::swap(&mut span.start_time_unix_nano, &mut span.end_time_unix_nano);
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let a = call(
        &h.ingest,
        post("application/x-protobuf", req.encode_to_vec()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 0);
    for w in [
        "duration clamped to 0",
        "events dropped (limit 128)",
        "links dropped (limit 128)",
        "attributes dropped (limit 128)",
        "values truncated",
    ] {
        assert!(p.error_message.contains(w), "{w}: {}", p.error_message);
    }
    let t = h.trace(T1).await;
    let s = &t["spans"][0];
    assert_eq!(s["operation_name"], "<empty-span-name>");
    assert_eq!(s["resource_attributes"], json!({}));
    assert_eq!(s["duration_ns"], 0);
    assert_eq!(s["attributes"].as_object().unwrap().len(), 128);
    let huge = s["attributes"]["huge"].as_str().unwrap();
    assert!(huge.len() <= 8 * 1024 && huge.len() > 8 * 1024 - 4);
    assert_eq!(s["events"].as_array().unwrap().len(), 128);
    assert_eq!(s["links"].as_array().unwrap().len(), 128);
    let tree = call(&h.query, get(&format!("/v1/traces/{T1}/tree")))
        .await
        .json();
    assert_eq!(tree["roots"][0]["service"], "unknown_service");
    h.intact().await;
}

// O13
#[tokio::test]
async fn zero_and_far_future_timestamps_are_accepted_and_flagged() {
    let h = h().await;
    let mut zero = pb_span(T1, 0x31, "zero");
    zero.start_time_unix_nano = 0;
    zero.end_time_unix_nano = 0;
    let mut future = pb_span(T1, 0x32, "future");
    future.start_time_unix_nano = 7_258_118_400_000_000_000; // 2200-01-01
    future.end_time_unix_nano = future.start_time_unix_nano + 10;
    let a = call(
        &h.ingest,
        post(
            "application/x-protobuf",
            request("t", vec![zero, future]).encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let p = ExportTraceServiceResponse::decode(a.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 0);
    assert!(
        p.error_message.contains("span 0: start time is 0"),
        "{}",
        p.error_message
    );
    assert!(
        p.error_message.contains("span 1: start time is more than"),
        "{}",
        p.error_message
    );
    assert_eq!(h.trace(T1).await["spans"].as_array().unwrap().len(), 2);
    let list = call(&h.query, get("/v1/traces")).await;
    assert_eq!(list.status, StatusCode::OK);
    h.intact().await;
}

// O16, C5
#[tokio::test]
async fn duplicate_spans_are_stored_once_and_counted_by_protocol() {
    let h = h().await;
    let req = request(
        "dup",
        vec![
            pb_span(T1, 1, "a"),
            pb_span(T1, 1, "a"),
            pb_span(T1, 2, "b"),
        ],
    )
    .encode_to_vec();
    for _ in 0..3 {
        let a = call(&h.ingest, post("application/x-protobuf", req.clone())).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    assert_eq!(h.trace(T1).await["spans"].as_array().unwrap().len(), 2);
    let m = h.metrics().await;
    for line in [
        "spanline_ingest_batches_total{protocol=\"otlp_proto\"} 4",
        "spanline_ingest_spans_received_total{protocol=\"otlp_proto\"} 11",
        "spanline_ingest_spans_stored_total{protocol=\"otlp_proto\"} 4",
        "spanline_ingest_spans_deduplicated_total{protocol=\"otlp_proto\"} 7",
        "spanline_ingest_spans_received_total{protocol=\"zipkin\"} 0",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    let list = call(&h.query, get("/v1/traces?service=dup")).await.json();
    assert_eq!(list[0]["span_count"], 2);
    h.intact().await;
}

// ---------------------------------------------------------------------------------------------
// §7.3 Zipkin
// ---------------------------------------------------------------------------------------------

// Z1, Z2, Z4
#[tokio::test]
async fn zipkin_spans_are_stored_with_64_bit_trace_ids_padded_and_shared_server_spans_kept() {
    let h = h().await;
    let ts = (T0 / 1000) + 10;
    let spans = json!([
        {"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","kind":"CLIENT","name":"get /x",
         "timestamp":ts,"duration":900,"localEndpoint":{"serviceName":"front"},
         "remoteEndpoint":{"serviceName":"back","ipv4":"10.0.0.2","port":80},
         "tags":{"http.status_code":"200"}},
        {"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","kind":"SERVER","name":"get /x",
         "timestamp":ts + 100,"duration":700,"localEndpoint":{"serviceName":"back"},"shared":true,
         "annotations":[{"timestamp":ts + 150,"value":"wr"}]},
        {"traceId":"463ac35c9f6413ad","id":"0000000000000077","parentId":"a2fb4a1d1a96d312",
         "name":"db","timestamp":ts + 200,"duration":100,"localEndpoint":{"serviceName":"back"},
         "tags":{"error":"timeout"}}
    ]);
    for _ in 0..2 {
        let a = call(&h.ingest, zipkin(&spans)).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
        assert!(a.body.is_empty());
    }
    let t = h.trace("0000000000000000463ac35c9f6413ad").await;
    let list = t["spans"].as_array().unwrap();
    assert_eq!(
        list.len(),
        3,
        "client and shared server both kept, re-send deduplicated"
    );
    let server = list.iter().find(|s| s["kind"] == "server").unwrap();
    let client = list.iter().find(|s| s["kind"] == "client").unwrap();
    assert_eq!(server["span_id"], client["span_id"]);
    assert_eq!(server["attributes"]["zipkin.shared"], true);
    assert_eq!(server["events"][0]["name"], "wr");
    assert_eq!(client["attributes"]["peer.service"], "back");
    assert_eq!(client["duration_ns"], 900_000);
    let db = span_named(&t, "db");
    assert_eq!(db["status"], "error");
    assert_eq!(db["status_message"], "timeout");
    assert_eq!(db["kind"], "internal");
    let m = h.metrics().await;
    assert!(
        m.contains("spanline_ingest_spans_stored_total{protocol=\"zipkin\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("spanline_ingest_spans_deduplicated_total{protocol=\"zipkin\"} 3"),
        "{m}"
    );
    h.intact().await;
}

// Z3, Z6
#[tokio::test]
async fn zipkin_spans_with_invalid_ids_are_skipped_and_the_rest_stored_verbatim() {
    let h = h().await;
    let xss = "<script>alert(1)</script></td><img src=x onerror=alert(2)>";
    let spans = json!([
        {"traceId":"463ac35c9f6413ad","id":"00000000000000a1","name":xss,
         "localEndpoint":{"serviceName":xss},"tags":{"x":xss},"timestamp":T0 / 1000},
        {"traceId":"463AC35C9F6413AD","id":"00000000000000a2"},
        {"traceId":"463ac35c9f6413ad","id":"a2"},
        {"traceId":"463ac35c9f6413ad","id":"00000000000000a3","parentId":"zz"}
    ]);
    let a = call(&h.ingest, zipkin(&spans)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let t = h.trace("0000000000000000463ac35c9f6413ad").await;
    assert_eq!(t["spans"].as_array().unwrap().len(), 1);
    assert_eq!(t["spans"][0]["operation_name"], xss);
    assert_eq!(t["spans"][0]["resource_attributes"]["service.name"], xss);
    h.rejected_and_intact("zipkin", 3).await;
}

// Z3
#[tokio::test]
async fn a_zipkin_list_without_a_valid_span_is_400() {
    let h = h().await;
    let a = call(&h.ingest, zipkin(&json!([{"traceId":"x","id":"y"}]))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    h.intact().await;
}

// Z5
#[tokio::test]
async fn zipkin_v1_is_400_unsupported_format() {
    let h = h().await;
    let v1 = json!([{"traceId":"463ac35c9f6413ad","id":"00000000000000b1","name":"v1",
        "annotations":[{"timestamp":1,"value":"sr","endpoint":{"serviceName":"s"}}],
        "binaryAnnotations":[{"key":"k","value":"v"}]}]);
    let a = call(&h.ingest, zipkin(&v1)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().contains("unsupported format"));
    h.intact().await;
}

#[tokio::test]
async fn a_zipkin_body_that_is_not_a_list_is_400() {
    let h = h().await;
    let a = call(&h.ingest, zipkin(&json!({"traceId":"463ac35c9f6413ad"}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    h.intact().await;
}

#[tokio::test]
async fn an_empty_zipkin_list_or_body_is_202() {
    let h = h().await;
    assert_eq!(
        call(&h.ingest, zipkin(&json!([]))).await.status,
        StatusCode::ACCEPTED
    );
    let empty = Request::post("/api/v2/spans").body(Body::empty()).unwrap();
    assert_eq!(call(&h.ingest, empty).await.status, StatusCode::ACCEPTED);
    h.intact().await;
}
