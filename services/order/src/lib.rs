//! The order service of the Spanline demo: `POST /orders` prices the order, records it
//! (an `INSERT orders` CLIENT span) and charges it through the payment service;
//! `GET /orders/{id}` reads it back (a `SELECT orders` span).
//!
//! Orders live in memory: the simulated database is the spans, not the storage.
//!
//! Asynchronous orders (`POST /orders?mode=async`): the order is stored `pending`,
//! `payments.requested` is published to NATS JetStream and the answer is `202 Accepted`;
//! the service consumes `payments.completed`, `payments.declined` and `payments.failed`
//! (consumer group `order`) and updates the order (an `UPDATE orders` span), so
//! `GET /orders/{id}` shows `pending`, then `confirmed`, `declined`, or `failed` with a
//! `reason` (payment failed on its last delivery). When payment never acknowledges a request
//! at all (it died or hung on every delivery), JetStream gives up on it with a max-deliveries
//! advisory: the service reads the request back from the stream and fails the order too
//! ("payment gave up after N deliveries"), in a `gave up payments.requested` span of the
//! order's trace. The first outcome of an order wins; later ones, and outcomes of orders it
//! does not hold as pending (synchronous orders, confirmed already), change nothing.
//!
//! The service owns its request and answer types ([`OrderRequest`], [`Order`]) and the
//! typed client its callers use ([`OrderClient`]); it calls payment through
//! [`payment_service::PaymentClient`].

mod client;

pub use client::OrderClient;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use demokit::{
    AppError, DbQuery, GaveUp, OUTCOME_REASON, PAYMENTS_COMPLETED, PAYMENTS_DECLINED,
    PAYMENTS_FAILED, PAYMENTS_REQUESTED, Queue, Telemetry, apply_faults, db_query,
};
use payment_service::{PaymentClient, PaymentEvent, PaymentRequest};
use serde::{Deserialize, Serialize};
use tracekit::Status;

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8082";

/// Flags and environment of `order-service`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "order-service", version, about = "Spanline demo order service",
    after_help = demokit::TELEMETRY_HELP,
    mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false))
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// NATS_URL (asynchronous orders).
    #[command(flatten)]
    pub nats: demokit::NatsArgs,
    /// Base URL of the payment service.
    #[arg(
        long,
        env = "PAYMENT_SERVICE_URL",
        default_value = "http://localhost:8083"
    )]
    pub payment_service_url: String,
    /// Simulated latency of the orders table writes and reads, ms (±20 % jitter).
    #[arg(long, env = "ORDER_DB_LATENCY_MS", default_value_t = 18)]
    pub db_latency_ms: u64,
}

/// The behaviour knobs of the order service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the payment service, without a trailing slash.
    pub payment_service_url: String,
    /// Simulated database latency, ms.
    pub db_latency_ms: u64,
}

impl Config {
    /// The knobs from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            payment_service_url: self.payment_service_url.trim_end_matches('/').to_owned(),
            db_latency_ms: self.db_latency_ms,
        }
    }
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderRequest {
    /// Who orders: a JSON string (a number is accepted too).
    #[serde(deserialize_with = "string_or_number")]
    pub user_id: String,
    /// What: one of the catalogue's products.
    pub product: String,
    /// How many, 1..=100.
    pub quantity: u32,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

/// A placed order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Order {
    /// The order id.
    pub order_id: String,
    /// `confirmed`; for an asynchronous order `pending`, then `confirmed`, `declined` or
    /// `failed`.
    pub status: String,
    /// Who ordered.
    pub user_id: String,
    /// What.
    pub product: String,
    /// How many.
    pub quantity: u32,
    /// Total price in currency units.
    pub amount: f64,
    /// The payment that paid it (absent while pending and when declined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// Why a `declined` or `failed` order ended so (asynchronous orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The query of `POST /orders`: `mode=async` places the order through the queue.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrderMode {
    /// `sync` (default) or `async`.
    #[serde(default)]
    pub mode: Option<String>,
}

impl OrderMode {
    /// Whether `mode=async` was asked for.
    pub fn is_async(&self) -> bool {
        self.mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("async"))
    }
}

/// Unit prices of the catalogue.
pub const CATALOGUE: [(&str, f64); 6] = [
    ("Laptop", 1299.0),
    ("Phone", 799.0),
    ("Monitor", 349.0),
    ("Headphones", 199.0),
    ("Keyboard", 89.0),
    ("Mouse", 39.0),
];

