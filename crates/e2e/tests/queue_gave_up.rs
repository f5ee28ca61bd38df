//! A payment that never acknowledges a `payments.requested` message (it hangs past
//! `NATS_ACK_WAIT_MS` on every delivery, as a process dying mid-way would): JetStream gives
//! up after `NATS_MAX_DELIVER` deliveries with an advisory only, and the order service turns
//! that into a `failed` order with the reason, in the order's trace. With a real
//! nats-server; skipped without one, except under `CI=true`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use spanline_e2e::{Stack, walk};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn an_async_order_whose_payment_never_acknowledges_ends_failed_when_jetstream_gives_up() {
    // Payment's consumer: redelivery after 500 ms without an ack, two deliveries at most.
    let Some(mut stack) = Stack::start_with_nats(|svc| match svc {
        "payment" => vec![
            ("NATS_ACK_WAIT_MS", "500".to_owned()),
            ("NATS_MAX_DELIVER", "2".to_owned()),
        ],
        _ => Vec::new(),
    })
    .await
    else {
        return;
    };
    // Each delivery hangs 30 s (the longest injected delay) before charging: never acked
    // within the test.
    let (status, body) = stack
        .place_order("?mode=async&delay=payment:30000", "1", 1)
        .await;
    assert_eq!(status, 202, "{body} {}", stack.logs());
    assert_eq!(body["status"], "pending");
    let order = stack
        .wait_order_settled(body["order_id"].as_str().unwrap(), TIMEOUT)
        .await;
    assert_eq!(order["status"], "failed", "{order:#} {}", stack.logs());
    assert_eq!(
        order["reason"], "payment gave up after 2 deliveries (never acknowledged)",
        "{order:#}"
    );

    // The order's trace says why: a `gave up payments.requested` span of order under the
    // publish, in ERROR, with the delivery count and the UPDATE as its child.
    let trace_id = body["trace_id"].as_str().unwrap();
    let gave_up = |t: &Value| {
        walk(t)
            .into_iter()
            .find(|(n, _)| n["name"] == "gave up payments.requested")
            .map(|(n, p)| (n.clone(), p.cloned()))
    };
    let tree = stack
        .wait_for_tree(trace_id, TIMEOUT, |t| {
            gave_up(t).is_some_and(|(n, _)| n["children"].as_array().is_some_and(|c| !c.is_empty()))
        })
        .await;
    let (node, parent) = gave_up(&tree).expect("a gave up span");
    assert_eq!(node["service"], "order", "{node:#}");
    assert_eq!(node["kind"], "internal", "{node:#}");
    assert_eq!(node["status"], "error", "{node:#}");
    assert_eq!(
        node["attributes"]["messaging.nats.message.delivery_count"], 2,
        "{node:#}"
    );
    assert_eq!(
        node["attributes"]["app.outcome.reason"], order["reason"],
        "{node:#}"
    );
    assert_eq!(parent.unwrap()["name"], "publish payments.requested");
    let children: Vec<&str> = node["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(children, ["UPDATE orders"], "{node:#}");
    stack.shutdown();
}
