//! Across the message queue, with a real nats-server: the synchronous order's asynchronous
//! tail, the asynchronous order over two queue hops, NATS down, and a consumer that was
//! down while messages queued. Skipped without nats-server, except under `CI=true`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::{Stack, walk};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A stack with NATS and one order placed with `query` that answered `status`; `None` when
/// nats-server is not available (skip).
async fn order_on_nats(query: &str, status: u16) -> Option<(Stack, Value)> {
    let stack = Stack::start_with_nats(|_| Vec::new()).await?;
    let (got, body) = stack.place_order(query, "1", 1).await;
    assert_eq!(got, status, "{body} {}", stack.logs());
    Some((stack, body))
}

/// The nodes named `name` of `kind` (`producer`, `consumer`, ...) in `tree`, each with its
/// parent.
fn nodes<'a>(tree: &'a Value, name: &str, kind: &str) -> Vec<(&'a Value, Option<&'a Value>)> {
    walk(tree)
        .into_iter()
        .filter(|(n, _)| n["name"] == name && n["kind"] == kind)
        .collect()
}

/// Whether `tree` has a `process <subject>` span of `service` whose parent is a
/// `publish <subject>` span.
fn consumed_by(tree: &Value, subject: &str, service: &str) -> bool {
    nodes(tree, &format!("process {subject}"), "consumer")
        .iter()
        .any(|(n, parent)| {
            n["service"] == service
                && parent.is_some_and(|p| {
                    p["kind"] == "producer" && p["name"] == format!("publish {subject}")
                })
        })
}

