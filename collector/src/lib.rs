//! # Spanline collector
//!
//! Receives spans, stores them durably, assembles them into trace trees and serves them.
//!
//! ```text
//!  ingest port 4318                                              query port 16686
//!  POST /v1/traces ──► ingest/ ──► model::Span ──► store/ ──► assemble/ ──► query/
//!  (OTLP protobuf,      decode,      one type       SQLite:    tree, text   /v1/traces/{id}/tree
//!   OTLP JSON,          validate,                   group      orphans      /v1/traces, /v1/services
//!   simple JSON, gzip)  sanitize                    commit                  /health, /metrics
//!  POST /api/v2/spans
//!  (Zipkin v2 JSON)
//!  gRPC port 4317: TraceService/Export (OTLP/gRPC) ──► the same decode and store steps
//!  sampling port 5778: Jaeger remote sampling strategies ([`sampling`]); tail sampling
//!  decides when assemble/ finishes a trace
//! ```
//!
//! Entry points:
//!
//! - [`AppState::new`]: shared state (a [`SpanStore`], counters, limits, a shutdown signal);
//! - [`ingest_app`] and [`query_app`]: the two routers; tests drive them with
//!   `tower::ServiceExt::oneshot`, no sockets needed;
//! - [`serve`]: runs both routers on given listeners until a shutdown future resolves, then
//!   drains and shuts the store down; [`serve_with_grpc`] adds OTLP/gRPC ([`ingest::grpc`]);
//! - [`run`]: what `main` does with a [`Config`] (data dir, store, listeners, signals).
//!
//! Configuration is in [`config`]; the contracts (ports, paths, JSON fields) are DESIGN.md §2
//! and §4.

pub mod assemble;
pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
pub mod fast_hash;
pub mod format;
pub mod healthcheck;
pub mod ingest;
pub mod metrics;
pub mod model;
mod process;
pub mod query;
pub mod retention;
pub mod sampling;
pub mod sanitize;
pub mod store;
#[cfg(test)]
mod testing;
pub mod time;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::Error;
pub use metrics::Metrics;
pub use process::{RunError, run, shutdown_signal};
pub use store::{MemoryStore, SpanStore, SqliteOptions, SqliteStore, StoreError};

/// Request limits applied by the ingest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest body after decompression, bytes (413 above; default 64 MiB).
    pub max_body_bytes: usize,
    /// Budget for the bodies of all requests in flight, bytes (503 with `Retry-After` above;
    /// default 48 MiB; [`ingest::budget`]).
    pub max_inflight_bytes: usize,
    /// Per-span size limits (truncation and caps, reliability.md §7.2 O10/O11).
    pub span: sanitize::SpanLimits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: usize::try_from(config::DEFAULT_MAX_BODY_BYTES).unwrap_or(usize::MAX),
            max_inflight_bytes: usize::try_from(ingest::budget::DEFAULT_MAX_INFLIGHT_BYTES)
                .unwrap_or(usize::MAX),
            span: sanitize::SpanLimits::default(),
        }
    }
}

