//! A group of collectors that route traces to each other (`COLLECTOR_PEERS`,
//! `COLLECTOR_PEER_SELF`, `COLLECTOR_PEER_QUERY_URLS`), each a real process on its own loopback
//! ports with its own data directory: what `tests/peers.rs` and `tests/peers_tail.rs` start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::start::{SAME_PORT_PAUSE, START_ATTEMPTS, StartError, wait_ready};
use crate::{Proc, START_TIMEOUT, collector_env, free_port, url_port};

/// One collector of a group.
pub struct PeerCollector {
    /// The running process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` of its OTLP/HTTP ingest listener.
    pub ingest_url: String,
    /// `http://127.0.0.1:PORT` of its query listener.
    pub query_url: String,
    env: Vec<(&'static str, String)>,
    log_dir: PathBuf,
}

impl PeerCollector {
    /// Stops the collector (SIGTERM, up to 20 s) and starts it again with the same ports,
    /// variables and data; returns once it is healthy (and holds its query port itself). The
    /// other collectors know its ports: when another process took one, it tries the same
    /// ports again, [`START_ATTEMPTS`] times in all.
    ///
    /// # Panics
    /// When it does not become healthy within [`START_TIMEOUT`], or its ports stay taken.
    pub async fn restart(&mut self) {
        self.proc.terminate(Duration::from_secs(20));
        let health = format!("{}/health", self.query_url);
        let port = url_port(&self.query_url);
        let mut attempt = 1;
        loop {
            self.proc = Proc::spawn("collector", &self.env, &self.log_dir);
            match wait_ready(&client(), &health, port, &mut self.proc, START_TIMEOUT).await {
                Ok(()) => return,
                Err(StartError::PortTaken { .. }) if attempt < START_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(SAME_PORT_PAUSE).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// A client for tests of a group: no proxy, 40 s timeout.
///
/// # Panics
/// When reqwest cannot build a client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(40))
        .build()
        .expect("client")
}

/// Starts `n` collectors that route to each other, each with `COLLECTOR_TRACE_SETTLE=2s`,
/// then `extra` (which may override it), and its own data and log directory `dir/c<i>`.
/// Returns once every one is healthy and holds its own query port. Each names all the
/// others' ports: when another process took a port of one, all are stopped and the group
/// starts again on new ports, [`START_ATTEMPTS`] times in all.
///
/// # Panics
/// When a collector does not become healthy within [`START_TIMEOUT`], or the ports stay
/// taken.
pub async fn start_group(
    n: usize,
    dir: &Path,
    extra: &[(&'static str, String)],
) -> Vec<PeerCollector> {
    let mut attempt = 1;
    loop {
        match try_start_group(n, dir, extra).await {
            Ok(group) => return group,
            Err(StartError::PortTaken { .. }) if attempt < START_ATTEMPTS => attempt += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// One try of [`start_group`] on new ports; a collector that fails stops the ones started.
async fn try_start_group(
    n: usize,
    dir: &Path,
    extra: &[(&'static str, String)],
) -> Result<Vec<PeerCollector>, StartError> {
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..n)
        .map(|_| (loopback(free_port()), loopback(free_port())))
        .collect();
    let ingest: Vec<String> = addrs.iter().map(|(i, _)| format!("http://{i}")).collect();
    let query: Vec<String> = addrs.iter().map(|(_, q)| format!("http://{q}")).collect();
    let mut group: Vec<PeerCollector> = Vec::new();
    for i in 0..n {
        let log_dir = dir.join(format!("c{i}"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let (ingest_addr, query_addr) = addrs[i];
        let mut env = collector_env(ingest_addr, query_addr, &log_dir.join("data"));
        env.extend([
            ("COLLECTOR_PEERS", ingest.join(",")),
            ("COLLECTOR_PEER_SELF", ingest[i].clone()),
            ("COLLECTOR_PEER_QUERY_URLS", query.join(",")),
            ("COLLECTOR_TRACE_SETTLE", "2s".to_owned()),
        ]);
        env.extend(extra.iter().cloned());
        let mut proc = Proc::spawn("collector", &env, &log_dir);
        let health = format!("{}/health", query[i]);
        let client = client();
        let ready = wait_ready(
            &client,
            &health,
            query_addr.port(),
            &mut proc,
            START_TIMEOUT,
        );
        if let Err(e) = ready.await {
            for started in &mut group {
                started.proc.terminate(Duration::from_secs(20));
            }
            return Err(e);
        }
        group.push(PeerCollector {
            proc,
            ingest_url: ingest[i].clone(),
            query_url: query[i].clone(),
            env,
            log_dir,
        });
    }
    Ok(group)
}

/// Every collector's log, headed `--- collector <i> ---`, for assertion messages.
pub fn logs(group: &[PeerCollector]) -> String {
    group
        .iter()
        .enumerate()
        .map(|(i, c)| format!("--- collector {i} ---\n{}", c.proc.log()))
        .collect()
}
