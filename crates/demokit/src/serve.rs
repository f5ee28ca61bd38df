//! Serving a demo service: tracing middleware, `/healthz`, graceful shutdown, span flush,
//! and the `--healthcheck` probe used by container health checks.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tracekit::http::TraceLayer;

use crate::lifecycle::{probe_health, shutdown_signal};
use crate::telemetry::Telemetry;

/// How long shutdown may spend flushing queued spans.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a service admits and traces requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Requests in progress at most; more are answered 503 (`SIM_MAX_CONCURRENCY`, see
    /// [`limit_concurrency`](crate::limit_concurrency)).
    pub max_concurrency: u32,
    /// Whether an incoming `traceparent`'s sampled flag is followed. The frontend, the edge,
    /// sets it from `SIM_TRUST_INCOMING_SAMPLED` (default no); the services behind it trust
    /// their callers. See `tracekit::http::TraceLayer::trust_incoming_sampled`.
    pub trust_incoming_sampled: bool,
}

impl Default for ServeOptions {
    /// [`DEFAULT_MAX_CONCURRENCY`](crate::DEFAULT_MAX_CONCURRENCY), trusting the sampled flag.
    fn default() -> ServeOptions {
        ServeOptions {
            max_concurrency: crate::admission::DEFAULT_MAX_CONCURRENCY,
            trust_incoming_sampled: true,
        }
    }
}

/// Wraps `routes` in the tracing middleware and adds an untraced `GET /healthz`, with the
/// default [`ServeOptions`].
pub fn app(routes: Router, telemetry: &Telemetry) -> Router {
    app_with(routes, telemetry, ServeOptions::default())
}

/// Wraps `routes` in the concurrency limit, then the tracing middleware (so a refused
/// request is a SERVER span), and adds an untraced `GET /healthz` outside both.
pub fn app_with(routes: Router, telemetry: &Telemetry, options: ServeOptions) -> Router {
    crate::admission::limit_concurrency(routes, options.max_concurrency)
        .layer(
            TraceLayer::new(telemetry.tracer.clone(), telemetry.propagator)
                .trust_incoming_sampled(options.trust_incoming_sampled),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves `app` on `listen_addr` until SIGTERM or Ctrl-C, then stops accepting, finishes
/// in-flight requests, and flushes every finished span (waiting at most [`FLUSH_TIMEOUT`]).
///
/// # Errors
/// Binding or accepting failed.
pub async fn serve(
    app: Router,
    listen_addr: SocketAddr,
    telemetry: &Telemetry,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_addr).await?;
    let stop = async {
        shutdown_signal().await;
    };
    serve_on(listener, app, telemetry, stop).await
}

/// Like [`serve`] on an already bound `listener`, stopping when `shutdown` resolves.
///
/// # Errors
/// Accepting failed.
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = telemetry.service_name().to_owned();
    eprintln!("{service}: listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    eprintln!("{service}: stopped accepting; flushing spans");
    let tracer = telemetry.tracer.clone();
    let flushed = tokio::task::spawn_blocking(move || tracer.shutdown(FLUSH_TIMEOUT)).await;
    match flushed {
        Ok(Ok(())) => eprintln!("{service}: all spans flushed"),
        Ok(Err(e)) => eprintln!("{service}: span flush incomplete: {e}"),
        Err(e) => eprintln!("{service}: span flush task failed: {e}"),
    }
    Ok(())
}

/// The `--healthcheck` probe: `GET /healthz` on the port of `listen_addr` over loopback.
/// Exit code 0 when it answers 200 within 2 s, 1 otherwise. Needs no curl in the image.
pub async fn healthcheck(listen_addr: SocketAddr, path: &str) -> ExitCode {
    let target = SocketAddr::from(([127, 0, 0, 1], listen_addr.port()));
    match probe_health(target, path, Duration::from_secs(2)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
