//! The typed client of the payment service, for its callers (the order service).

use demokit::{CallError, read_json};
use tracekit::http::TracedClient;

use crate::{Payment, PaymentRequest};

/// Calls a payment service at `base_url` through a traced client (CLIENT spans named
/// `POST /payments`, `peer.service` = `payment`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct PaymentClient {
    http: TracedClient,
    base_url: String,
}

impl PaymentClient {
    /// A client of the payment service at `base_url` (a trailing slash is ignored).
    pub fn new(http: TracedClient, base_url: &str) -> PaymentClient {
        PaymentClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `POST /payments`: charges `payment`.
    ///
    /// # Errors
    /// [`CallError::Answered`] with 402 when the payment is declined, 400 for a payment the
    /// service refuses; the other [`CallError`]s for a service that is down or answers badly.
    pub async fn charge(&self, payment: &PaymentRequest) -> Result<Payment, CallError> {
        let sent = self
            .http
            .post(format!("{}/payments", self.base_url))
            .route("/payments")
            .peer_service("payment")
            .json(payment)
            .send()
            .await;
        read_json("payment", sent).await
    }
}
