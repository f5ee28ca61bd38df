//! # The one HTTP error type
//!
//! [`Error`] is what every handler fails with. [`Error::status`] is the single place where an
//! error becomes an HTTP status; [`Error::into_response_as`] renders the body in the format the
//! endpoint speaks:
//!
//! - [`ErrorFormat::Native`]: `{"error": "..."}` (query API, DESIGN.md §4);
//! - [`ErrorFormat::OtlpJson`]: `{"code": <grpc code>, "message": "..."}` (`google.rpc.Status`
//!   as JSON, interop.md §1.5);
//! - [`ErrorFormat::OtlpProtobuf`]: `google.rpc.Status` as protobuf;
//! - [`ErrorFormat::PlainText`]: when the request's encoding is unknown (415);
//! - [`ErrorFormat::Jaeger`]: the Jaeger v1 envelope `{"data": null, "total": 0, "limit": 0,
//!   "offset": 0, "errors": [{"code": <status>, "msg": "..."}]}` (interop.md §3.2);
//! - [`ErrorFormat::JaegerV3`]: the `api_v3` gateway error `{"error": {"httpCode": <status>,
//!   "message": "..."}}` (interop.md §3.8).
//!
//! Handlers of the Jaeger APIs return [`JaegerError`] / [`JaegerV3Error`], thin wrappers that
//! pick the format; the status mapping stays [`Error::status`].
//!
//! Messages never echo raw input: anything taken from a request goes through [`quote`], which
//! truncates and escapes it. Internal details are logged, not sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::store::StoreError;

