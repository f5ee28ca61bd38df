//! Sampling with real processes: the services poll the collector's strategies and follow
//! them per operation; tail sampling keeps every failed order, drops most others, and its
//! counts in `/metrics` match what is stored.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::{Stack, free_port, walk};

/// POSTs an order (with `query` appended to `/orders`); returns the status and the
/// `traceresponse` (trace id, sampled flag).
async fn order(stack: &Stack, query: &str) -> (u16, String, bool) {
    let r = stack
        .client
        .post(format!("{}/orders{query}", stack.frontend_url))
        .json(&json!({"user_id": "1", "product": "Mouse", "quantity": 1}))
        .send()
        .await
        .unwrap();
    let header = r.headers()["traceresponse"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = header.split('-').collect();
    let sampled = u8::from_str_radix(parts[3], 16).unwrap() & 1 == 1;
    (r.status().as_u16(), parts[1].to_owned(), sampled)
}

async fn get_json(stack: &Stack, path: &str) -> (u16, Value) {
    let r = stack.get(&format!("{}{path}", stack.query_url)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metric(stack: &Stack, name: &str) -> u64 {
    let text = stack.query_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn services_follow_the_collectors_strategy_per_operation() {
    let dir = tempfile::tempdir().unwrap();
    let strategies = dir.path().join("strategies.json");
    std::fs::write(
        &strategies,
        r#"{"default_strategy": {"type": "probabilistic", "param": 1.0,
            "operation_strategies": [{"operation": "POST /orders", "type": "probabilistic", "param": 0.0}]}}"#,
    )
    .unwrap();
    // The services poll the collector's sampling port; start on the initial rate 1.
    let sampling_port = free_port();
    let arg = format!(
        "endpoint=http://127.0.0.1:{sampling_port}/api/sampling,pollingIntervalMs=200,initialSamplingRate=1"
    );
    let mut stack = Stack::start_configured(
        vec![
            (
                "COLLECTOR_SAMPLING_STRATEGIES",
                strategies.display().to_string(),
            ),
            (
                "COLLECTOR_SAMPLING_ADDR",
                format!("127.0.0.1:{sampling_port}"),
            ),
        ],
        move |_| {
            vec![
                (
                    "OTEL_TRACES_SAMPLER",
                    "parentbased_jaeger_remote".to_owned(),
                ),
                ("OTEL_TRACES_SAMPLER_ARG", arg.clone()),
            ]
        },
    )
    .await;
    // Once the frontend has the strategy, POST /orders is never sampled...
    let deadline = Instant::now() + Duration::from_secs(30);
    while order(&stack, "").await.2 {
        assert!(
            Instant::now() < deadline,
            "strategy never applied\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        let (status, _, sampled) = order(&stack, "").await;
        assert_eq!(status, 201);
        assert!(!sampled, "POST /orders has probability 0");
    }
    // ...while another operation is, at probability 1, and its root says by which rule.
    let r = stack.get(&format!("{}/users/1", stack.frontend_url)).await;
    assert_eq!(r.status(), 200);
    let header = r.headers()["traceresponse"].to_str().unwrap().to_owned();
    let trace_id = header.split('-').nth(1).unwrap().to_owned();
    assert!(
        header.ends_with("-01") || header.ends_with("-03"),
        "{header}"
    );
    let tree = stack
        .wait_for_tree(&trace_id, Duration::from_secs(30), |t| {
            t["complete"] == true
        })
        .await;
    let root = &tree["roots"][0];
    assert_eq!(
        root["attributes"]["sampler.type"], "probabilistic",
        "{tree}"
    );
    assert_eq!(root["attributes"]["sampler.param"], 1.0);
    // The strategy as served.
    let (status, body) = get_json(&stack, "/api/sampling?service=frontend").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["operationSampling"]["perOperationStrategies"][0]["operation"],
        "POST /orders"
    );
    stack.shutdown();
}

#[tokio::test]
async fn tail_sampling_keeps_every_failed_order_and_the_metrics_match_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.yaml");
    std::fs::write(
        &policies,
        "decision_wait: 5s
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
",
    )
    .unwrap();
    let mut stack = Stack::start_configured(
        vec![("COLLECTOR_TAIL_SAMPLING", policies.display().to_string())],
        |_| Vec::new(),
    )
    .await;
    let mut failed = Vec::new();
    let total = 40;
    for i in 0..total {
        if i % 5 == 0 {
            let (status, trace_id, _) = order(&stack, "?fail=payment").await;
            assert!(status >= 500, "{status}");
            failed.push(trace_id);
        } else {
            assert_eq!(order(&stack, "").await.0, 201);
        }
    }
    // Every order's trace is decided (complete at once, or after decision_wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let decided = metric(&stack, "spanline_tail_sampling_traces_kept_total").await
            + metric(&stack, "spanline_tail_sampling_traces_dropped_total").await;
        if decided >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{decided} decided\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for trace_id in &failed {
        let (status, decision) = get_json(&stack, &format!("/v1/traces/{trace_id}/sampling")).await;
        assert_eq!(status, 200, "{trace_id}");
        assert_eq!(decision["decision"], "kept");
        assert_eq!(decision["policy"], "errors");
        let (status, tree) = get_json(&stack, &format!("/v1/traces/{trace_id}/tree")).await;
        assert_eq!(status, 200);
        assert_eq!(tree["complete"], true, "kept whole: {tree}");
        assert!(walk(&tree).len() > 3, "{tree}");
    }
    let kept = metric(&stack, "spanline_tail_sampling_traces_kept_total").await;
    let dropped = metric(&stack, "spanline_tail_sampling_traces_dropped_total").await;
    let (_, found) = get_json(&stack, "/v1/traces?limit=1000").await;
    let stored = found.as_array().map_or(0, Vec::len) as u64;
    assert_eq!(kept, stored, "kept {kept}, stored {stored}: {found}");
    assert!(
        dropped >= 20,
        "most successful orders dropped: {dropped} of {total}"
    );
    stack.shutdown();
}
