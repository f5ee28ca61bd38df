//! The one error-to-response mapping of the demo services.
//!
//! Every error body is JSON `{"error": "...", "trace_id": "..."}` (DESIGN §3), so a user who
//! gets an error can look the request up. Business errors (400, 402, 404) are answers, not
//! faults: they leave the span status unset. Faults (5xx) record an `exception` event and
//! ERROR status on the request's SERVER span.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tracekit::{Context, current_span};

/// An error answer of a demo service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct AppError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// A message for the caller. Never contains internals beyond what helps the user.
    pub message: String,
}

impl AppError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request body or parameters are invalid.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the entity does not exist.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, message)
    }

    /// 402: the payment was declined.
    pub fn payment_required(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::PAYMENT_REQUIRED, message)
    }

    /// 502: a downstream service failed.
    pub fn bad_gateway(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 503: this service is unavailable (also the answer to `?fail=SERVICE`).
    pub fn unavailable(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

/// The current trace id as 32 hex characters, or `""` outside a traced request.
pub fn current_trace_id() -> String {
    Context::with_current(|cx| {
        cx.span_context()
            .map(|sc| sc.trace_id.to_string())
            .unwrap_or_default()
    })
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error()
            && let Some(span) = current_span()
        {
            span.record_exception("AppError", self.message.clone());
        }
        let body = serde_json::json!({ "error": self.message, "trace_id": current_trace_id() });
        (self.status, Json(body)).into_response()
    }
}