fn children_named(node: &Value) -> Vec<&str> {
    node["children"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_sync_order_has_five_services_and_a_producer_consumer_pair() {
    let Some((mut stack, body)) = order_on_nats("", 201).await else {
        return;
    };
    assert_eq!(body["status"], "confirmed");
    let trace_id = body["trace_id"].as_str().unwrap();
    let tree = stack
        .wait_for_tree(trace_id, TIMEOUT, |t| {
            consumed_by(t, "payments.completed", "notification")
                && t["services"].as_array().is_some_and(|s| s.len() == 5)
                && walk(t).iter().any(|(n, _)| n["name"] == "send email")
        })
        .await;
    assert_eq!(
        tree["services"],
        json!(["frontend", "notification", "order", "payment", "user"])
    );
    let (process, publish) = nodes(&tree, "process payments.completed", "consumer")
        .into_iter()
        .find(|(n, _)| n["service"] == "notification")
        .unwrap();
    let publish = publish.unwrap();
    assert_eq!(publish["service"], "payment");
    assert_eq!(publish["attributes"]["messaging.system"], "nats");
    assert_eq!(
        process["attributes"]["messaging.consumer.group.name"],
        "notification"
    );
    assert_eq!(process["links"][0]["span_id"], publish["span_id"]);
    let mut children = children_named(process);
    children.sort_unstable();
    assert_eq!(children, ["INSERT notifications", "send email"]);
    // The db span's query names its own span as traceparent (sqlcommenter).
    let insert = walk(&tree)
        .into_iter()
        .find(|(n, _)| n["name"] == "INSERT notifications")
        .unwrap()
        .0;
    let text = insert["attributes"]["db.query.text"].as_str().unwrap();
    let span_id = insert["span_id"].as_str().unwrap();
    assert!(
        text.contains(&format!("/*traceparent='00-{trace_id}-{span_id}-")),
        "{text}"
    );
    stack.shutdown();
}

#[tokio::test]
async fn an_async_order_answers_202_and_becomes_one_trace_across_both_hops() {
    let Some((mut stack, body)) = order_on_nats("?mode=async", 202).await else {
        return;
    };
    assert_eq!(body["status"], "pending");
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    let trace_id = body["trace_id"].as_str().unwrap().to_owned();
    assert!(body["trace_url"].as_str().unwrap().ends_with(&trace_id));

    // GET /orders/{id} ends confirmed.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = stack
            .get(&format!("{}/orders/{order_id}", stack.frontend_url))
            .await;
        let order: Value = r.json().await.unwrap();
        if order["status"] == "confirmed" {
            assert!(order["payment_id"].is_string());
            break;
        }
        assert_eq!(order["status"], "pending", "{order}");
        assert!(Instant::now() < deadline, "order still {order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let tree = stack
        .wait_for_tree(&trace_id, TIMEOUT, |t| {
            consumed_by(t, "payments.requested", "payment")
                && consumed_by(t, "payments.completed", "order")
                && consumed_by(t, "payments.completed", "notification")
        })
        .await;
    assert_eq!(
        tree["roots"].as_array().unwrap().len(),
        1,
        "one root: {tree:#}"
    );
    assert!(!walk(&tree).iter().any(|(n, _)| n["orphan"] == true));
    // The second hop hangs under the first: payment's process span publishes the outcome.
    let (charge, _) = nodes(&tree, "process payments.requested", "consumer")[0];
    assert!(children_named(charge).contains(&"publish payments.completed"));
    assert!(children_named(charge).contains(&"charge card"));
    stack.shutdown();
}

#[tokio::test]
async fn with_nats_stopped_sync_orders_succeed_and_the_publish_is_an_error_span() {
    let Some(mut stack) = Stack::start_with_nats(|_| Vec::new()).await else {
        return;
    };
    stack.stop_nats();
    let (status, body) = stack.place_order("", "1", 1).await;
    assert_eq!(status, 201, "{body} {}", stack.logs());
    assert_eq!(body["status"], "confirmed");
    let trace_id = body["trace_id"].as_str().unwrap();
    let tree = stack
        .wait_for_tree(trace_id, TIMEOUT, |t| {
            !nodes(t, "publish payments.completed", "producer").is_empty()
        })
        .await;
    let (publish, parent) = nodes(&tree, "publish payments.completed", "producer")[0];
    assert_eq!(publish["status"], "error");
    assert!(
        publish["status_message"]
            .as_str()
            .unwrap()
            .contains("publish payments.completed"),
        "{publish:#}"
    );
    assert_eq!(parent.unwrap()["name"], "POST /payments");
    // The answer did not wait for the failed publish: the root ended before it.
    let root = &tree["roots"][0];
    let root_end =
        root["start_time_unix_nano"].as_u64().unwrap() + root["duration_ns"].as_u64().unwrap();
    let publish_end = publish["start_time_unix_nano"].as_u64().unwrap()
        + publish["duration_ns"].as_u64().unwrap();
    assert!(
        publish_end > root_end,
        "the request path waited for the publish"
    );
    stack.shutdown();
}

#[tokio::test]
async fn queued_messages_reach_a_restarted_consumer_and_join_their_traces() {
    let Some(mut stack) = Stack::start_with_nats(|_| Vec::new()).await else {
        return;
    };
    assert_eq!(stack.stop_service("notification-service"), Some(0));
    let mut traces = Vec::new();
    for _ in 0..3 {
        let (status, body) = stack.place_order("", "1", 1).await;
        assert_eq!(status, 201, "{body}");
        traces.push(body["trace_id"].as_str().unwrap().to_owned());
    }
    // Each message is stored (its publish span succeeded) before the consumer returns.
    for t in &traces {
        stack
            .wait_for_tree(t, TIMEOUT, |tree| {
                nodes(tree, "publish payments.completed", "producer")
                    .iter()
                    .any(|(n, _)| n["status"] != "error")
            })
            .await;
    }
    stack.start_service("notification-service").await;
    for t in &traces {
        stack
            .wait_for_tree(t, TIMEOUT, |tree| {
                consumed_by(tree, "payments.completed", "notification")
            })
            .await;
    }
    stack.shutdown();
}

#[tokio::test]
async fn a_baggage_fault_reaches_the_consumer_and_each_redelivery_is_a_process_span() {
    let Some((mut stack, body)) = order_on_nats("?fail=notification", 201).await else {
        return;
    };
    let trace_id = body["trace_id"].as_str().unwrap();
    let tree = stack
        .wait_for_tree(trace_id, TIMEOUT, |t| {
            nodes(t, "process payments.completed", "consumer")
                .iter()
                .filter(|(n, _)| n["service"] == "notification")
                .count()
                == 3
        })
        .await;
    let mut attempts: Vec<i64> = nodes(&tree, "process payments.completed", "consumer")
        .iter()
        .filter(|(n, _)| n["service"] == "notification")
        .map(|(n, _)| {
            assert_eq!(n["status"], "error");
            n["attributes"]["messaging.nats.message.delivery_count"]
                .as_i64()
                .unwrap()
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 3]);
    stack.shutdown();
}

#[tokio::test]
async fn once_consumers_are_known_wait_delivers_the_whole_async_flow_and_the_map_shows_queue_hops()
{
    let Some(mut stack) = Stack::start_with_nats(|_| Vec::new()).await else {
        return;
    };
    // The first async order teaches the collector the consumer groups of each destination.
    let (status, first) = stack.place_order("?mode=async", "1", 1).await;
    assert_eq!(status, 202, "{first}");
    stack
        .wait_for_tree(first["trace_id"].as_str().unwrap(), TIMEOUT, |t| {
            consumed_by(t, "payments.requested", "payment")
                && consumed_by(t, "payments.completed", "order")
                && consumed_by(t, "payments.completed", "notification")
        })
        .await;
    // The second: one `wait=` answer is the whole flow, complete.
    let (status, second) = stack.place_order("?mode=async", "1", 1).await;
    assert_eq!(status, 202, "{second}");
    let trace_id = second["trace_id"].as_str().unwrap();
    let tree = stack
        .query_json(&format!("/v1/traces/{trace_id}/tree?wait=20"))
        .await;
    assert_eq!(tree["complete"], true, "{tree:#}");
    assert!(
        consumed_by(&tree, "payments.requested", "payment"),
        "{tree:#}"
    );
    assert!(
        consumed_by(&tree, "payments.completed", "order"),
        "{tree:#}"
    );
    assert!(
        consumed_by(&tree, "payments.completed", "notification"),
        "{tree:#}"
    );
    // The producer lists the consumers that link to it; the text tree says so too.
    let (publish, _) = nodes(&tree, "publish payments.requested", "producer")[0];
    assert_eq!(publish["linked_from"][0]["service"], "payment");
    let text = stack
        .query_text(&format!("/v1/traces/{trace_id}/tree?format=text"))
        .await;
    assert!(
        text.contains("↩ linked from payment process payments.requested [consumer]"),
        "{text}"
    );
    let deps = stack.query_json("/v1/dependencies").await;
    let hops: Vec<(&str, &str, &str)> = deps["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["parent"].as_str()?,
                e["via"].as_str()?,
                e["child"].as_str()?,
            ))
        })
        .collect();
    for hop in [
        ("order", "payments.requested", "payment"),
        ("payment", "payments.completed", "notification"),
        ("payment", "payments.completed", "order"),
    ] {
        assert!(hops.contains(&hop), "{hop:?} not in {deps:#}");
    }
    stack.shutdown();
}

