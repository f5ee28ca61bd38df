//! The frontend of the Spanline demo, the only service users call.
//!
//! `POST /orders` checks the user with the user service (`GET /users/{id}`) and places the
//! order with the order service (`POST /orders`), which charges it through the payment
//! service. The answer carries `trace_id`, `trace_url` and a `traceresponse` header, so the
//! user can read the trace of their own request. `GET /users/{id}` and `GET /orders/{id}`
//! are proxied to the owning service.
//!
//! `POST /orders?mode=async` places the order through the queue: the order service answers
//! `202 Accepted` with the `pending` order, and so does the frontend (with `trace_id` and
//! `trace_url`); `GET /orders/{id}` later shows `confirmed` or `declined`.
//!
//! Fault injection: `?delay=MS`, `?delay=SERVICE:MS`, `?fail=SERVICE` (comma-separated or
//! repeated) become W3C baggage entries `sim.delay.<service>` / `sim.fail.<service>` that
//! every service acts on (DESIGN §3).
//!
//! The frontend is the trust boundary (docs/trust-boundary.md): `sim.*` members of the
//! caller's `baggage` are dropped (other members pass on) unless `SIM_TRUST_INCOMING_BAGGAGE`
//! is set, so faults come only from the query parameters above; the caller's sampled flag
//! is replaced by the frontend's own sampling decision unless `SIM_TRUST_INCOMING_SAMPLED`
//! is set (the caller's trace id is kept either way).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use demokit::{AppError, FaultPlan, Telemetry, apply_faults, current_trace_id, trace_url};
use order_service::{Order, OrderClient, OrderRequest};
use serde::{Deserialize, Serialize};
use tracekit::Context;
use user_service::UserClient;

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Flags and environment of `frontend`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "frontend", version, about = "Spanline demo frontend",
    after_help = demokit::TELEMETRY_HELP,
    mut_arg("listen_addr", |a| a.default_value(DEFAULT_LISTEN).required(false))
)]
pub struct Config {
    /// Common flags (LISTEN_ADDR, --healthcheck).
    #[command(flatten)]
    pub common: demokit::CommonArgs,
    /// Base URL of the user service.
    #[arg(
        long,
        env = "USER_SERVICE_URL",
        default_value = "http://localhost:8081"
    )]
    pub user_service_url: String,
    /// Base URL of the order service.
    #[arg(
        long,
        env = "ORDER_SERVICE_URL",
        default_value = "http://localhost:8082"
    )]
    pub order_service_url: String,
    /// Base URL of the collector's UI, used to build `trace_url`.
    #[arg(
        long,
        env = "COLLECTOR_UI_URL",
        default_value = "http://localhost:16686"
    )]
    pub collector_ui_url: String,
    /// Honour `sim.*` fault-injection members of the caller's baggage (1); by default they
    /// are dropped and only the ?delay= / ?fail= parameters inject faults.
    #[arg(
        long,
        env = "SIM_TRUST_INCOMING_BAGGAGE",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub trust_incoming_baggage: bool,
    /// Follow the sampled flag of the caller's traceparent (1); by default the frontend's
    /// sampler decides, keeping the caller's trace id.
    #[arg(
        long,
        env = "SIM_TRUST_INCOMING_SAMPLED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub trust_incoming_sampled: bool,
    /// How long a call to the user or order service may take, ms; longer is a 504.
    #[arg(long, env = "SIM_CALL_TIMEOUT_MS", default_value_t = 35_000)]
    pub call_timeout_ms: u64,
}

/// Where the frontend sends its calls.
#[derive(Debug, Clone)]
pub struct Settings {
    /// User service base URL, no trailing slash.
    pub user_service_url: String,
    /// Order service base URL, no trailing slash.
    pub order_service_url: String,
    /// Collector UI base URL, no trailing slash.
    pub collector_ui_url: String,
    /// Whether `sim.*` members of the caller's baggage are honoured
    /// (`SIM_TRUST_INCOMING_BAGGAGE`); `false` drops them.
    pub trust_incoming_baggage: bool,
    /// The total timeout of a call to the user or order service, ms.
    pub call_timeout_ms: u64,
}

