//! The frontend as the trust boundary, with real processes: a caller's `sim.*` baggage and
//! sampled flag are ignored unless the frontend is told to trust them; a concurrency limit
//! answers 503 with `Retry-After`; a downstream call that takes too long is a 504 timeout.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spanline_e2e::Stack;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `POST /orders` with the caller's `baggage` and an unsampled `traceparent`: the status,
/// the body and the `traceresponse`.
async fn order_as_outsider(stack: &Stack, baggage: &str) -> (u16, Value, String) {
    let r = stack
        .client
        .post(format!("{}/orders", stack.frontend_url))
        .header("baggage", baggage)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00"))
        .json(&json!({"user_id": "1", "product": "Mouse", "quantity": 1}))
        .send()
        .await
        .unwrap();
    let traceresponse = r.headers()["traceresponse"].to_str().unwrap().to_owned();
    (r.status().as_u16(), r.json().await.unwrap(), traceresponse)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_callers_faults_and_sampled_flag_are_not_obeyed() {
    let mut stack = Stack::start().await;
    let (status, body, traceresponse) =
        order_as_outsider(&stack, "sim.fail.payment=1,sim.delay.order=30000,k=v").await;
    assert_eq!(status, 201, "{body}");
    // The caller's trace id is kept, but the frontend sampled it itself (always on here).
    assert_eq!(body["trace_id"], CALLER_TRACE);
    assert!(traceresponse.ends_with("-01"), "{traceresponse}");
    let tree = stack
        .wait_for_tree(CALLER_TRACE, Duration::from_secs(20), |t| {
            t["span_count"].as_u64().is_some_and(|n| n >= 4)
        })
        .await;
    assert_eq!(tree["roots"][0]["parent_span_id"], CALLER_SPAN);
    assert_eq!(
        tree["roots"][0]["attributes"]["app.sim.dropped_incoming"], 2,
        "{:#}",
        tree["roots"][0]
    );
    // The query parameters still inject faults.
    let (status, body) = stack.place_order("?fail=payment", "1", 1).await;
    assert_eq!(status, 503, "{body}");
    stack.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_callers_drive_faults_a_full_frontend_sheds_and_a_slow_call_times_out() {
    let mut stack = Stack::start_with(|svc| match svc {
        "frontend" => vec![
            ("SIM_TRUST_INCOMING_BAGGAGE", "1".to_owned()),
            ("SIM_TRUST_INCOMING_SAMPLED", "1".to_owned()),
            ("SIM_MAX_CONCURRENCY", "1".to_owned()),
            ("SIM_CALL_TIMEOUT_MS", "1000".to_owned()),
        ],
        _ => Vec::new(),
    })
    .await;
    // Trusted: the caller's fault and its unsampled flag are obeyed.
    let (status, body, traceresponse) = order_as_outsider(&stack, "sim.fail.payment=1").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sim.fail.payment"),
        "{body}"
    );
    assert!(traceresponse.ends_with("-00"), "{traceresponse}");

    // A call slower than SIM_CALL_TIMEOUT_MS is a 504 that says so.
    let (status, body) = stack.place_order("?delay=user:3000", "1", 1).await;
    assert_eq!(status, 504, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("user service timed out"), "{error}");

    // One slow request holds the only slot (the frontend waits 20 s before working); it
    // is sent again while it is itself refused by one of the probes below.
    let slow = {
        let client = stack.client.clone();
        let url = format!("{}/users?delay=frontend:20000", stack.frontend_url);
        tokio::spawn(async move {
            loop {
                let r = client.get(&url).send().await;
                if !r.as_ref().is_ok_and(|r| r.status() == 503) {
                    return r;
                }
                // A pause between tries, not a synchronisation: the loop ends on admission.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // ... so another is refused at once, once the slow one is in (polled with a deadline).
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let r = stack
            .client
            .get(format!("{}/users", stack.frontend_url))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break r;
        }
        assert_eq!(r.status(), 200);
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("server overloaded"),
        "{body}"
    );
    // The refusal is traced: an error SERVER span with the 503.
    let trace_id = body["trace_id"].as_str().unwrap();
    let tree = stack
        .wait_for_tree(trace_id, Duration::from_secs(20), |t| {
            t["span_count"].as_u64() == Some(1)
        })
        .await;
    let root = &tree["roots"][0];
    assert_eq!(root["status"], "error", "{root:#}");
    assert_eq!(root["attributes"]["http.response.status_code"], 503);
    // Dropping the slow request's connection ends it, so the frontend stops at once.
    slow.abort();
    for (name, code) in stack.shutdown() {
        assert_eq!(code, Some(0), "{name} did not exit 0 on SIGTERM");
    }
}