struct AppState {
    telemetry: Telemetry,
    payment: PaymentClient,
    settings: Settings,
    orders: Mutex<HashMap<String, Order>>,
    queue: Queue,
}

/// The routes of the order service (without `/healthz` and the tracing layer), with
/// messaging off (asynchronous orders answer 503).
pub fn app(telemetry: Telemetry, settings: Settings) -> Router {
    let queue = Queue::start("", &telemetry);
    app_with_queue(telemetry, settings, queue)
}

/// The routes of the order service, publishing asynchronous orders on `queue` and
/// consuming their outcomes from it (group `order`).
pub fn app_with_queue(telemetry: Telemetry, settings: Settings, queue: Queue) -> Router {
    let payment = PaymentClient::new(telemetry.http_client(), &settings.payment_service_url);
    let state = Arc::new(AppState {
        telemetry,
        payment,
        settings,
        orders: Mutex::new(HashMap::new()),
        queue,
    });
    for subject in [PAYMENTS_COMPLETED, PAYMENTS_DECLINED, PAYMENTS_FAILED] {
        let consumer = Arc::clone(&state);
        state.queue.consume("order", subject, move |payload| {
            let state = Arc::clone(&consumer);
            async move { settle_order(&state, &payload).await }
        });
    }
    let gave_up = Arc::clone(&state);
    state
        .queue
        .on_gave_up("payment", PAYMENTS_REQUESTED, move |message| {
            let state = Arc::clone(&gave_up);
            async move { payment_gave_up(&state, message).await }
        });
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .with_state(state)
}

/// `process payments.completed|declined|failed`: [`settle`] with the event.
async fn settle_order(state: &AppState, payload: &[u8]) -> Result<(), AppError> {
    let event: PaymentEvent = serde_json::from_slice(payload)
        .map_err(|e| AppError::bad_request(format!("bad payment event: {e}")))?;
    settle(state, event).await
}

/// `gave up payments.requested` (JetStream's max-deliveries advisory for payment's
/// consumer: payment never acknowledged the request, e.g. it died or hung on every
/// delivery): the order fails with "payment gave up after N deliveries", through
/// [`settle`], so a `payments.failed` for the same order changes nothing afterwards (and
/// this changes nothing after one).
async fn payment_gave_up(state: &AppState, gave_up: GaveUp) -> Result<(), AppError> {
    let req: PaymentRequest = serde_json::from_slice(&gave_up.payload)
        .map_err(|e| AppError::bad_request(format!("bad payments.requested message: {e}")))?;
    let event = PaymentEvent::failed(
        req,
        format!(
            "payment gave up after {} deliveries (never acknowledged)",
            gave_up.deliveries
        ),
    );
    settle(state, event).await
}

/// A payment outcome: a pending order becomes `confirmed`, `declined` or `failed` (an
/// `UPDATE orders` span; the event's reason is the current span's `app.outcome.reason`, and
/// a failure also its ERROR status); any other order is left as it is. The first outcome
/// wins: the status is checked again when it is written.
async fn settle(state: &AppState, event: PaymentEvent) -> Result<(), AppError> {
    let span = tracekit::current_span();
    if let Some(span) = &span {
        span.set_attribute("app.order.id", event.order_id.clone());
        span.set_attribute("app.payment.status", event.status.clone());
    }
    let is_pending = |orders: &HashMap<String, Order>| {
        orders
            .get(&event.order_id)
            .is_some_and(|o| o.status == "pending")
    };
    let orders = || state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    let pending = is_pending(&orders());
    if let Some(span) = &span {
        span.set_attribute("app.order.pending", pending);
    }
    if !pending {
        return Ok(());
    }
    let update = DbQuery {
        operation: "UPDATE",
        table: "orders",
        query_text: "UPDATE orders SET status = $2, payment_id = $3 WHERE id = $1 AND status = 'pending'",
    };
    db_query(
        &state.telemetry.tracer,
        update,
        state.settings.db_latency_ms,
        0,
    )
    .await;
    {
        let mut orders = orders();
        if !is_pending(&orders) {
            // Another outcome was written meanwhile: it stands.
            if let Some(span) = &span {
                span.set_attribute("app.order.pending", false);
            }
            return Ok(());
        }
        if let Some(order) = orders.get_mut(&event.order_id) {
            order.status = match event.status.as_str() {
                "completed" => "confirmed",
                "failed" => "failed",
                _ => "declined",
            }
            .to_owned();
            order.payment_id = event.payment_id;
            order.reason = event.reason.clone();
        }
    }
    if let (Some(span), Some(reason)) = (&span, event.reason) {
        // A failed order is a fault, shown as one; a decline is a business answer.
        if event.status == "failed" {
            span.with(|s| s.set_status(Status::error(format!("order failed: {reason}"))));
        }
        span.set_attribute(OUTCOME_REASON, reason);
    }
    Ok(())
}

