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

/// Wraps `routes` in the tracing middleware and adds an untraced `GET /healthz`.
pub fn app(routes: Router, telemetry: &Telemetry) -> Router {
    routes
        .layer(TraceLayer::new(
            telemetry.tracer.clone(),
            telemetry.propagator,
        ))
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
