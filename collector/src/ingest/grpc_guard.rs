//! # The gRPC port inside the HTTP ports' protections (issue 16)
//!
//! The OTLP/gRPC port ([`super::grpc`]) keeps the same bounds as the HTTP ingest port:
//!
//! | bound | variable | when hit |
//! |---|---|---|
//! | request bodies in flight ([`super::budget`]), raw and inflated | `COLLECTOR_MAX_INFLIGHT_BYTES` | `UNAVAILABLE` with a `google.rpc.RetryInfo` of [`RETRY_DELAY`] (OTLP clients retry it) |
//! | message size, before and after gzip | `COLLECTOR_MAX_BODY_BYTES` | `RESOURCE_EXHAUSTED` without `RetryInfo` (not retried) |
//! | time to send a message | `COLLECTOR_BODY_READ_TIMEOUT` | `DEADLINE_EXCEEDED` |
//! | open connections | `COLLECTOR_MAX_CONNECTIONS` | the connection is closed at once |
//! | time to finish the TLS handshake ([`crate::tls`]), then to send the HTTP/2 preface | `COLLECTOR_HEADER_READ_TIMEOUT` | the connection is closed |
//! | concurrent streams per connection | [`MAX_CONCURRENT_STREAMS`] | HTTP/2 refuses the stream |
//!
//! [`GuardLayer`] reads each request's message itself, taking budget for every frame and,
//! for a `grpc-encoding: gzip` message, for every inflated chunk, so tonic only ever sees a
//! message that fits; the reservation is held until the answer, as on the HTTP port.
//! [`guarded_incoming`] bounds the connections. The bearer token is checked by the service
//! ([`super::grpc`]).

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status};

use super::budget::{BoundLog, Reservation};
use crate::AppState;

/// How long a client refused for the in-flight budget is told to wait.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Most concurrent streams (requests) on one HTTP/2 connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;
/// gRPC message prefix: a compressed flag (1 byte) and the length (4 bytes, big endian).
const PREFIX_BYTES: usize = 5;
/// Inflated bytes taken from the budget at a time.
const INFLATE_CHUNK_BYTES: usize = 64 * 1024;
/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
const HTTP2_PREFACE_BYTES: usize = 24;

/// Wraps the gRPC services in [`Guard`] (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardLayer {
    state: AppState,
}

impl GuardLayer {
    /// The guard of `state`'s budget and limits.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.state.clone(),
        }
    }
}

/// A gRPC service behind the budget, size and time bounds of the module docs.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for Guard<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The service that was polled ready serves this call; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let mut reservation = state.inflight.reserve();
            let (mut parts, body) = request.into_parts();
            let message = match read_message(&state, &mut parts, body, &mut reservation).await {
                Ok(message) => message,
                Err(status) => {
                    let metrics = &state.metrics;
                    metrics
                        .ingest_requests
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics
                        .ingest_requests_failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(status.into_http());
                }
            };
            let body = tonic::body::Body::new(http_body_util::Full::new(message));
            let answer = inner.call(http::Request::from_parts(parts, body)).await;
            // Held until the spans are committed and answered.
            drop(reservation);
            answer
        })
    }
}

/// Reads the request body within the budget, the size limit and the body timeout; a gzip
/// message comes back inflated (and `grpc-encoding` removed), so tonic decodes it as is.
async fn read_message(
    state: &AppState,
    parts: &mut http::request::Parts,
    mut body: tonic::body::Body,
    reservation: &mut Reservation,
) -> Result<Bytes, Status> {
    let max_bytes = state.limits.max_body_bytes;
    let deadline = tokio::time::Instant::now() + state.connection_limits.body_read_timeout;
    let mut raw = BytesMut::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(
                    "the message did not arrive within COLLECTOR_BODY_READ_TIMEOUT",
                )
            })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| Status::cancelled(format!("reading the message: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if raw.len() + data.len() > max_bytes.saturating_add(PREFIX_BYTES) {
            return Err(too_large(max_bytes));
        }
        reservation.grow(data.len()).map_err(|_| budget_spent())?;
        raw.extend_from_slice(&data);
    }
    let gzip = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip || raw.len() < PREFIX_BYTES || raw[0] != 1 {
        return Ok(raw.freeze());
    }
    let declared = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    let compressed = raw
        .get(PREFIX_BYTES..PREFIX_BYTES + declared)
        .ok_or_else(|| Status::invalid_argument("the message is shorter than its prefix says"))?;
    let mut inflated = BytesMut::new();
    inflated.put_u8(0);
    inflated.put_u32(0);
    let mut decoder = flate2::read::GzDecoder::new(compressed);
    let mut chunk = vec![0u8; INFLATE_CHUNK_BYTES];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| Status::invalid_argument(format!("the gzip message is damaged: {e}")))?;
        if n == 0 {
            break;
        }
        if inflated.len() - PREFIX_BYTES + n > max_bytes {
            return Err(too_large(max_bytes));
        }
        reservation.grow(n).map_err(|_| budget_spent())?;
        inflated.extend_from_slice(&chunk[..n]);
    }
    let length = u32::try_from(inflated.len() - PREFIX_BYTES).map_err(|_| too_large(max_bytes))?;
    inflated[1..PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    parts.headers.remove("grpc-encoding");
    Ok(inflated.freeze())
}

