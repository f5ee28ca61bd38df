//! # Connections of the HTTP ports: bounds and timeouts
//!
//! One client must not be able to hold a port hostage (issue 16 item 4). Each HTTP port
//! (ingest, query) is served by [`serve_http`], an HTTP/1.1 accept loop with:
//!
//! | bound | variable | default | when hit |
//! |---|---|---|---|
//! | open connections per port | `COLLECTOR_MAX_CONNECTIONS` | [`DEFAULT_MAX_CONNECTIONS`] | a new connection gets `503` + `Retry-After` and is closed |
//! | time to send a request head | `COLLECTOR_HEADER_READ_TIMEOUT` | [`DEFAULT_HEADER_READ_TIMEOUT`] | the connection is closed (hyper answers `408` when part of a head arrived) |
//! | time to send a request body | `COLLECTOR_BODY_READ_TIMEOUT` | [`DEFAULT_BODY_READ_TIMEOUT`] | `408`, and the connection is closed |
//! | concurrent long-polls (`?wait=`, `GET /v1/tail`) | `COLLECTOR_MAX_LONG_POLLS` | [`DEFAULT_MAX_LONG_POLLS`] | `503` + `Retry-After` |
//!
//! Each bound logs one line when it is hit (at most one line per bound every ten seconds,
//! with the count of the others). A connection that cannot even be accepted (out of file
//! descriptors) is logged the same way and retried after a short pause.
//!
//! Shutdown: the loop stops accepting, asks every open connection to finish its current
//! request and close, and returns when the last one has.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::Error;
use crate::ingest::budget::BoundLog;

/// Default bound on open connections per HTTP port.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time a client has to send a request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on concurrent long-polls (`?wait=`, `GET /v1/tail`).
pub const DEFAULT_MAX_LONG_POLLS: usize = 64;

/// The answer to a connection over the bound, written before it is closed.
const OVER_THE_BOUND: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 37\r\nConnection: close\r\n\r\n\
too many connections; retry later\r\n\r\n";

/// The bounds of the table in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections per HTTP port.
    pub max_connections: usize,
    /// Time to send a request head.
    pub header_read_timeout: Duration,
    /// Time to send a whole request body.
    pub body_read_timeout: Duration,
    /// Concurrent long-polls on the query port.
    pub max_long_polls: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
        }
    }
}

/// The long-polls in progress, bounded by [`ConnectionLimits::max_long_polls`].
#[derive(Debug)]
pub struct LongPolls {
    permits: Arc<Semaphore>,
    max: usize,
    log: BoundLog,
}

impl LongPolls {
    /// Room for `max` long-polls at once.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            log: BoundLog::default(),
        }
    }

    /// Long-polls in progress.
    pub fn in_progress(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A place for one more long-poll, held until the permit is dropped.
    ///
    /// # Errors
    /// [`Error::Busy`] (503 with `Retry-After`) when all are taken.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            self.log.hit(&format!(
                "{} long-polls in progress (COLLECTOR_MAX_LONG_POLLS); answering 503",
                self.max
            ));
            Error::Busy("too many long-polls in progress; retry later".into())
        })
    }
}

/// Serves `app` over HTTP/1.1 on `listener` with the bounds of `limits` (see the module
/// docs) until `shutdown` turns true, then drains. With `tls`, each connection must finish
/// its TLS handshake within the header read timeout ([`crate::tls`]), and a connection over
/// the bound is closed without an answer. `port` names the port in log lines.
///
/// # Errors
/// Never at present; the signature leaves room for fatal listener errors.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    port: &'static str,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let full_log = BoundLog::default();
    let accept_log = BoundLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset while queued: pause, go on.
                accept_log.hit(&format!("{port} port: cannot accept a connection: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            full_log.hit(&format!(
                "{port} port: {} connections open (COLLECTOR_MAX_CONNECTIONS); refusing new \
                 ones with 503",
                limits.max_connections
            ));
            if tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, shutdown) = (app.clone(), shutdown.clone());
        match &tls {
            None => {
                tokio::spawn(serve_connection(stream, app, limits, permit, shutdown));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                tokio::spawn(async move {
                    // A plaintext or silent client fails here and is closed.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.header_read_timeout, handshake).await
                    {
                        serve_connection(stream, app, limits, permit, shutdown).await;
                    }
                });
            }
        }
    }
    // Every connection gives its permit back when it has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Answers 503 to a connection over the bound and closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(OVER_THE_BOUND).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One connection: HTTP/1.1 with a header read timeout, closed gracefully at shutdown.
async fn serve_connection(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    app: Router,
    limits: ConnectionLimits,
    permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
    drop(permit);
}

/// Runs `read` (a request body being read) for at most `timeout`.
///
/// # Errors
/// [`Error::RequestTimeout`] (408) when the body did not arrive in time.
pub(crate) async fn body_deadline<T>(
    timeout: Duration,
    read: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::RequestTimeout(timeout.as_secs()))?
}
