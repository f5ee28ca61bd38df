//! Admission: at most a fixed number of requests in progress per service, the rest
//! answered at once with `503 Service Unavailable` and `Retry-After`, instead of queueing
//! behind slow ones (tower's `GlobalConcurrencyLimitLayer` under a `LoadShedLayer`).
//!
//! The limit is shared by every route of the service (not per route); `/healthz` is outside
//! it, so health checks still answer under load. Placed inside the tracing layer, a shed
//! request is still a SERVER span: status ERROR, `http.response.status_code` 503 and an
//! `exception` event saying the service is overloaded.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, ServiceBuilder};

use crate::error::AppError;

/// The default of `SIM_MAX_CONCURRENCY`: requests in progress per service.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;

/// The `Retry-After` of a shed request.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// `routes` with at most `max_concurrency` requests in progress at once (at least 1); a
/// request over the limit is answered 503 with `Retry-After: 1` and an [`ErrorBody`]
/// (`server overloaded: ...`) without reaching its handler.
///
/// [`ErrorBody`]: crate::ErrorBody
pub fn limit_concurrency(routes: Router, max_concurrency: u32) -> Router {
    let max = max_concurrency.max(1);
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                overloaded(&e, max)
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max as usize)),
    )
}

/// The answer to a request the limit refused (or, never expected, another layer error).
fn overloaded(e: &BoxError, max: u32) -> Response {
    if !e.is::<Overloaded>() {
        return AppError::unavailable(format!("cannot take the request: {e}")).into_response();
    }
    let mut res = AppError::unavailable(format!(
        "server overloaded: {max} requests in progress (SIM_MAX_CONCURRENCY); retry later"
    ))
    .into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER.as_secs()),
    );
    res
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::sync::{Notify, mpsc};
    use tracekit::{SpanKind, Status};

    use super::*;
    use crate::serve::{ServeOptions, app_with};
    use crate::telemetry::Telemetry;

    #[tokio::test]
    async fn over_the_limit_a_request_is_refused_at_once_with_503_and_retry_after() {
        let (telemetry, exporter) = Telemetry::in_memory("order");
        // `/hold` tells the test it runs, then waits for the gate.
        let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
        let gate = Arc::new(Notify::new());
        let hold_gate = Arc::clone(&gate);
        let routes = Router::new().route(
            "/hold",
            get(move || {
                let gate = Arc::clone(&hold_gate);
                let entered = entered_tx.clone();
                async move {
                    let _ = entered.send(());
                    gate.notified().await;
                    "done"
                }
            }),
        );
        let options = ServeOptions {
            max_concurrency: 1,
            ..ServeOptions::default()
        };
        let addr = crate::testing::spawn(app_with(routes, &telemetry, options))
            .await
            .unwrap();
        let url = format!("http://{addr}/hold");
        let client = reqwest::Client::new();
        let first = tokio::spawn(client.get(&url).send());
        entered.recv().await.unwrap();

        // The one permit is taken: the next request is refused without waiting.
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body: crate::ErrorBody = res.json().await.unwrap();
        assert!(
            body.error.starts_with("server overloaded"),
            "{}",
            body.error
        );
        assert_eq!(body.trace_id.len(), 32, "the refusal is traced");
        // /healthz is outside the limit.
        let health = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), http::StatusCode::OK);

        let spans = exporter.wait_for(1, Duration::from_secs(5));
        let refused = crate::testing::span(&spans, "GET /hold", SpanKind::Server);
        assert_eq!(refused.trace_id.to_string(), body.trace_id);
        assert!(
            matches!(&refused.status, Status::Error { message } if message.starts_with("server overloaded")),
            "{:?}",
            refused.status
        );

        // Released, the first finishes; its permit was dropped before its answer went out,
        // so the next request is admitted (the gate's stored permit lets it through).
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), http::StatusCode::OK);
        gate.notify_one();
        let next = client.get(&url).send().await.unwrap();
        assert_eq!(next.status(), http::StatusCode::OK);
    }
}
