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

pub mod browser;
pub mod peer_group;
mod wiring;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again
/// immediately).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// One running child process.
pub struct Proc {
    /// Binary name.
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts the Spanline binary `name` with `env`, logging stdout and stderr to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(name: &'static str, env: &[(&str, String)], log_dir: &Path) -> Proc {
        Proc::spawn_command(name, Command::new(bin_dir().join(name)), env, log_dir)
    }

    /// Starts `cmd` as the process called `name`, like [`spawn`](Self::spawn).
    pub fn spawn_command(
        name: &'static str,
        mut cmd: Command,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // Start from a clean OTEL environment so a developer's shell cannot change the test.
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name, child, log }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status
    /// code, or kills the process and returns `None` if it did not stop in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `GET url` answers 200, or panics with the process log after `timeout`.
pub async fn wait_healthy(client: &reqwest::Client, url: &str, proc: &Proc, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not healthy at {url} after {timeout:?}; log:\n{}",
            proc.name,
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The script that finds (or installs) and runs nats-server.
const NATS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/nats.sh");

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
        let nats_port = free_port();
        let ingest_url = format!("http://{ingest_addr}");
        let query_url = format!("http://{query_addr}");
        let nats_url = with_nats.then(|| format!("nats://127.0.0.1:{nats_port}"));
        let services = demo_services(
            |_| ingest_url.clone(),
            &query_url,
            nats_url.as_deref(),
            extra_env,
        );
        let frontend = services.iter().find(|s| s.bin == "frontend");
        let mut stack = Stack {
            client,
            frontend_url: frontend.expect("demo_services has a frontend").url(),
            query_url,
            ingest_url,
            ingest_addr,
            query_addr,
            data_dir,
            procs: Vec::new(),
            collector_env,
            nats_url,
            nats: None,
            nats_port,
            services,
        };
        stack.start_collector().await;
        if with_nats {
            stack.start_nats().await;
        }
        let bins: Vec<&'static str> = stack.services.iter().map(|s| s.bin).collect();
        for bin in bins {
            stack.start_service(bin).await;
        }
        stack
    }

    /// Starts (or restarts) the demo service `bin` with the variables it was first started
    /// with, and waits until it is healthy.
    ///
    /// # Panics
    /// If `bin` is not a service of this stack, or it does not become healthy.
    pub async fn start_service(&mut self, bin: &str) {
        let spec = self
            .services
            .iter()
            .find(|s| s.bin == bin)
            .unwrap_or_else(|| panic!("{bin} is not a service of this stack"));
        let proc = spec.start(&self.client, self.data_dir.path()).await;
        match self.procs.iter().position(|p| p.name == bin) {
            Some(i) => self.procs[i] = proc,
            None => self.procs.push(proc),
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

    /// Starts (or restarts) the stack's nats-server on its fixed port and store, and waits
    /// until it accepts connections.
    ///
    /// # Panics
    /// If it does not start.
    pub async fn start_nats(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.args([NATS_SCRIPT, &self.nats_port.to_string()]);
        let store = self.data_dir.path().join("nats");
        let env = [("NATS_STORE_DIR", store.display().to_string())];
        let proc = Proc::spawn_command("nats-server", cmd, &env, self.data_dir.path());
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.nats_port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start; log:\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.nats = Some(proc);
    }

    /// Stops the stack's nats-server (SIGTERM); returns its exit code.
    pub fn stop_nats(&mut self) -> Option<i32> {
        self.nats
            .as_mut()
            .and_then(|p| p.terminate(Duration::from_secs(10)))
    }

    /// Starts (or restarts) the collector on the stack's fixed ports and data directory.
    pub async fn start_collector(&mut self) {
        let data = self.data_dir.path().join("collector");
        let mut env = collector_env(self.ingest_addr, self.query_addr, &data);
        env.extend(self.collector_env.iter().cloned());
        let proc = Proc::spawn("collector", &env, self.data_dir.path());
        wait_healthy(
            &self.client,
            &format!("{}/health", self.query_url),
            &proc,
            START_TIMEOUT,
        )
        .await;
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