/// State shared by every handler of both ports. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The span store.
    pub store: Arc<dyn SpanStore>,
    /// Process counters.
    pub metrics: Arc<Metrics>,
    /// Ingest limits.
    pub limits: IngestLimits,
    /// Follows traces as they are committed and says when each is finished.
    pub settler: Arc<assemble::settle::Settler>,
    /// Where finished traces are published (`GET /v1/tail`, `COLLECTOR_LOG_TREES`).
    pub tail: query::tail::TailHub,
    /// The sampling strategies served to the services (`GET /api/sampling`).
    pub strategies: Arc<sampling::Strategies>,
    /// Tail sampling, when configured (`COLLECTOR_TAIL_SAMPLING`).
    pub tail_sampler: Option<Arc<sampling::tail::TailSampler>>,
    /// The budget for request bodies in flight ([`ingest::budget`]).
    pub inflight: Arc<ingest::budget::InflightBudget>,
    /// Connection bounds and timeouts of both HTTP ports ([`connections`]).
    pub connection_limits: connections::ConnectionLimits,
    /// The long-polls in progress ([`connections::LongPolls`]).
    pub long_polls: Arc<connections::LongPolls>,
    /// The bearer tokens each port asks for ([`auth`]; none by default).
    pub tokens: auth::AccessTokens,
    /// TLS on every port when a certificate is configured ([`tls`]; none by default).
    pub tls: Option<tls::TlsAcceptors>,
    /// Routing by TraceId between collectors (`COLLECTOR_PEERS`; [`ingest::peers`]).
    pub peers: Option<Arc<ingest::peers::Peers>>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store` with `limits`, fresh counters, not shutting down.
    ///
    /// The store is wrapped in a [`store::MeteredStore`] so committed batches feed the RED
    /// metrics of `/metrics`.
    pub fn new(store: Arc<dyn SpanStore>, limits: IngestLimits) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            store: Arc::new(store::MeteredStore::new(store, Arc::clone(&metrics))),
            metrics,
            limits,
            settler: Arc::new(assemble::settle::Settler::new(
                assemble::settle::SettleLimits::default(),
            )),
            tail: query::tail::TailHub::new(false),
            strategies: Arc::new(sampling::Strategies::default()),
            tail_sampler: None,
            inflight: Arc::new(ingest::budget::InflightBudget::new(
                limits.max_inflight_bytes,
            )),
            connection_limits: connections::ConnectionLimits::default(),
            long_polls: Arc::new(connections::LongPolls::new(
                connections::DEFAULT_MAX_LONG_POLLS,
            )),
            tokens: auth::AccessTokens::default(),
            tls: None,
            peers: None,
            shutdown: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The same state with another settle time and, with `log_trees`, every finished text
    /// tree printed to stdout.
    pub fn with_settle(mut self, settle: std::time::Duration, log_trees: bool) -> Self {
        self.settler = Arc::new(assemble::settle::Settler::new(
            assemble::settle::SettleLimits {
                settle,
                ..assemble::settle::SettleLimits::default()
            },
        ));
        self.tail = query::tail::TailHub::new(log_trees);
        self
    }

    /// The same state serving `strategies` (`GET /api/sampling`).
    pub fn with_strategies(mut self, strategies: sampling::Strategies) -> Self {
        self.strategies = Arc::new(strategies);
        self
    }

    /// The same state with tail sampling by `sampler`: traces are decided when the settler
    /// finishes them, which now waits `decision_wait` and follows at most `num_traces`.
    pub fn with_tail_sampling(mut self, sampler: sampling::tail::TailSampler) -> Self {
        self.settler = Arc::new(assemble::settle::Settler::new(sampler.settle_limits()));
        self.tail_sampler = Some(Arc::new(sampler));
        self
    }

    /// The same state with other connection bounds and timeouts ([`connections`]).
    pub fn with_connection_limits(mut self, limits: connections::ConnectionLimits) -> Self {
        self.long_polls = Arc::new(connections::LongPolls::new(limits.max_long_polls));
        self.connection_limits = limits;
        self
    }

    /// The same state asking for `tokens` ([`auth`]).
    pub fn with_tokens(mut self, tokens: auth::AccessTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The same state serving every port over TLS ([`tls`]).
    pub fn with_tls(mut self, tls: tls::TlsAcceptors) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same state routing spans by TraceId to the collectors of `config`
    /// ([`ingest::peers`]); forwards carry the ingest token of [`with_tokens`](Self::with_tokens),
    /// so call this after it.
    ///
    /// # Errors
    /// The HTTP client for the peers cannot be built.
    pub fn with_peers(mut self, config: ingest::peers::PeerConfig) -> Result<Self, String> {
        let peers = ingest::peers::Peers::new(
            config,
            self.tokens.ingest.clone(),
            Arc::clone(&self.metrics),
        )?;
        self.peers = Some(Arc::new(peers));
        Ok(self)
    }

    /// Tells long-running handlers (long-polls) to answer now; [`serve`] calls it when its
    /// shutdown future resolves.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// The ingest router (DESIGN.md §4, ingest port): `POST /v1/traces` (OTLP protobuf, OTLP
/// JSON, simple JSON), `POST /api/v2/spans` (Zipkin v2 JSON), `GET /healthz`.
/// Other methods on either `POST` path get 405 with `Allow: POST`; unknown paths 404.
pub fn ingest_app(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/traces",
            post(ingest::post_traces).fallback(|| async {
                Error::MethodNotAllowed { allow: "POST" }
                    .into_response_as(error::ErrorFormat::PlainText)
            }),
        )
        .route(
            "/api/v2/spans",
            post(ingest::post_zipkin).fallback(|| async {
                Error::MethodNotAllowed { allow: "POST" }
                    .into_response_as(error::ErrorFormat::PlainText)
            }),
        )
        .route("/healthz", get(ingest::healthz))
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_ingest_token,
        ))
        .with_state(state)
}

/// The query router (DESIGN.md §4, query port): the native API (`/v1/traces/{trace_id}/tree`,
/// `/v1/traces/{trace_id}`, `/v1/traces`, `/v1/services`, `/v1/stats`, `/v1/dependencies`),
/// the Jaeger APIs (`/api/...`, `/api/v3/...`), `/metrics`, `/health`, `/healthz`.
/// Every answer carries `X-Content-Type-Options: nosniff`.
pub fn query_app(state: AppState) -> Router {
    use query::jaeger::{v1, v3};
    use query::{dependencies, native, stats, tail};
    Router::new()
        .route("/v1/traces/latest/tree", get(native::get_latest_tree))
        .route("/v1/traces/{trace_id}/tree", get(native::get_tree))
        .route("/v1/traces/{trace_id}", get(native::get_trace))
        .route(
            "/v1/traces/{trace_id}/sampling",
            get(sampling::tail::get_decision),
        )
        .route("/v1/traces", get(native::search))
        .route("/v1/tail", get(tail::get_tail))
        .route("/v1/services", get(native::services))
        .route("/v1/stats", get(stats::get_stats))
        .route("/v1/dependencies", get(dependencies::get_dependencies))
        .route("/api/services", get(v1::services))
        .route(
            "/api/services/{service}/operations",
            get(v1::service_operations),
        )
        .route("/api/operations", get(v1::operations))
        .route("/api/traces", get(v1::search))
        .route("/api/traces/{trace_id}", get(v1::get_trace))
        .route("/api/dependencies", get(v1::dependencies))
        .route("/api/archive/{trace_id}", post(v1::archive))
        .route("/api/v3/services", get(v3::services))
        .route("/api/v3/operations", get(v3::operations))
        .route("/api/v3/traces", get(v3::search))
        .route("/api/v3/traces/{trace_id}", get(v3::get_trace))
        .route("/api/v3/trace-summaries", get(v3::summaries))
        .route("/api/sampling", get(sampling::get_strategy))
        .route("/sampling", get(sampling::get_strategy))
        .route("/metrics", get(native::metrics))
        .route("/health", get(native::health))
        .route("/healthz", get(ingest::healthz))
        .merge(ui::router())
        .fallback(ui::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_query_token,
        ))
        .layer(axum::middleware::map_response(nosniff))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_query,
        ))
        .with_state(state)
}

/// Records the latency of every query-port request by route template.
async fn observe_query(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    state
        .metrics
        .query_latency
        .observe(&route, response.status().as_u16(), ns);
    response
}

async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serves [`ingest_app`] on `ingest` and [`query_app`] on `query` until `shutdown` resolves
/// (or a server fails), then: stops accepting, lets in-flight requests finish (long-polls
/// answer at once), and shuts the store down so everything acknowledged is committed and the
/// database is checkpointed. [`serve_with_grpc`] adds the OTLP/gRPC listener.
///
/// # Errors
/// An I/O error of either server.
pub async fn serve(
    state: AppState,
    ingest: TcpListener,
    query: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grpc(state, ingest, None, query, shutdown).await
}

/// [`serve`], plus OTLP/gRPC ingest ([`ingest::grpc`]) on `grpc` when given; the three
/// servers start and stop together.
///
/// # Errors
/// An I/O error of any server.
pub async fn serve_with_grpc(
    state: AppState,
    ingest: TcpListener,
    grpc: Option<TcpListener>,
    query: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trigger = {
        let state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            state.begin_shutdown();
        })
    };
    let publisher = tokio::spawn(query::tail::publish(state.clone()));
    let consumers = assemble::consumer_sync::start(&state).await;
    let run = |listener: TcpListener, app: Router, port: &'static str| {
        let state = state.clone();
        async move {
            let result = connections::serve_http(
                listener,
                app,
                state.connection_limits,
                state.tls.as_ref().map(|t| t.http1.clone()),
                port,
                state.shutdown_receiver(),
            )
            .await;
            // If one server ends on its own, stop the other too.
            state.begin_shutdown();
            result
        }
    };
    let run_grpc = async {
        let Some(listener) = grpc else {
            return Ok(());
        };
        let mut stop = state.shutdown_receiver();
        let result = ingest::grpc::serve(state.clone(), listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        state.begin_shutdown();
        result
    };
    let (ingest_result, grpc_result, query_result) = tokio::join!(
        run(ingest, ingest_app(state.clone()), "ingest"),
        run_grpc,
        run(query, query_app(state.clone()), "query")
    );
    trigger.abort();
    publisher.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), consumers).await;
    state.store.shutdown().await;
    ingest_result.and(grpc_result).and(query_result)
}
