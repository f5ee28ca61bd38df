//! The demo flow end to end: five real processes, real HTTP, W3C propagation, spans
//! exported over OTLP/HTTP into the collector's SQLite store, read back as trees.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use spanline_e2e::{Stack, walk};

const TREE_TIMEOUT: Duration = Duration::from_secs(20);

fn order_body() -> Value {
    json!({"user_id": "1", "product": "Laptop", "quantity": 1})
}

/// `POST /orders` (the usual body) with these request headers: the 201 answer's JSON.
async fn order_with(stack: &Stack, headers: &[(&str, String)]) -> Value {
    let mut request = stack
        .client
        .post(format!("{}/orders", stack.frontend_url))
        .json(&order_body());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let res = request.send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Waits for the tree of `trace_id` to be complete, with spans from `n` services.
async fn complete_tree(stack: &Stack, trace_id: &str, n: usize) -> Value {
    stack
        .wait_for_tree(trace_id, TREE_TIMEOUT, |t| {
            services(t).len() == n && t["complete"] == true
        })
        .await
}

fn services(tree: &Value) -> Vec<&str> {
    tree["services"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn end(n: &Value) -> u64 {
    n["start_time_unix_nano"].as_u64().unwrap() + n["duration_ns"].as_u64().unwrap()
}

fn find<'a>(tree: &'a Value, service: &str, name: &str, kind: &str) -> &'a Value {
    walk(tree)
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n["service"] == service && n["name"] == name && n["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} span {service} {name:?} in {tree:#}"))
}

