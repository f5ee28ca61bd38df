//! Helpers for the services' tests: drive a router without sockets, or serve one on
//! loopback as the downstream of another service.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;

/// The largest answer body [`call`] reads, bytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Sends `req` to `app` without a socket; answers the status and the JSON body
/// (`Value::Null` when the body is not JSON).
pub async fn call(app: Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let res = match app.oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Serves `app` on an ephemeral loopback port in a background task (with the peer address
/// the tracing layer records) and answers the address.
///
/// # Errors
/// Binding the port failed.
pub async fn spawn(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        // The test that spawned it ends the runtime; a serving error has nobody to tell.
        let _ = axum::serve(listener, service).await;
    });
    Ok(addr)
}
