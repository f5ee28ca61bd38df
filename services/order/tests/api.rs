//! The order service's routes, driven without sockets, calling a real payment service on
//! loopback; the order service's spans are recorded in memory.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::testing::{call, post_json, span as named, spawn};
use demokit::{OUTCOME_REASON, Telemetry};
use order_service::Settings;
use serde_json::Value;
use tracekit::export::InMemoryExporter;
use tracekit::http::TRACERESPONSE_ATTRIBUTE;
use tracekit::{SpanKind, Status, Value as AttributeValue};

/// A payment service on loopback, recording nothing.
async fn payment_url() -> String {
    let t = Telemetry::noop("payment");
    let settings = payment_service::Settings {
        provider_latency_ms: 0,
        fraud_latency_ms: 0,
        limit: 5000.0,
    };
    let addr = spawn(demokit::app(payment_service::app(t.clone(), settings), &t))
        .await
        .unwrap();
    format!("http://{addr}")
}

async fn call_order(
    payment_service_url: String,
    req: Request<Body>,
) -> (StatusCode, Value, InMemoryExporter) {
    let (t, exporter) = Telemetry::in_memory("order");
    let settings = Settings {
        payment_service_url,
        db_latency_ms: 0,
    };
    let app = demokit::app(order_service::app(t.clone(), settings), &t);
    let (status, body) = call(app, req).await;
    (status, body, exporter)
}

/// Nothing listens on port 9: a call that got this far fails as unreachable.
const NO_PAYMENT: &str = "http://127.0.0.1:9";

fn post(body: &str) -> Request<Body> {
    post_json("/orders", body)
}

#[tokio::test]
async fn a_placed_order_records_the_insert_and_the_payment_call() {
    let (status, order, exporter) = call_order(
        payment_url().await,
        post(r#"{"user_id":"1","product":"laptop","quantity":2}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["amount"], 2598.0);
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    let insert = named(&spans, "INSERT orders", SpanKind::Client);
    let payment = named(&spans, "POST /payments", SpanKind::Client);
    assert_eq!(insert.parent_span_id, server.span_id);
    assert_eq!(payment.parent_span_id, server.span_id);
    assert_eq!(
        server.attribute("app.order.id"),
        Some(&AttributeValue::from(
            order["order_id"].as_str().unwrap().to_owned()
        ))
    );
    assert_eq!(payment.attribute("peer.service"), Some(&"payment".into()));
    // The payment service's traceresponse names its SERVER span, a child of this call.
    let Some(AttributeValue::StrArray(tr)) = payment.attribute(TRACERESPONSE_ATTRIBUTE) else {
        panic!("no traceresponse on {payment:#?}");
    };
    assert!(
        tr[0].starts_with(&format!("00-{}-", payment.trace_id)),
        "{tr:?}"
    );
}

#[tokio::test]
async fn a_declined_payment_is_passed_on_as_402_without_a_reason_of_our_own() {
    let (status, answer, exporter) = call_order(
        payment_url().await,
        post(r#"{"user_id":"1","product":"Laptop","quantity":5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        answer["error"],
        "payment declined: amount 6495.00 exceeds the limit 5000.00"
    );
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    let payment = named(&spans, "POST /payments", SpanKind::Client);
    assert!(
        server.attribute(OUTCOME_REASON).is_none(),
        "payment decided it"
    );
    assert_eq!(server.status, Status::Unset);
    assert_eq!(payment.status, Status::error("HTTP 402"));
}

#[tokio::test]
async fn invalid_orders_are_400_with_the_reason_on_the_server_span() {
    for body in [
        r#"{"user_id":"1","product":"Spaceship","quantity":1}"#,
        r#"{"user_id":"1","product":"Laptop","quantity":0}"#,
        r#"{"user_id":"1","product":"Laptop","quantity":101}"#,
        r#"{"user_id":"1"}"#,
    ] {
        let (status, answer, exporter) = call_order(NO_PAYMENT.to_owned(), post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let spans = exporter.wait_for(1, Duration::from_secs(5));
        assert_eq!(
            spans[0].attribute(OUTCOME_REASON),
            Some(&AttributeValue::from(
                answer["error"].as_str().unwrap().to_owned()
            )),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_payment_service_is_a_502_with_the_reason() {
    let (status, answer, _) = call_order(
        NO_PAYMENT.to_owned(),
        post(r#"{"user_id":"1","product":"laptop","quantity":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("payment service unreachable"),
        "{answer}"
    );
}

#[tokio::test]
async fn unknown_orders_are_404() {
    let req = Request::get("/orders/ord-nope")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call_order(NO_PAYMENT.to_owned(), req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn help_shows_the_default_listen_address_and_the_otel_variables() {
    demokit::testing::assert_help_shows_defaults::<order_service::Config>(
        "order",
        order_service::DEFAULT_LISTEN,
    );
}

#[tokio::test]
async fn an_async_order_without_messaging_is_a_503_and_no_payment_is_called() {
    let req = post_json(
        "/orders?mode=async",
        r#"{"user_id": "1", "product": "Laptop", "quantity": 1}"#,
    );
    let (status, body, exporter) = call_order(NO_PAYMENT.to_owned(), req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("message queue unavailable"),
        "{body}"
    );
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    assert!(!spans.iter().any(|s| s.name == "POST /payments"));
    assert!(spans.iter().any(|s| s.name == "INSERT orders"));
}
