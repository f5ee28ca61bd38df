//! The query side against the real demo: after orders through the five real processes,
//! `/v1/dependencies` shows the demo's call graph, slow and failed orders are found by search,
//! `/v1/stats` counts requests, and the Jaeger API (what Grafana calls) answers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use spanline_e2e::Stack;

const TREE_TIMEOUT: Duration = Duration::from_secs(20);

async fn order(stack: &Stack, query: &str) -> (u16, String) {
    let (status, body) = stack.place_order(query, "1", 1).await;
    (status, body["trace_id"].as_str().unwrap().to_owned())
}

async fn get(stack: &Stack, path: &str) -> Value {
    stack.query_json(path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_search_stats_and_jaeger_after_demo_orders() {
    let mut stack = Stack::start().await;
    let (status, ok_trace) = order(&stack, "").await;
    assert_eq!(status, 201, "{}", stack.logs());
    let (status, slow_trace) = order(&stack, "?delay=payment:400").await;
    assert_eq!(status, 201);
    let (status, failed_trace) = order(&stack, "?fail=payment").await;
    assert!(status >= 500, "{status}");
    for id in [&ok_trace, &slow_trace, &failed_trace] {
        stack
            .wait_for_tree(id, TREE_TIMEOUT, |t| {
                t["complete"] == true && t["services"].as_array().map(Vec::len) == Some(4)
            })
            .await;
    }

    // The dependency graph of the demo.
    let deps = get(&stack, "/v1/dependencies?lookback=1h").await;
    let edges: Vec<(String, String, u64, u64)> = deps["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parent"].as_str().unwrap().to_owned(),
                e["child"].as_str().unwrap().to_owned(),
                e["call_count"].as_u64().unwrap(),
                e["error_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let edge = |p: &str, c: &str| {
        edges
            .iter()
            .find(|e| e.0 == p && e.1 == c)
            .unwrap_or_else(|| panic!("no edge {p} -> {c} in {deps:#}"))
    };
    assert_eq!(edge("frontend", "user").2, 3);
    assert_eq!(edge("frontend", "order").2, 3);
    let pay = edge("order", "payment");
    assert_eq!(pay.2, 3);
    assert!(pay.3 >= 1, "the failed payment is an error edge: {deps:#}");

    // Slow and failed traces are found, slowest first.
    let slow = get(&stack, "/v1/traces?min_duration=350ms").await;
    let slow_ids: Vec<&str> = slow
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(slow_ids.first(), Some(&slow_trace.as_str()), "{slow:#}");
    let failed = get(&stack, "/v1/traces?error=true&service=payment").await;
    assert_eq!(failed[0]["trace_id"], failed_trace.as_str(), "{failed:#}");

    // Stats count the SERVER spans of the three orders.
    let stats = get(&stack, "/v1/stats?window=15m&service=payment").await;
    assert_eq!(stats["services"][0]["request_count"], 3, "{stats:#}");
    assert!(stats["services"][0]["p99_ns"].as_u64().unwrap() >= 400_000_000);

    // The tree marks the critical path.
    let tree = get(&stack, &format!("/v1/traces/{slow_trace}/tree")).await;
    assert!(
        tree["critical_path"].as_array().unwrap().len() >= 5,
        "{tree:#}"
    );
    assert_eq!(tree["roots"][0]["critical"], true);

    // Grafana's calls.
    let services = get(&stack, "/api/services").await;
    assert_eq!(
        services["data"],
        json!(["frontend", "order", "payment", "user"])
    );
    let trace = get(&stack, &format!("/api/traces/{ok_trace}")).await;
    assert_eq!(trace["data"][0]["traceID"], ok_trace.as_str());
    assert!(trace["data"][0]["spans"].as_array().unwrap().len() >= 11);
    let deps = get(&stack, "/api/dependencies?lookback=3600000").await;
    assert_eq!(deps["data"].as_array().unwrap().len(), 3, "{deps:#}");
    let metrics = stack
        .client
        .get(format!("{}/metrics", stack.query_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "spanline_requests_total{service=\"payment\",operation=\"POST /payments\"} 3"
        ),
        "{metrics}"
    );

    let codes = stack.shutdown();
    assert!(codes.iter().all(|(_, c)| *c == Some(0)), "{codes:?}");
}
