//! The typed client of the payment service, for its callers (the order service).

use demokit::{CallError, ServiceClient};
use tracekit::http::TracedClient;

use crate::{Payment, PaymentRequest};

/// Calls a payment service through a traced client (CLIENT spans named `POST /payments`,
/// `peer.service` = `payment`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct PaymentClient(ServiceClient);

impl PaymentClient {
    /// A client of the payment service at `base_url` (a trailing slash is ignored).
    pub fn new(http: TracedClient, base_url: &str) -> PaymentClient {
        PaymentClient(ServiceClient::new(http, "payment", base_url))
    }

    /// `POST /payments`: charges `payment`.
    ///
    /// # Errors
    /// [`CallError::Answered`] with 402 when the payment is declined, 400 for a payment the
    /// service refuses; the other [`CallError`]s for a service that is down or answers badly.
    pub async fn charge(&self, payment: &PaymentRequest) -> Result<Payment, CallError> {
        self.0.post("/payments", payment).await
    }
}
