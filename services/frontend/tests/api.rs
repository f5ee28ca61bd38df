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
    Settings::new(&user, &format!("http://{order}"), UI)
}

async fn send(req: Request<Body>) -> (StatusCode, Value, InMemoryExporter) {
    send_with(req, |_| {}).await
}

/// [`send`] with the frontend's settings changed by `tweak`.
async fn send_with(
    req: Request<Body>,
    tweak: impl FnOnce(&mut Settings),
) -> (StatusCode, Value, InMemoryExporter) {
    let (t, exporter) = Telemetry::in_memory("frontend");
    let mut settings = stack().await;
    tweak(&mut settings);
    let app = demokit::app(frontend::app(t.clone(), settings), &t);
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

/// An order request carrying the caller's own baggage.
fn order_with_baggage(baggage: &str) -> Request<Body> {
    let body = json!({"user_id": "1", "product": "Laptop", "quantity": 1});
    let mut req = post_json("/orders", body.to_string());
    req.headers_mut()
        .insert("baggage", baggage.parse().unwrap());
    req
}

#[tokio::test]
async fn a_callers_sim_baggage_is_dropped_unless_trusted() {
    let baggage = "sim.fail.payment=1,user.tier=gold,sim.delay.order=30000";
    // By default the frontend drops the caller's fault injection: the order goes through.
    let (status, body, exporter) = send(order_with_baggage(baggage)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    assert_eq!(
        server.attribute(frontend::DROPPED_SIM_BAGGAGE),
        Some(&2i64.into())
    );
    assert!(server.attribute("app.sim.fail.payment").is_none());

    // Trusted (SIM_TRUST_INCOMING_BAGGAGE=1), the same request fails in payment.
    let (status, body, exporter) = send_with(order_with_baggage("sim.fail.payment=1"), |s| {
        s.trust_incoming_baggage = true;
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sim.fail.payment"),
        "{body}"
    );
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    assert!(server.attribute(frontend::DROPPED_SIM_BAGGAGE).is_none());
}

#[tokio::test]
async fn the_query_parameters_still_inject_faults_when_the_callers_baggage_is_dropped() {
    let body = json!({"user_id": "1", "product": "Laptop", "quantity": 1});
    let mut req = post_json("/orders?fail=payment", body.to_string());
    // The caller's own entry for the same key is replaced, not honoured, either way.
    req.headers_mut()
        .insert("baggage", "sim.fail.payment=0".parse().unwrap());
    let (status, body, _) = send(req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sim.fail.payment"),
        "{body}"
    );
}

#[tokio::test]
async fn a_downstream_that_does_not_answer_in_time_is_a_504_timeout() {
    // An order service that never answers.
    let hang = axum::Router::new().route(
        "/orders",
        axum::routing::post(std::future::pending::<&'static str>),
    );
    let hang = format!("http://{}", spawn(hang).await.unwrap());
    let (status, body, exporter) = send_with(
        order(&json!({"user_id": "1", "product": "Laptop", "quantity": 1})),
        |s| {
            s.order_service_url = hang;
            s.call_timeout_ms = 200;
        },
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("order service timed out"), "{error}");
    let spans = exporter.wait_for(3, Duration::from_secs(5));
    let server = named(&spans, "POST /orders", SpanKind::Server);
    assert!(
        matches!(&server.status, Status::Error { message } if message.contains("timed out")),
        "{:?}",
        server.status
    );
    let client = named(&spans, "POST /orders", SpanKind::Client);
    assert_eq!(
        client.attribute("error.type"),
        Some(&"timeout".to_owned().into())
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
