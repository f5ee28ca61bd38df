//! The user service's routes, driven without sockets, with its spans recorded in memory.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demokit::testing::call;
use demokit::{OUTCOME_REASON, Telemetry};
use serde_json::Value;
use tracekit::export::InMemoryExporter;
use tracekit::{SpanKind, Status};

async fn get(uri: &str, baggage: Option<&str>) -> (StatusCode, Value, InMemoryExporter) {
    let (t, exporter) = Telemetry::in_memory("user");
    let app = demokit::app(user_service::app(t.clone(), 0), &t);
    let mut req = Request::get(uri);
    if let Some(b) = baggage {
        req = req.header("baggage", b);
    }
    let (status, body) = call(app, req.body(Body::empty()).unwrap()).await;
    (status, body, exporter)
}

#[tokio::test]
async fn a_known_user_is_answered_after_a_select_users_child_span() {
    let (status, body, exporter) = get("/users/1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Ada Lovelace");
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let db = spans.iter().find(|s| s.name == "SELECT users").unwrap();
    assert_eq!(server.name, "GET /users/{id}");
    assert_eq!(
        server.attribute("app.user.id"),
        Some(&"1".to_owned().into())
    );
    assert_eq!(db.kind, SpanKind::Client);
    assert_eq!(db.parent_span_id, server.span_id);
    assert_eq!(db.attribute("db.collection.name"), Some(&"users".into()));
}

#[tokio::test]
async fn an_unknown_user_is_404_with_the_reason_on_the_server_span() {
    let (status, body, exporter) = get("/users/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown user \"999\"");
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32);
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(
        server.attribute(OUTCOME_REASON),
        Some(&"unknown user \"999\"".to_owned().into())
    );
    assert_eq!(server.status, Status::Unset);
}

#[tokio::test]
async fn an_injected_failure_from_baggage_is_503_and_an_error_span() {
    let (status, body, exporter) = get("/users/1", Some("sim.fail.user=1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("sim.fail.user"));
    let spans = exporter.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        spans[0].status,
        Status::error("injected fault (sim.fail.user)")
    );
}

#[tokio::test]
async fn another_services_injected_failure_is_ignored() {
    let (status, _, _) = get("/users/1", Some("sim.fail.payment=1")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_is_answered_outside_tracing() {
    let (t, exporter) = Telemetry::in_memory("user");
    let app = demokit::app(user_service::app(t.clone(), 0), &t);
    let (status, _) = call(app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(exporter.finished_spans().is_empty());
}

#[test]
fn help_shows_the_default_listen_address_and_the_otel_variables() {
    demokit::testing::assert_help_shows_defaults::<user_service::Config>(
        "user",
        user_service::DEFAULT_LISTEN,
    );
}

#[tokio::test]
async fn every_user_is_listed_for_newcomers() {
    let (status, body, exporter) = get("/users", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    let spans = exporter.wait_for(2, Duration::from_secs(5));
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(server.name, "GET /users");
}
