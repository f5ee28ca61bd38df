//! Whole traces, known to be whole, with real processes: a service that exports late is
//! waited for, a service whose spans never arrive is named as missing, and the live stream
//! delivers every order once, whole.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::{Stack, free_port, walk};

async fn place_order(stack: &Stack) -> String {
    let (status, body) = stack.place_order("", "1", 1).await;
    assert_eq!(status, 201, "{}", stack.logs());
    body["trace_id"].as_str().unwrap().to_owned()
}

async fn tree(stack: &Stack, trace_id: &str, wait_s: u32) -> Value {
    stack
        .query_json(&format!("/v1/traces/{trace_id}/tree?wait={wait_s}"))
        .await
}

/// Every CLIENT span whose callee answered with `traceresponse` has the callee's SERVER
/// span as its child.
fn every_call_answered(tree: &Value) -> bool {
    let nodes = walk(tree);
    nodes
        .iter()
        .filter(|(n, _)| {
            n["kind"] == "client"
                && n["attributes"]["http.response.header.traceresponse"].is_array()
        })
        .all(|(n, _)| {
            n["children"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["kind"] == "server"))
        })
}

#[tokio::test]
async fn a_late_exporter_is_waited_for_and_every_tree_is_whole() {
    // The order service holds its spans for 3 s before exporting them.
    let mut stack = Stack::start_with(|svc| match svc {
        "order" => vec![("OTEL_BSP_SCHEDULE_DELAY", "3000".to_owned())],
        _ => Vec::new(),
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(place_order(&stack).await);
    }
    for id in &ids {
        let t = tree(&stack, id, 15).await;
        assert_eq!(t["complete"], true, "{t:#}");
        assert_eq!(t["missing"], json!([]));
        assert!(every_call_answered(&t), "{t:#}");
        assert_eq!(t["span_count"], 11, "an order's 11 spans: {t:#}");
        let services: Vec<&str> = t["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for svc in ["frontend", "order", "payment", "user"] {
            assert!(services.contains(&svc), "{svc} missing from {services:?}");
        }
    }
    stack.shutdown();
}

#[tokio::test]
async fn spans_that_never_arrive_are_named_as_missing() {
    // The payment service exports to a port nobody listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut stack = Stack::start_with(move |svc| match svc {
        "payment" => vec![("OTEL_EXPORTER_OTLP_ENDPOINT", dead.clone())],
        _ => Vec::new(),
    })
    .await;
    let id = place_order(&stack).await;
    let started = Instant::now();
    let t = tree(&stack, &id, 4).await;
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "answered before the deadline: {t:#}"
    );
    assert_eq!(t["complete"], false, "{t:#}");
    let missing = t["missing"].as_array().unwrap();
    assert!(
        missing.iter().any(|m| m["service"] == "payment"),
        "{missing:?}"
    );
    let warnings = t["warnings"].to_string();
    assert!(
        warnings.contains("order POST /payments [client] is waiting for its server span"),
        "{warnings}"
    );
    stack.shutdown();
}

#[tokio::test]
async fn a_declined_order_shows_402_and_why_and_is_not_a_payment_error() {
    let mut stack = Stack::start().await;
    let post = |query: &'static str, quantity: u32| {
        let stack = &stack;
        async move {
            let (status, body) = stack.place_order(query, "1", quantity).await;
            (status, body["trace_id"].as_str().unwrap().to_owned())
        }
    };
    let (status, declined) = post("", 5).await;
    assert_eq!(status, 402);
    let (status, failed) = post("?fail=payment", 1).await;
    assert!(status >= 500, "{status}");

    let t = tree(&stack, &declined, 10).await;
    assert_eq!(t["complete"], true, "{t:#}");
    assert_eq!(t["http_status"], 402);
    let reason = t["outcome_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("payment declined"), "{reason}");
    let text = stack
        .query_text(&format!("/v1/traces/{declined}/tree?format=text"))
        .await;
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains("  402  "), "{text}");
    assert!(text.contains("outcome: 402 payment declined"), "{text}");
    let _ = tree(&stack, &failed, 10).await;

    let search = |query: &'static str| {
        let path = format!("/v1/traces?{query}");
        let stack = &stack;
        async move { stack.query_json(&path).await }
    };
    let all = search("limit=10").await;
    let summary = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["trace_id"] == declined.as_str())
        .unwrap();
    assert_eq!(summary["http_status"], 402);
    // The payment service refused the order; it did not fail.
    let payment_errors = search("service=payment&error=true").await;
    let ids: Vec<&str> = payment_errors
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["trace_id"].as_str())
        .collect();
    assert_eq!(ids, vec![failed.as_str()]);
    stack.shutdown();
}
