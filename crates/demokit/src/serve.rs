//! Serving a demo service: tracing middleware, `/healthz`, graceful shutdown, span flush,
//! and the `--healthcheck` probe used by container health checks.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracekit::http::TraceLayer;

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

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, wait on SIGTERM alone.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
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
    serve_on(listener, app, telemetry, shutdown_signal()).await
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
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
