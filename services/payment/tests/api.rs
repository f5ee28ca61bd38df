//! The payment service's routes, driven without sockets, with its spans recorded in memory.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::StatusCode;
use demokit::testing::{call, post_json, span};
use demokit::{OUTCOME_REASON, Telemetry};
use payment_service::Settings;
use serde_json::{Value, json};
use tracekit::export::InMemoryExporter;
use tracekit::{SpanKind, Status};

const SETTINGS: Settings = Settings {
    provider_latency_ms: 0,
    fraud_latency_ms: 0,
    limit: 5000.0,
};

async fn pay_with(settings: Settings, body: &str) -> (StatusCode, Value, InMemoryExporter) {
    let (t, exporter) = Telemetry::in_memory("payment");
    let app = demokit::app(payment_service::app(t.clone(), settings), &t);
    let (status, answer) = call(app, post_json("/payments", body)).await;
    (status, answer, exporter)
}

async fn pay(body: &str) -> (StatusCode, Value) {
    let (status, answer, _) = pay_with(SETTINGS, body).await;
    (status, answer)
}

#[tokio::test]
async fn a_payment_under_the_limit_is_captured() {
    let (status, body) =
        pay(&json!({"order_id": "o1", "user_id": "1", "amount": 1299.0}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "captured");
    assert!(body["payment_id"].as_str().unwrap().starts_with("pay-"));
}

#[tokio::test]
async fn the_fraud_check_runs_beside_the_card_charge_as_a_sibling() {
    let settings = Settings {
        provider_latency_ms: 20,
        fraud_latency_ms: 5,
        ..SETTINGS
    };
    let body = json!({"order_id": "o1", "user_id": "1", "amount": 1299.0}).to_string();
    let (status, _, exporter) = pay_with(settings, &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = span(&spans, "POST /payments", SpanKind::Server);
    let charge = span(&spans, "charge card", SpanKind::Client);
    let fraud = span(&spans, "fraud check", SpanKind::Internal);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(charge.kind, SpanKind::Client);
    assert_eq!(fraud.kind, SpanKind::Internal);
    assert_eq!(charge.parent_span_id, server.span_id);
    assert_eq!(fraud.parent_span_id, server.span_id);
    // Concurrent, not one after the other: each started before the other ended.
    assert!(fraud.start_time_unix_nano < charge.end_time_unix_nano);
    assert!(charge.start_time_unix_nano < fraud.end_time_unix_nano);
    assert!(server.attribute(OUTCOME_REASON).is_none());
}

#[tokio::test]
async fn a_payment_over_the_limit_is_declined_with_402_and_its_reason_on_the_server_span() {
    let body = json!({"order_id": "o1", "user_id": "1", "amount": 6495.0}).to_string();
    let (status, answer, exporter) = pay_with(SETTINGS, &body).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let reason = "payment declined: amount 6495.00 exceeds the limit 5000.00";
    assert_eq!(answer["error"], reason);
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = span(&spans, "POST /payments", SpanKind::Server);
    assert_eq!(
        server.attribute(OUTCOME_REASON),
        Some(&reason.to_owned().into())
    );
    assert_eq!(
        server.status,
        Status::Unset,
        "a decline is an answer, not a fault"
    );
    assert_eq!(
        span(&spans, "charge card", SpanKind::Client).attribute("app.payment.declined"),
        Some(&true.into())
    );
}

#[tokio::test]
async fn bad_bodies_are_400() {
    for body in [
        "{",
        r#"{"order_id":"o"}"#,
        r#"{"order_id":"o","user_id":"1","amount":-3}"#,
    ] {
        let (status, answer) = pay(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer["error"].is_string(), "{body}");
    }
}

#[test]
fn help_shows_the_default_listen_address_and_the_otel_variables() {
    demokit::testing::assert_help_shows_defaults::<payment_service::Config>(
        "payment",
        payment_service::DEFAULT_LISTEN,
    );
}
