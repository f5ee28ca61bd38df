//! End-to-end harness: starts the five real Spanline binaries (collector, frontend, user,
//! order, payment) as child processes on free loopback ports with a temporary data
//! directory, waits until each answers its health check, and stops them gracefully.
//!
//! [`Stack::start_with_nats`] adds the message queue: a `nats-server -js` of its own on a
//! free port (through `scripts/nats.sh`) and `notification-service`. Without nats-server it
//! answers `None` (skip), except under `CI=true`, where a missing server fails the test.
//! The plain [`Stack::start`] sets `NATS_URL` empty: no messaging.
//!
//! Binaries are taken from `SPANLINE_BIN_DIR` if set, else from the Cargo target directory
//! this test binary runs from (`target/<profile>/`); missing ones are built with
//! `cargo build --bins` first.
//!
//! Ports: every port is reserved ([`free_port`]) and a process is ready only when it holds
//! its listener itself ([`start::wait_ready`]). A process that loses its port to another one
//! at its first start is started again on a new port (the services that name it are started
//! after it); a restart tries its same port again ([`start::START_ATTEMPTS`] tries in all).
//! nats-server binds a port of its own choice at its first start (`scripts/nats.sh 0`).

pub mod browser;
mod nats;
pub mod peer_group;
mod proc;
pub mod start;
mod wiring;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use nats::nats_available;
pub use proc::Proc;
pub use start::StartError;
pub use wiring::{ServiceSpec, collector_env, demo_services};

/// The binaries of the stack.
pub const BINARIES: [&str; 6] = [
    "collector",
    "frontend",
    "user-service",
    "order-service",
    "payment-service",
    "notification-service",
];

/// How long a process may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the binaries, building them once if any is missing.
///
/// # Panics
/// If the binaries cannot be found or built (the test cannot run without them).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("SPANLINE_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                // target/<profile>/deps/<test binary> -> target/<profile>
                let exe = std::env::current_exe().expect("current_exe");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("test binary lives in target/<profile>/deps")
                    .to_path_buf()
            }
        };
        let missing = BINARIES.iter().any(|b| !dir.join(b).exists());
        if missing {
            let release = dir.ends_with("release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--bins"]);
            for b in BINARIES {
                cmd.args(["-p", b]);
            }
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build --bins failed");
        }
        dir
    })
}

/// A free TCP port on 127.0.0.1, reserved for a child to bind within 60 s and never
/// answered twice in this process ([`demokit::ports::reserve_port`]).
///
/// # Panics
/// When no port can be reserved (the test cannot run without one).
pub fn free_port() -> u16 {
    demokit::ports::reserve_port().expect("reserve a loopback port")
}

/// Waits until `GET url` answers 200 while `proc` holds the listener of `url`'s port
/// ([`start::wait_ready`]), or panics with the process log after `timeout`, or when it exits.
pub async fn wait_healthy(client: &reqwest::Client, url: &str, proc: &mut Proc, timeout: Duration) {
    let port = url_port(url);
    if let Err(e) = start::wait_ready(client, url, port, proc, timeout).await {
        panic!("{e}");
    }
}

/// The port of an `http://HOST:PORT/...` URL.
///
/// # Panics
/// When the URL names no port (the harness always does).
pub fn url_port(url: &str) -> u16 {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{url} names no port"))
}

/// The whole stack on loopback.
pub struct Stack {
    /// A plain HTTP client for the test's own requests.
    pub client: reqwest::Client,
    /// The frontend's base URL.
    pub frontend_url: String,
    /// The collector's query base URL.
    pub query_url: String,
    /// The collector's ingest base URL.
    pub ingest_url: String,
    ingest_addr: SocketAddr,
    query_addr: SocketAddr,
    /// The collector's data directory (kept across collector restarts).
    pub data_dir: tempfile::TempDir,
    /// The processes: collector first.
    pub procs: Vec<Proc>,
    /// Extra variables of the collector (they win over the stack's).
    pub collector_env: Vec<(&'static str, String)>,
    /// The NATS server's URL, when the stack has one ([`Stack::start_with_nats`]).
    pub nats_url: Option<String>,
    nats: Option<Proc>,
    nats_port: u16,
    services: Vec<ServiceSpec>,
}

impl Stack {
    /// Starts the collector and the four services with a 100 ms batch delay, and waits
    /// until all are healthy. Messaging is off (`NATS_URL` empty).
    pub async fn start() -> Stack {
        Self::start_with(|_| Vec::new()).await
    }

