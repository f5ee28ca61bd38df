//! The payment service of the Spanline demo: `POST /payments` charges a card through a
//! simulated provider call (a `charge card` CLIENT span). Amounts over the limit are
//! declined with 402, a business answer rather than a fault.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use demokit::{AppError, Telemetry, apply_faults};
use serde::{Deserialize, Serialize};
use tracekit::SpanKind;

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8083);

/// Flags and environment of `payment-service`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "payment-service",
    version,
    about = "Spanline demo payment service"
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// Simulated latency of the card provider call, ms (±20 % jitter).
    #[arg(long, env = "PAYMENT_PROVIDER_LATENCY_MS", default_value_t = 40)]
    pub provider_latency_ms: u64,
    /// Charges above this amount are declined with 402.
    #[arg(long, env = "PAYMENT_LIMIT", default_value_t = 5000.0)]
    pub limit: f64,
}

/// The behaviour knobs of the payment service.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Simulated provider latency, ms.
    pub provider_latency_ms: u64,
    /// The decline limit, in the order's currency.
    pub limit: f64,
}

impl Config {
    /// The knobs from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            provider_latency_ms: self.provider_latency_ms,
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

struct AppState {
    telemetry: Telemetry,
    settings: Settings,
}

/// The routes of the payment service (without `/healthz` and the tracing layer).
pub fn app(telemetry: Telemetry, settings: Settings) -> Router {
    Router::new()
        .route("/payments", post(create_payment))
        .with_state(Arc::new(AppState {
            telemetry,
            settings,
        }))
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
    let mut charge = state
        .telemetry
        .tracer
        .span("charge card")
        .kind(SpanKind::Client)
        .attribute("peer.service", "card-network")
        .attribute("app.payment.amount", req.amount)
        .start();
    tokio::time::sleep(demokit::simulate::jittered(
        state.settings.provider_latency_ms,
    ))
    .await;
    if req.amount > state.settings.limit {
        charge.set_attribute("app.payment.declined", true);
        charge.set_attribute("app.payment.decline_reason", "amount over limit");
        charge.end();
        return Err(AppError::payment_required(format!(
            "payment declined: amount {:.2} is over the limit of {:.2}",
            req.amount, state.settings.limit
        )));
    }
    let payment_id = format!("pay-{:016x}", fastrand_u64());
    charge.set_attribute("app.payment.id", payment_id.clone());
    charge.end();
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

fn fastrand_u64() -> u64 {
    tracekit::SpanId::random().to_u64()
}
