//! The payment service of the Spanline demo: `POST /payments` charges a card through a
//! simulated provider call (a `charge card` CLIENT span, ~40 ms) while a fraud check (a
//! `fraud check` INTERNAL span, ~15 ms) runs concurrently: both are children of the
//! `POST /payments` SERVER span, and only the card charge is on the critical path.
//! Amounts over the limit are declined with 402, a business answer rather than a fault.
//!
//! After a captured payment the service publishes `payments.completed` to NATS JetStream
//! ([`PaymentEvent`]), off the request path: a failed publish is an error PRODUCER span
//! and never changes the answer. For asynchronous orders it consumes `payments.requested`
//! (consumer group `payment`), charges the same way and publishes `payments.completed` or
//! `payments.declined`. A request that fails on its last delivery (`NATS_MAX_DELIVER`: an
//! injected fault, a failed publish) is answered with `payments.failed` carrying the reason,
//! so the order ends `failed` rather than `pending`. A request never acknowledged at all
//! (the process died, or took longer than `NATS_ACK_WAIT_MS`, on every delivery) is left to
//! JetStream's max-deliveries advisory, which the order service reads.
//!
//! The service owns its request and answer types ([`PaymentRequest`], [`Payment`]) and the
//! typed client its callers use ([`PaymentClient`]).

mod client;

pub use client::PaymentClient;

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use demokit::{
    AppError, Delivery, PAYMENTS_COMPLETED, PAYMENTS_DECLINED, PAYMENTS_FAILED, PAYMENTS_REQUESTED,
    Queue, Telemetry, apply_faults,
};
use serde::{Deserialize, Serialize};
use tracekit::{SpanKind, Tracer};

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8083";

/// Flags and environment of `payment-service`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "payment-service",
    version,
    about = "Spanline demo payment service",
    after_help = demokit::TELEMETRY_HELP,
    mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false))
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// NATS_URL (the asynchronous flow).
    #[command(flatten)]
    pub nats: demokit::NatsArgs,
    /// Simulated latency of the card provider call, ms (±20 % jitter).
    #[arg(long, env = "PAYMENT_PROVIDER_LATENCY_MS", default_value_t = 40)]
    pub provider_latency_ms: u64,
    /// Simulated latency of the fraud check that runs beside the card charge, ms (±20 %
    /// jitter).
    #[arg(long, env = "PAYMENT_FRAUD_LATENCY_MS", default_value_t = 15)]
    pub fraud_latency_ms: u64,
    /// Charges above this amount are declined with 402.
    #[arg(long, env = "PAYMENT_LIMIT", default_value_t = 5000.0)]
    pub limit: f64,
}

/// The behaviour knobs of the payment service.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Simulated provider latency, ms.
    pub provider_latency_ms: u64,
    /// Simulated fraud check latency, ms.
    pub fraud_latency_ms: u64,
    /// The decline limit, in the order's currency.
    pub limit: f64,
}

impl Config {
    /// The knobs from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            provider_latency_ms: self.provider_latency_ms,
            fraud_latency_ms: self.fraud_latency_ms,
            limit: self.limit,
        }
    }
}

/// The body of `POST /payments`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PaymentRequest {
    /// The order being paid.
    pub order_id: String,
    /// Who pays.
    pub user_id: String,
    /// How much, in currency units (e.g. 1299.0).
    pub amount: f64,
}

/// The answer of `POST /payments`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Payment {
    /// The payment id.
    pub payment_id: String,
    /// The order paid.
    pub order_id: String,
    /// The amount captured.
    pub amount: f64,
    /// `captured`.
    pub status: String,
}

