//! The typed client of the user service, for its callers (the frontend).

use demokit::{CallError, read_json};
use tracekit::http::TracedClient;

use crate::User;

/// Calls a user service at `base_url` through a traced client (CLIENT spans named
/// `GET /users/{id}`, `peer.service` = `user`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct UserClient {
    http: TracedClient,
    base_url: String,
}

impl UserClient {
    /// A client of the user service at `base_url` (a trailing slash is ignored).
    pub fn new(http: TracedClient, base_url: &str) -> UserClient {
        UserClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `GET /users/{id}`. `id` must be URL-path safe (callers check it).
    ///
    /// # Errors
    /// [`CallError::Answered`] with 404 for an unknown user; the other [`CallError`]s for
    /// a service that is down or answers badly.
    pub async fn get_user(&self, id: &str) -> Result<User, CallError> {
        let sent = self
            .http
            .get(format!("{}/users/{id}", self.base_url))
            .route("/users/{id}")
            .peer_service("user")
            .send()
            .await;
        read_json("user", sent).await
    }
}
