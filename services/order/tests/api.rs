//! The order service's validation, driven without sockets (the happy path, which calls the
//! payment service, is covered by the end-to-end test).
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::Telemetry;
use http_body_util::BodyExt;
use order_service::Settings;
use serde_json::Value;
use tower::ServiceExt;

async fn call(req: Request<Body>) -> (StatusCode, Value) {
    let t = Telemetry::noop("order");
    let settings = Settings {
        // Nothing listens on port 9: a call that got this far would fail as unreachable.
        payment_service_url: "http://127.0.0.1:9".to_owned(),
        db_latency_ms: 0,
    };
    let app = demokit::app(order_service::app(t.clone(), settings), &t);
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(body: &str) -> Request<Body> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn invalid_orders_are_400() {
    for body in [
        r#"{"user_id":"1","product":"Spaceship","quantity":1}"#,
        r#"{"user_id":"1","product":"Laptop","quantity":0}"#,
        r#"{"user_id":"1","product":"Laptop","quantity":101}"#,
        r#"{"user_id":"1"}"#,
    ] {
        let (status, answer) = call(post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
}

#[tokio::test]
async fn an_unreachable_payment_service_is_a_502_with_the_reason() {
    let (status, answer) = call(post(r#"{"user_id":"1","product":"laptop","quantity":1}"#)).await;
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
    let (status, _) = call(
        Request::get("/orders/ord-nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
