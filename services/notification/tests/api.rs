//! The notification service's processing, driven inside a span with its spans recorded in
//! memory (the queue side is tested end to end in crates/e2e).
#![allow(clippy::unwrap_used)]

use demokit::Telemetry;
use demokit::testing::{assert_help_shows_defaults, span};
use notification_service::{Config, DEFAULT_LISTEN, Settings, notify};
use tracekit::propagation::Baggage;
use tracekit::{Context, SharedSpan, SpanKind};

const EVENT: &str = r#"{"order_id":"ord-1","user_id":"1","amount":1299.0,"status":"completed","payment_id":"pay-1"}"#;
const SETTINGS: Settings = Settings {
    db_latency_ms: 0,
    email_latency_ms: 1,
};

/// Runs `notify` inside a CONSUMER span with `baggage`, as the queue does.
async fn process(baggage: Baggage) -> (Result<(), demokit::AppError>, Vec<tracekit::SpanData>) {
    let (t, exporter) = Telemetry::in_memory("notification");
    let consumer = SharedSpan::new(
        t.tracer
            .span("process payments.completed")
            .kind(SpanKind::Consumer)
            .start(),
    );
    let cx = Context::new(None, baggage).with_span(consumer.clone());
    let result = cx.scope(notify(&t, SETTINGS, EVENT.as_bytes())).await;
    consumer.end();
    (result, exporter.finished_spans())
}

#[tokio::test]
async fn a_payment_event_is_recorded_and_mailed_under_the_process_span() {
    let (result, spans) = process(Baggage::default()).await;
    result.unwrap();
    let process = span(&spans, "process payments.completed", SpanKind::Consumer);
    let insert = span(&spans, "INSERT notifications", SpanKind::Client);
    let email = span(&spans, "send email", SpanKind::Client);
    assert_eq!(insert.parent_span_id, process.span_id);
    assert_eq!(email.parent_span_id, process.span_id);
    assert_eq!(email.attribute("peer.service"), Some(&"smtp".into()));
    assert_eq!(
        process.attribute("app.order.id"),
        Some(&"ord-1".to_owned().into())
    );
    assert!(email.start_time_unix_nano >= insert.end_time_unix_nano);
}

#[tokio::test]
async fn an_injected_failure_in_the_baggage_fails_the_process_before_any_work() {
    let baggage = Baggage::default()
        .insert("sim.fail.notification", "1")
        .unwrap();
    let (result, spans) = process(baggage).await;
    assert_eq!(result.unwrap_err().status.as_u16(), 503);
    assert!(!spans.iter().any(|s| s.name == "send email"));
}

#[tokio::test]
async fn a_message_that_is_not_a_payment_event_is_a_bad_request() {
    let (t, _exporter) = Telemetry::in_memory("notification");
    let err = notify(&t, SETTINGS, b"{}").await.unwrap_err();
    assert_eq!(err.status.as_u16(), 400);
}

#[test]
fn help_shows_the_default_listen_address_and_nats_url() {
    assert_help_shows_defaults::<Config>("notification-service", DEFAULT_LISTEN);
    let help = <Config as clap::CommandFactory>::command()
        .render_long_help()
        .to_string();
    assert!(help.contains("NATS_URL"), "{help}");
}
