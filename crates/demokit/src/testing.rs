//! Helpers for the services' tests: drive a router without sockets, serve one on loopback
//! as the downstream of another service, and find recorded spans. They panic on a broken
//! test setup, by design.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt;
use tracekit::{SpanData, SpanKind};

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

/// A `POST uri` request carrying the JSON text `body`.
pub fn post_json(uri: &str, body: impl Into<String>) -> Request<Body> {
    let mut req = Request::new(Body::from(body.into()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri
        .parse()
        .unwrap_or_else(|e| panic!("bad test URI {uri:?}: {e}"));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

/// The span named `name` of `kind` among `spans`.
///
/// # Panics
/// When there is none, listing the spans.
pub fn span<'a>(spans: &'a [SpanData], name: &str, kind: SpanKind) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name && s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} span {name:?} in {spans:#?}"))
}

/// Checks the `--help` of a service's `Config`: clap's own consistency checks, the default
/// listen address `default_listen` shown (and used when nothing is given), and the `OTEL_*`
/// variables listed.
///
/// # Panics
/// When one of those does not hold.
pub fn assert_help_shows_defaults<C: clap::Parser>(bin: &str, default_listen: &str) {
    C::command().debug_assert();
    let help = C::command().render_long_help().to_string();
    assert!(
        help.contains(&format!("[default: {default_listen}]")),
        "{help}"
    );
    assert!(help.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{help}");
    let parsed = C::try_parse_from([bin]);
    assert!(parsed.is_ok(), "{bin} without flags: {:?}", parsed.err());
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
