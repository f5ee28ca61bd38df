//! The frontend of the Spanline demo, the only service users call.
//!
//! `POST /orders` checks the user with the user service (`GET /users/{id}`) and places the
//! order with the order service (`POST /orders`), which charges it through the payment
//! service. The answer carries `trace_id`, `trace_url` and a `traceresponse` header, so the
//! user can read the trace of their own request. `GET /users/{id}` and `GET /orders/{id}`
//! are proxied to the owning service.
//!
//! Fault injection: `?delay=MS`, `?delay=SERVICE:MS`, `?fail=SERVICE` (comma-separated or
//! repeated) become W3C baggage entries `sim.delay.<service>` / `sim.fail.<service>` that
//! every service acts on (DESIGN §3).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use demokit::{AppError, FaultPlan, Telemetry, apply_faults, current_trace_id};
use serde::{Deserialize, Serialize};
use tracekit::{Context, TracedClient};

/// The default listen address (DESIGN §2).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);

/// Flags and environment of `frontend`.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "frontend", version, about = "Spanline demo frontend")]
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
}

impl Config {
    /// The settings from the flags.
    pub fn settings(&self) -> Settings {
        let trim = |s: &str| s.trim_end_matches('/').to_owned();
        Settings {
            user_service_url: trim(&self.user_service_url),
            order_service_url: trim(&self.order_service_url),
            collector_ui_url: trim(&self.collector_ui_url),
        }
    }
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderRequest {
    /// Who orders: `1`..`5` are known users. A JSON string (a number is accepted too).
    #[serde(deserialize_with = "string_or_number")]
    pub user_id: String,
    /// A product of the catalogue, e.g. `Laptop`.
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

/// The answer to a placed order (201).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderAnswer {
    /// The order id.
    pub order_id: String,
    /// `confirmed`.
    pub status: String,
    /// Who ordered.
    pub user_id: String,
    /// What.
    pub product: String,
    /// How many.
    pub quantity: u32,
    /// Total price.
    pub amount: f64,
    /// The payment id.
    pub payment_id: String,
    /// The trace of this request: 32 lowercase hex characters.
    pub trace_id: String,
    /// Where to read the trace: `<COLLECTOR_UI_URL>/trace/<trace_id>`.
    pub trace_url: String,
}

#[derive(Deserialize)]
struct PlacedOrder {
    order_id: String,
    status: String,
    user_id: String,
    product: String,
    quantity: u32,
    amount: f64,
    payment_id: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

struct AppState {
    client: TracedClient,
    settings: Settings,
}

/// The routes of the frontend (without `/healthz` and the tracing layer).
pub fn app(telemetry: Telemetry, settings: Settings) -> Router {
    let client = telemetry.http_client();
    let ui: Arc<str> = Arc::from(settings.collector_ui_url.as_str());
    Router::new()
        .route("/orders", post(create_order))
        .route("/users/{id}", get(get_user))
        .route("/orders/{id}", get(get_order))
        .with_state(Arc::new(AppState { client, settings }))
        .layer(axum::middleware::map_response(move |res: Response| {
            let ui = ui.clone();
            async move { add_trace_url(res, &ui).await }
        }))
}

/// Error answers carry `trace_url` next to `trace_id`, so a user whose order failed can open
/// the trace that explains why. Success answers build it themselves.
async fn add_trace_url(res: Response, collector_ui_url: &str) -> Response {
    /// Error bodies are small; anything larger is passed through untouched.
    const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
    if res.status().is_success() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY_BYTES).await else {
        return (StatusCode::BAD_GATEWAY, "error answer too large").into_response();
    };
    let mut json = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    if let Some(trace_id) = json.get("trace_id").and_then(|v| v.as_str())
        && !trace_id.is_empty()
        && !json.contains_key("trace_url")
    {
        let url = format!("{collector_ui_url}/trace/{trace_id}");
        json.insert("trace_url".to_owned(), url.into());
    }
    let body = serde_json::to_vec(&json).unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
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

/// Runs `f` with the request's fault plan added to the current baggage.
async fn with_faults<T>(
    query: &[(String, String)],
    f: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let plan = FaultPlan::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| AppError::bad_request(e.to_string()))?;
    if plan.is_empty() {
        return f.await;
    }
    let cx = Context::current();
    let baggage = plan.to_baggage(cx.baggage());
    if let Some(span) = tracekit::current_span() {
        for m in baggage.iter().filter(|m| m.key().starts_with("sim.")) {
            span.set_attribute(format!("app.{}", m.key()), m.value().to_owned());
        }
    }
    cx.with_baggage(baggage).scope(f).await
}

/// Turns a downstream error answer into ours: business errors pass through, faults become
/// 502 (the service answered badly) or 503 (it could not be reached).
async fn downstream_error(service: &str, res: reqwest::Response) -> AppError {
    let status = res.status();
    let message = res
        .json::<ErrorAnswer>()
        .await
        .map(|e| e.error)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    match status {
        StatusCode::NOT_FOUND | StatusCode::PAYMENT_REQUIRED | StatusCode::BAD_REQUEST => {
            AppError::new(status, message)
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            AppError::unavailable(format!("{service} service unavailable: {message}"))
        }
        _ => AppError::bad_gateway(format!("{service} service failed: {message}")),
    }
}

fn unreachable(service: &str, e: &reqwest::Error) -> AppError {
    AppError::unavailable(format!("{service} service unreachable: {e}"))
}

async fn create_order(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    body: Result<Json<OrderRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<OrderAnswer>), AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text()))?;
    check_id("user_id", &req.user_id)?;
    if let Some(span) = tracekit::current_span() {
        span.set_attribute("app.user.id", req.user_id.clone());
        span.set_attribute("app.order.product", req.product.clone());
        span.set_attribute("app.order.quantity", i64::from(req.quantity));
    }
    with_faults(&query, async {
        apply_faults("frontend").await?;
        let s = &state.settings;
        let user = state
            .client
            .get(format!("{}/users/{}", s.user_service_url, req.user_id))
            .route("/users/{id}")
            .peer_service("user")
            .send()
            .await
            .map_err(|e| unreachable("user", &e))?;
        if user.status() == StatusCode::NOT_FOUND {
            return Err(AppError::not_found(format!(
                "unknown user {:?}",
                req.user_id
            )));
        }
        if !user.status().is_success() {
            return Err(downstream_error("user", user).await);
        }
        let res = state
            .client
            .post(format!("{}/orders", s.order_service_url))
            .route("/orders")
            .peer_service("order")
            .json(&req)
            .send()
            .await
            .map_err(|e| unreachable("order", &e))?;
        if !res.status().is_success() {
            return Err(downstream_error("order", res).await);
        }
        let o: PlacedOrder = res
            .json()
            .await
            .map_err(|e| AppError::bad_gateway(format!("order service answered garbage: {e}")))?;
        if let Some(span) = tracekit::current_span() {
            span.set_attribute("app.order.id", o.order_id.clone());
        }
        let trace_id = current_trace_id();
        let trace_url = format!("{}/trace/{trace_id}", s.collector_ui_url);
        Ok((
            StatusCode::CREATED,
            Json(OrderAnswer {
                order_id: o.order_id,
                status: o.status,
                user_id: o.user_id,
                product: o.product,
                quantity: o.quantity,
                amount: o.amount,
                payment_id: o.payment_id,
                trace_id,
                trace_url,
            }),
        ))
    })
    .await
}