    /// As [`start`](Self::start), with extra variables per service (`"user"`, `"order"`,
    /// `"payment"`, `"frontend"`), which win over the defaults (e.g. a later
    /// `OTEL_BSP_SCHEDULE_DELAY`, or an exporter endpoint nobody listens on).
    pub async fn start_with(extra_env: impl Fn(&str) -> Vec<(&'static str, String)>) -> Stack {
        Self::start_inner(false, Vec::new(), extra_env).await
    }

    /// As [`start_with`](Self::start_with), with extra variables for the collector too
    /// (e.g. `COLLECTOR_TAIL_SAMPLING`).
    pub async fn start_configured(
        collector_env: Vec<(&'static str, String)>,
        extra_env: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Stack {
        Self::start_inner(false, collector_env, extra_env).await
    }

    /// The stack with its own `nats-server -js` and the notification service; `None`
    /// (skip) when nats-server is not available (see [`nats_available`]).
    pub async fn start_with_nats(
        extra_env: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Option<Stack> {
        if !nats_available() {
            return None;
        }
        Some(Self::start_inner(true, Vec::new(), extra_env).await)
    }

    async fn start_inner(
        with_nats: bool,
        collector_env: Vec<(&'static str, String)>,
        extra_env: impl Fn(&str) -> Vec<(&'static str, String)>,
    ) -> Stack {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(40))
            .build()
            .expect("client");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let ingest_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let query_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut stack = Stack {
            client,
            frontend_url: String::new(),
            query_url: format!("http://{query_addr}"),
            ingest_url: format!("http://{ingest_addr}"),
            ingest_addr,
            query_addr,
            data_dir,
            procs: Vec::new(),
            collector_env,
            nats_url: None,
            nats: None,
            nats_port: 0,
            services: Vec::new(),
        };
        // In dependency order, each on its final address before those that name it start.
        stack.start_collector().await;
        if with_nats {
            stack.start_nats().await;
        }
        let ingest_url = stack.ingest_url.clone();
        stack.services = demo_services(
            |_| ingest_url.clone(),
            &stack.query_url,
            stack.nats_url.as_deref(),
            extra_env,
        );
        let frontend = stack.services.iter().find(|s| s.bin == "frontend");
        stack.frontend_url = frontend.expect("demo_services has a frontend").url();
        let bins: Vec<&'static str> = stack.services.iter().map(|s| s.bin).collect();
        for bin in bins {
            stack.start_service(bin).await;
        }
        stack
    }

    /// Starts (or restarts) the demo service `bin` with the variables it was first started
    /// with, and waits until it is healthy. At its first start, a service whose port another
    /// process took moves to a new port (the services that call it start later and are told
    /// the new one); a restart tries the same port again.
    ///
    /// # Panics
    /// If `bin` is not a service of this stack, or it does not become healthy in
    /// [`start::START_ATTEMPTS`] tries.
    pub async fn start_service(&mut self, bin: &str) {
        let first = !self.procs.iter().any(|p| p.name == bin);
        let mut attempt = 1;
        let proc = loop {
            let spec = self
                .services
                .iter()
                .find(|s| s.bin == bin)
                .unwrap_or_else(|| panic!("{bin} is not a service of this stack"));
            match spec.try_start(&self.client, self.data_dir.path()).await {
                Ok(proc) => break proc,
                Err(StartError::PortTaken { .. }) if attempt < start::START_ATTEMPTS => {
                    attempt += 1;
                    if first {
                        self.move_service(bin);
                    } else {
                        tokio::time::sleep(start::SAME_PORT_PAUSE).await;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        };
        match self.procs.iter().position(|p| p.name == bin) {
            Some(i) => self.procs[i] = proc,
            None => self.procs.push(proc),
        }
    }

    /// Gives the service `bin` a new port, and every service that names its URL the new one.
    fn move_service(&mut self, bin: &str) {
        if let Some(url) = wiring::move_service(&mut self.services, bin, free_port())
            && bin == "frontend"
        {
            self.frontend_url = url;
        }
    }

    /// Stops the demo service `bin` with SIGTERM; returns its exit code.
    ///
    /// # Panics
    /// If `bin` is not running in this stack.
    pub fn stop_service(&mut self, bin: &str) -> Option<i32> {
        self.procs
            .iter_mut()
            .find(|p| p.name == bin)
            .unwrap_or_else(|| panic!("{bin} is not running"))
            .terminate(Duration::from_secs(10))
    }

    /// Starts the stack's nats-server on a port it binds itself (`scripts/nats.sh 0`), or
    /// restarts it on that same port and store, and waits until it is ready: the ports file
    /// of its own pid names its port, and the port greets with NATS's `INFO` line.
    ///
    /// # Panics
    /// If it does not start in [`start::START_ATTEMPTS`] tries.
    pub async fn start_nats(&mut self) {
        let store = self.data_dir.path().join("nats");
        let mut attempt = 1;
        loop {
            let mut cmd = Command::new("bash");
            cmd.args([nats::NATS_SCRIPT, &self.nats_port.to_string()]);
            let env = [("NATS_STORE_DIR", store.display().to_string())];
            let mut proc = Proc::spawn_command("nats-server", cmd, &env, self.data_dir.path());
            match nats::wait_ready(&mut proc, &store, self.nats_port, START_TIMEOUT).await {
                Ok(port) => {
                    self.nats_port = port;
                    self.nats_url = Some(format!("nats://127.0.0.1:{port}"));
                    self.nats = Some(proc);
                    return;
                }
                Err(StartError::PortTaken { .. }) if attempt < start::START_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(start::SAME_PORT_PAUSE).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Stops the stack's nats-server (SIGTERM); returns its exit code.
    pub fn stop_nats(&mut self) -> Option<i32> {
        self.nats
            .as_mut()
            .and_then(|p| p.terminate(Duration::from_secs(10)))
    }

    /// Starts the collector, or restarts it on the stack's same ports and data directory,
    /// and waits until it is healthy. At its first start (before the services, which are
    /// told its address), a collector whose ports another process took moves to new ones; a
    /// restart tries the same ports again.
    ///
    /// # Panics
    /// If it does not become healthy in [`start::START_ATTEMPTS`] tries.
    pub async fn start_collector(&mut self) {
        let first = !self.procs.iter().any(|p| p.name == "collector");
        let data = self.data_dir.path().join("collector");
        let mut attempt = 1;
        let proc = loop {
            let mut env = collector_env(self.ingest_addr, self.query_addr, &data);
            env.extend(self.collector_env.iter().cloned());
            let mut proc = Proc::spawn("collector", &env, self.data_dir.path());
            let health = format!("{}/health", self.query_url);
            let port = self.query_addr.port();
            match start::wait_ready(&self.client, &health, port, &mut proc, START_TIMEOUT).await {
                Ok(()) => break proc,
                Err(StartError::PortTaken { .. }) if attempt < start::START_ATTEMPTS => {
                    attempt += 1;
                    if first {
                        self.ingest_addr = ([127, 0, 0, 1], free_port()).into();
                        self.query_addr = ([127, 0, 0, 1], free_port()).into();
                        self.ingest_url = format!("http://{}", self.ingest_addr);
                        self.query_url = format!("http://{}", self.query_addr);
                    } else {
                        tokio::time::sleep(start::SAME_PORT_PAUSE).await;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        };
        if self.procs.first().is_some_and(|p| p.name == "collector") {
            self.procs[0] = proc;
        } else {
            self.procs.insert(0, proc);
        }
    }

    /// Stops the collector gracefully; returns its exit code.
    pub fn stop_collector(&mut self) -> Option<i32> {
        let c = self
            .procs
            .iter_mut()
            .find(|p| p.name == "collector")
            .expect("collector running");
        c.terminate(Duration::from_secs(10))
    }

    /// `POST /orders<query>` on the frontend with `{"user_id", "product": "Laptop",
    /// "quantity"}`: the status and the JSON answer.
    pub async fn place_order(&self, query: &str, user_id: &str, quantity: u32) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/orders{query}", self.frontend_url))
            .json(&serde_json::json!({
                "user_id": user_id, "product": "Laptop", "quantity": quantity
            }))
            .send()
            .await
            .expect("POST /orders");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    /// `GET <query port><path>` answered as JSON (any status).
    pub async fn query_json(&self, path: &str) -> Value {
        self.query_get(path)
            .await
            .json()
            .await
            .expect("a JSON answer")
    }

    /// `GET <query port><path>` answered as text (any status).
    pub async fn query_text(&self, path: &str) -> String {
        self.query_get(path)
            .await
            .text()
            .await
            .expect("a text answer")
    }

    /// `GET <query port><path>`: the answer, any status.
    async fn query_get(&self, path: &str) -> reqwest::Response {
        self.get(&format!("{}{path}", self.query_url)).await
    }

    /// `GET <url>` with the stack's client: the answer, any status; panics when the request
    /// cannot be sent.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Polls the tree of `trace_id` until `done(tree)` holds, or panics after `timeout`
    /// with the last tree seen.
    pub async fn wait_for_tree(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/v1/traces/{trace_id}/tree", self.query_url);
        let mut last = Value::Null;
        loop {
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
                && let Ok(tree) = r.json::<Value>().await
            {
                if done(&tree) {
                    return tree;
                }
                last = tree;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} not as expected after {timeout:?}; last tree: {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GET /orders/{order_id}` on the frontend until the order's status is no longer
    /// `pending`, or `timeout` passes: the last answer either way (the caller asserts on it).
    pub async fn wait_order_settled(&self, order_id: &str, timeout: Duration) -> Value {
        let url = format!("{}/orders/{order_id}", self.frontend_url);
        let deadline = Instant::now() + timeout;
        loop {
            let order: Value = self.get(&url).await.json().await.expect("a JSON order");
            if order["status"] != "pending" || Instant::now() > deadline {
                return order;
            }
            // A poll interval, not a synchronisation: the loop ends on the status.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .chain(&self.nats)
            .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
            .collect()
    }

    /// Stops the services (not the collector) with SIGTERM, so each flushes its spans;
    /// returns `(name, exit code)` of each.
    pub fn stop_services(&mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut codes = Vec::new();
        for p in self.procs.iter_mut().skip(1).rev() {
            codes.push((p.name, p.terminate(Duration::from_secs(10))));
        }
        codes
    }

    /// Stops every process (services first, then the collector) with SIGTERM; returns
    /// `(name, exit code)` of each.
    pub fn shutdown(&mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut codes = Vec::new();
        for p in self.procs.iter_mut().rev() {
            codes.push((p.name, p.terminate(Duration::from_secs(10))));
        }
        codes
    }
}

/// Every node of a tree, depth first, with its parent node.
pub fn walk(tree: &Value) -> Vec<(&Value, Option<&Value>)> {
    fn go<'a>(
        n: &'a Value,
        parent: Option<&'a Value>,
        out: &mut Vec<(&'a Value, Option<&'a Value>)>,
    ) {
        out.push((n, parent));
        if let Some(children) = n["children"].as_array() {
            for c in children {
                go(c, Some(n), out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(roots) = tree["roots"].as_array() {
        for r in roots {
            go(r, None, &mut out);
        }
    }
    out
}
