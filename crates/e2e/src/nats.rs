//! The stack's nats-server, run by `scripts/nats.sh`: whether it can run here, and when a
//! started one is ready and ours.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::Proc;
use crate::start::{StartError, exit_error};

/// The script that finds (or installs) and runs nats-server.
pub(crate) const NATS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/nats.sh");

/// Whether nats-server can be run here (found or installed by `scripts/nats.sh --path`).
///
/// # Panics
/// Under `CI=true` when it cannot: CI must not skip the queue tests.
pub fn nats_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("bash")
            .args([NATS_SCRIPT, "--path"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nats-server is required under CI=true (scripts/nats.sh could not find or install it)"
        );
        eprintln!("skipped: nats-server not installed (scripts/nats.sh --path)");
    }
    found
}

/// Waits until the nats-server `proc` (started by `scripts/nats.sh PORT`, which execs it, so
/// the pid is the server's) is ready: its ports file in `ports_dir` (`<binary>_<pid>.ports`,
/// written once it listens) names its client port, which is `port` unless that is 0, the
/// process holds that listener, and the port greets with `INFO {`. Answers the port.
///
/// # Errors
/// [`StartError`]: the server exited (port taken, or otherwise), or was not ready in
/// `timeout`.
pub(crate) async fn wait_ready(
    proc: &mut Proc,
    ports_dir: &Path,
    port: u16,
    timeout: Duration,
) -> Result<u16, StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(code) = proc.exited() {
            return Err(exit_error(proc, port, code));
        }
        if let Some(listening) = reported_port(ports_dir, proc.pid())
            && (port == 0 || listening == port)
            && demokit::ports::listens(proc.pid(), listening)
            && greets(listening).await
        {
            return Ok(listening);
        }
        if Instant::now() >= deadline {
            return Err(StartError::NotReady {
                name: proc.name,
                url: format!("nats://127.0.0.1:{port}"),
                timeout_ms: timeout.as_millis(),
                log: proc.log_since_start(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The client port in the ports file of process `pid` in `dir`
/// (`{"nats":["nats://HOST:PORT"],...}`), once it is there.
fn reported_port(dir: &Path, pid: u32) -> Option<u16> {
    let suffix = format!("_{pid}.ports");
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let after = text.split("nats://").nth(1)?;
    let host_port = after.split('"').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// Whether 127.0.0.1:`port` greets a new connection with NATS's `INFO {` within a second.
async fn greets(port: u16) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut head = [0u8; 6];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head == *b"INFO {")
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .is_ok_and(|r| r.is_ok_and(|greeted| greeted))
}
