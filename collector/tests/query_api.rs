//! Query API tests (storage/assembly/query half): the native search filters, `/v1/stats`,
//! `/v1/dependencies`, the Jaeger v1 shapes of interop.md §3, and the query bad-input cases
//! of reliability.md §7.5 (Q1–Q5). Driven with `oneshot` over both stores.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;
use common::{Answer, call};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use collector::model::{
    AttrValue, Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode as Code,
    TraceId,
};
use collector::{AppState, IngestLimits, MemoryStore, SpanStore, SqliteOptions, SqliteStore};
use serde_json::{Value, json};

const MS: u64 = 1_000_000;

struct Harness {
    query: Router,
    state: AppState,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Harness {
    let state = AppState::new(Arc::new(MemoryStore::new()), IngestLimits::default());
    Harness {
        query: collector::query_app(state.clone()),
        state,
        _dir: None,
    }
}

fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default()).unwrap();
    let store: Arc<dyn SpanStore> = Arc::new(store);
    let state = AppState::new(store, IngestLimits::default());
    Harness {
        query: collector::query_app(state.clone()),
        state,
        _dir: Some(dir),
    }
}

async fn get(h: &Harness, uri: &str) -> Answer {
    call(&h.query, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn trace_id(n: u8) -> TraceId {
    let mut b = [0x5a; 16];
    b[15] = n;
    TraceId(b)
}

fn trace_hex(n: u8) -> String {
    trace_id(n).to_hex()
}

/// A span of the demo shape; times in ms after `t0`.
#[allow(clippy::too_many_arguments)]
fn span(
    n: u8,
    t0: u64,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    kind: SpanKind,
    start_ms: u64,
    dur_ms: u64,
) -> Span {
    let sid = |i: u8| SpanId([0, 0, 0, 0, 0, 0, n, i]);
    let mut s = Span::new(trace_id(n), sid(id), name);
    s.parent_span_id = parent.map(sid);
    s.kind = kind;
    s.start_time_unix_nano = t0 + start_ms * MS;
    s.end_time_unix_nano = t0 + (start_ms + dur_ms) * MS;
    s.service_name = service.into();
    s.resource = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", AttrValue::String(service.into())),
            KeyValue::new(
                "host.name",
                AttrValue::String(format!("{service}-host").into()),
            ),
        ],
    });
    s.scope = Arc::new(Scope {
        name: "tracekit".into(),
        version: "0.1.0".into(),
    });
    s.flags = 1;
    s
}

/// The demo order flow (DESIGN.md §3): frontend → user, frontend → order → payment.
/// `fail` makes the payment fail (error spans up to the frontend); the payment takes
/// `payment_ms`. Starts `ago_ms` before now.
fn demo(n: u8, ago_ms: u64, fail: bool, payment_ms: u64) -> Vec<Span> {
    use SpanKind::*;
    let t0 = now_ns() - ago_ms * MS;
    let p = payment_ms;
    let mut spans = vec![
        span(
            n,
            t0,
            1,
            None,
            "frontend",
            "POST /orders",
            Server,
            0,
            100 + p,
        ),
        span(
            n,
            t0,
            2,
            Some(1),
            "frontend",
            "GET /users/{id}",
            Client,
            1,
            10,
        ),
        span(n, t0, 3, Some(2), "user", "GET /users/{id}", Server, 2, 8),
        span(n, t0, 4, Some(3), "user", "SELECT users", Client, 3, 5),
        span(
            n,
            t0,
            5,
            Some(1),
            "frontend",
            "POST /orders",
            Client,
            12,
            80 + p,
        ),
        span(
            n,
            t0,
            6,
            Some(5),
            "order",
            "POST /orders",
            Server,
            13,
            78 + p,
        ),
        span(n, t0, 7, Some(6), "order", "INSERT orders", Client, 14, 5),
        span(
            n,
            t0,
            8,
            Some(6),
            "order",
            "POST /payments",
            Client,
            20,
            60 + p,
        ),
        span(
            n,
            t0,
            9,
            Some(8),
            "payment",
            "POST /payments",
            Server,
            21,
            58 + p,
        ),
        span(
            n,
            t0,
            10,
            Some(9),
            "payment",
            "charge card",
            Internal,
            22,
            50 + p,
        ),
    ];
    let status = if fail { 503 } else { 201 };
    for s in &mut spans {
        if s.kind != Internal && !s.name.starts_with("SELECT") && !s.name.starts_with("INSERT") {
            s.attributes.push(KeyValue::new(
                "http.response.status_code",
                AttrValue::Int(if s.service_name == "user" {
                    200
                } else {
                    status
                }),
            ));
        }
    }
    spans[0].attributes.push(KeyValue::new(
        "app.user.id",
        AttrValue::String(format!("user-{n}").into()),
    ));
    if fail {
        for i in [0, 4, 5, 7, 8] {
            spans[i].status.code = Code::Error;
            spans[i].status.message = "payment failed".into();
        }
        let at = spans[8].start_time_unix_nano + MS;
        spans[8].events.push(Event {
            time_unix_nano: at,
            name: "exception".into(),
            attributes: vec![KeyValue::new(
                "exception.message",
                AttrValue::String("card declined".into()),
            )],
        });
    }
    spans
}

