//! A group of collectors that route traces to each other (`COLLECTOR_PEERS`,
//! `COLLECTOR_PEER_SELF`, `COLLECTOR_PEER_QUERY_URLS`), each a real process on its own loopback
//! ports with its own data directory: what `tests/peers.rs` and `tests/peers_tail.rs` start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Proc, START_TIMEOUT, collector_env, free_port, wait_healthy};

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
    /// variables and data; returns once it is healthy.
    ///
    /// # Panics
    /// When it does not become healthy within [`START_TIMEOUT`].
    pub async fn restart(&mut self) {
        self.proc.terminate(Duration::from_secs(20));
        self.proc = Proc::spawn("collector", &self.env, &self.log_dir);
        let health = format!("{}/health", self.query_url);
        wait_healthy(&client(), &health, &self.proc, START_TIMEOUT).await;
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
/// Returns once every one is healthy.
///
/// # Panics
/// When a collector does not become healthy within [`START_TIMEOUT`].
pub async fn start_group(
    n: usize,
    dir: &Path,
    extra: &[(&'static str, String)],
) -> Vec<PeerCollector> {
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..n)
        .map(|_| (loopback(free_port()), loopback(free_port())))
        .collect();
    let ingest: Vec<String> = addrs.iter().map(|(i, _)| format!("http://{i}")).collect();
    let query: Vec<String> = addrs.iter().map(|(_, q)| format!("http://{q}")).collect();
    let mut group = Vec::new();
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
        let proc = Proc::spawn("collector", &env, &log_dir);
        let health = format!("{}/health", query[i]);
        wait_healthy(&client(), &health, &proc, START_TIMEOUT).await;
        group.push(PeerCollector {
            proc,
            ingest_url: ingest[i].clone(),
            query_url: query[i].clone(),
            env,
            log_dir,
        });
    }
    group
}

/// Every collector's log, headed `--- collector <i> ---`, for assertion messages.
pub fn logs(group: &[PeerCollector]) -> String {
    group
        .iter()
        .enumerate()
        .map(|(i, c)| format!("--- collector {i} ---\n{}", c.proc.log()))
        .collect()
}
