//! Readiness that cannot be fooled by a foreign process: a child counts as started when its
//! health endpoint answers 200 *and* the child itself holds the listener of that port
//! ([`demokit::ports::listens`]); a child that exits first is told apart as having lost its
//! port to another process ([`StartError::PortTaken`]: the caller may start it again, on a
//! new port if nothing depends on the old one yet) or as failing otherwise.

use std::time::{Duration, Instant};

use crate::Proc;

/// How many times a start path tries a child whose port was taken, before it gives up.
pub const START_ATTEMPTS: u32 = 4;

/// The collector's exit code when a listener cannot be bound (`collector/src/main.rs`).
const COLLECTOR_EXIT_BIND: i32 = 71;

/// Why a child did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It exited because another process held its port (its log says "Address already in
    /// use", the collector's exit code 71, or another process listens there now).
    #[error("{name} could not take port {port} (held by another process); log:\n{log}")]
    PortTaken {
        /// The child's name.
        name: &'static str,
        /// The port it was to listen on.
        port: u16,
        /// Its log since this start.
        log: String,
    },
    /// It exited for another reason.
    #[error("{name} exited with {code:?} before it was ready; log:\n{log}")]
    Exited {
        /// The child's name.
        name: &'static str,
        /// Its exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its log since this start.
        log: String,
    },
    /// It did not answer in time (or only another process answered on its port).
    #[error("{name} not healthy at {url} after {timeout_ms} ms; log:\n{log}")]
    NotReady {
        /// The child's name.
        name: &'static str,
        /// The health URL polled.
        url: String,
        /// How long it was given, milliseconds.
        timeout_ms: u128,
        /// Its log since this start.
        log: String,
    },
}

/// Waits until `GET url` answers 200 while `proc` itself listens on `port` (the port of
/// `url`), polling every 25 ms for at most `timeout`.
///
/// # Errors
/// [`StartError`]: the child exited (port taken, or otherwise), or was not ready in time.
pub async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    port: u16,
    proc: &mut Proc,
    timeout: Duration,
) -> Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(code) = proc.exited() {
            return Err(exit_error(proc, port, code));
        }
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
            && demokit::ports::listens(proc.pid(), port)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::NotReady {
                name: proc.name,
                url: url.to_owned(),
                timeout_ms: timeout.as_millis(),
                log: proc.log_since_start(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The error of a child that exited with `code` while starting on `port`.
pub(crate) fn exit_error(proc: &Proc, port: u16, code: Option<i32>) -> StartError {
    let log = proc.log_since_start();
    let taken = log.contains("Address already in use")
        || (proc.name == "collector" && code == Some(COLLECTOR_EXIT_BIND))
        || demokit::ports::held(port);
    if taken {
        StartError::PortTaken {
            name: proc.name,
            port,
            log,
        }
    } else {
        StartError::Exited {
            name: proc.name,
            code,
            log,
        }
    }
}

/// The pause before a child is started again on the same port (a restart: others know its
/// address), so that a process that held the port briefly can let it go.
pub const SAME_PORT_PAUSE: Duration = Duration::from_secs(1);