/// Every failure a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed (undecodable body, bad id, bad filter).
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`: a token is required and was missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: the thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 405 with `Allow`: wrong method for this path.
    #[error("method not allowed, supported: [{allow}]")]
    MethodNotAllowed {
        /// Comma-separated allowed methods, e.g. `POST`.
        allow: &'static str,
    },
    /// 408: the request body did not arrive within the body read timeout (seconds).
    #[error("the request body did not arrive within {0} s")]
    RequestTimeout(u64),
    /// 413: the body is larger than the limit after decompression.
    #[error("request body is larger than {limit_bytes} bytes (after decompression)")]
    PayloadTooLarge {
        /// The configured limit, bytes.
        limit_bytes: usize,
    },
    /// 415: unsupported `Content-Type` (the message lists the supported ones).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 415 with `Accept-Encoding: gzip`: unsupported `Content-Encoding`.
    #[error("unsupported content encoding {0}; supported: gzip, identity")]
    UnsupportedEncoding(String),
    /// 503 with `Retry-After`: a bound on what clients may hold at once was hit (the
    /// in-flight body budget, connections, long-polls); retrying later succeeds.
    #[error("{0}")]
    Busy(String),
    /// 503 with `Retry-After`, or 500: storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: a bug or an unexpected condition; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

/// How an error body is encoded (chosen by the endpoint, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `{"error": "..."}`.
    Native,
    /// `{"code": n, "message": "..."}`.
    OtlpJson,
    /// `google.rpc.Status` protobuf.
    OtlpProtobuf,
    /// `text/plain`.
    PlainText,
    /// Jaeger v1 envelope.
    Jaeger,
    /// Jaeger `api_v3` gateway error.
    JaegerV3,
}

/// An [`Error`] answered in the Jaeger v1 envelope.
#[derive(Debug)]
pub struct JaegerError(pub Error);

impl<E: Into<Error>> From<E> for JaegerError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        self.0.into_response_as(ErrorFormat::Jaeger)
    }
}

/// An [`Error`] answered as an `api_v3` gateway error.
#[derive(Debug)]
pub struct JaegerV3Error(pub Error);

impl<E: Into<Error>> From<E> for JaegerV3Error {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for JaegerV3Error {
    fn into_response(self) -> Response {
        self.0.into_response_as(ErrorFormat::JaegerV3)
    }
}

/// `google.rpc.Status` (details omitted).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_S: &str = "1";

impl Error {
    /// The HTTP status for this error (the one mapping).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code carried in `google.rpc.Status` bodies (interop.md §1.5) and answered by
    /// OTLP/gRPC ingest.
    pub(crate) fn grpc_code(&self) -> i32 {
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
            StatusCode::NOT_FOUND => 5,                                        // NOT_FOUND
            StatusCode::UNAUTHORIZED => 16,                                    // UNAUTHENTICATED
            StatusCode::PAYLOAD_TOO_LARGE => 8,                                // RESOURCE_EXHAUSTED
            StatusCode::METHOD_NOT_ALLOWED => 12,                              // UNIMPLEMENTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
            _ => 13,                                                           // INTERNAL
        }
    }

    /// The client-facing message (internal details replaced).
    fn public_message(&self) -> String {
        match self {
            Self::Store(e) if e.is_retryable() => format!("{e}; retry later"),
            Self::Store(_) | Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// The client-facing message, after logging the detail of storage and internal errors.
    pub(crate) fn public_message_logged(&self) -> String {
        if let Self::Store(e) = self
            && (!e.is_retryable() || matches!(e, StoreError::Unwritable(_)))
        {
            eprintln!("collector: storage error: {e}");
        }
        if let Self::Internal(detail) = self {
            eprintln!("collector: internal error: {detail}");
        }
        self.public_message()
    }

    /// Renders the error with the body format of the endpoint.
    pub fn into_response_as(self, format: ErrorFormat) -> Response {
        let status = self.status();
        let message = self.public_message_logged();
        let mut response = match format {
            ErrorFormat::Native => {
                (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
            }
            ErrorFormat::Jaeger => (
                status,
                axum::Json(serde_json::json!({
                    "data": null, "total": 0, "limit": 0, "offset": 0,
                    "errors": [{"code": status.as_u16(), "msg": message}],
                })),
            )
                .into_response(),
            ErrorFormat::JaegerV3 => (
                status,
                axum::Json(serde_json::json!({
                    "error": {"httpCode": status.as_u16(), "message": message},
                })),
            )
                .into_response(),
            ErrorFormat::OtlpJson => (
                status,
                axum::Json(serde_json::json!({ "code": self.grpc_code(), "message": message })),
            )
                .into_response(),
            ErrorFormat::OtlpProtobuf => {
                let body = RpcStatus {
                    code: self.grpc_code(),
                    message,
                }
                .encode_to_vec();
                (
                    status,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    body,
                )
                    .into_response()
            }
            ErrorFormat::PlainText => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message + "\n",
            )
                .into_response(),
        };
        let headers = response.headers_mut();
        match &self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::UnsupportedEncoding(_) => {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"spanline\""),
                );
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
            }
            _ => {}
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

impl IntoResponse for Error {
    /// The native format, `{"error": "..."}`.
    fn into_response(self) -> Response {
        self.into_response_as(ErrorFormat::Native)
    }
}

/// Makes untrusted text safe to put in a message: at most `max_chars` characters, quoted,
/// with control characters, quotes, backslashes and `<>&` escaped.
pub fn quote(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars) + 2);
    out.push('"');
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        match c {
            '<' | '>' | '&' | '"' | '\\' => out.extend(c.escape_unicode()),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("a<b>\n", 10), "\"a\\u{3c}b\\u{3e}\\n\"");
        assert_eq!(quote("abcdef", 3), "\"abc…\"");
    }

    #[test]
    fn statuses() {
        assert_eq!(
            Error::Store(StoreError::Full).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Error::Store(StoreError::Backend("x".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let unwritable = Error::Store(StoreError::Unwritable("read-only".into())).into_response();
        assert_eq!(unwritable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unwritable.headers()[header::RETRY_AFTER], "1");
        let r = Error::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(r.headers()[header::ALLOW], "POST");
    }
}