async fn create_order(
    State(state): State<Arc<AppState>>,
    Query(mode): Query<OrderMode>,
    body: Result<Json<OrderRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Order>), AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text()))?;
    let Some((product, unit_price)) = CATALOGUE
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(&req.product))
    else {
        return Err(AppError::bad_request(format!(
            "unknown product; choose one of {}",
            CATALOGUE.map(|(p, _)| p).join(", ")
        )));
    };
    if !(1..=100).contains(&req.quantity) {
        return Err(AppError::bad_request("quantity must be between 1 and 100"));
    }
    let amount = unit_price * f64::from(req.quantity);
    let order_id = format!("ord-{:016x}", tracekit::SpanId::random().to_u64());
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.order.id", order_id.clone());
        span.set_attribute("app.user.id", req.user_id.clone());
        span.set_attribute("app.order.amount", amount);
    }
    apply_faults("order").await?;
    let insert = DbQuery {
        operation: "INSERT",
        table: "orders",
        query_text: "INSERT INTO orders (id, user_id, product, quantity, amount) VALUES ($1, $2, $3, $4, $5)",
    };
    db_query(
        &state.telemetry.tracer,
        insert,
        state.settings.db_latency_ms,
        0,
    )
    .await;
    if mode.is_async() {
        return place_async(&state, order_id, &req, product, amount).await;
    }

    let payment = state
        .payment
        .charge(&PaymentRequest {
            order_id: order_id.clone(),
            user_id: req.user_id.clone(),
            amount,
        })
        .await?;
    let order = Order {
        order_id: order_id.clone(),
        status: "confirmed".to_owned(),
        user_id: req.user_id,
        product: (*product).to_owned(),
        quantity: req.quantity,
        amount,
        payment_id: Some(payment.payment_id),
        reason: None,
    };
    state
        .orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(order_id, order.clone());
    Ok((StatusCode::CREATED, Json(order)))
}

/// The asynchronous tail of `POST /orders?mode=async`: stores the order `pending`,
/// publishes `payments.requested` and answers 202. If the publish fails the order is
/// dropped and the answer is 503.
async fn place_async(
    state: &AppState,
    order_id: String,
    req: &OrderRequest,
    product: &str,
    amount: f64,
) -> Result<(StatusCode, Json<Order>), AppError> {
    let order = Order {
        order_id: order_id.clone(),
        status: "pending".to_owned(),
        user_id: req.user_id.clone(),
        product: product.to_owned(),
        quantity: req.quantity,
        amount,
        payment_id: None,
        reason: None,
    };
    let orders = || state.orders.lock().unwrap_or_else(PoisonError::into_inner);
    orders().insert(order_id.clone(), order.clone());
    let request = PaymentRequest {
        order_id: order_id.clone(),
        user_id: req.user_id.clone(),
        amount,
    };
    // A struct of strings and a number: serialising cannot fail.
    let payload = serde_json::to_vec(&request).unwrap_or_default();
    if let Err(e) = state.queue.publish(PAYMENTS_REQUESTED, payload).await {
        orders().remove(&order_id);
        return Err(e.into());
    }
    Ok((StatusCode::ACCEPTED, Json(order)))
}

async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Order>, AppError> {
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.order.id", id.clone());
    }
    apply_faults("order").await?;
    let select = DbQuery {
        operation: "SELECT",
        table: "orders",
        query_text: "SELECT * FROM orders WHERE id = $1",
    };
    db_query(
        &state.telemetry.tracer,
        select,
        state.settings.db_latency_ms,
        0,
    )
    .await;
    state
        .orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| AppError::not_found("unknown order"))
}