/// Passes a downstream JSON answer through with its status.
async fn proxy(service: &str, res: Result<reqwest::Response, reqwest::Error>) -> Response {
    let res = match res {
        Ok(r) => r,
        Err(e) => return unreachable(service, &e).into_response(),
    };
    let status = res.status();
    if status.is_server_error() {
        return downstream_error(service, res).await.into_response();
    }
    match res.bytes().await {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(e) => {
            AppError::bad_gateway(format!("{service} answer unreadable: {e}")).into_response()
        }
    }
}

/// `GET /{resource}/{id}` proxied to `service` at `base_url` (route template `route`).
async fn proxy_get(
    state: &AppState,
    query: &[(String, String)],
    id: &str,
    service: &'static str,
    base_url: &str,
    route: &'static str,
) -> Response {
    if let Err(e) = check_id("id", id) {
        return e.into_response();
    }
    let resource = route.trim_end_matches("/{id}");
    let url = format!("{base_url}{resource}/{id}");
    let call = async {
        apply_faults("frontend").await?;
        Ok(state
            .client
            .get(url)
            .route(route)
            .peer_service(service)
            .send()
            .await)
    };
    match with_faults(query, call).await {
        Ok(res) => proxy(service, res).await,
        Err(e) => e.into_response(),
    }
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    Path(id): Path<String>,
) -> Response {
    let base = state.settings.user_service_url.clone();
    proxy_get(&state, &query, &id, "user", &base, "/users/{id}").await
}

async fn get_order(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    Path(id): Path<String>,
) -> Response {
    let base = state.settings.order_service_url.clone();
    proxy_get(&state, &query, &id, "order", &base, "/orders/{id}").await
}
