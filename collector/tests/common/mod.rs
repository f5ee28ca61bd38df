//! Helpers shared by the collector's API test files: drive a router without sockets and
//! keep the whole answer, or serve a collector on loopback ports.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub mod child;

/// A router's complete answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Content-Type` header, or `""`.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `request` through `app` and collects the answer.
pub async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// A minimal HTTP/1.1 exchange over a real socket (`Connection: close`): (status, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let (status, body, _) = exchange(addr, method, path, content_type, body).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// [`http`] with the body as bytes, and whether it came chunked: (status, body, chunked).
pub async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    split_answer(&raw)
}

/// A raw HTTP/1.1 answer as (status, body, whether it came chunked); a chunked body is
/// put back together.
pub fn split_answer(raw: &[u8]) -> (u16, Vec<u8>, bool) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.contains("transfer-encoding: chunked");
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, body, chunked)
}

/// The data of a `Transfer-Encoding: chunked` body.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A collector served on 127.0.0.1 ports (ephemeral); stops when dropped.
pub struct Running {
    pub ingest: std::net::SocketAddr,
    pub query: std::net::SocketAddr,
    pub state: collector::AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `state` on two fresh loopback ports (ingest and query) until the answer is dropped.
pub async fn serve_on_loopback(state: collector::AppState) -> Running {
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ingest_addr, query_addr) = (ingest.local_addr().unwrap(), query.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(collector::serve(state.clone(), ingest, query, async move {
        let _ = stopped.await;
    }));
    Running {
        ingest: ingest_addr,
        query: query_addr,
        state,
        _stop: stop,
    }
}

/// A collector served with OTLP/gRPC on 127.0.0.1 ports (ephemeral); [`WithGrpc::stop`]
/// stops it and waits for the server to return; dropping it stops it too.
pub struct WithGrpc {
    pub ingest: std::net::SocketAddr,
    pub grpc: std::net::SocketAddr,
    pub query: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl WithGrpc {
    /// Stops the server; panics unless it returns `Ok` within 10 s.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.server)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Serves `state` on three fresh loopback ports (ingest, gRPC, query) with
/// `collector::serve_with_grpc`.
pub async fn serve_with_grpc_on_loopback(state: collector::AppState) -> WithGrpc {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (ingest, grpc, query) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addrs = (
        ingest.local_addr().unwrap(),
        grpc.local_addr().unwrap(),
        query.local_addr().unwrap(),
    );
    let server = tokio::spawn(collector::serve_with_grpc(
        state,
        ingest,
        Some(grpc),
        query,
        async move {
            let _ = stopped.await;
        },
    ));
    WithGrpc {
        ingest: addrs.0,
        grpc: addrs.1,
        query: addrs.2,
        stop: Some(stop),
        server,
    }
}

/// A free TCP port on 127.0.0.1 for a child process to listen on: reserved for it for 60 s
/// and never answered twice in this test process ([`demokit::ports::reserve_port`]).
pub fn free_port() -> u16 {
    demokit::ports::reserve_port().unwrap()
}

/// The runtime the ignored benchmarks drive the collector with: two worker threads, as the
/// machine the figures come from has two CPUs.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `GET uri` with an empty body.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// `POST path` with `content_type`.
pub fn post_to(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// `POST /v1/traces` (OTLP/HTTP) with `content_type`.
pub fn post(content_type: &str, body: Vec<u8>) -> Request<Body> {
    post_to("/v1/traces", content_type, body)
}

/// `bytes` gzip-compressed (best compression).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `POST path` with `content_type` and `Content-Encoding: gzip`; `body` goes as given
/// (compressed with [`gzip`], or deliberately not).
pub fn post_gzip(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(body))
        .unwrap()
}
