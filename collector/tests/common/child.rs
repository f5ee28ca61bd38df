//! The `collector` binary as a child process, for the tests that need a real process (a
//! restart on the same data directory, the process's own memory figures).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started collector has to answer `GET /health`.
const START_TIMEOUT_MS: u64 = 30_000;
/// How long a collector sent SIGTERM has to exit.
const STOP_TIMEOUT_MS: u64 = 30_000;
/// The collector's exit code when a listener cannot be bound (`src/main.rs`).
const EXIT_BIND: i32 = 71;
/// How many times [`Collector::start`] tries when the ports it chose were taken.
const START_ATTEMPTS: u32 = 4;

/// A collector process on loopback ports (ingest, query; gRPC and the sampling port on
/// ephemeral ports it does not report); killed when dropped.
pub struct Collector {
    pub child: Child,
    pub ingest: SocketAddr,
    pub query: SocketAddr,
}

impl Collector {
    /// Starts the binary on `data_dir` ([`command`], with fresh ingest and query ports), then
    /// `configure` may add to the command (more variables, where stderr goes; stderr is
    /// inherited unless it says otherwise).
    /// Waits until `GET /health` on the query port answers 200 while the process itself
    /// holds that port ([`demokit::ports::listens`]: a foreign server there does not count).
    /// When it exits 71 (a listener could not be bound: another process took a port), it
    /// starts again on new ports, [`START_ATTEMPTS`] times in all. Panics when the process
    /// exits otherwise, or after [`START_TIMEOUT_MS`].
    pub async fn start(data_dir: &Path, mut configure: impl FnMut(&mut Command)) -> Self {
        let mut attempt = 1;
        loop {
            match Self::try_start(data_dir, &mut configure).await {
                Ok(collector) => return collector,
                Err(code) if code == Some(EXIT_BIND) && attempt < START_ATTEMPTS => attempt += 1,
                Err(code) => panic!("collector exited early with {code:?}"),
            }
        }
    }

    /// One try of [`start`](Self::start): the collector, or its exit code.
    async fn try_start(
        data_dir: &Path,
        configure: &mut impl FnMut(&mut Command),
    ) -> Result<Self, Option<i32>> {
        let ingest = loopback_addr();
        let query = loopback_addr();
        let mut cmd = command(data_dir);
        cmd.env("COLLECTOR_INGEST_ADDR", ingest.to_string())
            .env("COLLECTOR_QUERY_ADDR", query.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut collector = Self {
            child: cmd.spawn().unwrap(),
            ingest,
            query,
        };
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            if let Some(status) = collector.child.try_wait().unwrap() {
                return Err(status.code());
            }
            if collector::healthcheck::check(query, Duration::from_secs(1))
                .await
                .is_ok()
                && demokit::ports::listens(collector.child.id(), query.port())
            {
                return Ok(collector);
            }
            assert!(
                Instant::now() < deadline,
                "collector not healthy within {START_TIMEOUT_MS} ms"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for exit 0 (at most [`STOP_TIMEOUT_MS`]).
    pub async fn stop(mut self) {
        sigterm(&self.child);
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "collector did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0));
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary's command on `data_dir` (SQLite), with an environment of its own: gRPC and
/// the sampling port on ephemeral loopback ports, the data directory, nothing else (the
/// caller sets the ingest and query addresses, or leaves them to a test of the defaults);
/// stdin closed.
pub fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collector"));
    cmd.env_clear()
        .env("COLLECTOR_GRPC_ADDR", "127.0.0.1:0")
        .env("COLLECTOR_SAMPLING_ADDR", "127.0.0.1:0")
        .env("COLLECTOR_DATA_DIR", data_dir)
        .stdin(Stdio::null());
    cmd
}

/// Sends SIGTERM to `child` (the graceful stop).
pub fn sigterm(child: &Child) {
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A free loopback address for the child to listen on (see [`super::free_port`]).
fn loopback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], super::free_port()))
}