/// What payment publishes about a payment (`payments.completed`, `payments.declined`,
/// `payments.failed`), as JSON.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PaymentEvent {
    /// The order paid.
    pub order_id: String,
    /// Who pays.
    pub user_id: String,
    /// The amount, in currency units.
    pub amount: f64,
    /// `completed`, `declined` or `failed`.
    pub status: String,
    /// The payment id, for a completed payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// Why it was declined, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PaymentEvent {
    /// The `failed` event of the payment `req` asked for, with why (`payments.failed`, or an
    /// order failing it when JetStream gave up on the request).
    pub fn failed(req: PaymentRequest, reason: String) -> Self {
        Self {
            order_id: req.order_id,
            user_id: req.user_id,
            amount: req.amount,
            status: "failed".to_owned(),
            payment_id: None,
            reason: Some(reason),
        }
    }
}

struct AppState {
    telemetry: Telemetry,
    settings: Settings,
    queue: Queue,
}

/// The routes of the payment service (without `/healthz` and the tracing layer), with
/// messaging off.
pub fn app(telemetry: Telemetry, settings: Settings) -> Router {
    let queue = Queue::start("", &telemetry);
    app_with_queue(telemetry, settings, queue)
}

/// The routes of the payment service, publishing payment outcomes on `queue` and
/// consuming `payments.requested` from it (group `payment`).
pub fn app_with_queue(telemetry: Telemetry, settings: Settings, queue: Queue) -> Router {
    let state = Arc::new(AppState {
        telemetry,
        settings,
        queue,
    });
    let consumer = Arc::clone(&state);
    state
        .queue
        .consume_deliveries("payment", PAYMENTS_REQUESTED, move |delivery| {
            let state = Arc::clone(&consumer);
            async move { process_delivery(&state, &delivery).await }
        });
    Router::new()
        .route("/payments", post(create_payment))
        .with_state(state)
}

/// `process payments.requested`, one delivery: [`process_request`]; when that fails on the
/// last delivery, publishes `payments.failed` with the reason and acknowledges the message
/// (the CONSUMER span still ends in ERROR, with `app.payment.gave_up` = true); when that
/// publish fails too, the message is nak'ed and JetStream's max-deliveries advisory tells
/// the order service instead.
async fn process_delivery(state: &AppState, delivery: &Delivery) -> Result<(), AppError> {
    let Err(e) = process_request(state, &delivery.payload).await else {
        return Ok(());
    };
    if !delivery.is_last() {
        return Err(e);
    }
    // A body that is not a request names no order: nobody to tell.
    let Ok(req) = serde_json::from_slice::<PaymentRequest>(&delivery.payload) else {
        return Err(e);
    };
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.payment.gave_up", true);
    }
    let event = PaymentEvent::failed(
        req,
        format!(
            "payment failed after {} attempts: {}",
            delivery.attempt, e.message
        ),
    );
    if let Err(publish) = state.queue.publish(PAYMENTS_FAILED, to_json(&event)).await {
        // Unreported: nak it, so JetStream gives up on it with a max-deliveries advisory,
        // which the order service reads instead.
        eprintln!("payment: cannot report the failed order: {publish}");
        return Err(e);
    }
    // Reported: acknowledge it, so JetStream does not also give up on it (one outcome per
    // order). The span still ends in ERROR.
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("error.type", "process");
        span.with(|s| s.record_error(&e));
    }
    Ok(())
}

/// `process payments.requested`: charges the order and publishes the outcome. A declined
/// payment is an outcome (`payments.declined`), not a failure; an injected fault or a
/// failed publish is a failure (the message is redelivered).
async fn process_request(state: &AppState, payload: &[u8]) -> Result<(), AppError> {
    let req: PaymentRequest = serde_json::from_slice(payload)
        .map_err(|e| AppError::bad_request(format!("bad payments.requested message: {e}")))?;
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.order.id", req.order_id.clone());
        span.set_attribute("app.payment.amount", req.amount);
    }
    apply_faults("payment").await?;
    let (subject, event) = match charge(state, &req).await {
        Ok(payment_id) => (PAYMENTS_COMPLETED, completed(&req, payment_id)),
        Err(e) if e.status == StatusCode::PAYMENT_REQUIRED => (
            PAYMENTS_DECLINED,
            PaymentEvent {
                order_id: req.order_id.clone(),
                user_id: req.user_id.clone(),
                amount: req.amount,
                status: "declined".to_owned(),
                payment_id: None,
                reason: Some(e.message),
            },
        ),
        Err(e) => return Err(e),
    };
    state.queue.publish(subject, to_json(&event)).await?;
    Ok(())
}