#[tokio::test]
async fn an_async_order_whose_payment_fails_every_delivery_ends_failed_with_the_reason() {
    let Some((mut stack, body)) = order_on_nats("?mode=async&fail=payment", 202).await else {
        return;
    };
    assert_eq!(body["status"], "pending");
    let trace_id = body["trace_id"].as_str().unwrap();
    let attempts = |t: &Value| nodes(t, "process payments.requested", "consumer").len();
    let tree = stack
        .wait_for_tree(trace_id, TIMEOUT, |t| {
            attempts(t) == 3 && consumed_by(t, "payments.failed", "order")
        })
        .await;
    let mut gave_up = Vec::new();
    for (n, parent) in nodes(&tree, "process payments.requested", "consumer") {
        assert_eq!(n["status"], "error", "{n:#}");
        assert_eq!(parent.unwrap()["name"], "publish payments.requested");
        let count = n["attributes"]["messaging.nats.message.delivery_count"]
            .as_i64()
            .unwrap();
        // Only the last delivery reports the failure: its one child is that publish.
        let children = children_named(n);
        if count == 3 {
            assert_eq!(children, ["publish payments.failed"], "{n:#}");
            assert_eq!(n["attributes"]["app.payment.gave_up"], true);
            gave_up.push(count);
        } else {
            assert!(children.is_empty(), "failed before charging: {n:#}");
        }
    }
    assert_eq!(gave_up, [3]);
    assert!(nodes(&tree, "publish payments.completed", "producer").is_empty());
    // The order's CONSUMER span of the failure is an error naming the reason.
    let (failed, _) = nodes(&tree, "process payments.failed", "consumer")
        .into_iter()
        .find(|(n, _)| n["service"] == "order")
        .unwrap();
    assert_eq!(failed["status"], "error", "{failed:#}");
    let reason = failed["attributes"]["app.outcome.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("payment failed after 3 attempts: injected fault (sim.fail.payment)"),
        "{reason}"
    );

    // The order status API says `failed`, with the reason (polled: the update follows the
    // consumer span's start).
    let order = stack
        .wait_order_settled(body["order_id"].as_str().unwrap(), TIMEOUT)
        .await;
    assert_eq!(order["status"], "failed", "{order:#}");
    assert_eq!(order["reason"], reason, "{order:#}");
    stack.shutdown();
}
