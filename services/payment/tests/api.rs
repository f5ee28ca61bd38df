//! The payment service's routes, driven without sockets.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::Telemetry;
use http_body_util::BodyExt;
use payment_service::Settings;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn pay(body: &str) -> (StatusCode, Value) {
    let t = Telemetry::noop("payment");
    let settings = Settings {
        provider_latency_ms: 0,
        limit: 5000.0,
    };
    let app = demokit::app(payment_service::app(t.clone(), settings), &t);
    let req = Request::post("/payments")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
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
async fn a_payment_over_the_limit_is_declined_with_402() {
    let (status, body) =
        pay(&json!({"order_id": "o1", "user_id": "1", "amount": 6495.0}).to_string()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(body["error"].as_str().unwrap().contains("declined"));
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