fn too_large(max_bytes: usize) -> Status {
    Status::resource_exhausted(format!(
        "message larger than {max_bytes} bytes (COLLECTOR_MAX_BODY_BYTES)"
    ))
}

/// `UNAVAILABLE` with a `google.rpc.RetryInfo` of [`RETRY_DELAY`] (OTLP/gRPC: retryable).
fn budget_spent() -> Status {
    let message = "too many request bodies in flight; retry later";
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(RETRY_DELAY.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: Code::Unavailable as i32,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::Unavailable,
        message,
        Bytes::from(details.encode_to_vec()),
    )
}

/// `google.rpc.Status` (the `grpc-status-details-bin` trailer).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details, e.g. a `RetryInfo`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: when to retry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    /// Wait at least this long.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past `seconds`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The accepted connections of the gRPC port, at most `COLLECTOR_MAX_CONNECTIONS` open at
/// once (a connection over the bound is closed at once, with a log line); each must finish
/// its TLS handshake (with [`crate::tls`]) and then send the HTTP/2 preface, each within
/// `COLLECTOR_HEADER_READ_TIMEOUT`. Accepting runs on its own task, handshakes on one task
/// each, so a slow client delays nobody; it all stops when the stream is dropped.
pub fn guarded_incoming(
    listener: TcpListener,
    state: &AppState,
) -> impl futures_util::Stream<Item = std::io::Result<GuardedConnection>> + Send + 'static {
    let limits = state.connection_limits;
    let tls = state.tls.as_ref().map(|t| t.h2.clone());
    let (ready, arrived) = tokio::sync::mpsc::channel::<GuardedConnection>(64);
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let log = BoundLog::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log.hit(&format!("gRPC port: cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                log.hit(&format!(
                    "gRPC port: {} connections open (COLLECTOR_MAX_CONNECTIONS); closing new \
                     ones",
                    limits.max_connections
                ));
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let ready = ready.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let transport = match tls {
                    None => Transport::Plain(stream),
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                            Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
                            // Plaintext, silent or broken: closed.
                            _ => return,
                        }
                    }
                };
                let connection = GuardedConnection {
                    transport,
                    _permit: permit,
                    preface_read: 0,
                    preface_deadline: Some(Box::pin(tokio::time::sleep(
                        limits.header_read_timeout,
                    ))),
                };
                let _ = ready.send(connection).await;
            });
        }
    });
    futures_util::stream::unfold(arrived, |mut arrived| async move {
        let connection = arrived.recv().await?;
        Some((Ok(connection), arrived))
    })
}

/// The byte stream under a gRPC connection.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted gRPC connection holding its place among the open ones; reading fails with
/// `TimedOut` when the HTTP/2 preface does not arrive in time.
#[derive(Debug)]
pub struct GuardedConnection {
    transport: Transport,
    _permit: OwnedSemaphorePermit,
    preface_read: usize,
    preface_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl GuardedConnection {
    fn io(&mut self) -> Pin<&mut (dyn AsyncReadWrite + Send + Unpin)> {
        match &mut self.transport {
            Transport::Plain(s) => Pin::new(s),
            Transport::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

/// What the transports have in common.
trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite + ?Sized> AsyncReadWrite for T {}

impl Connected for GuardedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match &self.transport {
            Transport::Plain(s) => s.connect_info(),
            Transport::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for GuardedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match this.io().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.preface_read += buf.filled().len() - before;
                if this.preface_read >= HTTP2_PREFACE_BYTES {
                    this.preface_deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .preface_deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within COLLECTOR_HEADER_READ_TIMEOUT",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for GuardedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_carries_retry_info() {
        let status = budget_spent();
        assert_eq!(status.code(), Code::Unavailable);
        let details = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(details.details.len(), 1);
        assert!(
            details.details[0]
                .type_url
                .ends_with("google.rpc.RetryInfo")
        );
        let retry = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(retry.retry_delay.unwrap().seconds, 1);
    }
}
