//! `collector --healthcheck`: a dependency-free HTTP/1.1 probe of `GET /health`, for container
//! images without curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response bytes read (the status line is all that matters).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The address to probe for a listen address: unspecified (`0.0.0.0`, `::`) becomes loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Sends `GET /health` to `addr` and succeeds on a 200 answer within `timeout`.
///
/// # Errors
/// A readable reason: connection refused, timeout, or the status line received.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: collector-healthcheck\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("cannot read from {addr}: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let status_line = text.lines().next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
            _ => Err(format!(
                "unhealthy: {}",
                crate::error::quote(status_line, 100)
            )),
        }
    })
    .await
    .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_becomes_loopback() {
        let a: SocketAddr = "0.0.0.0:16686".parse().unwrap();
        assert_eq!(probe_addr(a).to_string(), "127.0.0.1:16686");
        let b: SocketAddr = "[::]:1".parse().unwrap();
        assert_eq!(probe_addr(b).to_string(), "[::1]:1");
        let c: SocketAddr = "10.1.2.3:5".parse().unwrap();
        assert_eq!(probe_addr(c), c);
    }
}
