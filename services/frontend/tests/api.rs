//! The frontend's routes, driven without sockets, in front of real user, order and payment
//! services on loopback; the frontend's spans are recorded in memory.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::testing::{call, post_json, span as named, spawn};
use demokit::{OUTCOME_REASON, Telemetry};
use frontend::Settings;
use serde_json::{Value, json};
use tracekit::export::InMemoryExporter;
use tracekit::{SpanKind, Status};

const UI: &str = "http://ui.test:16686";

/// The three downstream services on loopback, recording nothing: the frontend's settings.
async fn stack() -> Settings {
    let serve = |name: &'static str, routes: fn(Telemetry) -> axum::Router| async move {
        let t = Telemetry::noop(name);
        let addr = spawn(demokit::app(routes(t.clone()), &t)).await.unwrap();
        format!("http://{addr}")
    };
    let payment = serve("payment", |t| {
        payment_service::app(
            t,
            payment_service::Settings {
                provider_latency_ms: 0,
                fraud_latency_ms: 0,
                limit: 5000.0,
            },
        )
    })
    .await;
    let t = Telemetry::noop("order");
    let order_settings = order_service::Settings {
        payment_service_url: payment,
        db_latency_ms: 0,
    };
    let order = spawn(demokit::app(
        order_service::app(t.clone(), order_settings),
        &t,
    ))
    .await
    .unwrap();
    let user = serve("user", |t| user_service::app(t, 0)).await;
    Settings {
        user_service_url: user,
        order_service_url: format!("http://{order}"),
        collector_ui_url: UI.to_owned(),
    }
}

async fn send(req: Request<Body>) -> (StatusCode, Value, InMemoryExporter) {
    let (t, exporter) = Telemetry::in_memory("frontend");
    let app = demokit::app(frontend::app(t.clone(), stack().await), &t);
    let (status, body) = call(app, req).await;
    (status, body, exporter)
}

fn order(body: &Value) -> Request<Body> {
    post_json("/orders", body.to_string())
}

#[tokio::test]
async fn an_order_is_answered_with_its_trace_after_calling_user_then_order() {
    let (status, body, exporter) = send(order(
        &json!({"user_id": 1, "product": "Laptop", "quantity": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "confirmed");
    assert_eq!(body["user_id"], "1");
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    let user = named(&spans, "GET /users/{id}", SpanKind::Client);
    let placed = named(&spans, "POST /orders", SpanKind::Client);
    assert_eq!(body["trace_id"], server.trace_id.to_string());
    assert_eq!(body["trace_url"], format!("{UI}/trace/{}", server.trace_id));
    assert_eq!(user.parent_span_id, server.span_id);
    assert_eq!(placed.parent_span_id, server.span_id);
    assert!(
        user.end_time_unix_nano <= placed.start_time_unix_nano,
        "sequential"
    );
    assert_eq!(
        server.attribute("app.order.id"),
        Some(&body["order_id"].as_str().unwrap().to_owned().into())
    );
}

#[tokio::test]
async fn an_unknown_user_is_404_decided_by_the_user_service() {
    let (status, body, exporter) = send(order(
        &json!({"user_id": "999", "product": "Laptop", "quantity": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown user \"999\"");
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    let user = named(&spans, "GET /users/{id}", SpanKind::Client);
    assert_eq!(body["trace_url"], format!("{UI}/trace/{}", server.trace_id));
    assert!(server.attribute(OUTCOME_REASON).is_none());
    assert_eq!(server.status, Status::Unset);
    assert_eq!(user.status, Status::error("HTTP 404"));
}

#[tokio::test]
async fn a_bad_body_is_400_with_the_reason_on_the_frontend_span() {
    let (status, body, exporter) = send(post_json("/orders", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let spans = exporter.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        spans[0].attribute(OUTCOME_REASON),
        Some(&body["error"].as_str().unwrap().to_owned().into())
    );
    assert_eq!(
        body["trace_url"],
        format!("{UI}/trace/{}", spans[0].trace_id)
    );
}

#[tokio::test]
async fn an_injected_payment_failure_is_a_5xx_and_an_error_on_every_frontend_span() {
    let body = json!({"user_id": "1", "product": "Laptop", "quantity": 1});
    let (status, body, exporter) = send(post_json("/orders?fail=payment", body.to_string())).await;
    assert!(status.is_server_error(), "{status}");
    assert!(
        body["error"].as_str().unwrap().contains("sim.fail.payment"),
        "{body}"
    );
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    assert!(server.status.is_error());
    assert_eq!(
        server.attribute("app.sim.fail.payment"),
        Some(&"1".to_owned().into())
    );
    assert!(
        named(&spans, "POST /orders", SpanKind::Client)
            .status
            .is_error()
    );
}

#[tokio::test]
async fn reads_are_proxied_to_the_owning_service() {
    let (status, user, exporter) =
        send(Request::get("/users/2").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["name"], "Grace Hopper");
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    named(&spans, "GET /users/{id}", SpanKind::Client);
    let (status, body, _) = send(Request::get("/orders/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["trace_url"].as_str().unwrap().starts_with(UI));
    let (status, _, _) = send(Request::get("/users/no!pe").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn help_shows_the_default_listen_address_and_the_otel_variables() {
    demokit::testing::assert_help_shows_defaults::<frontend::Config>(
        "frontend",
        frontend::DEFAULT_LISTEN,
    );
}
