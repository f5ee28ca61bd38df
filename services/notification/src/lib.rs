//! The notification service of the Spanline demo: it tells the user about their payment.
//!
//! It consumes `payments.completed` and `payments.declined` from NATS JetStream (consumer
//! group `notification`, durable consumers created at start). Each message is a CONSUMER
//! span `process <subject>` under the payment's PRODUCER span, with two children: the
//! notification recorded (`INSERT notifications`, a `db.*` CLIENT span) and a simulated
//! e-mail (`send email`, a CLIENT span to `smtp` with latency). Fault injection arrives in
//! the message's baggage: `sim.delay.notification`, `sim.fail.notification` (a failed
//! process is nak'ed and redelivered, a bounded number of times).
//!
//! Its HTTP side is only `GET /healthz`.

use std::sync::Arc;

use axum::Router;
use demokit::{
    AppError, DbQuery, PAYMENTS_COMPLETED, PAYMENTS_DECLINED, Queue, Telemetry, apply_faults,
    db_query, jittered,
};
use payment_service::PaymentEvent;
use tracekit::SpanKind;

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8084";

/// The consumer group of this service (`messaging.consumer.group.name`).
pub const GROUP: &str = "notification";

/// Flags and environment of `notification-service`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "notification-service", version, about = "Spanline demo notification service",
    after_help = demokit::TELEMETRY_HELP,
    mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false))
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// NATS_URL: where the payment outcomes are consumed from.
    #[command(flatten)]
    pub nats: demokit::NatsArgs,
    /// Simulated latency of the notifications table write, ms (±20 % jitter).
    #[arg(long, env = "NOTIFICATION_DB_LATENCY_MS", default_value_t = 8)]
    pub db_latency_ms: u64,
    /// Simulated latency of the e-mail provider call, ms (±20 % jitter).
    #[arg(long, env = "NOTIFICATION_EMAIL_LATENCY_MS", default_value_t = 30)]
    pub email_latency_ms: u64,
}

/// The behaviour knobs of the notification service.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Simulated database latency, ms.
    pub db_latency_ms: u64,
    /// Simulated e-mail latency, ms.
    pub email_latency_ms: u64,
}

impl Config {
    /// The knobs from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            db_latency_ms: self.db_latency_ms,
            email_latency_ms: self.email_latency_ms,
        }
    }
}

/// Starts consuming the payment outcomes from `queue` and answers the (health-only) routes.
pub fn app(telemetry: Telemetry, settings: Settings, queue: &Queue) -> Router {
    let telemetry = Arc::new(telemetry);
    for subject in [PAYMENTS_COMPLETED, PAYMENTS_DECLINED] {
        let telemetry = Arc::clone(&telemetry);
        queue.consume(GROUP, subject, move |payload| {
            let telemetry = Arc::clone(&telemetry);
            async move { notify(&telemetry, settings, &payload).await }
        });
    }
    Router::new()
}

/// Processes one payment outcome inside the current (CONSUMER) span: applies this
/// service's injected faults, records the notification and sends the e-mail.
///
/// # Errors
/// 400 for a message that is not a [`PaymentEvent`]; 503 for an injected failure.
pub async fn notify(
    telemetry: &Telemetry,
    settings: Settings,
    payload: &[u8],
) -> Result<(), AppError> {
    let event: PaymentEvent = serde_json::from_slice(payload)
        .map_err(|e| AppError::bad_request(format!("bad payment event: {e}")))?;
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.order.id", event.order_id.clone());
        span.set_attribute("app.user.id", event.user_id.clone());
        span.set_attribute("app.payment.status", event.status.clone());
    }
    apply_faults("notification").await?;
    let insert = DbQuery {
        operation: "INSERT",
        table: "notifications",
        query_text: "INSERT INTO notifications (order_id, user_id, kind) VALUES ($1, $2, $3)",
    };
    db_query(&telemetry.tracer, insert, settings.db_latency_ms, 0).await;
    let mut email = telemetry
        .tracer
        .span("send email")
        .kind(SpanKind::Client)
        .attribute("peer.service", "smtp")
        .attribute("server.address", "smtp")
        .attribute("app.order.id", event.order_id.clone())
        .attribute("app.notification.kind", format!("payment {}", event.status))
        .start();
    tokio::time::sleep(jittered(settings.email_latency_ms)).await;
    email.set_attribute("app.notification.sent", true);
    email.end();
    Ok(())
}
