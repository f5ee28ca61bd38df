//! What the collector learns besides spans outlives a restart on the same SQLite file: the
//! collector binary is started, stopped with SIGTERM and started again on the same data
//! directory.
//!
//! - A tail sampling decision that kept a trace is served by `GET /v1/traces/{id}/sampling`
//!   after the restart (issue 13).
//! - A consumer group learnt from a CONSUMER span is expected again after the restart: a
//!   PRODUCER span to its destination leaves the trace incomplete until the group's process
//!   span arrives (issue 12 §5).

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::child::Collector;
use serde_json::{Value, json};

/// The collector binary with tail sampling by `policies` when given.
async fn start(data_dir: &Path, policies: Option<&Path>) -> Collector {
    Collector::start(data_dir, |cmd| {
        if let Some(p) = policies {
            cmd.env("COLLECTOR_TAIL_SAMPLING", p);
        }
    })
    .await
}

/// `POST /v1/traces` of `spans` (simple JSON); asserts 200.
async fn post(c: &Collector, spans: Value) {
    let (status, body) = common::http(
        c.ingest,
        "POST",
        "/v1/traces",
        "application/json",
        spans.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `GET path` on the query port: (status, body).
async fn get(c: &Collector, path: &str) -> (u16, String) {
    common::http(c.query, "GET", path, "application/json", b"").await
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: Option<&str>,
    service: &str,
    name: &str,
    kind: &str,
    status: &str,
    attributes: Value,
) -> Value {
    json!({
        "trace_id": trace, "span_id": id, "parent_span_id": parent,
        "operation_name": name, "start_time": 1763700000.0, "end_time": 1763700000.5,
        "kind": kind, "status": status, "resource_attributes": {"service.name": service},
        "attributes": attributes
    })
}

const KEPT: &str = "0af7651916cd43dd8448eb211c80319c";
const DROPPED: &str = "0af7651916cd43dd8448eb211c80319d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_trace_decision_survives_a_restart_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.yaml");
    std::fs::write(
        &policies,
        "decision_wait: 30s\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let c = start(&data, Some(&policies)).await;
    // Two one-span traces, complete at once: the failed one is kept, the other dropped.
    for (trace, status) in [(KEPT, "error"), (DROPPED, "ok")] {
        post(
            &c,
            json!([span(
                trace,
                "00f067aa0ba902b7",
                None,
                "frontend",
                "POST /orders",
                "server",
                status,
                json!({})
            )]),
        )
        .await;
    }
    // Decided (in memory) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&c, &format!("/v1/traces/{KEPT}/sampling")).await.0 != 200 {
        assert!(Instant::now() < deadline, "no decision within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and written to the file (by the publisher, after the decision).
    let db = data.join("spanline.db");
    let stored = || {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        conn.query_row(
            "SELECT count(*) FROM sampling_decisions WHERE trace_id = ?1",
            [hex(KEPT)],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    while stored() == 0 {
        assert!(Instant::now() < deadline, "decision not stored within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, before) = get(&c, &format!("/v1/traces/{KEPT}/sampling")).await;
    c.stop().await;

    let c = start(&data, Some(&policies)).await;
    let (status, after) = get(&c, &format!("/v1/traces/{KEPT}/sampling")).await;
    assert_eq!(status, 200, "{after}");
    let (before, after): (Value, Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&after).unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(after["decision"], "kept");
    assert_eq!(after["policy"], "errors");
    assert_eq!(after["finish"], "complete");
    // The dropped trace was deleted and has no stored decision.
    let (status, _) = get(&c, &format!("/v1/traces/{DROPPED}/sampling")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&c, &format!("/v1/traces/{KEPT}")).await;
    assert_eq!(status, 200);
    c.stop().await;
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

const BEFORE: &str = "1af7651916cd43dd8448eb211c80319c";
const AFTER: &str = "2af7651916cd43dd8448eb211c80319c";

/// A payment's SERVER root and its PRODUCER span to `payments.completed`.
fn payment(trace: &str) -> Vec<Value> {
    let dest = json!({"messaging.destination.name": "payments.completed"});
    vec![
        span(
            trace,
            "00f067aa0ba902b1",
            None,
            "payment",
            "POST /payments",
            "server",
            "ok",
            json!({}),
        ),
        span(
            trace,
            "00f067aa0ba902b2",
            Some("00f067aa0ba902b1"),
            "payment",
            "publish payments.completed",
            "producer",
            "ok",
            dest,
        ),
    ]
}

/// The notification group's process span under the producer.
fn process(trace: &str) -> Value {
    span(
        trace,
        "00f067aa0ba902b3",
        Some("00f067aa0ba902b2"),
        "notification",
        "process payments.completed",
        "consumer",
        "ok",
        json!({
            "messaging.destination.name": "payments.completed",
            "messaging.consumer.group.name": "notification"
        }),
    )
}

async fn tree(c: &Collector, trace: &str, wait_s: u32) -> Value {
    let (status, body) = get(c, &format!("/v1/traces/{trace}/tree?wait={wait_s}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learnt_consumer_group_is_expected_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), None).await;
    let mut whole = payment(BEFORE);
    whole.push(process(BEFORE));
    post(&c, Value::Array(whole)).await;
    assert_eq!(tree(&c, BEFORE, 0).await["complete"], true);
    c.stop().await;

    let c = start(dir.path(), None).await;
    post(&c, Value::Array(payment(AFTER))).await;
    let t = tree(&c, AFTER, 0).await;
    assert_eq!(t["complete"], false, "the group is expected again: {t}");
    assert_eq!(t["missing"][0]["service"], "notification", "{t}");
    post(&c, json!([process(AFTER)])).await;
    assert_eq!(tree(&c, AFTER, 5).await["complete"], true);
    c.stop().await;
}
