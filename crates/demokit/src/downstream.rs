//! Calling another demo service: what a typed client call can fail with, and how that
//! becomes this service's answer.
//!
//! Each service's typed client (its `client.rs`) wraps a [`ServiceClient`]; callers turn a
//! [`CallError`] into an [`AppError`] with `?`.

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracekit::http::TracedClient;

use crate::error::{AppError, ErrorBody};

/// A JSON client of one demo service over the traced client: CLIENT spans named
/// `METHOD /route/template` with `peer.service` = the service. The base of each service's
/// typed client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    http: TracedClient,
    service: &'static str,
    base_url: String,
}

impl ServiceClient {
    /// A client of `service` (its `peer.service` name) at `base_url` (a trailing slash is
    /// ignored).
    pub fn new(http: TracedClient, service: &'static str, base_url: &str) -> ServiceClient {
        ServiceClient {
            http,
            service,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `GET <base_url><path>`, where `path` was built from the template `route`.
    ///
    /// # Errors
    /// See [`read_json`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: &str,
    ) -> Result<T, CallError> {
        let sent = self
            .http
            .get(format!("{}{path}", self.base_url))
            .route(route)
            .peer_service(self.service)
            .send()
            .await;
        read_json(self.service, sent).await
    }

    /// `POST <base_url><route>` with the JSON `body`.
    ///
    /// # Errors
    /// See [`read_json`].
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        route: &'static str,
        body: &B,
    ) -> Result<T, CallError> {
        self.post_to(route, route, body).await
    }

    /// `POST <base_url><path>` with the JSON `body`, where `path` (with a query, perhaps)
    /// was built from the template `route`.
    ///
    /// # Errors
    /// As [`post`](Self::post): a [`CallError`].
    pub async fn post_to<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let sent = self
            .http
            .post(format!("{}{path}", self.base_url))
            .route(route)
            .peer_service(self.service)
            .json(body)
            .send()
            .await;
        read_json(self.service, sent).await
    }
}

/// Why a call to another demo service did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the client's timeout (the CLIENT span has `error.type` =
    /// `timeout`).
    #[error("{service} service timed out: {reason}")]
    Timeout {
        /// The service called (`peer.service`).
        service: &'static str,
        /// The transport error (a timeout).
        reason: reqwest::Error,
    },
    /// The service could not be reached (connect failure, broken connection).
    #[error("{service} service unreachable: {reason}")]
    Unreachable {
        /// The service called (`peer.service`).
        service: &'static str,
        /// The transport error.
        reason: reqwest::Error,
    },
    /// The service answered an error status with an [`ErrorBody`] (or without one).
    #[error("{service} service answered {status}: {message}")]
    Answered {
        /// The service called.
        service: &'static str,
        /// Its HTTP status (4xx or 5xx).
        status: StatusCode,
        /// Its `error` message, or `HTTP <status>` when the body had none.
        message: String,
    },
    /// The service answered success with a body that is not the expected JSON.
    #[error("{service} service answered garbage: {reason}")]
    BadAnswer {
        /// The service called.
        service: &'static str,
        /// The decoding error.
        reason: reqwest::Error,
    },
}

impl From<CallError> for AppError {
    /// Business answers (400, 402, 404) pass through unchanged, decided downstream; a
    /// downstream 503 stays a 503; a timeout, here or downstream (504), is a 504 saying
    /// so; every other failure is a 502 naming the service.
    fn from(e: CallError) -> AppError {
        match e {
            CallError::Answered {
                status:
                    status @ (StatusCode::BAD_REQUEST
                    | StatusCode::PAYMENT_REQUIRED
                    | StatusCode::NOT_FOUND),
                message,
                ..
            } => AppError::relay(status, message),
            CallError::Answered {
                service,
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
            } => AppError::unavailable(format!("{service} service unavailable: {message}")),
            CallError::Answered {
                service,
                status: StatusCode::GATEWAY_TIMEOUT,
                message,
            } => AppError::gateway_timeout(format!("{service} service timed out: {message}")),
            CallError::Answered {
                service, message, ..
            } => AppError::bad_gateway(format!("{service} service failed: {message}")),
            e @ CallError::Timeout { .. } => AppError::gateway_timeout(e.to_string()),
            e @ (CallError::Unreachable { .. } | CallError::BadAnswer { .. }) => {
                AppError::bad_gateway(e.to_string())
            }
        }
    }
}

/// Reads the answer of a call to `service`: the JSON `T` of a 2xx answer, else the error.
///
/// # Errors
/// [`CallError::Timeout`] when `sent` timed out, [`CallError::Unreachable`] when it failed
/// otherwise, [`CallError::Answered`] for a 4xx or 5xx
/// answer, [`CallError::BadAnswer`] when a 2xx body is not a `T`.
async fn read_json<T: DeserializeOwned>(
    service: &'static str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, CallError> {
    let res = sent.map_err(|reason| {
        if reason.is_timeout() {
            CallError::Timeout { service, reason }
        } else {
            CallError::Unreachable { service, reason }
        }
    })?;
    let status = res.status();
    if status.is_success() {
        return res
            .json()
            .await
            .map_err(|reason| CallError::BadAnswer { service, reason });
    }
    let message = res
        .json::<ErrorBody>()
        .await
        .map(|b| b.error)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    Err(CallError::Answered {
        service,
        status,
        message,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    use super::*;
    use crate::telemetry::Telemetry;

    #[tokio::test]
    async fn a_call_that_times_out_is_a_timeout_and_answers_504() {
        // A service that never answers.
        let routes = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let addr = crate::testing::spawn(routes).await.unwrap();
        let (telemetry, exporter) = Telemetry::in_memory("frontend");
        let http = telemetry.http_client_with_timeout(Duration::from_millis(200));
        let client = ServiceClient::new(http, "order", &format!("http://{addr}"));
        let err = client
            .get::<serde_json::Value>("/slow", "/slow")
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
        let answer = AppError::from(err);
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(
            answer.message.starts_with("order service timed out"),
            "{}",
            answer.message
        );
        let spans = exporter.finished_spans();
        assert_eq!(
            spans[0].attribute("error.type"),
            Some(&tracekit::Value::from("timeout"))
        );
    }

    #[test]
    fn a_downstream_504_stays_a_timeout() {
        let e = CallError::Answered {
            service: "order",
            status: StatusCode::GATEWAY_TIMEOUT,
            message: "payment service timed out: ...".to_owned(),
        };
        let answer = AppError::from(e);
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            answer.message,
            "order service timed out: payment service timed out: ..."
        );
    }
}
