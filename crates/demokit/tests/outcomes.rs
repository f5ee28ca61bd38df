//! What an error answer records on the request's SERVER span, through the real tracing
//! layer and an in-memory exporter.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use demokit::testing::call;
use demokit::{AppError, INJECTED_FAULT, OUTCOME_REASON, Telemetry, apply_faults};
use http::{Request, StatusCode};
use tracekit::{SpanData, Status, Value};

fn routes() -> Router {
    Router::new()
        .route(
            "/declined",
            get(|| async {
                Err::<(), _>(AppError::payment_required(
                    "payment declined: amount 6495.00 exceeds the limit 5000.00",
                ))
            }),
        )
        .route(
            "/relayed",
            get(|| async {
                Err::<(), _>(AppError::relay(StatusCode::NOT_FOUND, "unknown user \"9\""))
            }),
        )
        .route(
            "/faulty",
            get(|| async { apply_faults("payment").await.map(|()| "ok") }),
        )
}

/// Sends `GET uri` with `baggage`; answers the status, the body and the one SERVER span.
async fn send(uri: &str, baggage: &str) -> (StatusCode, serde_json::Value, SpanData) {
    let (telemetry, exporter) = Telemetry::in_memory("payment");
    let app = demokit::app(routes(), &telemetry);
    let req = Request::get(uri)
        .header("baggage", baggage)
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(app, req).await;
    let span = exporter.wait_for(1, Duration::from_secs(5)).remove(0);
    (status, body, span)
}

#[tokio::test]
async fn a_business_error_decided_here_records_its_reason_and_no_error_status() {
    let (status, body, span) = send("/declined", "").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        span.attribute(OUTCOME_REASON),
        Some(&Value::from(
            "payment declined: amount 6495.00 exceeds the limit 5000.00".to_owned()
        ))
    );
    assert_eq!(span.status, Status::Unset);
    assert_eq!(body["trace_id"], span.trace_id.to_string());
    assert!(body.get("trace_url").is_none(), "no UI known: {body}");
}

#[tokio::test]
async fn a_relayed_business_error_leaves_the_reason_to_the_service_that_decided_it() {
    let (status, body, span) = send("/relayed", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown user \"9\"");
    assert!(span.attribute(OUTCOME_REASON).is_none());
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn an_injected_fault_is_an_error_status_with_an_exception_event() {
    let (status, body, span) = send("/faulty", "sim.fail.payment=1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "injected fault (sim.fail.payment)");
    assert_eq!(
        span.status,
        Status::error("injected fault (sim.fail.payment)")
    );
    let exception = span.events.iter().find(|e| e.name == "exception").unwrap();
    let attr = |k: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(attr("exception.type"), Some(Value::from(INJECTED_FAULT)));
    assert_eq!(
        attr("exception.message"),
        Some(Value::from("injected fault (sim.fail.payment)".to_owned()))
    );
}

#[tokio::test]
async fn an_injected_delay_is_recorded_on_the_span_that_waited() {
    let (status, _, span) = send("/faulty", "sim.delay.payment=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(span.attribute("app.fault.delay_ms"), Some(&Value::I64(3)));
    assert!(span.duration_ns() >= 3_000_000);
    assert_eq!(span.status, Status::Unset);
    // Another service's delay is not ours.
    let (_, _, span) = send("/faulty", "sim.delay.user=3").await;
    assert!(span.attribute("app.fault.delay_ms").is_none());
}

#[tokio::test]
async fn an_error_answer_links_to_its_trace_when_the_ui_is_known() {
    let (telemetry, exporter) = Telemetry::in_memory("frontend");
    let routes = Router::new().route(
        "/x",
        get(|| async { Err::<(), _>(AppError::bad_request("nope").with_trace_ui("http://ui:1")) }),
    );
    let app = demokit::app(routes, &telemetry);
    let (status, body) = call(app, Request::get("/x").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let span = exporter.wait_for(1, Duration::from_secs(5)).remove(0);
    assert_eq!(
        body["trace_url"],
        format!("http://ui:1/trace/{}", span.trace_id)
    );
}
