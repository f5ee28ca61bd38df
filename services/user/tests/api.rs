//! The user service's routes, driven without sockets.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::Telemetry;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn get(uri: &str, baggage: Option<&str>) -> (StatusCode, Value) {
    let t = Telemetry::noop("user");
    let app = demokit::app(user_service::app(t.clone(), 0), &t);
    let mut req = Request::get(uri);
    if let Some(b) = baggage {
        req = req.header("baggage", b);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn known_user_is_answered() {
    let (status, body) = get("/users/1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Ada Lovelace");
}

#[tokio::test]
async fn unknown_user_is_404_with_a_trace_id() {
    let (status, body) = get("/users/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("unknown user"));
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn injected_failure_from_baggage_is_503() {
    let (status, body) = get("/users/1", Some("sim.fail.user=1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("sim.fail.user"));
    // Another service's fault is not ours.
    let (status, _) = get("/users/1", Some("sim.fail.payment=1")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_is_answered_outside_tracing() {
    let t = Telemetry::noop("user");
    let app = demokit::app(user_service::app(t.clone(), 0), &t);
    let res = app
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("traceresponse").is_none());
}
