//! The typed client of the user service, for its callers (the frontend).

use demokit::{CallError, ServiceClient};
use tracekit::http::TracedClient;

use crate::{User, UserList};

/// Calls a user service through a traced client (CLIENT spans named `GET /users/{id}`,
/// `peer.service` = `user`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct UserClient(ServiceClient);

impl UserClient {
    /// A client of the user service at `base_url` (a trailing slash is ignored).
    pub fn new(http: TracedClient, base_url: &str) -> UserClient {
        UserClient(ServiceClient::new(http, "user", base_url))
    }

    /// `GET /users/{id}`. `id` must be URL-path safe (callers check it).
    ///
    /// # Errors
    /// [`CallError::Answered`] with 404 for an unknown user; the other [`CallError`]s for
    /// a service that is down or answers badly.
    pub async fn get_user(&self, id: &str) -> Result<User, CallError> {
        self.0.get("/users/{id}", &format!("/users/{id}")).await
    }

    /// `GET /users`: every user of the demo.
    ///
    /// # Errors
    /// The [`CallError`]s of a service that is down or answers badly.
    pub async fn list_users(&self) -> Result<UserList, CallError> {
        self.0.get("/users", "/users").await
    }
}