/// Trace 1: fine, fast. Trace 2: payment failed, 300 ms. Trace 3: fine, slow (900 ms).
async fn seed(h: &Harness) {
    for spans in [
        demo(1, 30_000, false, 10),
        demo(2, 20_000, true, 300),
        demo(3, 10_000, false, 900),
    ] {
        h.state.store.write_spans(spans).await.unwrap();
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn dependencies_after_demo_orders() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let a = get(&h, "/v1/dependencies?lookback=1h").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        assert_eq!(
            v["dependencies"],
            json!([
                {"parent": "frontend", "child": "order", "call_count": 3, "error_count": 1},
                {"parent": "frontend", "child": "user", "call_count": 3, "error_count": 0},
                {"parent": "order", "child": "payment", "call_count": 3, "error_count": 1},
            ])
        );
        assert_eq!(
            v["services"],
            json!(["frontend", "order", "payment", "user"])
        );
        // Only the last 15 s: trace 3.
        let v = get(&h, "/v1/dependencies?lookback=15s").await.json();
        assert_eq!(v["dependencies"][0]["call_count"], 1);
        let v = get(&h, "/v1/dependencies?lookback=1h&service=payment")
            .await
            .json();
        assert_eq!(v["dependencies"].as_array().unwrap().len(), 1);
        let now = now_ns() / 1_000_000_000;
        let a = get(
            &h,
            &format!(
                "/v1/dependencies?start_time={}&end_time={}",
                now - 60,
                now + 1
            ),
        )
        .await;
        assert_eq!(a.json()["dependencies"].as_array().unwrap().len(), 3);
        // Reversed or bad windows.
        let a = get(
            &h,
            &format!("/v1/dependencies?start_time={}&end_time={}", now, now - 60),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            get(&h, "/v1/dependencies?lookback=forever").await.status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(&h, "/v1/dependencies?lookback=1000h").await.status,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn stats_per_service_and_operation() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let a = get(&h, "/v1/stats?window=15m").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        assert_eq!(v["window_s"], 900.0);
        let services = v["services"].as_array().unwrap();
        let names: Vec<&str> = services
            .iter()
            .map(|s| s["service"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["frontend", "order", "payment", "user"]);
        let payment = &services[2];
        assert_eq!(payment["request_count"], 3);
        assert_eq!(payment["error_count"], 1);
        assert!((payment["error_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        // The rate is over the 21 s that had traffic (traces 30, 20 and 10 s ago), not over
        // the 15-minute window.
        let rate_window_s = v["rate_window_s"].as_f64().unwrap();
        assert!((20.0..22.0).contains(&rate_window_s), "{v}");
        assert!(
            v["traffic_start_unix_nano"].as_u64().unwrap()
                < v["traffic_end_unix_nano"].as_u64().unwrap()
        );
        assert!((payment["rate_per_s"].as_f64().unwrap() - 3.0 / rate_window_s).abs() < 1e-9);
        // Payment server spans: 68, 358, 958 ms.
        assert_eq!(payment["p50_ns"], 358 * MS);
        assert_eq!(payment["p95_ns"], 958 * MS);
        assert_eq!(payment["p99_ns"], 958 * MS);
        let ops = v["operations"].as_array().unwrap();
        assert_eq!(ops.len(), 4, "SERVER spans only: {ops:?}");
        let keys = [
            "error_count",
            "error_rate",
            "operation",
            "p50_ns",
            "p95_ns",
            "p99_ns",
            "rate_per_s",
            "request_count",
            "service",
        ];
        let mut got: Vec<&str> = ops[0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        got.sort();
        assert_eq!(got, keys);
        let v = get(&h, "/v1/stats?service=user&window=1h").await.json();
        assert_eq!(v["services"].as_array().unwrap().len(), 1);
        assert_eq!(v["operations"][0]["operation"], "GET /users/{id}");
        assert_eq!(v["operations"][0]["p50_ns"], 8 * MS);
        let v = get(&h, "/v1/stats?window=5s").await.json();
        assert!(v["services"].as_array().unwrap().is_empty());
        assert_eq!(
            get(&h, "/v1/stats?window=0s").await.status,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn slow_and_failed_traces_are_found_slowest_first() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let all = get(&h, "/v1/traces").await.json();
        assert_eq!(ids(&all), [trace_hex(3), trace_hex(2), trace_hex(1)]);
        let slow = get(&h, "/v1/traces?min_duration=250ms").await.json();
        assert_eq!(ids(&slow), [trace_hex(3), trace_hex(2)], "slowest first");
        let failed = get(&h, "/v1/traces?error=true").await.json();
        assert_eq!(ids(&failed), [trace_hex(2)]);
        assert_eq!(failed[0]["error_count"], 5);
        assert!(failed[0]["operations"].as_array().unwrap().len() >= 5);
        let both = get(
            &h,
            "/v1/traces?min_duration=250ms&error=true&service=payment",
        )
        .await
        .json();
        assert_eq!(ids(&both), [trace_hex(2)]);
        let all_by_duration = get(&h, "/v1/traces?sort=duration").await.json();
        assert_eq!(
            ids(&all_by_duration),
            [trace_hex(3), trace_hex(2), trace_hex(1)]
        );
        let newest = get(&h, "/v1/traces?min_duration=1ms&sort=newest")
            .await
            .json();
        assert_eq!(ids(&newest), [trace_hex(3), trace_hex(2), trace_hex(1)]);
        let by_attr = get(&h, "/v1/traces?attr.http.response.status_code=503")
            .await
            .json();
        assert_eq!(ids(&by_attr), [trace_hex(2)]);
        let by_attr = get(&h, "/v1/traces?attr.app.user.id=user-1&service=frontend")
            .await
            .json();
        assert_eq!(ids(&by_attr), [trace_hex(1)]);
        // Together the filters must hold for one span: the user id is on the frontend's.
        let by_attr = get(&h, "/v1/traces?attr.app.user.id=user-1&service=user")
            .await
            .json();
        assert!(ids(&by_attr).is_empty(), "{by_attr}");
        let user_errors = get(&h, "/v1/traces?service=user&status=error").await.json();
        assert!(ids(&user_errors).is_empty(), "{user_errors}");
        let by_kind = get(&h, "/v1/traces?kind=producer").await.json();
        assert!(ids(&by_kind).is_empty());
        let by_status = get(&h, "/v1/traces?status=error&kind=server").await.json();
        assert_eq!(ids(&by_status), [trace_hex(2)]);
        assert_eq!(
            get(&h, "/v1/traces?kind=sideways").await.status,
            StatusCode::BAD_REQUEST
        );
    }
}

#[tokio::test]
async fn tree_has_critical_path_self_time_and_warnings() {
    let h = sqlite();
    seed(&h).await;
    let v = get(&h, &format!("/v1/traces/{}/tree", trace_hex(3)))
        .await
        .json();
    assert_eq!(v["depth"], 6);
    let path = v["critical_path"].as_array().unwrap();
    // root → order call → order server → payment call → payment server → charge card, then
    // back up: the insert and the user call finish before the payment/order calls start.
    assert_eq!(path.len(), 10);
    let root = &v["roots"][0];
    assert_eq!(root["critical"], true);
    assert_eq!(root["warnings"], json!([]));
    assert!(root["self_time_ns"].as_u64().unwrap() > 0);
    let text = get(&h, &format!("/v1/traces/{}/tree?format=text", trace_hex(3)))
        .await
        .text();
    assert!(text.contains("(◆ critical path)"), "{text}");
    assert!(
        text.contains("└─ ◆ payment charge card [internal]"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Jaeger v1 shapes (interop.md §3.2–3.6)
// ---------------------------------------------------------------------------------------------

fn assert_envelope(v: &Value) {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["data", "errors", "limit", "offset", "total"], "{v}");
    assert_eq!(v["limit"], 0);
    assert_eq!(v["offset"], 0);
}

#[tokio::test]
async fn jaeger_services_and_operations() {
    for h in [memory(), sqlite()] {
        // Empty store: data is [] (never null): Grafana's health check.
        let v = get(&h, "/api/services").await.json();
        assert_envelope(&v);
        assert_eq!(v["data"], json!([]));
        seed(&h).await;
        let a = get(&h, "/api/services").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v = a.json();
        assert_envelope(&v);
        assert_eq!(v["data"], json!(["frontend", "order", "payment", "user"]));
        assert_eq!(v["total"], 4);
        assert_eq!(v["errors"], Value::Null);
        let v = get(&h, "/api/services/frontend/operations").await.json();
        assert_envelope(&v);
        assert_eq!(v["data"], json!(["GET /users/{id}", "POST /orders"]));
        assert_eq!(v["total"], 2);
        let v = get(&h, "/api/services/no%20such/operations").await.json();
        assert_eq!(v["data"], json!([]));
        let v = get(&h, "/api/operations?service=frontend").await.json();
        assert_eq!(
            v["data"],
            json!([
                {"name": "GET /users/{id}", "spanKind": "client"},
                {"name": "POST /orders", "spanKind": "server"},
                {"name": "POST /orders", "spanKind": "client"},
            ])
        );
        let v = get(&h, "/api/operations?service=payment&spanKind=internal")
            .await
            .json();
        assert_eq!(
            v["data"],
            json!([{"name": "charge card", "spanKind": "internal"}])
        );
        let a = get(&h, "/api/operations").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let v = a.json();
        assert_envelope(&v);
        assert_eq!(v["data"], Value::Null);
        assert_eq!(v["errors"][0]["code"], 400);
        assert!(v["errors"][0]["msg"].as_str().unwrap().contains("service"));
    }
}

#[tokio::test]
async fn jaeger_trace_by_id_shape() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let a = get(&h, &format!("/api/traces/{}", trace_hex(2))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        assert_envelope(&v);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        let t = &data[0];
        assert_eq!(t["traceID"], trace_hex(2));
        assert_eq!(t["warnings"], Value::Null);
        let spans = t["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 10);
        let processes = t["processes"].as_object().unwrap();
        assert_eq!(processes.len(), 4);
        assert_eq!(processes["p1"]["serviceName"], "frontend");
        assert_eq!(
            processes["p1"]["tags"],
            json!([{"key": "host.name", "type": "string", "value": "frontend-host"}])
        );
        let root = spans
            .iter()
            .find(|s| s["spanID"] == "0000000000000201")
            .unwrap();
        let mut keys: Vec<&str> = root
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "duration",
                "flags",
                "logs",
                "operationName",
                "processID",
                "references",
                "spanID",
                "startTime",
                "tags",
                "traceID",
                "warnings"
            ]
        );
        assert_eq!(root["references"], json!([]), "roots have [] references");
        assert_eq!(root["operationName"], "POST /orders");
        assert_eq!(root["flags"], 1);
        assert_eq!(root["duration"], 400_000, "µs");
        let start_us = root["startTime"].as_u64().unwrap();
        assert!(
            start_us > 1_700_000_000_000_000 && start_us < 10_000_000_000_000_000,
            "µs"
        );
        assert_eq!(root["warnings"], Value::Null);
        let tag = |span: &Value, key: &str| -> Value {
            span["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == key)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(
            tag(root, "span.kind"),
            json!({"key": "span.kind", "type": "string", "value": "server"})
        );
        assert_eq!(
            tag(root, "http.response.status_code"),
            json!({"key": "http.response.status_code", "type": "int64", "value": 503})
        );
        assert_eq!(
            tag(root, "error"),
            json!({"key": "error", "type": "bool", "value": true})
        );
        assert_eq!(tag(root, "otel.status_code")["value"], "ERROR");
        assert_eq!(
            tag(root, "otel.status_description")["value"],
            "payment failed"
        );
        assert_eq!(tag(root, "otel.scope.name")["value"], "tracekit");
        let charge = spans
            .iter()
            .find(|s| s["operationName"] == "charge card")
            .unwrap();
        assert_eq!(
            tag(charge, "span.kind"),
            Value::Null,
            "no kind tag for internal"
        );
        let pay = spans
            .iter()
            .find(|s| {
                s["operationName"] == "POST /payments" && tag(s, "span.kind")["value"] == "server"
            })
            .unwrap();
        assert_eq!(
            pay["references"],
            json!([{"refType": "CHILD_OF", "traceID": trace_hex(2), "spanID": "0000000000000208"}])
        );
        assert_eq!(
            processes[pay["processID"].as_str().unwrap()]["serviceName"],
            "payment"
        );
        let log = &pay["logs"][0];
        assert_eq!(log["timestamp"], pay["startTime"].as_u64().unwrap() + 1000);
        assert!(
            log["fields"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "event", "type": "string", "value": "exception"}))
        );
        // Case-insensitive lookups.
        let a = get(&h, &format!("/api/traces/{}", trace_hex(2).to_uppercase())).await;
        assert_eq!(a.status, StatusCode::OK);
        // Grafana's optional time hints (ms) are ignored.
        let a = get(&h, &format!("/api/traces/{}?start=1&end=2", trace_hex(2))).await;
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn jaeger_trace_by_id_errors() {
    let h = sqlite();
    seed(&h).await;
    // Q2: unknown id → 404 envelope, never a 200 with empty data.
    let a = get(&h, "/api/traces/0123456789abcdef0123456789abcdef").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.json(),
        json!({"data": null, "total": 0, "limit": 0, "offset": 0,
               "errors": [{"code": 404, "msg": "trace not found"}]})
    );
    // Short ids are left-padded (this one is simply not stored).
    assert_eq!(
        get(&h, "/api/traces/abc").await.status,
        StatusCode::NOT_FOUND
    );
    // Q1: malformed id → 400, raw input not echoed, nosniff.
    for bad in [
        "zzzz",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &"a".repeat(40),
    ] {
        let a = get(&h, &format!("/api/traces/{bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            !a.text().contains("zzzz") && !a.text().contains("script"),
            "{}",
            a.text()
        );
        assert_eq!(a.json()["errors"][0]["code"], 400);
    }
    let a = get(&h, "/v1/traces/zzzz/tree").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(!a.text().contains("zzzz"));
}

#[tokio::test]
async fn jaeger_search_like_grafana() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let now_us = now_ns() / 1000;
        let start = now_us - 3_600_000_000;
        let search = |q: String| format!("/api/traces?{q}&start={start}&end={now_us}");
        let a = get(&h, &search("service=payment&limit=20".into())).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        assert_envelope(&v);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert!(
            data.iter()
                .all(|t| !t["spans"].as_array().unwrap().is_empty())
        );
        let traces = |v: &Value| -> Vec<String> {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["traceID"].as_str().unwrap().to_owned())
                .collect()
        };
        // Grafana: tags from logfmt become a JSON map, URL-encoded.
        let tags = "%7B%22error%22%3A%22true%22%7D"; // {"error":"true"}
        let v = get(&h, &search(format!("service=frontend&tags={tags}")))
            .await
            .json();
        assert_eq!(traces(&v), [trace_hex(2)]);
        let tags = "%7B%22http.response.status_code%22%3A%22201%22%7D";
        let v = get(&h, &search(format!("tags={tags}&minDuration=500ms")))
            .await
            .json();
        assert_eq!(traces(&v), [trace_hex(3)]);
        let v = get(&h, &search("tag=app.user.id:user-1".into()))
            .await
            .json();
        assert_eq!(traces(&v), [trace_hex(1)]);
        let v = get(
            &h,
            &search(
                "service=order&operation=POST%20%2Forders&maxDuration=1s&minDuration=200ms".into(),
            ),
        )
        .await
        .json();
        assert_eq!(traces(&v), [trace_hex(3), trace_hex(2)]);
        let v = get(&h, &search("lookback=1h&limit=1".into())).await.json();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        // Outside the time range.
        let v = get(&h, "/api/traces?service=payment&start=1&end=2")
            .await
            .json();
        assert_eq!(v["data"], json!([]));
        // traceID lookups, one missing.
        let v = get(
            &h,
            &format!(
                "/api/traces?traceID={}&traceID=0123456789abcdef0123456789abcdef",
                trace_hex(1)
            ),
        )
        .await
        .json();
        assert_eq!(traces(&v), [trace_hex(1)]);
        assert_eq!(v["errors"][0]["code"], 404);
        assert_eq!(
            v["errors"][0]["traceID"],
            "0123456789abcdef0123456789abcdef"
        );
        // Bad input.
        for bad in [
            "minDuration=2s&maxDuration=1s",
            "minDuration=fast",
            "start=10&end=5",
            "tags=notjson",
            "limit=-1",
            "start=abc",
        ] {
            let a = get(&h, &format!("/api/traces?service=x&{bad}")).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(a.json()["errors"][0]["code"], 400, "{bad}");
        }
        // Q3: huge limit clamped; Q5: injection in a tag is just a value.
        let a = get(&h, &search("limit=1000000000".into())).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["data"].as_array().unwrap().len(), 3);
        let tags = "%7B%22'%20OR%201%3D1%20--%22%3A%22x%22%7D";
        let v = get(&h, &search(format!("tags={tags}"))).await.json();
        assert_eq!(v["data"], json!([]));
    }
}

#[tokio::test]
async fn jaeger_dependencies_in_ms() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let end_ms = now_ns() / 1_000_000 + 1000;
        let a = get(
            &h,
            &format!("/api/dependencies?endTs={end_ms}&lookback=3600000"),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_envelope(&v);
        assert_eq!(
            v["data"],
            json!([
                {"parent": "frontend", "child": "order", "callCount": 3},
                {"parent": "frontend", "child": "user", "callCount": 3},
                {"parent": "order", "child": "payment", "callCount": 3},
            ])
        );
        // Default lookback 24 h, endTs now.
        let v = get(&h, "/api/dependencies").await.json();
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
        let a = get(&h, "/api/dependencies?endTs=soon").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = call(
            &h.query,
            Request::post(format!("/api/archive/{}", trace_hex(1)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.json()["data"], json!([]));
    }
}

#[tokio::test]
async fn jaeger_reids_zipkin_shared_server_spans() {
    let h = memory();
    let t0 = now_ns() - 1000 * MS;
    let mut spans = vec![
        span(9, t0, 1, None, "web", "GET /", SpanKind::Server, 0, 100),
        span(
            9,
            t0,
            2,
            Some(1),
            "web",
            "GET /api",
            SpanKind::Client,
            10,
            50,
        ),
        span(
            9,
            t0,
            2,
            Some(1),
            "api",
            "GET /api",
            SpanKind::Server,
            12,
            40,
        ),
        span(9, t0, 3, Some(2), "api", "SELECT", SpanKind::Client, 15, 10),
    ];
    spans[3].parent_span_id = Some(SpanId([0, 0, 0, 0, 0, 0, 9, 2]));
    h.state.store.write_spans(spans).await.unwrap();
    let v = get(&h, &format!("/api/traces/{}", trace_hex(9)))
        .await
        .json();
    let spans = v["data"][0]["spans"].as_array().unwrap();
    let mut ids: Vec<&str> = spans
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "span ids are unique: {ids:?}");
    let server = spans
        .iter()
        .find(|s| s["operationName"] == "GET /api" && s["processID"] != spans[0]["processID"])
        .unwrap();
    assert_ne!(server["spanID"], "0000000000000902");
    assert_eq!(server["references"][0]["spanID"], "0000000000000902");
    assert!(server["warnings"][0].as_str().unwrap().contains("shared"));
    let select = spans
        .iter()
        .find(|s| s["operationName"] == "SELECT")
        .unwrap();
    assert_eq!(select["references"][0]["spanID"], server["spanID"]);
}

#[tokio::test]
async fn native_bad_inputs() {
    let h = sqlite();
    seed(&h).await;
    // Q3: clamped, not refused.
    let a = get(&h, "/v1/traces?limit=1000000000").await;
    assert_eq!(a.status, StatusCode::OK);
    // Q4.
    assert_eq!(
        get(&h, "/v1/traces?start_time=20&end_time=10").await.status,
        StatusCode::BAD_REQUEST
    );
    // Q5.
    let a = get(&h, "/v1/traces?service=%27%20OR%201%3D1%20--").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!([]));
    let a = get(&h, "/v1/traces?attr.x%27%20OR%201%3D1%20--=1").await;
    assert_eq!(a.json(), json!([]));
}

#[tokio::test]
async fn metrics_page_has_red_query_latency_and_storage_size() {
    for (h, durable) in [(memory(), false), (sqlite(), true)] {
        seed(&h).await;
        assert_eq!(get(&h, "/api/services").await.status, StatusCode::OK);
        let a = get(&h, "/metrics").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = a.text();
        assert!(
            text.contains(
                "spanline_requests_total{service=\"payment\",operation=\"POST /payments\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "spanline_request_errors_total{service=\"payment\",operation=\"POST /payments\"} 1\n"
        ));
        assert!(text.contains("# TYPE spanline_request_duration_seconds histogram"));
        assert!(text.contains(
            "spanline_query_request_duration_seconds_count{route=\"/api/services\",status=\"2xx\"} 1\n"
        ));
        assert_eq!(text.contains("spanline_storage_bytes "), durable, "{text}");
        let health = get(&h, "/health").await.json();
        assert_eq!(health["status"], "healthy");
    }
}

// ---------------------------------------------------------------------------------------------
// api_v3 (interop.md §3.8)
// ---------------------------------------------------------------------------------------------

fn rfc3339(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = collector::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

#[tokio::test]
async fn jaeger_v3_subset() {
    for h in [memory(), sqlite()] {
        seed(&h).await;
        let v = get(&h, "/api/v3/services").await.json();
        assert_eq!(
            v,
            json!({"services": ["frontend", "order", "payment", "user"]})
        );
        let v = get(&h, "/api/v3/operations?service=payment&spanKind=server")
            .await
            .json();
        assert_eq!(
            v,
            json!({"operations": [{"name": "POST /payments", "spanKind": "server"}]})
        );
        let v = get(&h, "/api/v3/operations?service=payment&span_kind=internal")
            .await
            .json();
        assert_eq!(v["operations"][0]["name"], "charge card");

        // Trace by id: OTLP JSON with hex ids and string nanos.
        let a = get(&h, &format!("/api/v3/traces/{}", trace_hex(2))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        let rs = v["result"]["resourceSpans"].as_array().unwrap();
        assert_eq!(rs.len(), 4, "one per service resource");
        let spans: Vec<&Value> = rs
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .flat_map(|s| s["spans"].as_array().unwrap())
            .collect();
        assert_eq!(spans.len(), 10);
        let root = spans
            .iter()
            .find(|s| s.get("parentSpanId").is_none())
            .unwrap();
        assert_eq!(root["traceId"], trace_hex(2));
        assert_eq!(root["spanId"], "0000000000000201");
        assert_eq!(root["kind"], 2);
        assert!(root["startTimeUnixNano"].is_string());
        assert_eq!(root["status"]["code"], 2);
        assert!(
            root["attributes"].as_array().unwrap().contains(
                &json!({"key": "http.response.status_code", "value": {"intValue": "503"}})
            )
        );
        assert_eq!(
            rs[0]["scopeSpans"][0]["scope"],
            json!({"name": "tracekit", "version": "0.1.0"})
        );
        let a = get(&h, "/api/v3/traces/0123456789abcdef0123456789abcdef").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(
            a.json(),
            json!({"error": {"httpCode": 404, "message": "No traces found"}})
        );
        let a = get(&h, "/api/v3/traces/zzzz").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.json()["error"]["httpCode"], 400);

        // Search and summaries.
        let now = now_ns();
        let (min, max) = (rfc3339(now - 3_600_000 * MS), rfc3339(now + 1000 * MS));
        let q = format!("query.start_time_min={min}&query.start_time_max={max}");
        let a = get(
            &h,
            &format!(
                "/api/v3/trace-summaries?{q}&query.service_name=payment&query.duration_min=0.5s"
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let v = a.json();
        let s = &v["summaries"].as_array().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["traceId"], trace_hex(3));
        assert_eq!(s[0]["rootServiceName"], "frontend");
        assert_eq!(s[0]["rootOperationName"], "POST /orders");
        assert!(s[0]["minStartTimeUnixNano"].is_string());
        assert!(s[0]["maxEndTimeUnixNano"].is_string());
        assert_eq!(s[0]["spanCount"], 10);
        assert_eq!(s[0]["errorSpanCount"], 0);
        assert_eq!(s[0]["services"].as_array().unwrap().len(), 4);
        let camel = format!("query.startTimeMin={min}&query.startTimeMax={max}");
        let attrs = "%7B%22error%22%3A%22true%22%7D";
        let v = get(
            &h,
            &format!("/api/v3/traces?{camel}&query.attributes={attrs}"),
        )
        .await
        .json();
        let ids: Vec<&str> = v["result"]["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .flat_map(|s| s["spans"].as_array().unwrap())
            .map(|s| s["traceId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 10);
        assert!(ids.iter().all(|i| *i == trace_hex(2)));
        // No match: 404. Missing or reversed times: 400.
        let a = get(&h, &format!("/api/v3/traces?{q}&query.service_name=nobody")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let a = get(&h, "/api/v3/traces?query.service_name=payment").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = get(
            &h,
            &format!(
                "/api/v3/trace-summaries?query.start_time_min={max}&query.start_time_max={min}"
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn search_as_a_text_list_and_plain_id_errors() {
    let h = sqlite();
    seed(&h).await;
    let a = get(&h, "/v1/traces?format=text").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.content_type().starts_with("text/plain"),
        "{}",
        a.content_type()
    );
    let text = a.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "3 traces", "{text}");
    assert!(lines[1].starts_with(&trace_hex(3)), "newest first: {text}");
    assert!(
        lines[2].contains("10 spans  4 services  frontend POST /orders")
            && lines[2].ends_with(" errors"),
        "{text}"
    );
    let a = call(
        &h.query,
        Request::get("/v1/traces?service=user")
            .header(header::ACCEPT, "text/plain")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.text().lines().count(), 4);
    assert_eq!(
        get(&h, "/v1/traces?format=xml").await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(get(&h, "/v1/traces").await.json().is_array());
    for (bad, want) in [
        ("abc", "invalid trace id: must be 32 hex digits, got 3"),
        ("zz", "invalid trace id: must be 32 hex digits, got 2"),
        (
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "invalid trace id: must be 32 hex digits",
        ),
    ] {
        let msg = get(&h, &format!("/v1/traces/{bad}/tree")).await.json()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(msg, want);
    }
}

/// A PRODUCER span of trace `producer` (payment publishing `payments.completed`) and a
/// CONSUMER span of trace `consumer` (notification processing it) that links to it: the
/// links-only messaging model, two traces.
fn linked_pair(producer: u8, consumer: u8) -> Vec<Span> {
    let t0 = now_ns() - 5_000 * MS;
    let publish = span(
        producer,
        t0,
        1,
        None,
        "payment",
        "publish payments.completed",
        SpanKind::Producer,
        0,
        2,
    );
    let mut process = span(
        consumer,
        t0,
        1,
        None,
        "notification",
        "process payments.completed",
        SpanKind::Consumer,
        5,
        3,
    );
    process.links.push(collector::model::Link {
        trace_id: publish.trace_id,
        span_id: publish.span_id,
        trace_state: String::new(),
        attributes: Vec::new(),
    });
    vec![publish, process]
}

/// `GET /v1/traces/{trace n}/tree?links=follow`, as JSON.
async fn follow(h: &Harness, n: u8) -> Value {
    get(h, &format!("/v1/traces/{}/tree?links=follow", trace_hex(n)))
        .await
        .json()
}

/// `GET /v1/traces/{trace n}/tree?links=follow&format=text`, as text.
async fn follow_text(h: &Harness, n: u8) -> String {
    get(
        h,
        &format!("/v1/traces/{}/tree?links=follow&format=text", trace_hex(n)),
    )
    .await
    .text()
}

/// `links=follow` stitches in the traces this one links to (the links-only messaging model),
/// marked as such; without it the answer is the tree alone; other values are 400.
#[tokio::test]
async fn links_follow_stitches_in_the_linked_traces() {
    let h = memory();
    h.state
        .store
        .write_spans(linked_pair(40, 41))
        .await
        .unwrap();

    let plain = get(&h, &format!("/v1/traces/{}/tree", trace_hex(41)))
        .await
        .json();
    assert!(plain.get("linked_traces").is_none(), "{plain:#}");
    let v = follow(&h, 41).await;
    let linked = v["linked_traces"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{v:#}");
    assert_eq!(linked[0]["relation"], "links_to");
    assert_eq!(linked[0]["tree"]["trace_id"], trace_hex(40));
    assert_eq!(
        linked[0]["tree"]["roots"][0]["name"],
        "publish payments.completed"
    );
    let text = follow_text(&h, 41).await;
    assert!(
        text.contains("linked trace (this trace links to it):"),
        "{text}"
    );
    assert!(text.contains(&format!("trace {}", trace_hex(40))), "{text}");
    let bad = get(&h, &format!("/v1/traces/{}/tree?links=all", trace_hex(41))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// `links=follow` on the trace linked to (A) stitches in the trace whose span links to it
/// (B), marked `linked_from`, from the store's link index (SQLite here); text too.
#[tokio::test]
async fn links_follow_stitches_in_the_traces_linking_to_this_one() {
    let h = sqlite();
    let mut spans = linked_pair(50, 51);
    let t0 = now_ns() - 5_000 * MS;
    spans.push(span(
        52,
        t0,
        1,
        None,
        "user",
        "GET /users/1",
        SpanKind::Server,
        0,
        1,
    ));
    h.state.store.write_spans(spans).await.unwrap();

    let v = follow(&h, 50).await;
    let linked = v["linked_traces"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{v:#}");
    assert_eq!(linked[0]["relation"], "linked_from");
    assert_eq!(linked[0]["tree"]["trace_id"], trace_hex(51));
    assert_eq!(
        linked[0]["tree"]["roots"][0]["name"],
        "process payments.completed"
    );
    // From B, A is still the one it links to.
    let b = follow(&h, 51).await;
    let relations: Vec<(&str, &str)> = b["linked_traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["relation"].as_str().unwrap(),
                l["tree"]["trace_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(relations, [("links_to", trace_hex(50).as_str())]);
    let text = follow_text(&h, 50).await;
    assert!(
        text.contains("linked trace (it links to this trace):"),
        "{text}"
    );
    assert!(text.contains(&format!("trace {}", trace_hex(51))), "{text}");
    // An unrelated trace has nothing to follow.
    let none = follow(&h, 52).await;
    assert_eq!(none["linked_traces"], serde_json::json!([]), "{none:#}");
}

/// Issue 16 item 2: answers written span by span are the same JSON as built whole, and
/// the tree and span lists page.
#[tokio::test]
async fn streamed_answers_and_pages() {
    let h = sqlite();
    seed(&h).await;
    let id = trace_hex(2);
    let streamed = get(&h, &format!("/api/traces/{id}")).await;
    assert_eq!(streamed.status, StatusCode::OK);
    let whole = get(&h, &format!("/api/traces/{id}?prettyPrint=true")).await;
    assert_eq!(
        streamed.json(),
        whole.json(),
        "Jaeger v1 streamed = built whole"
    );

    let tree = get(&h, &format!("/v1/traces/{id}/tree")).await.json();
    let total = tree["span_count"].as_u64().unwrap();
    assert!(total > 4);
    assert_eq!(tree["spans_omitted"], 0);
    let page = get(&h, &format!("/v1/traces/{id}/tree?limit=3"))
        .await
        .json();
    assert_eq!(page["spans_omitted"], total - 3);
    assert_eq!(
        page["span_count"], total,
        "the header still describes the trace"
    );
    let root_id = page["roots"][0]["span_id"].as_str().unwrap().to_owned();
    let first_child = tree["roots"][0]["children"][0]["span_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = get(&h, &format!("/v1/traces/{id}/tree?root={first_child}"))
        .await
        .json();
    assert_eq!(sub["roots"].as_array().unwrap().len(), 1);
    assert_eq!(sub["roots"][0]["span_id"], first_child.as_str());
    assert_ne!(first_child, root_id);
    let unknown = get(&h, &format!("/v1/traces/{id}/tree?root=00000000000000ff")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = get(&h, &format!("/v1/traces/{id}/tree?limit=many")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let text = get(&h, &format!("/v1/traces/{id}/tree?format=text&limit=1"))
        .await
        .text();
    assert!(text.contains("not shown"), "{text}");

    let spans = get(&h, &format!("/v1/traces/{id}?offset=2&limit=3"))
        .await
        .json();
    assert_eq!(spans["spans"].as_array().unwrap().len(), 3);
    assert_eq!(spans["metadata"]["offset"], 2);
    assert_eq!(spans["metadata"]["next_offset"], 5);
    let all = get(&h, &format!("/v1/traces/{id}")).await.json();
    assert_eq!(all["spans"].as_array().unwrap().len() as u64, total);
    assert_eq!(all["spans"][2], spans["spans"][0]);
    assert_eq!(all["metadata"]["next_offset"], Value::Null);
    let one_id = all["spans"][3]["span_id"].as_str().unwrap().to_owned();
    let one = get(&h, &format!("/v1/traces/{id}?span={one_id}"))
        .await
        .json();
    assert_eq!(one["spans"].as_array().unwrap().len(), 1);
    assert_eq!(one["spans"][0], all["spans"][3]);
    let bad = get(&h, &format!("/v1/traces/{id}?offset=-1")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