impl Settings {
    /// Settings calling the given base URLs, with the defaults of the flags: incoming
    /// `sim.*` baggage dropped, calls timing out after [`demokit::CALL_TIMEOUT`].
    pub fn new(user_service_url: &str, order_service_url: &str, collector_ui_url: &str) -> Self {
        let trim = |s: &str| s.trim_end_matches('/').to_owned();
        Settings {
            user_service_url: trim(user_service_url),
            order_service_url: trim(order_service_url),
            collector_ui_url: trim(collector_ui_url),
            trust_incoming_baggage: false,
            call_timeout_ms: u64::try_from(demokit::CALL_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Config {
    /// The settings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            trust_incoming_baggage: self.trust_incoming_baggage,
            call_timeout_ms: self.call_timeout_ms,
            ..Settings::new(
                &self.user_service_url,
                &self.order_service_url,
                &self.collector_ui_url,
            )
        }
    }

    /// How the frontend serves: `SIM_MAX_CONCURRENCY`, and the caller's sampled flag
    /// followed only with `SIM_TRUST_INCOMING_SAMPLED`.
    pub fn serve_options(&self) -> demokit::ServeOptions {
        demokit::ServeOptions {
            trust_incoming_sampled: self.trust_incoming_sampled,
            ..self.common.serve_options()
        }
    }
}

/// The answer to a placed order (201; 202 for `mode=async`, with the order `pending`): the
/// order service's [`Order`] and where to read its trace.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderAnswer {
    /// The placed order (`order_id`, `status`, `user_id`, `product`, `quantity`, `amount`,
    /// `payment_id`).
    #[serde(flatten)]
    pub order: Order,
    /// The trace of this request: 32 lowercase hex characters.
    pub trace_id: String,
    /// Where to read the trace: `<COLLECTOR_UI_URL>/trace/<trace_id>`.
    pub trace_url: String,
}

struct AppState {
    users: UserClient,
    orders: OrderClient,
    settings: Settings,
}

/// The routes of the frontend (without `/healthz` and the tracing layer).
pub fn app(telemetry: Telemetry, settings: Settings) -> Router {
    let http = telemetry.http_client_with_timeout(Duration::from_millis(settings.call_timeout_ms));
    let state = AppState {
        users: UserClient::new(http.clone(), &settings.user_service_url),
        orders: OrderClient::new(http, &settings.order_service_url),
        settings,
    };
    Router::new()
        .route("/orders", post(create_order))
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
        .route("/orders/{id}", get(get_order))
        .with_state(Arc::new(state))
}

/// Runs a handler's work with the request's fault plan in the baggage, after the
/// frontend's own injected faults; an error answer links to the trace (`trace_url`).
async fn answer<T: IntoResponse>(
    state: &AppState,
    query: &[(String, String)],
    work: impl Future<Output = Result<T, AppError>>,
) -> Response {
    let result = with_faults(query, state.settings.trust_incoming_baggage, async {
        apply_faults("frontend").await?;
        work.await
    })
    .await;
    match result {
        Ok(t) => t.into_response(),
        Err(e) => e
            .with_trace_ui(&state.settings.collector_ui_url)
            .into_response(),
    }
}

/// Ids are path segments of downstream URLs: keep them to a safe alphabet and length.
fn check_id(what: &str, id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "{what} must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"
        )))
    }
}

/// The attribute counting the `sim.*` baggage members of the caller that the frontend
/// dropped (on its SERVER span).
pub const DROPPED_SIM_BAGGAGE: &str = "app.sim.dropped_incoming";

/// Runs `f` with the request's fault plan added to the current baggage, after dropping the
/// caller's own `sim.*` members unless `trust_incoming` (the frontend is the trust
/// boundary: faults come from its query parameters).
async fn with_faults<T>(
    query: &[(String, String)],
    trust_incoming: bool,
    f: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let plan = FaultPlan::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    let cx = Context::current();
    let incoming = if trust_incoming {
        cx.baggage().clone()
    } else {
        let (kept, dropped) = FaultPlan::strip_from(cx.baggage());
        if dropped > 0
            && let Some(span) = tracekit::current_span()
        {
            span.set_attribute(DROPPED_SIM_BAGGAGE, dropped as i64);
        }
        kept
    };
    let baggage = plan.to_baggage(&incoming);
    if let Some(span) = tracekit::current_span() {
        for m in baggage.iter().filter(|m| m.key().starts_with("sim.")) {
            span.set_attribute(format!("app.{}", m.key()), m.value().to_owned());
        }
    }
    cx.with_baggage(baggage).scope(f).await
}

async fn create_order(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    body: Result<Json<OrderRequest>, JsonRejection>,
) -> Response {
    let work = async {
        let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text()))?;
        check_id("user_id", &req.user_id)?;
        if let Some(span) = tracekit::current_span() {
            span.set_attribute("app.user.id", req.user_id.clone());
            span.set_attribute("app.order.product", req.product.clone());
            span.set_attribute("app.order.quantity", i64::from(req.quantity));
        }
        state.users.get_user(&req.user_id).await?;
        let is_async = query
            .iter()
            .any(|(k, v)| k == "mode" && v.eq_ignore_ascii_case("async"));
        let (status, order) = if is_async {
            let order = state.orders.create_order_async(&req).await?;
            (StatusCode::ACCEPTED, order)
        } else {
            (StatusCode::CREATED, state.orders.create_order(&req).await?)
        };
        if let Some(span) = tracekit::current_span() {
            span.set_attribute("app.order.id", order.order_id.clone());
        }
        let trace_id = current_trace_id();
        let trace_url = trace_url(&state.settings.collector_ui_url, &trace_id);
        Ok((
            status,
            Json(OrderAnswer {
                order,
                trace_id,
                trace_url,
            }),
        ))
    };
    answer(&state, &query, work).await
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    Path(id): Path<String>,
) -> Response {
    let work = async {
        check_id("id", &id)?;
        Ok(Json(state.users.get_user(&id).await?))
    };
    answer(&state, &query, work).await
}

async fn list_users(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let work = async { Ok(Json(state.users.list_users().await?)) };
    answer(&state, &query, work).await
}

async fn get_order(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    Path(id): Path<String>,
) -> Response {
    let work = async {
        check_id("id", &id)?;
        Ok(Json(state.orders.get_order(&id).await?))
    };
    answer(&state, &query, work).await
}
