//! The typed client of the order service, for its callers (the frontend).

use demokit::{CallError, ServiceClient};
use tracekit::http::TracedClient;

use crate::{Order, OrderRequest};

/// Calls an order service through a traced client (CLIENT spans named `POST /orders` and
/// `GET /orders/{id}`, `peer.service` = `order`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct OrderClient(ServiceClient);

impl OrderClient {
    /// A client of the order service at `base_url` (a trailing slash is ignored).
    pub fn new(http: TracedClient, base_url: &str) -> OrderClient {
        OrderClient(ServiceClient::new(http, "order", base_url))
    }

    /// `POST /orders`: places `order` (the order service charges it through payment).
    ///
    /// # Errors
    /// [`CallError::Answered`] with 400 for an invalid order and 402 for a declined
    /// payment; the other [`CallError`]s for a service that is down or answers badly.
    pub async fn create_order(&self, order: &OrderRequest) -> Result<Order, CallError> {
        self.0.post("/orders", order).await
    }

    /// `POST /orders?mode=async`: places `order` through the queue; the answer (202) is
    /// the order, `pending`.
    ///
    /// # Errors
    /// As [`create_order`](Self::create_order); 503 when the queue is unavailable.
    pub async fn create_order_async(&self, order: &OrderRequest) -> Result<Order, CallError> {
        self.0.post_to("/orders", "/orders?mode=async", order).await
    }

    /// `GET /orders/{id}`. `id` must be URL-path safe (callers check it).
    ///
    /// # Errors
    /// [`CallError::Answered`] with 404 for an unknown order; the other [`CallError`]s for
    /// a service that is down or answers badly.
    pub async fn get_order(&self, id: &str) -> Result<Order, CallError> {
        self.0.get("/orders/{id}", &format!("/orders/{id}")).await
    }
}
