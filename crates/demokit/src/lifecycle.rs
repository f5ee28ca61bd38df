//! Process lifecycle shared by every Spanline binary (the demo services and the collector):
//! waiting for a stop signal, and the dependency-free HTTP/1.1 health probe behind
//! `--healthcheck` (container images carry no curl).
//!
//! Needs only tokio, so it is available without the `service` feature.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response bytes a health probe reads (the status line is all that matters).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Ctrl-C (SIGINT).
    CtrlC,
    /// SIGTERM (Unix only).
    Terminate,
}

impl StopSignal {
    /// `Ctrl-C` or `SIGTERM`, for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CtrlC => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        }
    }
}

/// Resolves when SIGTERM (Unix) or Ctrl-C arrives, with which one. A handler that cannot be
/// installed is waited on forever, so the other still works.
pub async fn shutdown_signal() -> StopSignal {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => StopSignal::CtrlC,
        () = term => StopSignal::Terminate,
    }
}

/// The address to probe for a listen address: unspecified (`0.0.0.0`, `::`) becomes loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Sends `GET <path>` to `addr` over raw TCP and succeeds on an `HTTP/1.x 200` status line
/// within `timeout`.
///
/// # Errors
/// A readable reason: connection refused, timeout, or the status line received.
pub async fn probe_health(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        probe_health_on(stream, addr, path).await
    })
    .await
    .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

/// The request and answer of [`probe_health`] over an open `stream` to `addr` (plain TCP, or
/// TLS for the collector's `--healthcheck`): sends `GET <path>` and succeeds on an
/// `HTTP/1.x 200` status line. Reads up to the end of the status line (at most 64 KiB), so
/// it needs no end-of-stream. Set a timeout around it.
///
/// # Errors
/// A readable reason: the stream failed, or the status line received.
pub async fn probe_health_on<S>(mut stream: S, addr: SocketAddr, path: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: spanline-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.contains(&b'\n') && response.len() < MAX_RESPONSE_BYTES {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ => {
            let shown: String = status_line.chars().take(100).collect();
            Err(format!("unhealthy: {shown:?}"))
        }
    }
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

    #[tokio::test]
    async fn probe_reads_the_status_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nok",
                "HTTP/1.1 503 Unavailable\r\n\r\n",
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await.unwrap();
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let timeout = Duration::from_secs(5);
        assert_eq!(probe_health(addr, "/healthz", timeout).await, Ok(()));
        let err = probe_health(addr, "/healthz", timeout).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn probe_needs_only_the_status_line_not_the_end_of_the_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            // A status line, then the connection stays open (as over TLS without
            // close_notify) until the probe has answered.
            socket.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            let _ = done_rx.await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            probe_health_on(stream, addr, "/healthz"),
        )
        .await;
        assert_eq!(answer, Ok(Ok(())));
        done_tx.send(()).unwrap();
        server.await.unwrap();
    }
}
