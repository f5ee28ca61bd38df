//! The one error-to-response mapping of the demo services.
//!
//! Every error body is JSON [`ErrorBody`] `{"error": "...", "trace_id": "...", "trace_url":
//! "..."}` (DESIGN §3), so a user who gets an error can look the request up; `trace_url` is
//! present when the service knows the collector's UI ([`AppError::with_trace_ui`]).
//!
//! What the request's SERVER span records (DESIGN §3, semantic conventions for HTTP spans
//! §Status):
//! * a business error this service decided (400, 402, 404): status unset (the caller's
//!   problem, not ours) and the attribute `app.outcome.reason` = the message;
//! * a business error passed on from a downstream service ([`AppError::relay`]): nothing,
//!   the service that decided it carries the reason;
//! * a fault (5xx): an `exception` event and ERROR status with the message; an injected
//!   fault says `injected fault (sim.fail.<service>)`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tracekit::{Context, current_span};

/// The attribute naming why a business error was answered (on the deciding SERVER span).
pub const OUTCOME_REASON: &str = "app.outcome.reason";

/// The `exception.type` of an injected fault.
pub const INJECTED_FAULT: &str = "InjectedFault";

/// Who decided an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This service decided it.
    Here,
    /// A downstream service decided it; this service passes its answer on.
    Downstream,
    /// Fault injection asked for it (`sim.fail.<service>` baggage).
    Injected,
}

/// An error answer of a demo service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct AppError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// A message for the caller. Never contains internals beyond what helps the user.
    pub message: String,
    /// Who decided this answer.
    pub origin: Origin,
    /// The collector UI's base URL, when this service builds `trace_url`.
    trace_ui: Option<String>,
}

/// The JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
    /// The request's trace: 32 lowercase hex digits, or `""` outside a traced request.
    #[serde(default)]
    pub trace_id: String,
    /// `<COLLECTOR_UI_URL>/trace/<trace_id>`, from services that know the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
}

impl AppError {
    /// An error with `status` and `message`, decided by this service.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            origin: Origin::Here,
            trace_ui: None,
        }
    }

    /// A downstream service's business answer (`status`, `message`) passed on unchanged.
    pub fn relay(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            origin: Origin::Downstream,
            ..AppError::new(status, message)
        }
    }

    /// 503 for `?fail=SERVICE`: `injected fault (sim.fail.<service>)`.
    pub fn injected_fault(service: &str) -> AppError {
        AppError {
            origin: Origin::Injected,
            ..AppError::unavailable(format!("injected fault (sim.fail.{service})"))
        }
    }

    /// This error with `trace_url` = `<trace_ui>/trace/<trace_id>` in its body (`trace_ui`
    /// without a trailing slash).
    #[must_use]
    pub fn with_trace_ui(mut self, trace_ui: &str) -> AppError {
        self.trace_ui = Some(trace_ui.to_owned());
        self
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

    /// 502: a downstream service failed or could not be reached.
    pub fn bad_gateway(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 504: a service this one called did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// 503: this service or one it needs is unavailable.
    pub fn unavailable(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Records this answer on the current SERVER span (see the module docs).
    fn record_on_span(&self) {
        let Some(span) = current_span() else {
            return;
        };
        if self.status.is_server_error() {
            let exception_type = match self.origin {
                Origin::Injected => INJECTED_FAULT,
                Origin::Here | Origin::Downstream => "AppError",
            };
            span.record_exception(exception_type, self.message.clone());
        } else if self.origin == Origin::Here {
            span.set_attribute(OUTCOME_REASON, self.message.clone());
        }
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

/// `<trace_ui>/trace/<trace_id>`: where the collector's UI shows a trace.
pub fn trace_url(trace_ui: &str, trace_id: &str) -> String {
    format!("{trace_ui}/trace/{trace_id}")
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.record_on_span();
        let trace_id = current_trace_id();
        let trace_url = match &self.trace_ui {
            Some(ui) if !trace_id.is_empty() => Some(trace_url(ui, &trace_id)),
            _ => None,
        };
        let body = ErrorBody {
            error: self.message,
            trace_id,
            trace_url,
        };
        (self.status, Json(body)).into_response()
    }
}