fn completed(req: &PaymentRequest, payment_id: String) -> PaymentEvent {
    PaymentEvent {
        order_id: req.order_id.clone(),
        user_id: req.user_id.clone(),
        amount: req.amount,
        status: "completed".to_owned(),
        payment_id: Some(payment_id),
        reason: None,
    }
}

fn to_json(event: &PaymentEvent) -> Vec<u8> {
    // A struct of strings and a number: serialising cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

/// The card charge and, concurrently, the fraud check: both children of the current span.
/// Returns the payment id.
async fn charge(state: &AppState, req: &PaymentRequest) -> Result<String, AppError> {
    let tracer = &state.telemetry.tracer;
    let settings = state.settings;
    // Both spans start now, as children of the current span; the answer waits for both.
    let (charged, ()) = tokio::join!(
        charge_card(tracer, req, settings),
        fraud_check(tracer, req, settings.fraud_latency_ms),
    );
    charged
}

async fn create_payment(
    State(state): State<Arc<AppState>>,
    body: Result<Json<PaymentRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Payment>), AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text()))?;
    if !req.amount.is_finite() || req.amount <= 0.0 {
        return Err(AppError::bad_request("amount must be a positive number"));
    }
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.order.id", req.order_id.clone());
        span.set_attribute("app.payment.amount", req.amount);
    }
    apply_faults("payment").await?;
    let payment_id = charge(&state, &req).await?;
    // The asynchronous tail: never waited for, never changes the answer.
    let event = completed(&req, payment_id.clone());
    state
        .queue
        .publish_detached(PAYMENTS_COMPLETED, to_json(&event));
    Ok((
        StatusCode::CREATED,
        Json(Payment {
            payment_id,
            order_id: req.order_id,
            amount: req.amount,
            status: "captured".to_owned(),
        }),
    ))
}

/// The simulated card authorisation: a `charge card` CLIENT span to the card network.
/// Declines amounts over the limit.
async fn charge_card(
    tracer: &Tracer,
    req: &PaymentRequest,
    settings: Settings,
) -> Result<String, AppError> {
    let mut charge = tracer
        .span("charge card")
        .kind(SpanKind::Client)
        .attribute("peer.service", "card-network")
        .attribute("app.payment.amount", req.amount)
        .start();
    tokio::time::sleep(demokit::jittered(settings.provider_latency_ms)).await;
    if req.amount > settings.limit {
        charge.set_attribute("app.payment.declined", true);
        charge.set_attribute("app.payment.decline_reason", "amount over limit");
        charge.end();
        return Err(AppError::payment_required(format!(
            "payment declined: amount {:.2} exceeds the limit {:.2}",
            req.amount, settings.limit
        )));
    }
    let payment_id = format!("pay-{:016x}", tracekit::SpanId::random().to_u64());
    charge.set_attribute("app.payment.id", payment_id.clone());
    charge.end();
    Ok(payment_id)
}

/// The simulated fraud check: a `fraud check` INTERNAL span beside the card charge. It
/// passes every payment; it is there to show a child that is off the critical path.
async fn fraud_check(tracer: &Tracer, req: &PaymentRequest, latency_ms: u64) {
    let mut check = tracer
        .span("fraud check")
        .attribute("app.order.id", req.order_id.clone())
        .start();
    tokio::time::sleep(demokit::jittered(latency_ms)).await;
    check.set_attribute("app.fraud.passed", true);
    check.end();
}
