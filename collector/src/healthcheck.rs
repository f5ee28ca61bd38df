//! `collector --healthcheck`: a dependency-free HTTP/1.1 probe of `GET /health`, for container
//! images without curl. The probe itself is shared with the demo services
//! ([`demokit::lifecycle`]).

use std::net::SocketAddr;
use std::time::Duration;

pub use demokit::lifecycle::probe_addr;

/// Sends `GET /health` to `addr` and succeeds on a 200 answer within `timeout`.
///
/// # Errors
/// A readable reason: connection refused, timeout, or the status line received.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    demokit::lifecycle::probe_health(addr, "/health", timeout).await
}
