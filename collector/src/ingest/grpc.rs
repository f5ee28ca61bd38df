//! OTLP/gRPC ingest: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on the gRPC
//! port (default `0.0.0.0:4317`, `COLLECTOR_GRPC_ADDR`; OTLP specification, "OTLP/gRPC").
//!
//! The service definition is `opentelemetry-proto`'s generated [`TraceServiceServer`], served
//! by tonic over HTTP/2 (plain text, no TLS), behind [`super::grpc_guard`]. Each request takes the OTLP/HTTP protobuf path
//! after decoding: the message is re-encoded and handed to the same protobuf decoder, then to
//! the same store step, so validation, partial success and counters are identical, and the
//! answer is sent only after the spans are committed.
//!
//! - Compression: `grpc-encoding: gzip` requests are accepted; answers are gzip-compressed when
//!   the client accepts it.
//! - Size: a message larger than `COLLECTOR_MAX_BODY_BYTES` (before or after decompression,
//!   as for OTLP/HTTP's 413) is refused before it is decoded with `RESOURCE_EXHAUSTED` and no
//!   `RetryInfo`, which OTLP clients do not retry (tonic's own `OUT_OF_RANGE` would be retried).
//! - Errors map to status codes as the OTLP specification asks: storage busy →
//!   `UNAVAILABLE` (retryable); an undecodable message → `INVALID_ARGUMENT` (not retryable;
//!   tonic itself answers `INTERNAL` for bytes that are not protobuf or hold invalid UTF-8);
//!   anything else → `INTERNAL`. Spans with invalid ids are rejected one by one through
//!   `partial_success`, like OTLP/HTTP.
//! - Authentication: with `COLLECTOR_INGEST_TOKEN` set ([`crate::auth`]), the `authorization`
//!   metadata must be `Bearer <token>`, else `UNAUTHENTICATED`.
//! - Bounded like the HTTP ingest port ([`super::grpc_guard`]): the in-flight body budget
//!   (`UNAVAILABLE` with `RetryInfo`), the message size before and after gzip, the time to
//!   send a message, open connections and the time to send the HTTP/2 preface.
//! - Counters: protocol `otlp_grpc` in `GET /metrics`.

use std::future::Future;
use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use crate::AppState;
use crate::error::Error;
use crate::metrics::Protocol;

/// Requests larger than this (bytes, encoded) are decoded on a blocking thread.
const BLOCKING_THRESHOLD_BYTES: usize = 256 * 1024;

/// The `TraceService` implementation over the collector's state.
#[derive(Debug, Clone)]
pub struct GrpcIngest {
    state: AppState,
}

impl GrpcIngest {
    /// The service over `state` (its store, counters and limits).
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The tonic service: gzip accepted and sent, decoded messages limited to the state's
    /// `max_body_bytes`.
    pub fn into_server(self) -> TraceServiceServer<Self> {
        let limit = self.state.limits.max_body_bytes;
        TraceServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
    }

    async fn export_request(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, Error> {
        let state = &self.state;
        let body = request.encode_to_vec();
        state
            .metrics
            .ingest_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let limits = state.limits.span;
        let large = body.len() > BLOCKING_THRESHOLD_BYTES;
        let decode = move || crate::format::otlp_proto::decode(&body, &limits);
        let decoded = if large {
            tokio::task::spawn_blocking(decode)
                .await
                .map_err(|e| Error::Internal(format!("decoder task failed: {e}")))??
        } else {
            decode()?
        };
        let (rejected, error_message) = super::store(state, Protocol::OtlpGrpc, decoded).await?;
        Ok(ExportTraceServiceResponse {
            partial_success: error_message.map(|error_message| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message,
            }),
        })
    }
}

#[tonic::async_trait]
impl TraceService for GrpcIngest {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let metrics = &self.state.metrics;
        metrics.ingest_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(token) = &self.state.tokens.ingest {
            let offered = request
                .metadata()
                .get_all("authorization")
                .iter()
                .filter_map(|v| crate::auth::bearer(v.as_bytes()))
                .any(|offered| token.matches(offered));
            if !offered {
                metrics
                    .ingest_requests_failed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Status::unauthenticated("missing or wrong bearer token"));
            }
        }
        match self.export_request(request.into_inner()).await {
            Ok(response) => Ok(Response::new(response)),
            Err(e) => {
                metrics
                    .ingest_requests_failed
                    .fetch_add(1, Ordering::Relaxed);
                Err(status(e))
            }
        }
    }
}

/// The gRPC status for an ingest error (OTLP specification, "OTLP/gRPC Response"): the code
/// of [`Error`]'s `google.rpc.Status` mapping, with the same client-facing message.
pub fn status(error: Error) -> Status {
    let code = Code::from_i32(error.grpc_code());
    Status::new(code, error.public_message_logged())
}

/// tonic refuses a message over the size limit with `OUT_OF_RANGE`, which the OTLP
/// specification lists as retryable; the same request would fail again, so it is answered as
/// `RESOURCE_EXHAUSTED` without `RetryInfo` (not retryable, like HTTP 413). Such refusals are
/// trailers-only answers: the status is in the response headers.
fn too_large_is_not_retryable<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    let status = response.headers().get(GRPC_STATUS);
    if status.is_some_and(|v| v.as_bytes() == out_of_range.as_bytes()) {
        let exhausted = (Code::ResourceExhausted as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&exhausted) {
            response.headers_mut().insert(GRPC_STATUS, value);
        }
    }
    response
}

/// HTTP/2 pings on an idle connection, to find peers that went away.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// A ping not answered within this closes the connection.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The gRPC status header.
const GRPC_STATUS: &str = "grpc-status";

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves, then lets in-flight exports
/// finish (they are answered after their commit).
///
/// # Errors
/// A transport error of the server.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let incoming = super::grpc_guard::guarded_incoming(listener, &state);
    tonic::transport::Server::builder()
        .max_concurrent_streams(super::grpc_guard::MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(tower::util::MapResponseLayer::new(
            too_large_is_not_retryable,
        ))
        .layer(super::grpc_guard::GuardLayer::new(state.clone()))
        .add_service(GrpcIngest::new(state).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    // Export itself is tested over a real connection in tests/grpc_ingest.rs.

    #[test]
    fn error_codes_follow_the_otlp_specification() {
        assert_eq!(
            status(Error::BadRequest("x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            status(Error::Store(StoreError::Overloaded)).code(),
            Code::Unavailable
        );
        let internal = status(Error::Internal("secret detail".into()));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(internal.message(), "internal error");
    }
}