/// The structural promises of a demo trace: one root, the frontend's `POST /orders` SERVER
/// span; every SERVER span below the frontend has a CLIENT parent in its caller; children
/// lie within their parents; one trace id everywhere.
fn assert_well_formed(tree: &Value, trace_id: &str) {
    assert_eq!(tree["trace_id"], trace_id);
    let roots = tree["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "exactly one root: {tree:#}");
    let root = &roots[0];
    assert_eq!(root["service"], "frontend");
    assert_eq!(root["name"], "POST /orders");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["orphan"], false);
    let caller = |svc: &str| match svc {
        "user" | "order" => "frontend",
        "payment" => "order",
        _ => "",
    };
    for (node, parent) in walk(tree) {
        if let Some(p) = parent {
            assert!(
                node["start_time_unix_nano"].as_u64() >= p["start_time_unix_nano"].as_u64(),
                "{} starts before its parent {}",
                node["name"],
                p["name"]
            );
            assert!(
                end(node) <= end(p),
                "{} ends after its parent {}",
                node["name"],
                p["name"]
            );
            assert_eq!(node["parent_span_id"], p["span_id"]);
        }
        let svc = node["service"].as_str().unwrap();
        if node["kind"] == "server" && svc != "frontend" {
            let p = parent.unwrap_or_else(|| panic!("{svc} server span without parent"));
            assert_eq!(
                p["kind"], "client",
                "{svc} server span's parent is not a CLIENT span"
            );
            assert_eq!(
                p["service"],
                caller(svc),
                "{svc} server span's parent is in the wrong service"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_traced_end_to_end_and_survives_a_collector_restart() {
    let mut stack = Stack::start().await;
    let c = stack.client.clone();
    let fe = stack.frontend_url.clone();

    // 1. A normal order.
    let res = c
        .post(format!("{fe}/orders"))
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", stack.logs());
    let traceresponse = res.headers()["traceresponse"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let trace_id = body["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);
    assert!(
        trace_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(body["status"], "confirmed");
    assert_eq!(
        body["trace_url"],
        format!("{}/trace/{trace_id}", stack.query_url)
    );
    assert!(
        traceresponse.starts_with(&format!("00-{trace_id}-")),
        "{traceresponse}"
    );

    let tree = stack
        .wait_for_tree(&trace_id, TREE_TIMEOUT, |t| {
            services(t).len() == 4 && t["span_count"].as_u64() >= Some(11) && t["complete"] == true
        })
        .await;
    assert_eq!(services(&tree), ["frontend", "order", "payment", "user"]);
    assert_well_formed(&tree, &trace_id);
    let root_span_id = tree["roots"][0]["span_id"].as_str().unwrap();
    assert!(
        traceresponse.contains(root_span_id),
        "traceresponse names the root span"
    );
    assert_eq!(
        tree["roots"][0]["attributes"]["http.response.status_code"],
        201
    );
    find(&tree, "user", "SELECT users", "client");
    find(&tree, "order", "INSERT orders", "client");
    let charge = find(&tree, "payment", "charge card", "client");
    let fraud = find(&tree, "payment", "fraud check", "internal");
    // The fraud check runs beside the card charge: a sibling, off the critical path.
    assert_eq!(fraud["parent_span_id"], charge["parent_span_id"]);
    assert_eq!(charge["critical"], true, "{charge:#}");
    assert_eq!(fraud["critical"], false, "{fraud:#}");
    assert_eq!(tree["span_count"], 11);
    let span_count = tree["span_count"].as_u64().unwrap();

    // The frontend proxies reads to the owning services.
    let order_id = body["order_id"].as_str().unwrap();
    let res = c
        .get(format!("{fe}/orders/{order_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["payment_id"],
        body["payment_id"]
    );
    let res = c.get(format!("{fe}/users/2")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "Grace Hopper");
    assert_eq!(
        c.get(format!("{fe}/users/nope!"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // The text tree names every service and the root.
    let text = c
        .get(format!(
            "{}/v1/traces/{trace_id}/tree?format=text",
            stack.query_url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with(&format!("trace {trace_id}")), "{text}");
    for needle in [
        "frontend POST /orders",
        "user GET /users/{id}",
        "payment POST /payments",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }

    // 2. A payment failure: error status on the payment spans and on the frontend root.
    let (status, body) = stack.place_order("?fail=payment", "1", 1).await;
    assert!(matches!(status, 502 | 503), "{status}");
    let failed_id = body["trace_id"].as_str().unwrap().to_owned();
    assert!(
        body["error"].as_str().unwrap().contains("payment"),
        "{body}"
    );
    let tree = complete_tree(&stack, &failed_id, 4).await;
    assert_well_formed(&tree, &failed_id);
    let payment = find(&tree, "payment", "POST /payments", "server");
    assert_eq!(payment["status"], "error", "{payment:#}");
    assert_eq!(payment["attributes"]["http.response.status_code"], 503);
    assert_eq!(
        payment["status_message"],
        "injected fault (sim.fail.payment)"
    );
    let events = payment["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["name"] == "exception"),
        "{payment:#}"
    );
    assert_eq!(
        find(&tree, "order", "POST /payments", "client")["status"],
        "error"
    );
    assert_eq!(tree["roots"][0]["status"], "error");

    // 3. An injected delay shows in the payment span's duration.
    let (status, body) = stack.place_order("?delay=payment:600", "1", 1).await;
    assert_eq!(status, 201);
    let slow_id = body["trace_id"].as_str().unwrap().to_owned();
    let tree = complete_tree(&stack, &slow_id, 4).await;
    assert_well_formed(&tree, &slow_id);
    let payment = find(&tree, "payment", "POST /payments", "server");
    assert!(
        payment["duration_ns"].as_u64().unwrap() >= 600_000_000,
        "{payment:#}"
    );
    assert_eq!(payment["attributes"]["app.fault.delay_ms"], 600);
    assert!(tree["roots"][0]["duration_ns"].as_u64().unwrap() >= 600_000_000);

    // 4. An unknown user is a 404 answer, not a fault.
    let (status, body) = stack.place_order("", "999", 1).await;
    assert_eq!(status, 404);
    let unknown_id = body["trace_id"].as_str().unwrap().to_owned();
    assert!(body["error"].as_str().unwrap().contains("unknown user"));
    let tree = complete_tree(&stack, &unknown_id, 2).await;
    assert_eq!(services(&tree), ["frontend", "user"]);
    assert_eq!(
        find(&tree, "user", "GET /users/{id}", "server")["attributes"]["app.outcome.reason"],
        "unknown user \"999\""
    );
    assert_ne!(tree["roots"][0]["status"], "error");
    assert_eq!(
        tree["roots"][0]["attributes"]["http.response.status_code"],
        404
    );

    // 5. A bad body is a 400 with a trace id.
    let res = c
        .post(format!("{fe}/orders"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["trace_id"]
            .as_str()
            .map(str::len),
        Some(32)
    );

    // 6. The stored trace survives a collector restart, whole.
    assert_eq!(
        stack.stop_collector(),
        Some(0),
        "collector exits cleanly on SIGTERM"
    );
    stack.start_collector().await;
    let tree = stack
        .wait_for_tree(&trace_id, TREE_TIMEOUT, |t| {
            t["span_count"].as_u64() == Some(span_count)
        })
        .await;
    assert_well_formed(&tree, &trace_id);
    assert_eq!(tree["complete"], true);

    // 7. Every process stops cleanly on SIGTERM.
    for (name, code) in stack.shutdown() {
        assert_eq!(code, Some(0), "{name} did not exit 0 on SIGTERM");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_continued_and_bad_ones_restart() {
    let mut stack = Stack::start().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    let body = order_with(
        &stack,
        &[
            ("traceparent", format!("00-{caller_trace}-{caller_span}-01")),
            ("tracestate", "vendor=opaque".to_owned()),
        ],
    )
    .await;
    assert_eq!(
        body["trace_id"], caller_trace,
        "the caller's trace is continued"
    );
    let tree = stack
        .wait_for_tree(caller_trace, TREE_TIMEOUT, |t| services(t).len() == 4)
        .await;
    // The caller's span never reaches the collector: our root is an orphan of it.
    let root = &tree["roots"][0];
    assert_eq!(root["parent_span_id"], caller_span);

    // An uppercase (invalid) traceparent starts a new trace instead of failing the request.
    let traceparent = format!("00-{}-{caller_span}-01", caller_trace.to_uppercase());
    let body = order_with(&stack, &[("traceparent", traceparent)]).await;
    assert_ne!(body["trace_id"], caller_trace);
    assert_ne!(
        body["trace_id"].as_str().unwrap(),
        caller_trace.to_uppercase()
    );
    stack.shutdown();
}
